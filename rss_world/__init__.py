"""rss_world: Recursive Sparse Reasoning world-model toolkit."""

__version__ = "0.1.0"

"""The visual world model built on the RSR core (``rss_world.nn``): encode / step / decode / status / policy."""

from .model import NUM_ACTIONS, Imagination, WorldModel, WorldModelConfig

__all__ = ["NUM_ACTIONS", "Imagination", "WorldModel", "WorldModelConfig"]

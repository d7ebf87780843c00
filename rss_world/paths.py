"""Where the package keeps the files it ships."""

from __future__ import annotations

from pathlib import Path

# The trained FrozenLake world model shipped with the package: the default of every command that loads a model.
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "frozenlake"

"""Test-wide settings: headless pygame, one torch thread (tiny models gain nothing from more, and
oversubscribed threads on a shared 2-core machine slow everything down by an order of magnitude)."""

import os
import sys
from pathlib import Path

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

import torch  # noqa: E402

torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).parent / "world_model"))

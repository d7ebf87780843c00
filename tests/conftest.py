"""Test-wide settings and fixtures: headless pygame, one torch thread (tiny models gain nothing from more, and
oversubscribed threads on a shared 2-core machine slow everything down by an order of magnitude), and the tiny
world-model preset."""

import os
import sys
from importlib.resources import files
from pathlib import Path

import pytest

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).parent / "world_model"))  # TEMP(merge): wm_helpers until tests are moved


@pytest.fixture
def tiny_settings() -> dict:
    """The ``tiny`` model preset (``configs/model/tiny.yaml``): what differs from the shipped model's defaults."""
    return OmegaConf.to_container(OmegaConf.load(files("rss_world.configs") / "model" / "tiny.yaml"))

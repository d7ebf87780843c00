"""What the agent and imagination tests share: a tiny untrained world model and a loader for experiment scripts."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import torch

from rss_world.world_model import WorldModel, WorldModelConfig

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


def make_tiny(seed: int = 0, goal: float | None = None, hole: float | None = None) -> WorldModel:
    """A tiny untrained model; ``goal`` / ``hole`` pin the status head's logits (zero weights) when given."""
    torch.manual_seed(seed)
    m = WorldModel(WorldModelConfig(dim=32, heads=2, enc_layers=1, dec_layers=1, rank=4))
    if goal is not None or hole is not None:
        with torch.no_grad():
            m.status_head.weight.zero_()
            m.status_head.bias.copy_(torch.tensor([goal or -9.0, hole or -9.0]))
    return m


@pytest.fixture(scope="session")
def tiny():
    """The :func:`make_tiny` factory."""
    return make_tiny


def load_experiment(name: str) -> ModuleType:
    """Import ``experiments/<name>.py`` from its file (experiments are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"experiment_{name}", EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def experiment():
    """The :func:`load_experiment` loader."""
    return load_experiment

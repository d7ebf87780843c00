"""What the agent and imagination tests share: a tiny untrained world model with pinned heads and a loader for
experiment scripts."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import torch

from rss_world.world_model import WorldModel

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


@pytest.fixture(scope="session")
def tiny(new_tiny):
    """``tiny(seed=0, goal=None, hole=None)``: an untrained model of the ``tiny`` preset (the root conftest's
    ``new_tiny``); ``goal`` / ``hole`` pin the status head's logits (zero weights, the other logit -9) when given."""

    def build(seed: int = 0, goal: float | None = None, hole: float | None = None) -> WorldModel:
        m = new_tiny(seed)
        if goal is not None or hole is not None:
            with torch.no_grad():
                m.status_head.weight.zero_()
                m.status_head.bias.copy_(torch.tensor([-9.0 if goal is None else goal,
                                                       -9.0 if hole is None else hole]))
        return m

    return build


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

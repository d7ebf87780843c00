"""Test-wide settings and fixtures: headless pygame, one torch thread (tiny models gain nothing from more, and
oversubscribed threads on a shared 2-core machine slow everything down by an order of magnitude), the tiny
world-model preset and models built from it, the 3x3 map and its transitions, and running an entry point."""

import os
import runpy
import sys
from collections.abc import Callable
from importlib.resources import files
from unittest import mock

import numpy as np
import pytest

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from rss_world.data import Episodes  # noqa: E402
from rss_world.envs.oracle import move  # noqa: E402
from rss_world.envs.render import render_grid  # noqa: E402
from rss_world.world_model import WorldModel, build_world_model  # noqa: E402

torch.set_num_threads(1)

MAP3 = ("SFF", "FHF", "FFG")


def tiny_preset() -> dict:
    """The ``tiny`` model preset (``configs/model/tiny.yaml``), read afresh: what differs from the shipped model's
    defaults."""
    return OmegaConf.to_container(OmegaConf.load(files("rss_world.configs") / "model" / "tiny.yaml"))


@pytest.fixture
def tiny_settings() -> dict:
    """The ``tiny`` model preset (``configs/model/tiny.yaml``): what differs from the shipped model's defaults."""
    return tiny_preset()


@pytest.fixture(scope="session")
def new_tiny() -> Callable[..., WorldModel]:
    """Builds a fresh, untrained world model of the ``tiny`` preset, seeded:
    ``new_tiny(seed=0, arch="rsr", **overrides)``; ``overrides`` change preset fields (``dim=64``).
    Session-scoped, so module-scoped fixtures may build models too."""

    def build(seed: int = 0, arch: str = WorldModel.arch, **overrides) -> WorldModel:
        torch.manual_seed(seed)
        return build_world_model(arch, **{**tiny_preset(), **overrides})

    return build


@pytest.fixture(scope="session")
def map3() -> tuple[str, ...]:
    """A 3x3 map: start top left, one hole in the middle, goal bottom right (``SFF / FHF / FFG``)."""
    return MAP3


def one_step_transitions(desc: tuple[str, ...]) -> Episodes:
    """Every one-step transition of ``desc`` from every non-terminal cell, as 1-step episodes of the data contract
    (frames, actions, rewards, terminated, truncated, lengths)."""
    n = len(desc)
    frames, actions, rewards, terminated = [], [], [], []
    for r in range(n):
        for c in range(n):
            if desc[r][c] in "HG":
                continue
            for a in range(4):
                nxt, _ = move(desc, (r, c), a)
                frames.append([render_grid(desc, (r, c)), render_grid(desc, nxt)])
                actions.append([a])
                rewards.append([float(desc[nxt[0]][nxt[1]] == "G")])
                terminated.append([desc[nxt[0]][nxt[1]] in "HG"])
    b = len(actions)
    return Episodes(size=n, frames=np.array(frames, dtype=np.uint8), actions=np.array(actions, dtype=np.int8),
                    rewards=np.array(rewards, dtype=np.float32), terminated=np.array(terminated, dtype=bool),
                    truncated=~np.array(terminated, dtype=bool), lengths=np.ones(b, dtype=np.int16))


@pytest.fixture
def map3_transitions(map3) -> Episodes:
    """Every one-step transition of :func:`map3` (7 non-terminal cells x 4 actions) as 28 one-step episodes."""
    return one_step_transitions(map3)


@pytest.fixture(scope="session")
def run_cli() -> Callable[[str, list[str]], int]:
    """``run_cli(module, argv)``: runs ``python -m <module> <argv>`` in this process, as ``python -m`` does (the
    entry point is never imported), and returns its exit code. A copy of the module that another test imported
    is set aside for the run, so the command runs its own fresh ``__main__``."""

    def run(module: str, argv: list[str]) -> int:
        imported = sys.modules.pop(module, None)
        try:
            with mock.patch.object(sys, "argv", [module, *argv]), pytest.raises(SystemExit) as done:
                runpy.run_module(module, run_name="__main__", alter_sys=True)
        finally:
            if imported is not None:
                sys.modules[module] = imported
        return done.value.code

    return run

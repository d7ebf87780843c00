"""Tiny data and models shared by the world-model tests."""

from __future__ import annotations

import numpy as np

from rss_world.data import Episodes
from rss_world.envs.oracle import move, optimal_action_mask
from rss_world.envs.render import render_grid
from rss_world.world_model import WorldModel, build_world_model

MAP3 = ("SFF", "FHF", "FFG")


def tiny_settings() -> dict:
    """The ``tiny`` model preset: the differences from the shipped model's defaults."""
    from importlib.resources import files

    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(files("rss_world.configs") / "model" / "tiny.yaml"))
TINY = tiny_settings()


def tiny_model(seed: int = 0, arch: str = "rsr", **kw) -> WorldModel:
    """A tiny world model (the ``configs/model/tiny.yaml`` preset), seeded."""
    import torch

    torch.manual_seed(seed)
    return build_world_model(arch, **{**TINY, **kw})


def transitions(desc=MAP3) -> Episodes:
    """Every one-step transition of ``desc`` from every non-terminal cell, as 1-step episodes."""
    n = len(desc)
    frames, actions, cells, optimal = [], [], [], []
    for r in range(n):
        for c in range(n):
            if desc[r][c] in "HG":
                continue
            for a in range(4):
                nxt, _ = move(desc, (r, c), a)
                frames.append([render_grid(desc, (r, c)), render_grid(desc, nxt)])
                actions.append([a])
                cells.append([(r, c), nxt])
                optimal.append([optimal_action_mask(desc, (r, c)), optimal_action_mask(desc, nxt)])
    b = len(actions)
    tiles = np.array([["FHSG".index(ch) for ch in row] for row in desc], dtype=np.int8)
    return Episodes(size=n, frames=np.array(frames, dtype=np.uint8), actions=np.array(actions, dtype=np.int8),
                    lengths=np.ones(b, dtype=np.int16), cells=np.array(cells, dtype=np.int8),
                    optimal=np.array(optimal, dtype=bool), tiles=np.repeat(tiles[None], b, 0),
                    map_ids=np.array(["m3"] * b))

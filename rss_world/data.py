"""Teacher-forced training windows cut from rollout shards (written by ``python -m rss_world.collect``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rss_world.envs.parser import TILE_CODES

TILE_GOAL, TILE_HOLE = TILE_CODES["G"], TILE_CODES["H"]


@dataclass
class Episodes:
    """All episodes of one grid size, in memory."""

    size: int
    frames: np.ndarray  # (B, L+1, H, W, 3) uint8
    actions: np.ndarray  # (B, L) int8, -1 after the end
    lengths: np.ndarray  # (B,)
    cells: np.ndarray  # (B, L+1, 2)
    optimal: np.ndarray  # (B, L+1, 4) bool
    tiles: np.ndarray  # (B, n, n)
    map_ids: np.ndarray


def load_shards(directory: str | Path, sizes: list[int] | None = None) -> dict[int, Episodes]:
    """Load every ``size*.npz`` shard under ``directory``, grouped by grid size."""
    directory = Path(directory)
    files = sorted(directory.glob("size*.npz"))
    if not files:
        raise FileNotFoundError(f"no rollout shards (size*.npz) under {directory}; run `python -m rss_world.collect`")
    groups: dict[int, list[dict]] = {}
    for f in files:
        with np.load(f) as z:
            size = int(z["size"])
            if sizes and size not in sizes:
                continue
            groups.setdefault(size, []).append({k: z[k] for k in z.files})
    out = {}
    for size, parts in groups.items():
        cat = {k: np.concatenate([p[k] for p in parts]) for k in ("frames", "actions", "lengths", "cells",
                                                                   "optimal", "tiles", "map_ids")}
        out[size] = Episodes(size=size, **cat)
    if not out:
        raise ValueError(f"no shards of sizes {sizes} under {directory}")
    return out


def sample_batch(data: dict[int, Episodes], batch: int, horizon: int, rng: np.random.Generator,
                 device: torch.device | str) -> tuple[dict[str, torch.Tensor], int]:
    """A training batch: a grid size drawn uniformly from ``data``, then :func:`sample_windows` of that size, on
    ``device``. Returns the batch and its size."""
    sizes = sorted(data)
    size = sizes[int(rng.integers(len(sizes)))]
    return {k: v.to(device) for k, v in sample_windows(data[size], batch, horizon, rng).items()}, size


def sample_windows(ep: Episodes, batch: int, horizon: int, rng: np.random.Generator,
                   long: bool = False) -> dict[str, torch.Tensor]:
    """A batch of windows of ``horizon`` steps starting at random non-terminal states.

    With ``long`` the start is drawn from the states that leave ``horizon`` real steps before the episode ends
    (from the episode start when it is shorter), so that evaluation sees as many late latent steps as possible.

    Returns tensors: ``frames`` (B, T+1, H, W, 3) uint8, ``actions`` (B, T) (0 where padded), ``valid`` (B, T)
    bool (step t is a real transition), ``optimal`` (B, T+1, 4), ``status`` (B, T+1, N, 2) per-token targets
    (agent on goal here, agent in hole here).
    """
    idx = rng.integers(len(ep.lengths), size=batch)
    lengths = ep.lengths[idx].astype(np.int64)
    span = np.maximum(lengths - horizon + 1, 1) if long else np.maximum(lengths, 1)
    starts = (rng.random(batch) * span).astype(np.int64)  # in [0, length)
    t_ar = np.arange(horizon + 1)
    pos = np.minimum(starts[:, None] + t_ar[None], ep.frames.shape[1] - 1)  # (B, T+1)
    frames = ep.frames[idx[:, None], pos]
    acts = ep.actions[idx[:, None], np.minimum(pos[:, :-1], ep.actions.shape[1] - 1)].astype(np.int64)
    valid = (starts[:, None] + t_ar[None, :-1]) < lengths[:, None]
    acts = np.where(valid, acts, 0)
    optimal = ep.optimal[idx[:, None], pos]
    cells = ep.cells[idx[:, None], pos].astype(np.int64)  # (B, T+1, 2)
    n = ep.size
    tiles = ep.tiles[idx]  # (B, n, n)
    tile_at = tiles[np.arange(batch)[:, None], cells[..., 0], cells[..., 1]]  # (B, T+1)
    status = np.zeros((batch, horizon + 1, n * n, 2), dtype=np.float32)
    flat = cells[..., 0] * n + cells[..., 1]
    bi, ti = np.meshgrid(np.arange(batch), t_ar, indexing="ij")
    status[bi, ti, flat, 0] = tile_at == TILE_GOAL
    status[bi, ti, flat, 1] = tile_at == TILE_HOLE
    return {
        "frames": torch.from_numpy(np.ascontiguousarray(frames)),
        "actions": torch.from_numpy(acts),
        "valid": torch.from_numpy(valid),
        "optimal": torch.from_numpy(optimal),
        "status": torch.from_numpy(status),
        "cells": torch.from_numpy(cells),
        "tiles": torch.from_numpy(tiles.astype(np.int64)),
    }

"""FrozenLake rollouts collected into compressed ``.npz`` shards (the command is ``python -m rss_world.collect``).

Behaviour policy, per episode (one of three kinds):

- ``random`` (probability ``random_frac``): uniformly random actions;
- ``bump`` (probability ``bump_frac``): ε-oracle steps interleaved with bursts of presses against the grid's
  edge. Wherever the agent stands on an edge, a burst starts with probability ``BUMP_START`` and lasts
  1..``BUMP_MAX`` steps, each an off-grid action of that cell drawn uniformly (so corners alternate
  directions). Agents trained in imagination press against walls for many steps in a row; the plain
  behaviour policy almost never does, and without such data imagined rollouts drift there;
- ``oracle`` (the rest): ε-greedy over the oracle (each step a random action with probability ``eps``, else an
  action drawn uniformly among all shortest-path actions).

Episode ``i`` draws its map and kind from ``np.random.default_rng([seed, i])`` and its actions from
``default_rng([seed, i, 1])`` only, so the data are a function of the settings and do not depend on sharding
or resumption. With ``bump_frac=0`` the data are those of the two-kind collection before bumps existed.

Episodes are grouped by map size (frame shapes differ); each size has its own shards
``size{n}_{k:05d}.npz`` holding ``shard_size`` episodes (the last may hold fewer), padded to the
horizon ``T`` (default ``4 * size``):

- ``frames`` uint8 (B, T+1, H, W, 3): frame before every step, padded by repeating the last frame;
- ``actions`` int8 (B, T), -1 after the episode ends; ``invalid`` bool (B, T) off-grid moves;
- ``rewards`` float32 (B, T); ``lengths`` int16 (B,) actions taken;
- ``cells`` int8 (B, T+1, 2) agent (row, col), padded with the last cell;
- ``optimal`` bool (B, T+1, 4) oracle mask of all shortest-path actions from that cell;
- ``tiles`` int8 (B, n, n) tile codes F=0, H=1, S=2, G=3;
- ``reached_goal``, ``fell_in_hole`` bool (B,); ``kind`` int8 (B,) 0 ε-oracle, 1 random, 2 bump;
- ``map_ids`` str (B,), ``map_index`` int32 (B,), ``episode_index`` int64 (B,);
- ``size``, ``cell_px``, ``seed`` scalars.

Frames come from :func:`rss_world.envs.render.render_grid`, pixel-identical to the environment's
frames with the canonical facing. Shards are written atomically, so ``--resume`` skips every shard
file that exists.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rss_world.io import atomic_write, atomic_write_text

MANIFEST = "manifest.json"
KINDS = ("oracle", "random", "bump")  # the ``kind`` codes 0, 1, 2
BUMP_START = 0.25  # chance per step on an edge cell that a bump episode starts a burst
BUMP_MAX = 10  # longest burst of off-grid presses


@dataclass
class CollectConfig:
    """One collection's settings; the defaults are the shipped recipe's training split.

    Attributes:
        suite: ``train``, ``val``, ``test`` (the shipped splits) or the path of a JSONL suite.
        episodes: episodes to collect.
        seed: seeds every episode's map, kind and actions (see the module docstring).
        eps: random-action chance per step of ε-oracle episodes.
        random_frac: fraction of fully random episodes.
        bump_frac: fraction of episodes with bursts of presses against the grid's edge.
        shard_size: episodes per shard file.
        cell_px: pixels per grid cell in the frames.
        horizon: steps per episode (``None``: ``4 * size``).
        sizes: grid sizes to keep (``None``: every map of the suite).
    """

    suite: str = "train"
    episodes: int = 3000
    seed: int = 0
    eps: float = 0.2
    random_frac: float = 0.2
    bump_frac: float = 0.2
    shard_size: int = 64
    cell_px: int = 16
    horizon: int | None = None
    sizes: list[int] | None = None

    def validate(self) -> None:
        """Raise ``ValueError`` naming the bad settings."""
        eps, rnd, bump = self.eps, self.random_frac, self.bump_frac
        if not 0 <= eps <= 1 or not 0 <= rnd <= 1 or not 0 <= bump <= 1 - rnd:
            raise ValueError(f"eps {eps}, random_frac {rnd} and bump_frac {bump} must lie in [0, 1], "
                             f"with random_frac + bump_frac <= 1")
        if self.episodes < 1 or self.shard_size < 1:
            raise ValueError(f"episodes {self.episodes} and shard_size {self.shard_size} must be positive")
        if self.cell_px < 1 or (self.horizon is not None and self.horizon < 1):
            raise ValueError(f"cell_px {self.cell_px} and horizon {self.horizon} must be positive")

    def manifest(self) -> dict:
        """The settings a collection directory records (and must match to be completed or reused)."""
        return {"env": "frozenlake", "suite": self.suite, "episodes": self.episodes, "seed": self.seed,
                "eps": self.eps, "random_frac": self.random_frac, "bump_frac": self.bump_frac,
                "shard_size": self.shard_size, "cell_px": self.cell_px, "horizon": self.horizon,
                "sizes": sorted(self.sizes) if self.sizes else None}


@dataclass
class DataConfig:
    """The recipe's rollouts (the ``data`` settings of ``configs/train.yaml``): a training split with the
    behaviour mix of :class:`CollectConfig`, and a validation split collected ε-oracle only (ε = ``val_eps``), so
    validation windows are the same whatever the training mix. The validation seed is ``seed + 1``."""

    train_dir: str = "outputs/data/fl_train"  # collected automatically when missing
    val_dir: str = "outputs/data/fl_val"
    train_episodes: int = CollectConfig.episodes
    val_episodes: int = 300
    eps: float = CollectConfig.eps
    random_frac: float = CollectConfig.random_frac
    bump_frac: float = CollectConfig.bump_frac
    val_eps: float = 0.1
    sizes: list[int] = field(default_factory=lambda: [3, 4, 5, 6, 7, 8])
    seed: int = CollectConfig.seed

    def splits(self) -> dict[str, tuple[str, CollectConfig]]:
        """``{"train": (directory, settings), "val": (directory, settings)}``."""
        sizes = list(self.sizes)
        return {
            "train": (self.train_dir, CollectConfig(suite="train", episodes=self.train_episodes, seed=self.seed,
                                                    eps=self.eps, random_frac=self.random_frac,
                                                    bump_frac=self.bump_frac, sizes=sizes)),
            "val": (self.val_dir, CollectConfig(suite="val", episodes=self.val_episodes, seed=self.seed + 1,
                                                eps=self.val_eps, random_frac=0.0, bump_frac=0.0, sizes=sizes)),
        }


def _load_maps(suite: str, sizes: Sequence[int] | None):
    from rss_world.envs.maps import SUITES, load_default_suite, load_suite

    if suite not in SUITES and not Path(suite).is_file():
        raise ValueError(f"suite {suite!r} is neither a shipped suite ({', '.join(SUITES)}) nor a JSONL file")
    maps = load_default_suite(suite) if suite in SUITES else load_suite(suite)
    if sizes:
        maps = [m for m in maps if m.size in set(sizes)]
    if not maps:
        raise ValueError(f"suite {suite!r} has no maps of sizes {sizes}")
    return maps


def rollout(desc: Sequence[str], rng: np.random.Generator, kind: int, eps: float, horizon: int,
            cell_px: int) -> dict[str, np.ndarray]:
    """Run one behaviour-policy episode of ``kind`` (an index into :data:`KINDS`) on ``desc`` and return its padded
    arrays (no batch axis)."""
    from rss_world.envs.maps import find_cell
    from rss_world.envs.oracle import move, off_grid_actions, optimal_action_mask
    from rss_world.envs.parser import TILE_CODES
    from rss_world.envs.render import render_grid

    if not 0 <= int(kind) < len(KINDS):
        raise ValueError(f"episode kind {kind} is not one of 0..{len(KINDS) - 1} ({', '.join(KINDS)})")
    n = len(desc)
    cell = find_cell(desc, "S")
    cells, actions, invalid, rewards = [cell], [], [], []
    done, goal, hole = False, False, False
    burst = 0
    while len(actions) < horizon and not done:
        mask = optimal_action_mask(desc, cell)
        edge = off_grid_actions(n, cell) if KINDS[kind] == "bump" else []
        if edge and burst == 0 and rng.random() < BUMP_START:
            burst = int(rng.integers(1, BUMP_MAX + 1))
        if burst > 0:  # a press against the edge: the agent stays, so `edge` holds for the whole burst
            a = edge[int(rng.integers(len(edge)))]
            burst -= 1
        elif KINDS[kind] == "random" or rng.random() < eps or not mask.any():
            a = int(rng.integers(4))
        else:
            opts = np.flatnonzero(mask)
            a = int(opts[rng.integers(len(opts))])
        cell, off = move(desc, cell, a)
        letter = desc[cell[0]][cell[1]]
        goal, hole = letter == "G", letter == "H"
        done = goal or hole
        actions.append(a)
        invalid.append(off)
        rewards.append(float(goal))
        cells.append(cell)
    k = len(actions)
    pad_cells = cells + [cells[-1]] * (horizon - k)
    frames = [render_grid(desc, c, cell_px) for c in cells]
    frames += [frames[-1]] * (horizon - k)
    return {
        "frames": np.stack(frames),
        "actions": np.array(actions + [-1] * (horizon - k), dtype=np.int8),
        "invalid": np.array(invalid + [False] * (horizon - k), dtype=bool),
        "rewards": np.array(rewards + [0.0] * (horizon - k), dtype=np.float32),
        "lengths": np.int16(k),
        "cells": np.array(pad_cells, dtype=np.int8),
        "optimal": np.stack([optimal_action_mask(desc, c) for c in pad_cells]),
        "tiles": np.array([[TILE_CODES[ch] for ch in row] for row in desc], dtype=np.int8).reshape(n, n),
        "reached_goal": np.bool_(goal),
        "fell_in_hole": np.bool_(hole),
    }


def plan_episodes(n_maps: int, episodes: int, seed: int, random_frac: float,
                  bump_frac: float) -> list[tuple[int, int]]:
    """(map index, kind code) for every episode, from ``default_rng([seed, i])``: one uniform draw ``u`` picks
    ``random`` when ``u < random_frac``, ``bump`` when ``u < random_frac + bump_frac``, else ``oracle``."""
    out = []
    for i in range(episodes):
        rng = np.random.default_rng([seed, i])
        mi, u = int(rng.integers(n_maps)), rng.random()
        out.append((mi, 1 if u < random_frac else 2 if u < random_frac + bump_frac else 0))
    return out


def collect(out: str | Path, cfg: CollectConfig | None = None, resume: bool = False,
            progress: bool = True) -> list[Path]:
    """Collect rollouts into shards under ``out`` (see the module docstring for the format).

    Args:
        cfg: the collection's settings (``None``: :class:`CollectConfig`'s defaults).
        resume: keep the shards already in ``out`` and write the missing ones.

    Returns:
        Paths of all shards of this collection (written now or found on resume).

    Raises:
        ValueError: Bad settings, or ``out`` already holds a collection made with other settings, or
            shards exist and ``resume`` is False.
    """
    from tqdm import tqdm

    cfg = cfg or CollectConfig()
    cfg.validate()
    out = Path(out)
    settings = cfg.manifest()
    manifest = out / MANIFEST
    if manifest.exists():
        old = json.loads(manifest.read_text())
        old.setdefault("bump_frac", 0.0)  # collections from before bump episodes existed had none
        if old != settings:
            raise ValueError(f"{out} holds a collection with settings {old}, not {settings}; collect into "
                             f"another directory (or delete this one)")
        if not resume and any(out.glob("size*.npz")):
            raise ValueError(f"{out} already holds shards; pass --resume to complete it")
    maps = _load_maps(cfg.suite, cfg.sizes)
    atomic_write_text(manifest, json.dumps(settings, indent=1))
    plan = plan_episodes(len(maps), cfg.episodes, cfg.seed, cfg.random_frac, cfg.bump_frac)
    by_size: dict[int, list[int]] = {}
    for i, (mi, _) in enumerate(plan):
        by_size.setdefault(maps[mi].size, []).append(i)
    paths: list[Path] = []
    bar = tqdm(total=cfg.episodes, desc="collect", unit="ep", disable=not progress)
    for size in sorted(by_size):
        idx = by_size[size]
        t = cfg.horizon if cfg.horizon is not None else 4 * size
        for k in range(0, len(idx), cfg.shard_size):
            chunk = idx[k:k + cfg.shard_size]
            path = out / f"size{size}_{k // cfg.shard_size:05d}.npz"
            paths.append(path)
            if path.exists():
                bar.update(len(chunk))
                continue
            eps_data = []
            for i in chunk:
                mi, kind = plan[i]
                rng = np.random.default_rng([cfg.seed, i, 1])
                eps_data.append(rollout(maps[mi].desc, rng, kind, cfg.eps, t, cfg.cell_px))
                bar.update(1)
            arrays = {key: np.stack([e[key] for e in eps_data]) for key in eps_data[0]}
            arrays.update(
                kind=np.array([plan[i][1] for i in chunk], dtype=np.int8),
                map_ids=np.array([maps[plan[i][0]].id for i in chunk]),
                map_index=np.array([plan[i][0] for i in chunk], dtype=np.int32),
                episode_index=np.array(chunk, dtype=np.int64),
                size=np.int64(size), cell_px=np.int64(cfg.cell_px), seed=np.int64(cfg.seed),
            )
            atomic_write(path, lambda tmp, arrays=arrays: np.savez_compressed(tmp, **arrays))
    bar.close()
    return paths


def ensure_recipe_data(data: DataConfig) -> None:
    """Collect the recipe's training and validation rollouts, or complete them where they are. A directory that
    holds a collection made with other settings raises ``ValueError`` (its manifest differs) rather than being
    used."""
    for directory, cfg in data.splits().values():
        collect(directory, cfg, resume=True)

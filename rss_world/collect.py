"""Collect FrozenLake rollouts into compressed ``.npz`` shards.

Usage::

    python -m rss_world.collect --env frozenlake --suite train --episodes 2000 --out outputs/data/fl_train \\
        --seed 0 --eps 0.2 --random-frac 0.2 --bump-frac 0.2 --shard-size 64 [--resume]

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

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

MANIFEST = "manifest.json"
KINDS = ("oracle", "random", "bump")  # the ``kind`` codes 0, 1, 2
BUMP_START = 0.25  # chance per step on an edge cell that a bump episode starts a burst
BUMP_MAX = 10  # longest burst of off-grid presses


def _load_maps(suite: str, sizes: Sequence[int] | None):
    from rss_world.envs.maps import SPLITS, load_default_suite, load_suite

    maps = load_default_suite(suite) if suite in SPLITS else load_suite(suite)
    if sizes:
        maps = [m for m in maps if m.size in set(sizes)]
    if not maps:
        raise ValueError(f"suite {suite!r} has no maps of sizes {sizes}")
    return maps


def rollout(desc: Sequence[str], rng: np.random.Generator, kind: int, eps: float, horizon: int,
            cell_px: int = 16) -> dict[str, np.ndarray]:
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
                  bump_frac: float = 0.0) -> list[tuple[int, int]]:
    """(map index, kind code) for every episode, from ``default_rng([seed, i])``: one uniform draw ``u`` picks
    ``random`` when ``u < random_frac``, ``bump`` when ``u < random_frac + bump_frac``, else ``oracle``."""
    out = []
    for i in range(episodes):
        rng = np.random.default_rng([seed, i])
        mi, u = int(rng.integers(n_maps)), rng.random()
        out.append((mi, 1 if u < random_frac else 2 if u < random_frac + bump_frac else 0))
    return out


def collect(out: str | Path, suite: str = "train", episodes: int = 1000, seed: int = 0, eps: float = 0.2,
            random_frac: float = 0.2, bump_frac: float = 0.0, shard_size: int = 64, cell_px: int = 16,
            horizon: int | None = None, sizes: Sequence[int] | None = None, resume: bool = False,
            progress: bool = True) -> list[Path]:
    """Collect rollouts into shards under ``out`` (see the module docstring for the format).

    Returns:
        Paths of all shards of this collection (written now or found on resume).

    Raises:
        ValueError: Bad arguments, or ``out`` already holds a collection made with other settings, or
            shards exist and ``resume`` is False.
    """
    from tqdm import tqdm

    if not 0 <= eps <= 1 or not 0 <= random_frac <= 1 or not 0 <= bump_frac <= 1 - random_frac:
        raise ValueError(f"eps {eps}, random_frac {random_frac} and bump_frac {bump_frac} must lie in [0, 1], "
                         f"with random_frac + bump_frac <= 1")
    if episodes < 1 or shard_size < 1:
        raise ValueError(f"episodes {episodes} and shard_size {shard_size} must be positive")
    out = Path(out)
    settings = {"env": "frozenlake", "suite": suite, "episodes": episodes, "seed": seed, "eps": eps,
                "random_frac": random_frac, "bump_frac": bump_frac, "shard_size": shard_size, "cell_px": cell_px,
                "horizon": horizon, "sizes": sorted(sizes) if sizes else None}
    manifest = out / MANIFEST
    if manifest.exists():
        old = json.loads(manifest.read_text())
        old.setdefault("bump_frac", 0.0)  # collections from before bump episodes existed had none
        if old != settings:
            raise ValueError(f"{out} holds a collection with settings {old}, not {settings}; collect into "
                             f"another directory (or delete this one)")
        if not resume and any(out.glob("size*.npz")):
            raise ValueError(f"{out} already holds shards; pass --resume to complete it")
    maps = _load_maps(suite, sizes)
    out.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps(settings, indent=1))
    plan = plan_episodes(len(maps), episodes, seed, random_frac, bump_frac)
    by_size: dict[int, list[int]] = {}
    for i, (mi, _) in enumerate(plan):
        by_size.setdefault(maps[mi].size, []).append(i)
    paths: list[Path] = []
    bar = tqdm(total=episodes, desc="collect", unit="ep", disable=not progress)
    for size in sorted(by_size):
        idx = by_size[size]
        t = horizon if horizon is not None else 4 * size
        for k in range(0, len(idx), shard_size):
            chunk = idx[k:k + shard_size]
            path = out / f"size{size}_{k // shard_size:05d}.npz"
            paths.append(path)
            if path.exists():
                bar.update(len(chunk))
                continue
            eps_data = []
            for i in chunk:
                mi, kind = plan[i]
                rng = np.random.default_rng([seed, i, 1])
                eps_data.append(rollout(maps[mi].desc, rng, kind, eps, t, cell_px))
                bar.update(1)
            arrays = {key: np.stack([e[key] for e in eps_data]) for key in eps_data[0]}
            arrays.update(
                kind=np.array([plan[i][1] for i in chunk], dtype=np.int8),
                map_ids=np.array([maps[plan[i][0]].id for i in chunk]),
                map_index=np.array([plan[i][0] for i in chunk], dtype=np.int32),
                episode_index=np.array(chunk, dtype=np.int64),
                size=np.int64(size), cell_px=np.int64(cell_px), seed=np.int64(seed),
            )
            tmp = path.with_name(path.stem + ".tmp.npz")
            np.savez_compressed(tmp, **arrays)
            tmp.replace(path)
    bar.close()
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    ap = argparse.ArgumentParser(prog="python -m rss_world.collect", description="Collect rollout shards (.npz).")
    ap.add_argument("--env", required=True, choices=["frozenlake"], help="environment family")
    ap.add_argument("--suite", default="train", help="train, val, test (shipped suites) or a .jsonl path")
    ap.add_argument("--episodes", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eps", type=float, default=0.2, help="random-action probability in ε-oracle episodes")
    ap.add_argument("--random-frac", type=float, default=0.2, help="fraction of fully random episodes")
    ap.add_argument("--bump-frac", type=float, default=0.0,
                    help="fraction of ε-oracle episodes with bursts of presses against the grid's edge")
    ap.add_argument("--shard-size", type=int, default=64)
    ap.add_argument("--cell-px", type=int, default=16)
    ap.add_argument("--horizon", type=int, default=None, help="steps per episode (default 4 * size)")
    ap.add_argument("--sizes", type=int, nargs="+", default=None)
    ap.add_argument("--resume", action="store_true", help="keep existing shards and write the missing ones")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    try:
        paths = collect(args.out, args.suite, args.episodes, args.seed, args.eps, args.random_frac,
                        args.bump_frac, args.shard_size, args.cell_px, args.horizon, args.sizes, args.resume,
                        not args.no_progress)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{len(paths)} shards in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

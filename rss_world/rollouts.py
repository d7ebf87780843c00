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
horizon ``L`` (default ``4 * size``). A shard holds the rollout contract (:data:`rss_world.data.CONTRACT_KEYS`)
and nothing else:

- ``frames`` uint8 (B, L+1, H, W, 3): the frame before every step and after the last, padded by repeating the
  last frame;
- ``actions`` int8 (B, L), -1 after the episode ends;
- ``rewards`` float32 (B, L): 1 on entering the goal, else 0 (0 after the end);
- ``terminated`` bool (B, L): the step entered the goal or a hole; ``truncated`` bool (B, L): the episode reached
  the horizon ``L`` without terminating (both only at an episode's last step);
- ``lengths`` int16 (B,) actions taken;
- ``size`` the grid side (a scalar: a shard holds one size).

Nothing derived from the map is stored (no cells, tiles, map ids, off-grid flags or optimal-action sets): the
oracle may act, but its labels stay here. The map of every episode follows from the settings
(:func:`load_maps`, :func:`plan_episodes`, :func:`shard_plan`): tests that may read the map find it so, and
evaluation reads it back from the frames with the env-side parser.

Frames come from :func:`rss_world.envs.render.render_grid`, pixel-identical to the environment's
frames with the canonical facing. Shards are written atomically, so ``--resume`` skips every shard
file that exists. The manifest records the settings and the format (:data:`FORMAT`); a collection of another
format (format 1 stored map-derived labels) is refused, with the fix: re-collect it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rss_world.io import atomic_write, atomic_write_text

MANIFEST = "manifest.json"
FORMAT = "rss_world.rollouts/2"  # the shard layout a manifest records; format 1 (no key) stored map-derived labels
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
        return {"format": FORMAT, "env": "frozenlake", "suite": self.suite, "episodes": self.episodes,
                "seed": self.seed, "eps": self.eps, "random_frac": self.random_frac, "bump_frac": self.bump_frac,
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


def load_maps(suite: str, sizes: Sequence[int] | None):
    """The maps a collection of ``suite`` draws from: a shipped suite or a JSONL path, kept to ``sizes``."""
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
    contract arrays (no batch axis; no ``size``). The oracle may choose the actions; nothing it knows is returned.
    Reward, termination and truncation are the environment's (:class:`rss_world.envs.frozenlake.VisualFrozenLakeEnv`
    with ``max_steps=horizon``): reward 1 on entering the goal, terminated on entering the goal or a hole,
    truncated at the horizon otherwise."""
    from rss_world.envs.maps import find_cell
    from rss_world.envs.oracle import move, off_grid_actions, optimal_action_mask
    from rss_world.envs.render import render_grid

    if not 0 <= int(kind) < len(KINDS):
        raise ValueError(f"episode kind {kind} is not one of 0..{len(KINDS) - 1} ({', '.join(KINDS)})")
    n = len(desc)
    cell = find_cell(desc, "S")
    cells, actions, rewards = [cell], [], []
    done = False
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
        cell, _ = move(desc, cell, a)
        letter = desc[cell[0]][cell[1]]
        done = letter in "GH"
        actions.append(a)
        rewards.append(float(letter == "G"))
        cells.append(cell)
    k = len(actions)
    frames = [render_grid(desc, c, cell_px) for c in cells]
    frames += [frames[-1]] * (horizon - k)
    terminated = np.zeros(horizon, dtype=bool)
    truncated = np.zeros(horizon, dtype=bool)
    (terminated if done else truncated)[k - 1] = True  # not done: the loop stopped at the horizon
    return {
        "frames": np.stack(frames),
        "actions": np.array(actions + [-1] * (horizon - k), dtype=np.int8),
        "rewards": np.array(rewards + [0.0] * (horizon - k), dtype=np.float32),
        "terminated": terminated,
        "truncated": truncated,
        "lengths": np.int16(k),
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


def shard_plan(cfg: CollectConfig, maps: Sequence) -> list[tuple[str, int, list[int]]]:
    """The shards of a collection: ``(file name, grid size, episode indices)`` in writing order. Episodes of one size
    are sharded in index order, so row ``j`` of a shard is episode ``indices[j]`` of :func:`plan_episodes`.

    Args:
        cfg: the collection's settings.
        maps: :func:`load_maps` of ``cfg.suite`` and ``cfg.sizes`` (anything with a ``size`` per map).
    """
    plan = plan_episodes(len(maps), cfg.episodes, cfg.seed, cfg.random_frac, cfg.bump_frac)
    by_size: dict[int, list[int]] = {}
    for i, (mi, _) in enumerate(plan):
        by_size.setdefault(maps[mi].size, []).append(i)
    return [(f"size{size}_{k // cfg.shard_size:05d}.npz", size, idx[k:k + cfg.shard_size])
            for size, idx in sorted(by_size.items()) for k in range(0, len(idx), cfg.shard_size)]


def _check_manifest(out: Path, settings: dict, resume: bool) -> None:
    manifest = out / MANIFEST
    if not manifest.exists():
        return
    old = json.loads(manifest.read_text())
    if old.get("format") != FORMAT:
        raise ValueError(f"{out} holds rollouts of format {old.get('format', 1)}, not {FORMAT} (the rollout "
                         f"contract; format 1 stored map-derived labels); re-collect: delete {out} or collect "
                         "into another directory")
    if old != settings:
        raise ValueError(f"{out} holds a collection with settings {old}, not {settings}; collect into "
                         f"another directory (or delete this one)")
    if not resume and any(out.glob("size*.npz")):
        raise ValueError(f"{out} already holds shards; pass --resume to complete it")


def collect(out: str | Path, cfg: CollectConfig | None = None, resume: bool = False,
            progress: bool = True) -> list[Path]:
    """Collect rollouts into shards under ``out`` (see the module docstring for the format).

    Args:
        cfg: the collection's settings (``None``: :class:`CollectConfig`'s defaults).
        resume: keep the shards already in ``out`` and write the missing ones.

    Returns:
        Paths of all shards of this collection (written now or found on resume).

    Raises:
        ValueError: Bad settings, or ``out`` already holds a collection made with other settings or of another
            format, or shards exist and ``resume`` is False.
    """
    from tqdm import tqdm

    from rss_world.data import check_contract

    cfg = cfg or CollectConfig()
    cfg.validate()
    out = Path(out)
    settings = cfg.manifest()
    _check_manifest(out, settings, resume)
    maps = load_maps(cfg.suite, cfg.sizes)
    atomic_write_text(out / MANIFEST, json.dumps(settings, indent=1))
    plan = plan_episodes(len(maps), cfg.episodes, cfg.seed, cfg.random_frac, cfg.bump_frac)
    paths: list[Path] = []
    bar = tqdm(total=cfg.episodes, desc="collect", unit="ep", disable=not progress)
    for name, size, chunk in shard_plan(cfg, maps):
        path = out / name
        paths.append(path)
        if path.exists():
            bar.update(len(chunk))
            continue
        t = cfg.horizon if cfg.horizon is not None else 4 * size
        eps_data = []
        for i in chunk:
            mi, kind = plan[i]
            rng = np.random.default_rng([cfg.seed, i, 1])
            eps_data.append(rollout(maps[mi].desc, rng, kind, cfg.eps, t, cfg.cell_px))
            bar.update(1)
        arrays = {key: np.stack([e[key] for e in eps_data]) for key in eps_data[0]}
        arrays["size"] = np.int64(size)
        check_contract(arrays, str(path))
        atomic_write(path, lambda tmp, arrays=arrays: np.savez_compressed(tmp, **arrays))
    bar.close()
    return paths


def ensure_recipe_data(data: DataConfig) -> None:
    """Collect the recipe's training and validation rollouts, or complete them where they are. A directory that
    holds a collection made with other settings raises ``ValueError`` (its manifest differs) rather than being
    used."""
    for directory, cfg in data.splits().values():
        collect(directory, cfg, resume=True)

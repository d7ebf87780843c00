"""The rollout contract, and teacher-forced training windows cut from rollout shards.

A shard (written by ``python -m rss_world.collect``, :mod:`rss_world.rollouts`) is an ``.npz`` file holding exactly
:data:`CONTRACT_KEYS`: frames, actions, rewards, terminations, truncations, lengths and the grid side. That is all a
trainer may read. Nothing derived from the map (cells, tiles, map ids, optimal-action sets) is in it, so any
environment whose frames are a square grid of square cells can meet it; labels that need the map are made at
evaluation time, from the frames, by the environment's own parser.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

CONTRACT_DTYPES: dict[str, type] = {
    "frames": np.uint8,  # (B, L+1, H, W, 3): the frame before every step and after the last; padded by repetition
    "actions": np.int8,  # (B, L): the action taken at every step; -1 after the episode ends
    "rewards": np.float32,  # (B, L): the environment's reward of every step; 0 after the end
    "terminated": np.bool_,  # (B, L): the step ended the episode in a terminal state (only at its last step)
    "truncated": np.bool_,  # (B, L): the episode was cut at this step, not terminal (only at its last step)
    "lengths": np.int16,  # (B,): steps taken, 1..L
    "size": np.integer,  # scalar: the grid side; frames hold size x size cells of H // size pixels
}
CONTRACT_KEYS: tuple[str, ...] = tuple(CONTRACT_DTYPES)
"""The keys of a rollout shard, no more and no fewer: what a trainer reads (:class:`Episodes` holds the same
arrays). Their dtypes and shapes are :data:`CONTRACT_DTYPES`'s, and :func:`check_contract` checks them."""

FIX = "re-collect it with `python -m rss_world.collect` (shards from before the rollout contract stored map labels)"


def check_keys(keys: Iterable[str], name: str) -> None:
    """Raise ``ValueError`` naming ``name``, the extra and the missing keys, and the fix, unless ``keys`` are exactly
    :data:`CONTRACT_KEYS`."""
    keys = set(keys)
    if keys != set(CONTRACT_KEYS):
        extra, missing = sorted(keys - set(CONTRACT_KEYS)), sorted(set(CONTRACT_KEYS) - keys)
        raise ValueError(f"{name}: keys are not the rollout contract's ({', '.join(CONTRACT_KEYS)}): "
                         f"extra {extra}, missing {missing}; {FIX}")


def check_contract(arrays: Mapping[str, np.ndarray | int], name: str) -> None:
    """Check that ``arrays`` (a shard's, or :class:`Episodes`') meet the rollout contract.

    Args:
        arrays: key -> array; ``size`` may be a Python int.
        name: what to call the arrays in errors (a file name).

    Raises:
        ValueError: one line naming ``name`` and the first problem: keys other than :data:`CONTRACT_KEYS`, a wrong
            dtype or shape, or padding that disagrees with ``lengths``.
    """
    check_keys(arrays, name)
    a = {k: np.asarray(v) for k, v in arrays.items()}
    for k, dtype in CONTRACT_DTYPES.items():
        if not np.issubdtype(a[k].dtype, dtype):
            want = "an integer" if dtype is np.integer else np.dtype(dtype).name
            raise ValueError(f"{name}: {k} has dtype {a[k].dtype}, the contract's is {want}")
    frames, size = a["frames"], a["size"]
    if size.ndim != 0 or int(size) < 1:
        raise ValueError(f"{name}: size must be one positive integer, got {size.tolist()}")
    if frames.ndim != 5 or frames.shape[-1] != 3 or frames.shape[2] != frames.shape[3] or frames.shape[2] % size:
        raise ValueError(f"{name}: frames must be (B, L+1, H, H, 3) with H a multiple of size {int(size)}, got "
                         f"{frames.shape}")
    b, length = frames.shape[0], frames.shape[1] - 1
    for k in ("actions", "rewards", "terminated", "truncated"):
        if a[k].shape != (b, length):
            raise ValueError(f"{name}: {k} has shape {a[k].shape}, expected (B, L) = {(b, length)} from frames")
    lengths = a["lengths"].astype(np.int64)
    if lengths.shape != (b,) or (b and (lengths.min() < 1 or lengths.max() > length)):
        raise ValueError(f"{name}: lengths must be (B,) = ({b},) in 1..{length}, got shape {lengths.shape}")
    live = np.arange(length)[None] < lengths[:, None]  # (B, L)
    last = np.arange(length)[None] == lengths[:, None] - 1
    if (a["actions"][live] < 0).any() or (a["actions"][~live] != -1).any():
        raise ValueError(f"{name}: actions must be >= 0 for the first `lengths` steps and -1 after")
    if a["rewards"][~live].any() or ((a["terminated"] | a["truncated"]) & ~last).any():
        raise ValueError(f"{name}: rewards must be 0 after the end, terminated/truncated set only at the last step")
    if (a["terminated"] & a["truncated"]).any():
        raise ValueError(f"{name}: a step is both terminated and truncated")


@dataclass
class Episodes:
    """All episodes of one grid size, in memory: the rollout contract's arrays (:data:`CONTRACT_KEYS`), checked on
    construction."""

    size: int
    frames: np.ndarray  # (B, L+1, H, W, 3) uint8
    actions: np.ndarray  # (B, L) int8, -1 after the end
    rewards: np.ndarray  # (B, L) float32
    terminated: np.ndarray  # (B, L) bool
    truncated: np.ndarray  # (B, L) bool
    lengths: np.ndarray  # (B,) int16

    def __post_init__(self) -> None:
        check_contract({f.name: getattr(self, f.name) for f in fields(self)}, f"episodes of size {self.size}")

    @property
    def cell_px(self) -> int:
        """Pixels per grid cell."""
        return self.frames.shape[2] // self.size

    @property
    def success(self) -> np.ndarray:
        """``(B,)`` bool: the episode ended with a reward (its last step terminated with a reward > 0); its actions
        are demonstrations a planning gate may imitate."""
        rows, last = np.arange(len(self.lengths)), self.lengths.astype(np.int64) - 1
        return self.terminated[rows, last] & (self.rewards[rows, last] > 0)


def load_shards(directory: str | Path, sizes: list[int] | None = None) -> dict[int, Episodes]:
    """Load every ``size*.npz`` shard under ``directory``, grouped by grid size.

    Raises:
        FileNotFoundError: no shard.
        ValueError: a shard that does not meet the rollout contract (naming the file and the fix), shards of one
            size with different horizons or frame sizes, or no shard of ``sizes``.
    """
    directory = Path(directory)
    files = sorted(directory.glob("size*.npz"))
    if not files:
        raise FileNotFoundError(f"no rollout shards (size*.npz) under {directory}; run `python -m rss_world.collect`")
    groups: dict[int, list[tuple[Path, dict]]] = {}
    for f in files:
        with np.load(f) as z:
            check_keys(z.files, str(f))
            size = int(z["size"])
            if sizes and size not in sizes:
                continue
            arrays = {k: z[k] for k in z.files}
        check_contract(arrays, str(f))
        groups.setdefault(size, []).append((f, arrays))
    out = {}
    for size, parts in groups.items():
        shapes = {(p["frames"].shape[1:]) for _, p in parts}
        if len(shapes) > 1:
            raise ValueError(f"shards of size {size} under {directory} differ in (L+1, H, W, 3): "
                             f"{sorted(shapes)}; collect each split with one horizon and cell_px")
        cat = {k: np.concatenate([p[k] for _, p in parts]) for k in CONTRACT_KEYS if k != "size"}
        out[size] = Episodes(size=size, **cat)
    if not out:
        raise ValueError(f"no shards of sizes {sizes} under {directory}")
    return out


def count_windows(ep: Episodes, horizon: int, long: bool = False) -> int:
    """How many distinct ``(episode, start)`` windows :func:`sample_windows` can draw from ``ep``."""
    return int(_spans(ep, horizon, long).sum())


def _spans(ep: Episodes, horizon: int, long: bool) -> np.ndarray:
    """Starts per episode: ``[0, length)``, or with ``long`` ``[0, length - horizon]`` (at least the start)."""
    lengths = ep.lengths.astype(np.int64)
    return np.maximum(lengths - horizon + 1, 1) if long else np.maximum(lengths, 1)


def sample_batch(data: dict[int, Episodes], batch: int, horizon: int, rng: np.random.Generator,
                 device: torch.device | str) -> tuple[dict[str, torch.Tensor], int]:
    """A training batch: a grid size drawn uniformly from ``data``, then :func:`sample_windows` of that size, on
    ``device``. Returns the batch and its size."""
    sizes = sorted(data)
    size = sizes[int(rng.integers(len(sizes)))]
    return {k: v.to(device) for k, v in sample_windows(data[size], batch, horizon, rng).items()}, size


def sample_windows(ep: Episodes, batch: int, horizon: int, rng: np.random.Generator, long: bool = False,
                   replace: bool = True) -> dict[str, torch.Tensor]:
    """A batch of windows of ``horizon`` steps starting at non-terminal states (before an episode's end).

    With ``replace`` (training) each window draws an episode uniformly, then a start uniformly in it. Without
    (evaluation) the ``(episode, start)`` pairs are distinct, drawn uniformly from all :func:`count_windows`.
    With ``long`` the start is drawn from the states that leave ``horizon`` real steps before the episode ends
    (from the episode start when it is shorter), so that evaluation sees as many late latent steps as possible.

    Returns:
        Tensors: ``frames`` (B, T+1, H, W, 3) uint8; ``actions`` (B, T) int64 (0 where padded); ``valid`` (B, T)
        bool (step t is a real transition); ``rewards`` (B, T) float32 and ``terminated`` (B, T) bool (0 where not
        valid); ``changed`` (B, T, N) bool, N = size² cells in row-major order: some pixel of the cell differs
        between frames t and t+1 (False where not valid); ``success`` (B,) bool (:attr:`Episodes.success`);
        ``episode`` and ``start`` (B,) int64: which episode of ``ep`` and which of its steps each window starts at.

    Raises:
        ValueError: ``batch`` or ``horizon`` below 1, or without ``replace`` more windows than exist.
    """
    if batch < 1 or horizon < 1:
        raise ValueError(f"batch {batch} and horizon {horizon} must be positive")
    span = _spans(ep, horizon, long)
    if replace:
        idx = rng.integers(len(span), size=batch)
        starts = (rng.random(batch) * span[idx]).astype(np.int64)  # in [0, span)
    else:
        total = int(span.sum())
        if batch > total:
            raise ValueError(f"{batch} distinct windows of {horizon} steps asked of the size-{ep.size} episodes, "
                             f"which hold {total} ({len(span)} episodes{', long starts' if long else ''})")
        ends = np.cumsum(span)
        flat = rng.choice(total, size=batch, replace=False)
        idx = np.searchsorted(ends, flat, side="right")
        starts = flat - (ends - span)[idx]
    lengths = ep.lengths[idx].astype(np.int64)
    t_ar = np.arange(horizon + 1)
    pos = np.minimum(starts[:, None] + t_ar[None], ep.frames.shape[1] - 1)  # (B, T+1)
    frames = ep.frames[idx[:, None], pos]  # (B, T+1, H, W, 3)
    step = np.minimum(pos[:, :-1], ep.actions.shape[1] - 1)  # (B, T)
    valid = (starts[:, None] + t_ar[None, :-1]) < lengths[:, None]
    acts = np.where(valid, ep.actions[idx[:, None], step].astype(np.int64), 0)
    rewards = np.where(valid, ep.rewards[idx[:, None], step], np.float32(0)).astype(np.float32)
    terminated = valid & ep.terminated[idx[:, None], step]
    n, p = ep.size, ep.cell_px
    diff = (frames[:, 1:] != frames[:, :-1]).any(-1)  # (B, T, H, W)
    changed = diff.reshape(batch, horizon, n, p, n, p).any((3, 5)).reshape(batch, horizon, n * n) & valid[..., None]
    return {
        "frames": torch.from_numpy(np.ascontiguousarray(frames)),
        "actions": torch.from_numpy(acts),
        "valid": torch.from_numpy(valid),
        "rewards": torch.from_numpy(rewards),
        "terminated": torch.from_numpy(terminated),
        "changed": torch.from_numpy(np.ascontiguousarray(changed)),
        "success": torch.from_numpy(ep.success[idx]),
        "episode": torch.from_numpy(idx.astype(np.int64)),
        "start": torch.from_numpy(starts.astype(np.int64)),
    }

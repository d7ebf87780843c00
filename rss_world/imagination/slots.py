"""Latent states of imagined episodes, and the helpers the imagined envs share.

:class:`LatentSlots` holds the latent states of several imagined episodes, of mixed grid sizes, and steps them
with one batched forward pass per grid size (never a Python loop over episodes). The single gymnasium env
(:class:`~rss_world.imagination.env.WorldModelEnv`) and the batched SB3 ``VecEnv``
(:class:`~rss_world.imagination.vec_env.WorldModelVecEnv`) both build theirs with :func:`open_slots`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rss_world.envs.maps import MAX_SIZE, MIN_SIZE, MapSpec, find_cell, map_id, maps_from, validate_desc
from rss_world.envs.render import DEFAULT_CELL_PX, render_grid
from rss_world.world_model import NUM_ACTIONS, WorldModel

# The imagined env's default re-encoding period: decode, then encode the frame again, after every step. The v2
# world model's pure latent rollouts leave the encoder's latents within a few steps (the decoded pixels stay right
# longer; experiments/results/open_loop_diagnosis.md), and an agent trained on them learns the drift
# (experiments/results/agent_in_the_loop_v2_partial.md: real success 0.215 latent-only against 0.805 re-encoding).
REENCODE_EVERY = 1

Suite = Sequence[MapSpec | Sequence[str]] | str | Path


def resolve_maps(desc: Sequence[str] | None, suite: Suite | None, size: int | None,
                 pad_to: int | None) -> tuple[list[MapSpec], int]:
    """Maps an imagined env draws from, and the canvas side in cells.

    Args:
        desc: one map (row strings); exactly one of ``desc`` and ``suite``.
        suite: maps (MapSpec or row tuples) or a JSONL path.
        size: keep only maps of this size.
        pad_to: frames are zero-padded (bottom/right) to this many cells, so maps of sizes up to ``pad_to`` share
            one observation space (at most the maps' limit, ``MAX_SIZE``); None: every map must have one size, the
            canvas.

    Raises:
        ValueError: both or neither of desc/suite, invalid maps, mixed sizes without ``pad_to``, no map left.
    """
    maps = maps_from(desc, suite)
    have = sorted({m.size for m in maps})
    if size is not None:
        maps = [m for m in maps if m.size == size]
    if pad_to is not None:
        if not MIN_SIZE <= pad_to <= MAX_SIZE:
            raise ValueError(f"pad_to={pad_to} is outside {MIN_SIZE}..{MAX_SIZE}")
        maps = [m for m in maps if m.size <= pad_to]
    if not maps:
        raise ValueError(f"no map left for size={size}, pad_to={pad_to} (the suite has sizes {have})")
    sizes = sorted({m.size for m in maps})
    if pad_to is None and len(sizes) != 1:
        raise ValueError(f"suite has map sizes {sizes}; pass size= to pick one or pad_to= to pad frames")
    return maps, (pad_to if pad_to is not None else sizes[0])


def start_frame(desc: Sequence[str], cell_px: int = DEFAULT_CELL_PX) -> np.ndarray:
    """The real frame of ``desc`` with the agent on its start cell, ``(n·cell_px, n·cell_px, 3)`` uint8."""
    return render_grid(desc, find_cell(desc, "S"), cell_px)


def pad_frame(frame: np.ndarray, side: int) -> np.ndarray:
    """Zero-pad an ``(h, w, 3)`` frame at the bottom and right to ``(side, side, 3)``."""
    h, w = frame.shape[:2]
    if h > side or w > side:
        raise ValueError(f"frame {h}x{w} is larger than the canvas {side}x{side}")
    out = np.zeros((side, side, 3), np.uint8)
    out[:h, :w] = frame
    return out


def resolve_cache_size(cache_size: int | None, preencode: bool, num_maps: int) -> int:
    """An env's start-latent cache: ``cache_size`` when given; by default 4096 maps, grown to the whole suite when
    the env pre-encodes it (so that every pre-encoded map stays cached)."""
    if cache_size is not None:
        return cache_size
    return max(4096, num_maps) if preencode else 4096


def check_action(action: Any) -> int:
    """Return ``action`` as an int, or raise a ``ValueError`` naming the problem (type, shape, range)."""
    a = np.asarray(action)
    if a.shape != ():
        raise ValueError(f"action must be a scalar integer in 0..{NUM_ACTIONS - 1}, got shape {a.shape}: {action!r}")
    if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"action must be an integer in 0..{NUM_ACTIONS - 1}, got {a.dtype} {action!r}")
    if not 0 <= int(a) < NUM_ACTIONS:
        raise ValueError(f"action {int(a)} is out of range 0..{NUM_ACTIONS - 1}")
    return int(a)


class LatentSlots:
    """Latent states of ``num`` imagined episodes of mixed grid sizes, stepped in batched forward passes.

    Latents are kept in one ``(num, canvas², D)`` tensor; an episode of size ``n`` uses its first ``n²`` tokens.
    A step runs one ``model.step`` + ``decode`` + ``status`` per distinct grid size in the batch.

    Args:
        model: the world model (switched to ``eval()``).
        num: number of episodes.
        canvas: canvas side in cells (observations are padded to ``canvas · cell_px`` pixels).
        device: torch device of the model (default: where its parameters are).
        precision: "fp32", or "bf16" (autocast: faster on CPUs with bf16 matmuls; frames may differ by rounding).
        cache_size: start latents kept for maps seen before (a model change needs a new ``LatentSlots``).
        reencode_every: ``k > 0`` re-encodes the decoded uint8 frame into a fresh latent after every ``k``-th step
            of an episode, which keeps rollouts on the latents the encoder makes (``experiments/imagined_drift.py``)
            at the cost of an encoder pass on those steps; default :data:`REENCODE_EVERY` (every step). 0 keeps
            every episode in latent space (pure latent recursion).
    """

    def __init__(self, model: WorldModel, num: int, canvas: int, device: str | torch.device | None = None,
                 precision: str = "fp32", cache_size: int = 4096,
                 reencode_every: int = REENCODE_EVERY) -> None:
        if num < 1:
            raise ValueError(f"need at least one episode slot, got {num}")
        if cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, got {cache_size}")
        if isinstance(reencode_every, bool) or not isinstance(reencode_every, int) or reencode_every < 0:
            raise ValueError(f"reencode_every must be an int >= 0 (0: never), got {reencode_every!r}")
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        self.precision = precision
        self.model = model.eval()
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model.to(self.device)
        self.cell_px = model.cfg.cell_px
        self.canvas = canvas
        self.side = canvas * self.cell_px
        self.z = torch.zeros(num, canvas * canvas, model.cfg.dim, device=self.device)  # (B, N_max, D)
        self.sizes = np.zeros(num, np.int64)
        self.age = np.zeros(num, np.int64)  # steps since each episode's start
        self.reencode_every = reencode_every
        self.cache_size = cache_size
        # map rows -> (start latent (n², D), status (2,), padded start frame (side, side, 3))
        self._cache: OrderedDict[tuple[str, ...], tuple[torch.Tensor, np.ndarray, np.ndarray]] = OrderedDict()

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def _groups(self, idx: np.ndarray) -> list[tuple[int, np.ndarray]]:
        sizes = self.sizes[idx]
        return [(int(s), np.flatnonzero(sizes == s)) for s in np.unique(sizes)]

    @torch.no_grad()
    def _encode(self, keys: Sequence[tuple[str, ...]], batch: int) -> None:
        """Encode the start frames of ``keys`` (maps not cached yet, no repeats) into the cache, by grid size, in
        chunks of at most ``batch`` maps."""
        by_size: dict[int, list[tuple[str, ...]]] = {}
        for key in keys:
            by_size.setdefault(len(key), []).append(key)
        for group in by_size.values():
            for lo in range(0, len(group), batch):
                chunk = group[lo: lo + batch]
                starts = [start_frame(key, self.cell_px) for key in chunk]
                x = torch.as_tensor(np.stack(starts), device=self.device)
                with self._autocast():
                    z = self.model.encode(x).float()  # (b, n², D)
                st = self.model.status(z).float().cpu().numpy()
                for j, key in enumerate(chunk):
                    self._cache[key] = (z[j], st[j], pad_frame(starts[j], self.side))

    def preencode(self, descs: Sequence[Sequence[str]], batch: int = 256) -> int:
        """Encode the start frames of every map in ``descs`` now, in large batches, so that no later reset onto
        one of them runs the encoder. Returns how many maps were encoded (cached ones are skipped).

        Raises:
            ValueError: more distinct maps than ``cache_size`` (they could not all stay cached), or ``batch < 1``.
        """
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        keys = list(dict.fromkeys(tuple(d) for d in descs))
        if len(keys) > self.cache_size:
            raise ValueError(f"{len(keys)} distinct maps do not fit the start-latent cache (cache_size="
                             f"{self.cache_size}); pass a larger cache_size or do not pre-encode")
        todo = [key for key in keys if key not in self._cache]
        self._encode(todo, batch)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return len(todo)

    def load(self, idx: np.ndarray, descs: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
        """Start episodes ``idx`` on ``descs``: encode the real start frames.

        A map's start latent (and its rendered start frame) is a pure function of the map, so it is cached
        (``cache_size`` maps, least recently used first out): resets of maps seen before cost no forward pass.

        Returns:
            ``(frames (k, side, side, 3) uint8`` (the real start frames, padded), ``status (k, 2))``.
        """
        idx = np.asarray(idx, np.int64)
        keys = [tuple(d) for d in descs]
        self.sizes[idx] = [len(d) for d in descs]
        self.age[idx] = 0
        self._encode([key for key in dict.fromkeys(keys) if key not in self._cache], len(keys))
        obs = np.empty((len(idx), self.side, self.side, 3), np.uint8)
        status = np.zeros((len(idx), 2), np.float32)
        for k, key in enumerate(keys):
            z, status[k], obs[k] = self._cache[key]
            self._cache.move_to_end(key)
            self.z[int(idx[k]), : z.shape[0]] = z
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return obs, status

    @torch.no_grad()
    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Advance every episode by its action (validated by the caller).

        Returns:
            ``(frames (num, side, side, 3) uint8`` decoded and padded, ``status (num, 2))``.
        """
        num = len(self.sizes)
        obs = np.zeros((num, self.side, self.side, 3), np.uint8)
        status = np.zeros((num, 2), np.float32)
        act = torch.as_tensor(np.asarray(actions, np.int64), device=self.device)
        for n, rows_np in self._groups(np.arange(num)):
            rows = torch.as_tensor(rows_np, device=self.device)
            with self._autocast():
                z, _, _ = self.model.step(self.z[rows, : n * n], act[rows], with_logits=False)  # (b, n², D)
                frames, st = self.model.decode(z).float(), self.model.status(z).float()
            u8 = self.model.to_uint8(frames)
            self.age[rows_np] += 1
            due = self.age[rows_np] % self.reencode_every == 0 if self.reencode_every else None
            if due is not None and due.any():  # decided on the host: no tensor or sync on steps with none due
                due_t = torch.as_tensor(due, device=self.device)
                with self._autocast():
                    z[due_t] = self.model.encode(u8[due_t]).to(z.dtype)
            self.z[rows, : n * n] = z.float()
            px = n * self.cell_px
            obs[rows_np, :px, :px] = u8.cpu().numpy()
            status[rows_np] = st.cpu().numpy()
        return obs, status



def pick_map(maps: Sequence[MapSpec], options: dict, rng: np.random.Generator, canvas: int) -> tuple[MapSpec, int]:
    """The map a reset starts on: ``options["desc"]``, ``options["map_index"]`` or a draw from ``rng``."""
    if "desc" in options:
        d = tuple(options["desc"])
        validate_desc(list(d), map_id(d))
        if len(d) > canvas:
            raise ValueError(f"options desc has size {len(d)}, larger than the env's canvas of {canvas} cells")
        return MapSpec(map_id(d), d), -1
    index = int(options["map_index"]) if "map_index" in options else int(rng.integers(len(maps)))
    if not 0 <= index < len(maps):
        raise ValueError(f"map_index {index} outside 0-{len(maps) - 1}")
    return maps[index], index


def open_slots(model: WorldModel, num: int, desc: Sequence[str] | None, suite: Suite | None, size: int | None,
               pad_to: int | None, max_steps: int | None, threshold: float, device: str | torch.device | None,
               precision: str, preencode: bool, cache_size: int | None,
               reencode_every: int) -> tuple[list[MapSpec], LatentSlots]:
    """Check an imagined env's settings and build its slots (see the envs' arguments).

    Returns:
        ``(maps, slots)``: the maps the env draws from (:func:`resolve_maps`) and ``num`` slots on their canvas,
        with every start frame already encoded when ``preencode``.

    Raises:
        ValueError: ``max_steps < 1``, ``threshold`` outside (0, 1), or a problem :func:`resolve_maps` or
            :class:`LatentSlots` names.
    """
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    maps, canvas = resolve_maps(desc, suite, size, pad_to)
    slots = LatentSlots(model, num, canvas, device, precision, resolve_cache_size(cache_size, preencode, len(maps)),
                        reencode_every)
    if preencode:
        slots.preencode([m.desc for m in maps])
    return maps, slots

"""A batched stable-baselines3 ``VecEnv`` of imagined FrozenLake episodes.

All ``num_envs`` episodes live in one :class:`~rss_world.imagination.slots.LatentSlots`, so a step is one
batched ``model.step`` + ``decode`` + ``status`` per grid size present (no Python loop over envs in the model
path). Finished episodes are reset automatically with SB3 semantics: the returned observation is the new start
frame, and the last frame is in ``infos[i]["terminal_observation"]`` (``infos[i]["TimeLimit.truncated"]`` says
whether the step limit ended it).

:func:`measure_head_agreement` rolls such episodes and measures, with :func:`head_parser_agreement`, how often the
status heads agree with the frame parser's reading of the decoded frames (the parser is used only for this).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvObs, VecEnvStepReturn

from rss_world.envs.maps import MAX_SIZE, step_limit
from rss_world.envs.parser import parse_frame
from rss_world.envs.render import DEFAULT_CELL_PX
from rss_world.imagination.slots import REENCODE_EVERY, Suite, open_slots, pick_map, resolve_maps
from rss_world.world_model import NUM_ACTIONS, WorldModel


class WorldModelVecEnv(VecEnv):
    """``num_envs`` imagined FrozenLake episodes stepped together by a world model.

    Same dynamics, rewards, termination and info keys as
    :class:`~rss_world.imagination.env.WorldModelEnv` built with the same arguments. Slot ``i`` draws its
    maps with ``numpy.random.default_rng([seed, i])``; ``set_options([{"map_index": k}, ...])`` before
    ``reset()`` picks the maps of that reset.

    Args:
        model: the world model.
        num_envs: number of parallel imagined episodes.
        desc: one map; exactly one of ``desc`` and ``suite``.
        suite: maps or a JSONL path.
        size: keep only maps of this size.
        pad_to: canvas side in cells for mixed sizes.
        max_steps: step limit; default ``4 · size²`` per map.
        threshold: probability above which the goal / hole head ends an episode.
        device: torch device for the model.
        seed: base seed of the slots' map draws (None: fresh entropy).
        precision: "fp32" or "bf16" (see :class:`.LatentSlots`).
        preencode: encode every map's start frame now, in large batches, so that no reset runs the encoder
            (the maps must fit the start-latent cache, ``cache_size``). Training runs want this.
        cache_size: start latents kept (see :class:`.LatentSlots`); default
            :func:`.resolve_cache_size` (4096, or the whole suite when pre-encoding).
        reencode_every: re-encode the decoded frame every this many steps of an episode (see
            :class:`.LatentSlots`; 0: never; default :data:`.REENCODE_EVERY`, every step).
    """

    def __init__(self, model: WorldModel, num_envs: int, desc: Sequence[str] | None = None, suite: Suite | None = None,
                 size: int | None = None, pad_to: int | None = None, max_steps: int | None = None,
                 threshold: float = 0.5, device: str | torch.device | None = None, seed: int | None = None,
                 precision: str = "fp32", preencode: bool = False, cache_size: int | None = None,
                 reencode_every: int = REENCODE_EVERY) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.maps, self.slots = open_slots(model, num_envs, desc, suite, size, pad_to, max_steps, threshold, device,
                                           precision, preencode, cache_size, reencode_every)
        self.model, self.canvas = self.slots.model, self.slots.canvas
        self.max_steps, self.threshold, self.render_mode = max_steps, threshold, None
        side = self.slots.side
        super().__init__(num_envs, spaces.Box(0, 255, (side, side, 3), dtype=np.uint8), spaces.Discrete(NUM_ACTIONS))
        self._base_seed = seed if seed is not None else int(np.random.SeedSequence().entropy % 2**31)
        self._rngs = [np.random.default_rng([self._base_seed, i]) for i in range(num_envs)]
        self._steps = np.zeros(num_envs, np.int64)
        self._limits = np.ones(num_envs, np.int64)
        self._map_index = np.full(num_envs, -1, np.int64)
        self._map_ids = [""] * num_envs
        self._status = np.zeros((num_envs, 2), np.float32)
        self._actions: np.ndarray | None = None
        self._started = False

    # -- slots -------------------------------------------------------------------------------------------
    def _start(self, idx: np.ndarray, options: Sequence[dict]) -> np.ndarray:
        picks = [pick_map(self.maps, opt, self._rngs[i], self.canvas) for i, opt in zip(idx, options, strict=True)]
        obs, status = self.slots.load(idx, [spec.desc for spec, _ in picks])
        for k, (i, (spec, index)) in enumerate(zip(idx, picks, strict=True)):
            self._map_index[i], self._map_ids[i] = index, spec.id
            self._limits[i] = self.max_steps or step_limit(spec.size)
            self.reset_infos[i] = self._info(i, status[k])
        self._steps[idx] = 0
        self._status[idx] = status
        return obs

    def _info(self, i: int, status: np.ndarray) -> dict[str, Any]:
        return {"p_goal": float(status[0]), "p_hole": float(status[1]), "map_id": self._map_ids[i],
                "map_index": int(self._map_index[i]), "size": int(self.slots.sizes[i]), "steps": int(self._steps[i])}

    # -- VecEnv API --------------------------------------------------------------------------------------
    def reset(self) -> VecEnvObs:
        """Reset every slot (using seeds and options set with ``seed()`` / ``set_options()``)."""
        for i, s in enumerate(self._seeds):
            if s is not None:
                self._rngs[i] = np.random.default_rng([s, i])
        obs = self._start(np.arange(self.num_envs), self._options)
        self._reset_seeds()
        self._reset_options()
        self._started = True
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        """Validate and store one action per slot."""
        a = np.asarray(actions)
        if a.shape != (self.num_envs,):
            raise ValueError(f"actions must have shape ({self.num_envs},), got {a.shape}")
        if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"actions must be integers in 0..{NUM_ACTIONS - 1}, got dtype {a.dtype}")
        if a.min() < 0 or a.max() >= NUM_ACTIONS:
            raise ValueError(f"actions must be in 0..{NUM_ACTIONS - 1}, got {a.tolist()}")
        if not self._started:
            raise RuntimeError("call reset() before step()")
        self._actions = a.astype(np.int64)

    def step_wait(self) -> VecEnvStepReturn:
        """One batched imagined step; finished slots are reset (SB3 auto-reset)."""
        if self._actions is None:
            raise RuntimeError("step_wait() called without step_async()")
        obs, status = self.slots.step(self._actions)
        self._actions = None
        self._steps += 1
        self._status = status
        goal, hole = status[:, 0] > self.threshold, status[:, 1] > self.threshold
        terminated = goal | hole
        truncated = ~terminated & (self._steps >= self._limits)
        dones = terminated | truncated
        infos = [self._info(i, status[i]) for i in range(self.num_envs)]
        done_idx = np.flatnonzero(dones)
        if len(done_idx):
            for i in done_idx:
                infos[i]["terminal_observation"] = obs[i].copy()
                infos[i]["TimeLimit.truncated"] = bool(truncated[i])
            obs[done_idx] = self._start(done_idx, [{}] * len(done_idx))
        return obs, goal.astype(np.float32), dones, infos

    def close(self) -> None:
        """Nothing to release."""

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """The VecEnv's own attribute, once per selected slot."""
        return [getattr(self, attr_name) for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Set an attribute shared by all slots."""
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs) -> list[Any]:
        """Call one of the VecEnv's own methods once per selected slot."""
        return [getattr(self, method_name)(*method_args, **method_kwargs) for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        """Slots are not gymnasium envs, so never wrapped."""
        return [False for _ in self._get_indices(indices)]


def measure_head_agreement(model: WorldModel, suite: Suite, steps: int = 64, num_envs: int = 64,
                           pad_to: int | None = None, policy: Callable[[np.ndarray], np.ndarray] | None = None,
                           seed: int = 0, threshold: float = 0.5) -> dict[str, float]:
    """Roll imagined episodes and measure how often the status heads agree with the parser (see
    :func:`head_parser_agreement`).

    Args:
        model: the world model.
        suite: maps to start from.
        steps: batched steps to run; every decoded frame (terminal ones included) is measured.
        num_envs: parallel episodes.
        pad_to: canvas in cells for mixed sizes (default: the largest map).
        policy: ``obs (num_envs, H, W, 3) -> actions (num_envs,)``; default uniform random actions.
        seed: map draws and random actions.
        threshold: decision threshold of the heads.
    """
    if pad_to is None:
        maps, _ = resolve_maps(None, suite, None, MAX_SIZE)
        pad_to = max(m.size for m in maps)
    env = WorldModelVecEnv(model, num_envs, suite=suite, pad_to=pad_to, threshold=threshold, seed=seed)
    rng = np.random.default_rng(seed)
    obs = env.reset()
    frames, status, sizes = [], [], []
    for _ in range(steps):
        sz = env.slots.sizes.copy()
        act = policy(obs) if policy is not None else rng.integers(NUM_ACTIONS, size=num_envs)
        obs, _, dones, infos = env.step(np.asarray(act, np.int64))
        for i, info in enumerate(infos):
            frames.append(info["terminal_observation"] if dones[i] else obs[i])
            status.append((info["p_goal"], info["p_hole"]))
            sizes.append(int(sz[i]))
    return head_parser_agreement(frames, np.array(status), sizes, threshold, model.cfg.cell_px)



def head_parser_agreement(frames: Sequence[np.ndarray], status: np.ndarray, sizes: Sequence[int],
                          threshold: float = 0.5, cell_px: int = DEFAULT_CELL_PX) -> dict[str, float]:
    """How often the status heads agree with the frame parser on decoded frames.

    Args:
        frames: decoded frames (padded or not); frame ``k`` is cropped to ``sizes[k]`` cells before parsing.
        status: ``(K, 2)`` head probabilities [P(goal), P(hole)] for the same latents.
        sizes: grid size of each frame.
        threshold: decision threshold of the heads.
        cell_px: pixels per cell.

    Returns:
        ``frames``, ``goal_agreement``, ``hole_agreement``, ``agreement`` (both agree), and the rates at which
        the heads and the parser say goal / hole.
    """
    status = np.asarray(status, np.float32).reshape(-1, 2)
    if len(frames) != len(status) or len(sizes) != len(status):
        raise ValueError(f"{len(frames)} frames, {len(status)} status rows and {len(sizes)} sizes differ")
    if not len(frames):
        raise ValueError("no frames to measure")
    parsed = [parse_frame(np.asarray(f)[: n * cell_px, : n * cell_px], size=n)
              for f, n in zip(frames, sizes, strict=True)]
    p_goal = np.array([p.agent_on_goal for p in parsed])
    p_hole = np.array([p.agent_in_hole for p in parsed])
    h_goal, h_hole = status[:, 0] > threshold, status[:, 1] > threshold
    return {"frames": float(len(parsed)), "goal_agreement": float((p_goal == h_goal).mean()),
            "hole_agreement": float((p_hole == h_hole).mean()),
            "agreement": float(((p_goal == h_goal) & (p_hole == h_hole)).mean()),
            "heads_goal_rate": float(h_goal.mean()), "parser_goal_rate": float(p_goal.mean()),
            "heads_hole_rate": float(h_hole.mean()), "parser_hole_rate": float(p_hole.mean())}

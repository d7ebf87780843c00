"""The learned world model as a gymnasium environment (agents train "in imagination").

``reset`` renders a real start frame of a map and encodes it; ``step`` advances the latent with the action's
expert and decodes the frame. Reward and termination come from the model's own status head (DIAMOND-style
reward/termination model): P(agent on goal) > threshold gives reward 1 and ends the episode, P(agent in hole) >
threshold ends it; the episode is truncated at a step limit. Registered with gymnasium as
``rss_world/WorldModelFrozenLake-v0`` (:data:`rss_world.imagination.WM_ENV_ID`; pass ``model=``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from rss_world.envs.maps import MapSpec, step_limit
from rss_world.imagination.slots import REENCODE_EVERY, Suite, check_action, open_slots, pick_map
from rss_world.world_model import NUM_ACTIONS, WorldModel


class WorldModelEnv(gym.Env):
    """FrozenLake imagined by a :class:`~rss_world.world_model.WorldModel`.

    Observation: ``Box(0, 255, (canvas·cell_px, canvas·cell_px, 3), uint8)``; the canvas is the map size, or
    ``pad_to`` cells when frames of several sizes are zero-padded to one space. Actions: ``Discrete(4)``
    (0=LEFT, 1=DOWN, 2=RIGHT, 3=UP). ``reset`` picks a map with the env's RNG unless
    ``options={"map_index": i}`` or ``options={"desc": rows}``; its observation is the real start frame.

    Info keys: ``p_goal``, ``p_hole`` (the status head's probabilities for the current latent), ``map_id``,
    ``map_index``, ``size``, ``steps``.

    Args:
        model: the world model.
        desc: one map; exactly one of ``desc`` and ``suite``.
        suite: maps or a JSONL path.
        size: keep only maps of this size.
        pad_to: canvas side in cells for mixed sizes (see :func:`.resolve_maps`).
        max_steps: step limit (truncation); default ``4 · size²`` of the episode's map, as the real env.
        threshold: probability above which the goal / hole head ends the episode.
        device: torch device for the model.
        render_mode: None or "rgb_array".
        precision: "fp32" or "bf16" (see :class:`.LatentSlots`).
        preencode: encode every map's start frame now (see :meth:`.LatentSlots.preencode`).
        cache_size: start latents kept (see :class:`.LatentSlots`); default :func:`.resolve_cache_size`.
        reencode_every: re-encode the decoded frame every this many steps (see :class:`.LatentSlots`; 0: never; default
            :data:`.REENCODE_EVERY`, every step).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, model: WorldModel, desc: Sequence[str] | None = None, suite: Suite | None = None,
                 size: int | None = None, pad_to: int | None = None, max_steps: int | None = None,
                 threshold: float = 0.5, device: str | torch.device | None = None,
                 render_mode: str | None = None, precision: str = "fp32", preencode: bool = False,
                 cache_size: int | None = None, reencode_every: int = REENCODE_EVERY) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.maps, self.slots = open_slots(model, 1, desc, suite, size, pad_to, max_steps, threshold, device,
                                           precision, preencode, cache_size, reencode_every)
        self.model = self.slots.model
        self.cell_px, self.canvas = self.slots.cell_px, self.slots.canvas
        self.max_steps, self.threshold, self.render_mode = max_steps, threshold, render_mode
        side = self.slots.side
        self.observation_space = spaces.Box(0, 255, (side, side, 3), dtype=np.uint8)
        self.action_space = spaces.Discrete(NUM_ACTIONS)
        self.spec_map: MapSpec | None = None
        self._map_index, self._steps, self._limit = -1, 0, 0
        self._frame: np.ndarray | None = None

    def _info(self, status: np.ndarray) -> dict[str, Any]:
        assert self.spec_map is not None
        return {"p_goal": float(status[0]), "p_hole": float(status[1]), "map_id": self.spec_map.id,
                "map_index": self._map_index, "size": self.spec_map.size, "steps": self._steps}

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        """Start an imagined episode from the real start frame of a map."""
        super().reset(seed=seed)
        spec, index = pick_map(self.maps, options or {}, self.np_random, self.canvas)
        obs, status = self.slots.load(np.array([0]), [spec.desc])
        self.spec_map, self._map_index, self._steps = spec, index, 0
        self._limit = self.max_steps or step_limit(spec.size)
        self._frame = obs[0]
        return obs[0].copy(), self._info(status[0])

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        """Advance the latent with the action's expert; reward/termination from the status head."""
        a = check_action(action)
        if self.spec_map is None:
            raise RuntimeError("call reset() before step()")
        obs, status = self.slots.step(np.array([a]))
        self._steps += 1
        goal, hole = bool(status[0, 0] > self.threshold), bool(status[0, 1] > self.threshold)
        terminated = goal or hole
        truncated = not terminated and self._steps >= self._limit
        self._frame = obs[0]
        return obs[0].copy(), float(goal), terminated, truncated, self._info(status[0])

    def render(self) -> np.ndarray | None:
        """The current frame when ``render_mode="rgb_array"``."""
        if self.render_mode != "rgb_array" or self._frame is None:
            return None
        return self._frame.copy()

"""Visual, non-slippery FrozenLake over gymnasium's own FrozenLake and its ``rgb_array`` renderer.

Registered as ``rss_world/VisualFrozenLake-v0`` when ``rss_world.envs`` is imported.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

from gymnasium.envs.toy_text.frozen_lake import FrozenLakeEnv  # noqa: E402

from rss_world.envs.maps import MapSpec, map_id, maps_from, step_limit, validate_desc  # noqa: E402
from rss_world.envs.render import DEFAULT_CELL_PX, render_grid, resize_frame  # noqa: E402

ENV_ID = "rss_world/VisualFrozenLake-v0"


class VisualFrozenLakeEnv(gym.Env):
    """Non-slippery FrozenLake with RGB frame observations.

    Dynamics, termination and reward are gymnasium's ``FrozenLakeEnv(is_slippery=False)``: reward 1 on
    reaching the goal, episode terminates on goal or hole, an off-grid move leaves the agent in place.
    The episode is truncated after ``max_steps`` steps.

    Observation: the frame, ``Box(0, 255, (size*cell_px, size*cell_px, 3), uint8)``, made by gymnasium's
    ``rgb_array`` renderer and resized cell by cell to ``cell_px`` pixels per cell
    (:func:`rss_world.envs.render.resize_frame`). The observation space is fixed, so all maps of one env
    have one size: a suite with several sizes needs ``size=`` and is filtered to that size.

    Facing: gymnasium can draw the agent sprite according to the last action. With the default
    ``facing="canonical"`` the frame always shows the sprite gymnasium draws right after reset, so a
    frame is a pure function of (map, agent cell); ``facing="last_action"`` keeps gymnasium's behaviour.
    (The installed gymnasium 1.4.0 draws one sprite for every action, so both agree there, and it hides
    the agent when it stands in a hole.)

    Info keys: ``cell`` (row, col), ``map_id``, ``map_index``, ``size``, ``invalid`` (this step tried to
    leave the grid), ``hole`` (agent is in a hole), ``steps``.

    Args:
        desc: One map (row strings). Exactly one of ``desc`` and ``suite`` is given.
        suite: Maps (MapSpec or row tuples) or a JSONL path. ``reset`` draws one with the env's RNG unless
            ``options={"map_index": i}`` or ``options={"desc": rows}`` picks it.
        size: Grid size to keep from a mixed-size suite.
        cell_px: Pixels per cell, a positive integer.
        max_steps: Step limit, a positive integer; default :func:`~rss_world.envs.maps.step_limit` (``4 * size²``).
        facing: "canonical" or "last_action".
        renderer: "gymnasium" (reference renderer) or "atlas" (fast, pixel-identical tile compositor).
        render_mode: None or "rgb_array".
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    @staticmethod
    def _positive_int(name: str, value: object) -> int:
        """``value`` as an int; ``ValueError`` naming ``name`` unless it is an integer > 0 (bools refused)."""
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(f"{name} must be a positive integer, got {value!r} ({type(value).__name__})")
        if value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value}")
        return int(value)

    def __init__(self, desc: Sequence[str] | None = None, suite: Sequence[MapSpec | Sequence[str]] | str | Path |
                 None = None, size: int | None = None, cell_px: int = DEFAULT_CELL_PX, max_steps: int | None = None,
                 facing: str = "canonical", renderer: str = "gymnasium", render_mode: str | None = None):
        if (desc is None) == (suite is None):
            raise ValueError("give exactly one of desc= and suite=")
        cell_px = self._positive_int("cell_px", cell_px)
        if max_steps is not None:
            max_steps = self._positive_int("max_steps", max_steps)
        if facing not in ("canonical", "last_action"):
            raise ValueError(f"facing must be 'canonical' or 'last_action', got {facing!r}")
        if renderer not in ("gymnasium", "atlas"):
            raise ValueError(f"renderer must be 'gymnasium' or 'atlas', got {renderer!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        maps = maps_from(desc, suite)
        sizes = sorted({m.size for m in maps})
        if size is None:
            if len(sizes) != 1:
                raise ValueError(f"suite has map sizes {sizes}; pass size= to pick one")
            size = sizes[0]
        maps = [m for m in maps if m.size == size]
        if not maps:
            raise ValueError(f"no map of size {size} in the suite (sizes {sizes})")
        self.maps = maps
        self.size = size
        self.cell_px = cell_px
        self.max_steps = max_steps if max_steps is not None else step_limit(size)
        self.facing = facing
        self.renderer = renderer
        self.render_mode = render_mode
        side = size * cell_px
        self.observation_space = spaces.Box(0, 255, (side, side, 3), dtype=np.uint8)
        self.action_space = spaces.Discrete(4)
        self._lake: FrozenLakeEnv | None = None
        self._spec_map: MapSpec = maps[0]
        self._map_index = 0
        self._steps = 0
        self._frame: np.ndarray | None = None

    # -- helpers -----------------------------------------------------------------------------------
    @property
    def desc(self) -> tuple[str, ...]:
        """Rows of the current map."""
        return self._spec_map.desc

    @property
    def cell(self) -> tuple[int, int]:
        """Agent (row, col)."""
        assert self._lake is not None, "call reset() first"
        return divmod(int(self._lake.s), self.size)

    def _load(self, spec: MapSpec) -> None:
        old = self._lake
        self._spec_map = spec
        self._lake = FrozenLakeEnv(desc=list(spec.desc), is_slippery=False, render_mode="rgb_array")
        if old is not None:  # reuse the pygame surface and the loaded sprites (same size, same cells)
            for k in ("window_surface", "clock", "ice_img", "ice_crack_imgs", "hole_img", "agent_img",
                      "goal_flag_img", "letter_s_img", "letter_g_img"):
                if hasattr(old, k):
                    setattr(self._lake, k, getattr(old, k))

    def _render_frame(self) -> np.ndarray:
        assert self._lake is not None
        last = self._lake.lastaction
        facing = last if self.facing == "last_action" else "canonical"
        if self.renderer == "atlas":
            return render_grid(self.desc, self.cell, self.cell_px, facing)
        if self.facing == "canonical":
            self._lake.lastaction = None
        try:
            native = self._lake.render()
        finally:
            self._lake.lastaction = last
        return resize_frame(native, self.size, self.cell_px)

    def _info(self, invalid: bool = False) -> dict[str, Any]:
        r, c = self.cell
        return {"cell": (r, c), "map_id": self._spec_map.id, "map_index": self._map_index, "size": self.size,
                "invalid": invalid, "hole": self.desc[r][c] == "H", "steps": self._steps}

    # -- gymnasium API -------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        """Start an episode on a map drawn from the suite (or the one ``options`` names)."""
        super().reset(seed=seed)
        options = options or {}
        if "desc" in options:
            d = tuple(options["desc"])
            validate_desc(list(d), map_id(d))
            if len(d) != self.size:
                raise ValueError(f"options desc has size {len(d)}, env size is {self.size}")
            spec, index = MapSpec(map_id(d), d), -1
        else:
            index = int(options.get("map_index", self.np_random.integers(len(self.maps))))
            if not 0 <= index < len(self.maps):
                raise ValueError(f"map_index {index} outside 0-{len(self.maps) - 1}")
            spec = self.maps[index]
        if self._lake is None or spec.desc != self.desc:
            self._load(spec)
        self._spec_map, self._map_index = spec, index
        assert self._lake is not None
        self._lake.reset(seed=int(self.np_random.integers(2**31)))
        self._steps = 0
        self._frame = self._render_frame()
        return self._frame.copy(), self._info()

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        """Apply an action 0=LEFT, 1=DOWN, 2=RIGHT, 3=UP."""
        assert self._lake is not None, "call reset() first"
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not in {self.action_space}")
        before = self.cell
        dr, dc = ((0, -1), (1, 0), (0, 1), (-1, 0))[int(action)]
        invalid = not (0 <= before[0] + dr < self.size and 0 <= before[1] + dc < self.size)
        _, reward, terminated, _, _ = self._lake.step(int(action))
        self._steps += 1
        truncated = not terminated and self._steps >= self.max_steps
        self._frame = self._render_frame()
        return self._frame.copy(), float(reward), bool(terminated), bool(truncated), self._info(invalid)

    def render(self) -> np.ndarray | None:
        """The current frame when ``render_mode="rgb_array"``."""
        if self.render_mode != "rgb_array":
            return None
        return None if self._frame is None else self._frame.copy()

    def close(self) -> None:
        """Release pygame resources."""
        if self._lake is not None:
            self._lake.close()
            self._lake = None

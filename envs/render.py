"""Frames from gymnasium's own FrozenLake ``rgb_array`` renderer, and a fast tile-atlas compositor.

gymnasium draws each cell independently (tile, optional overlay, a 1 px grid line, the agent sprite
centred in its cell), so a frame is a mosaic of per-cell pictures. :func:`resize_frame` shrinks every
native cell to ``cell_px`` pixels on its own (block mean when the native cell is a multiple of
``cell_px``, else nearest neighbour), which keeps that mosaic property. :func:`render_grid` then pastes
tiles cut out of real gymnasium renders; a test checks it is pixel-identical to the environment's frames.

Facing: gymnasium picks the agent sprite from ``lastaction`` in some releases (the installed 1.4.0
draws one sprite whatever the action). ``facing="canonical"`` (the default everywhere in this package)
always draws the sprite gymnasium uses right after ``reset`` (``lastaction=None``), so a frame is a
pure function of (map, agent cell). An ``int`` facing draws the sprite for that last action.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

from gymnasium.envs.toy_text.frozen_lake import FrozenLakeEnv  # noqa: E402

DEFAULT_CELL_PX = 16
FACINGS: tuple[int | None, ...] = (None, 0, 1, 2, 3)  # gymnasium lastaction values
Facing = int | str | None


def native_cell_size(size: int) -> int:
    """Pixels per cell in gymnasium's native render of a ``size`` x ``size`` map."""
    return min(64 * size, 512) // size


def facing_key(facing: Facing) -> int | None:
    """Normalise a facing argument to a gymnasium ``lastaction`` value (None = canonical)."""
    if facing is None or facing == "canonical":
        return None
    if isinstance(facing, int | np.integer) and 0 <= int(facing) <= 3:
        return int(facing)
    raise ValueError(f"facing must be 'canonical', None or an action 0-3, got {facing!r}")


def resize_frame(native: np.ndarray, size: int, cell_px: int = DEFAULT_CELL_PX) -> np.ndarray:
    """Resize a native gymnasium frame to ``cell_px`` pixels per cell, cell by cell.

    Args:
        native: (H, W, 3) uint8 frame from gymnasium (may carry unused pixels right/bottom for size > 8).
        size: Grid side length.
        cell_px: Output pixels per cell.

    Returns:
        (size * cell_px, size * cell_px, 3) uint8.
    """
    cs = native_cell_size(size)
    x = native[: size * cs, : size * cs].reshape(size, cs, size, cs, 3)
    if cs == cell_px:
        out = x
    elif cs % cell_px == 0:
        k = cs // cell_px
        x = x.reshape(size, cell_px, k, size, cell_px, k, 3).astype(np.uint32)
        out = ((x.sum(axis=(2, 5)) + (k * k) // 2) // (k * k)).astype(np.uint8)
    else:
        idx = ((np.arange(cell_px) + 0.5) * cs / cell_px).astype(np.int64)
        out = x[:, idx][:, :, :, idx]
    return np.ascontiguousarray(out.reshape(size * cell_px, size * cell_px, 3))


class GymRenderer:
    """Renders arbitrary (map, agent cell, facing) states with one reused gymnasium FrozenLakeEnv."""

    def __init__(self, size: int):
        self.size = size
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            desc = ["S" + "F" * (size - 1)] + ["F" * size] * (size - 2) + ["F" * (size - 1) + "G"]
            self.env = FrozenLakeEnv(desc=desc, is_slippery=False, render_mode="rgb_array")

    def native(self, desc: Sequence[str], agent_rc: tuple[int, int], facing: Facing = "canonical") -> np.ndarray:
        """Native-resolution frame of ``desc`` with the agent at ``agent_rc``."""
        env = self.env
        env.desc = np.asarray(desc, dtype="c")
        env.s = int(agent_rc[0]) * self.size + int(agent_rc[1])
        env.lastaction = facing_key(facing)
        return env.render()

    def __call__(self, desc: Sequence[str], agent_rc: tuple[int, int], cell_px: int = DEFAULT_CELL_PX,
                 facing: Facing = "canonical") -> np.ndarray:
        """Frame resized to ``cell_px`` pixels per cell."""
        return resize_frame(self.native(desc, agent_rc, facing), self.size, cell_px)

    def close(self) -> None:
        """Release pygame resources."""
        self.env.close()


@cache
def _gym_renderer(size: int) -> GymRenderer:
    return GymRenderer(size)


def render_gym(desc: Sequence[str], agent_rc: tuple[int, int], cell_px: int = DEFAULT_CELL_PX,
               facing: Facing = "canonical") -> np.ndarray:
    """Render through gymnasium's own renderer (slow, the reference)."""
    return _gym_renderer(len(desc))(tuple(desc), agent_rc, cell_px, facing)


@dataclass(frozen=True)
class Atlas:
    """Per-cell pictures cut from real gymnasium renders for one (size, cell_px).

    Attributes:
        size: Grid side length.
        cell_px: Pixels per cell.
        variant: letter -> (size, size) int array; cells with equal variant look the same for that letter.
        tiles: (letter, variant, agent) -> (cell_px, cell_px, 3) uint8, agent is "none" or a facing key.
    """

    size: int
    cell_px: int
    variant: dict
    tiles: dict

    def tile(self, letter: str, rc: tuple[int, int], agent: int | None | str = "none") -> np.ndarray:
        """Picture of the cell at ``rc`` holding ``letter``; ``agent`` is "none" or a facing key."""
        return self.tiles[(letter, int(self.variant[letter][rc]), agent)]


def _cells(frame: np.ndarray, size: int, cell_px: int) -> np.ndarray:
    return frame.reshape(size, cell_px, size, cell_px, 3).transpose(0, 2, 1, 3, 4)


@cache
def get_atlas(size: int, cell_px: int = DEFAULT_CELL_PX) -> Atlas:
    """Build (once per size and cell_px) the tile atlas from real gymnasium renders."""
    gym = GymRenderer(size)
    variant: dict[str, np.ndarray] = {}
    tiles: dict[tuple, np.ndarray] = {}
    for letter in "FHSG":
        full = tuple([letter * size] * size)
        # two renders with the agent in different cells give every cell once without the agent
        a = _cells(gym(full, (0, 0), cell_px), size, cell_px)
        b = _cells(gym(full, (size - 1, size - 1), cell_px), size, cell_px)
        clean = a.copy()
        clean[0, 0] = b[0, 0]
        var = np.zeros((size, size), dtype=np.int64)
        reps: list[tuple[int, int]] = []
        for r in range(size):
            for c in range(size):
                for i, (rr, cc) in enumerate(reps):
                    if np.array_equal(clean[r, c], clean[rr, cc]):
                        var[r, c] = i
                        break
                else:
                    var[r, c] = len(reps)
                    reps.append((r, c))
        variant[letter] = var
        for i, rc in enumerate(reps):
            tiles[(letter, i, "none")] = clean[rc].copy()
            for f in FACINGS:
                frame = _cells(gym(full, rc, cell_px, f), size, cell_px)
                tiles[(letter, i, f)] = frame[rc].copy()
    gym.close()
    return Atlas(size, cell_px, variant, tiles)


@lru_cache(maxsize=512)
def _background(desc: tuple[str, ...], cell_px: int) -> np.ndarray:
    size = len(desc)
    atlas = get_atlas(size, cell_px)
    cells = np.stack([np.stack([atlas.tile(desc[r][c], (r, c)) for c in range(size)]) for r in range(size)])
    frame = cells.transpose(0, 2, 1, 3, 4).reshape(size * cell_px, size * cell_px, 3)
    frame.setflags(write=False)
    return frame


def render_grid(desc: Sequence[str], agent_rc: tuple[int, int], cell_px: int = DEFAULT_CELL_PX,
                facing: Facing = "canonical") -> np.ndarray:
    """Fast frame of ``desc`` with the agent at ``agent_rc``, pixel-identical to gymnasium's render.

    Args:
        desc: Map rows.
        agent_rc: Agent (row, col).
        cell_px: Pixels per cell.
        facing: "canonical" (sprite after reset) or a last action 0-3.

    Returns:
        (size * cell_px, size * cell_px, 3) uint8 frame.
    """
    desc = tuple(desc)
    frame = _background(desc, cell_px).copy()
    r, c = int(agent_rc[0]), int(agent_rc[1])
    tile = get_atlas(len(desc), cell_px).tile(desc[r][c], (r, c), facing_key(facing))
    frame[r * cell_px:(r + 1) * cell_px, c * cell_px:(c + 1) * cell_px] = tile
    return frame

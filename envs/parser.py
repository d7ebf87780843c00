"""Parse an RGB FrozenLake frame (real or decoded by a model) back to the cell grid.

Each cell is compared with every picture it can take in a real render (tile letter at that position,
with or without the agent, every facing), cut from gymnasium's own renders (:func:`get_atlas`), and the
nearest one (mean squared error) wins. At most one agent is kept: the cell where the agent hypothesis
beats the best no-agent hypothesis by the largest margin.

The installed gymnasium hides the agent when it stands in a hole, so a frame with no visible agent is
read as ``agent_in_hole=True`` with ``agent=None`` (the hole itself is then unknown from one frame;
:func:`consistent_actions` recovers it from the previous frame when it is unambiguous).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rss_world.envs.oracle import ACTIONS, DELTAS
from rss_world.envs.render import DEFAULT_CELL_PX, get_atlas

TILE_CODES = {"F": 0, "H": 1, "S": 2, "G": 3}
CODE_LETTERS = "FHSG"


@dataclass
class ParsedFrame:
    """A frame read back to a grid.

    Attributes:
        tiles: (size, size) int array of tile codes (``TILE_CODES``: F=0, H=1, S=2, G=3).
        agent: Agent (row, col), or None when no agent is visible.
        facing: Facing key of the matched sprite (None = canonical) when distinguishable, else None.
        agent_in_hole: The agent is in a hole (visible on a hole tile, or not visible at all).
        agent_on_goal: The agent stands on the goal.
        confidence: (size, size) float in [0, 1]: ``1 - d1 / d2`` with ``d1`` the distance to the best
            template and ``d2`` to the best template of a different (letter, agent) label; 1 on real renders.
        distance: (size, size) mean squared error (0-255 scale) to the chosen template.
    """

    tiles: np.ndarray
    agent: tuple[int, int] | None
    facing: int | None
    agent_in_hole: bool
    agent_on_goal: bool
    confidence: np.ndarray
    distance: np.ndarray

    @property
    def size(self) -> int:
        """Grid side length."""
        return int(self.tiles.shape[0])

    def to_desc(self) -> tuple[str, ...]:
        """Map rows in S/F/H/G letters."""
        return tuple("".join(CODE_LETTERS[int(v)] for v in row) for row in self.tiles)

    def equals_grid(self, desc: Sequence[str], agent_rc: tuple[int, int] | None) -> bool:
        """True when the parse shows ``desc`` with the agent at ``agent_rc``.

        An agent standing in a hole may be invisible; then ``agent is None`` and ``agent_in_hole`` match.
        """
        if self.to_desc() != tuple(desc):
            return False
        if agent_rc is not None and desc[agent_rc[0]][agent_rc[1]] == "H" and self.agent is None:
            return self.agent_in_hole
        return self.agent == (None if agent_rc is None else (int(agent_rc[0]), int(agent_rc[1])))


def _templates(size: int, cell_px: int):
    """Per-cell candidate stack: (size, size, K, P) float32, labels (K,) of (letter, agent_key)."""
    atlas = get_atlas(size, cell_px)
    labels = []
    for letter in "FHSG":
        kept: list = []
        for agent in ("none", None, 0, 1, 2, 3):
            # drop a label that looks exactly like one already kept for this letter, in every cell
            same = any(all(np.array_equal(atlas.tile(letter, (r, c), agent), atlas.tile(letter, (r, c), k))
                           for r in range(size) for c in range(size)) for k in kept)
            if not same:
                kept.append(agent)
        labels += [(letter, agent) for agent in kept]
    stack = np.empty((size, size, len(labels), cell_px * cell_px * 3), dtype=np.float32)
    for r in range(size):
        for c in range(size):
            for k, (letter, agent) in enumerate(labels):
                stack[r, c, k] = atlas.tile(letter, (r, c), agent).reshape(-1)
    return stack, labels


_CACHE: dict[tuple[int, int], tuple[np.ndarray, list]] = {}


def parse_frame(frame: np.ndarray, size: int | None = None, cell_px: int | None = None) -> ParsedFrame:
    """Read a frame back to tiles and agent.

    Args:
        frame: (H, W, 3) uint8 (or float in 0-255) square frame.
        size: Grid size; inferred as ``H // cell_px`` when None.
        cell_px: Pixels per cell; ``H // size`` when ``size`` is given, else the default 16.

    Returns:
        The :class:`ParsedFrame`.
    """
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] != frame.shape[1]:
        raise ValueError(f"frame must be square (H, W, 3), got shape {frame.shape}")
    side = frame.shape[0]
    if size is None:
        cell_px = cell_px or DEFAULT_CELL_PX
        size = side // cell_px
    cell_px = cell_px or side // size
    if size * cell_px != side:
        raise ValueError(f"frame side {side} is not size {size} x cell_px {cell_px}")
    key = (size, cell_px)
    if key not in _CACHE:
        _CACHE[key] = _templates(size, cell_px)
    stack, labels = _CACHE[key]
    cells = frame.astype(np.float32).reshape(size, cell_px, size, cell_px, 3).transpose(0, 2, 1, 3, 4)
    cells = cells.reshape(size, size, 1, -1)
    dist = ((stack - cells) ** 2).mean(axis=-1)  # (size, size, K)
    has_agent = np.array([a != "none" for _, a in labels])
    d_none = np.where(has_agent, np.inf, dist).min(-1)
    d_agent = np.where(has_agent, dist, np.inf).min(-1)
    margin = d_none - d_agent
    agent = None
    if (margin > 0).any():
        flat = int(np.argmax(margin))
        agent = divmod(flat, size)
    # the chosen label per cell: agent labels only in the agent cell
    allowed = np.broadcast_to(~has_agent, dist.shape).copy()
    if agent is not None:
        allowed[agent] = has_agent
    masked = np.where(allowed, dist, np.inf)
    best = masked.argmin(-1)
    d1 = np.take_along_axis(masked, best[..., None], -1)[..., 0]
    letters = np.array([TILE_CODES[letter] for letter, _ in labels])
    codes = letters[best]
    # second-best distance over a different (letter, agent-present) label, for the confidence
    label_ids = letters * 2 + has_agent
    other = label_ids[None, None, :] != label_ids[best][..., None]
    d2 = np.where(other, dist, np.inf).min(-1)
    confidence = np.clip(1.0 - d1 / np.maximum(d2, 1e-9), 0.0, 1.0)
    confidence = np.where((d1 == 0) & (d2 == 0), 0.0, confidence)
    facing = None
    if agent is not None:
        exact = [labels[k][1] for k in range(len(labels)) if has_agent[k] and dist[agent][k] == d1[agent]]
        facing = exact[0] if len({*exact}) == 1 else None
    on = int(codes[agent]) if agent is not None else -1
    return ParsedFrame(
        tiles=codes.astype(np.int64),
        agent=None if agent is None else (int(agent[0]), int(agent[1])),
        facing=facing,
        agent_in_hole=agent is None or on == TILE_CODES["H"],
        agent_on_goal=on == TILE_CODES["G"],
        confidence=confidence.astype(np.float32),
        distance=d1.astype(np.float32),
    )


def consistent_actions(before: ParsedFrame, after: ParsedFrame) -> frozenset[int]:
    """Actions that take the state parsed in ``before`` to the one parsed in ``after``."""
    if before.agent is None:
        return frozenset()
    n = before.size
    out = set()
    for a in ACTIONS:
        r, c = before.agent[0] + DELTAS[a][0], before.agent[1] + DELTAS[a][1]
        if not (0 <= r < n and 0 <= c < n):
            r, c = before.agent
        if after.agent == (r, c):
            out.add(a)
        elif after.agent is None and after.agent_in_hole and before.tiles[r, c] == TILE_CODES["H"]:
            out.add(a)
    return frozenset(out)


def read_action(before: ParsedFrame, after: ParsedFrame) -> int | None:
    """The action between two parsed frames, or None when none or several actions fit."""
    acts = consistent_actions(before, after)
    return next(iter(acts)) if len(acts) == 1 else None

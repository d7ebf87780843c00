"""Non-slippery FrozenLake dynamics, BFS shortest paths to the goal, and baseline policies.

Actions use gymnasium's codes: 0=LEFT, 1=DOWN, 2=RIGHT, 3=UP. A move off the grid leaves the agent
where it is (as in gymnasium); metrics count it as invalid. Hole and goal cells are terminal.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from rss_world.envs.maps import DELTAS, find_cell

LEFT, DOWN, RIGHT, UP = 0, 1, 2, 3
ACTIONS = (LEFT, DOWN, RIGHT, UP)
ACTION_NAMES = ("LEFT", "DOWN", "RIGHT", "UP")
UNREACHABLE = -1


def move(desc: Sequence[str], cell: tuple[int, int], action: int) -> tuple[tuple[int, int], bool]:
    """Apply one action (deterministic dynamics).

    Returns:
        (next cell, off_grid) where ``off_grid`` is True when the move would leave the grid; the agent
        then stays in place, as in gymnasium.
    """
    n = len(desc)
    dr, dc = DELTAS[action]
    r, c = cell[0] + dr, cell[1] + dc
    if 0 <= r < n and 0 <= c < n:
        return (r, c), False
    return (int(cell[0]), int(cell[1])), True


def off_grid_actions(n: int, cell: tuple[int, int]) -> list[int]:
    """Actions that would leave an ``n`` x ``n`` grid from ``cell``: presses against the edge, which leave the agent
    in place (empty away from the edge)."""
    return [a for a, (dr, dc) in enumerate(DELTAS) if not (0 <= cell[0] + dr < n and 0 <= cell[1] + dc < n)]


@lru_cache(maxsize=4096)
def _bfs(desc: tuple[str, ...]) -> np.ndarray:
    n = len(desc)
    dist = np.full((n, n), UNREACHABLE, dtype=np.int64)
    goal = find_cell(desc, "G")
    dist[goal] = 0
    queue = deque([goal])
    while queue:
        r, c = queue.popleft()
        for dr, dc in DELTAS:
            nr, nc = r + dr, c + dc
            if 0 <= nr < n and 0 <= nc < n and dist[nr, nc] == UNREACHABLE and desc[nr][nc] != "H":
                dist[nr, nc] = dist[r, c] + 1
                queue.append((nr, nc))
    dist.setflags(write=False)
    return dist


def bfs_distances(desc: Sequence[str]) -> np.ndarray:
    """Shortest number of steps from every cell to the goal.

    Holes are impassable (and terminal, so a hole cell itself is ``UNREACHABLE`` = -1, as is any cell
    cut off from the goal). The goal has distance 0. Returns a read-only (n, n) int64 array.
    """
    return _bfs(tuple(desc))


def optimal_actions(desc: Sequence[str], cell: tuple[int, int]) -> frozenset[int]:
    """All actions that start a shortest path to the goal from ``cell``.

    Empty at the goal, in a hole, and in cells that cannot reach the goal.
    """
    dist = bfs_distances(desc)
    d = dist[cell[0], cell[1]]
    if d <= 0 or desc[cell[0]][cell[1]] == "H":
        return frozenset()
    out = set()
    for a in ACTIONS:
        nxt, off = move(desc, cell, a)
        if not off and dist[nxt] == d - 1:
            out.add(a)
    return frozenset(out)


def optimal_action_mask(desc: Sequence[str], cell: tuple[int, int]) -> np.ndarray:
    """(4,) bool mask of :func:`optimal_actions`."""
    mask = np.zeros(4, dtype=bool)
    mask[list(optimal_actions(desc, cell))] = True
    return mask


def optimal_length(desc: Sequence[str]) -> int:
    """Length of a shortest start-to-goal path (-1 if unsolvable)."""
    return int(bfs_distances(desc)[find_cell(desc, "S")])


class Policy:
    """A policy maps (map, agent cell, rng) to an action. Stateless unless ``reset`` says otherwise."""

    name = "policy"

    def reset(self) -> None:
        """Called at the start of every episode."""

    def act(self, desc: Sequence[str], cell: tuple[int, int], rng: np.random.Generator) -> int:
        """Return an action 0-3."""
        raise NotImplementedError


class RandomPolicy(Policy):
    """Uniformly random action."""

    name = "random"

    def act(self, desc: Sequence[str], cell: tuple[int, int], rng: np.random.Generator) -> int:
        return int(rng.integers(4))


class OraclePolicy(Policy):
    """Shortest-path policy from BFS.

    Args:
        random_tiebreak: Pick uniformly among the optimal actions; else the lowest action code.
    """

    name = "oracle"

    def __init__(self, random_tiebreak: bool = False):
        self.random_tiebreak = random_tiebreak

    def act(self, desc: Sequence[str], cell: tuple[int, int], rng: np.random.Generator) -> int:
        acts = sorted(optimal_actions(desc, cell))
        if not acts:
            raise ValueError(f"no optimal action from cell {tuple(cell)}: goal, hole or cut off")
        return int(acts[rng.integers(len(acts))]) if self.random_tiebreak else acts[0]


class GreedyManhattanPolicy(Policy):
    """Step that reduces the Manhattan distance to the goal, ignoring holes.

    Moves along the axis with the larger remaining distance; ties go to the vertical move. It never
    moves off the grid (a move toward the goal stays inside) but it may walk into a hole: that is the
    point of this baseline.
    """

    name = "greedy_manhattan"

    def act(self, desc: Sequence[str], cell: tuple[int, int], rng: np.random.Generator) -> int:
        gr, gc = find_cell(desc, "G")
        dr, dc = gr - cell[0], gc - cell[1]
        if dr == 0 and dc == 0:
            return DOWN  # at the goal; the episode is over anyway
        if abs(dr) >= abs(dc):
            return DOWN if dr > 0 else UP
        return RIGHT if dc > 0 else LEFT


POLICIES: dict[str, type[Policy]] = {
    "random": RandomPolicy,
    "oracle": OraclePolicy,
    "greedy_manhattan": GreedyManhattanPolicy,
}

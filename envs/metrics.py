"""Per-episode FrozenLake planning metrics and their aggregates per map size.

Definitions (``L*`` is the optimal start-to-goal length from BFS; the *executed* actions are the given
actions up to and including the one that ends the episode in a hole or on the goal, and at most
``max_steps`` of them; later actions are ignored):

- **success**: the goal is reached within ``max_steps`` actions.
- **exact_match (EM)**: success in exactly ``L*`` actions with no invalid action (the executed
  sequence is a shortest path).
- **progress_rate (PR)**: ``k / L*`` where ``k`` is the length of the longest prefix of the executed
  actions in which every action is one of the optimal actions (all shortest-path actions) from the
  cell the agent is in. PR is 1 exactly when the episode follows a shortest path to the goal.
- **invalid_action_rate**: invalid actions ÷ executed actions (0 when none were executed). An action
  is invalid when it would leave the grid (the agent stays put) or when it enters a hole.
- **hole**: the episode ended in a hole (aggregated as the hole rate).
- **steps_over_optimal**: executed actions ÷ ``L*`` for successful episodes; NaN otherwise (NaNs are
  left out of the aggregate mean, which is therefore over successful episodes only).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from rss_world.envs.maps import find_cell, map_id
from rss_world.envs.oracle import move, optimal_actions, optimal_length

METRIC_KEYS = ("success", "exact_match", "progress_rate", "invalid_action_rate", "hole",
               "steps_over_optimal")


@dataclass
class EpisodeRecord:
    """One executed episode.

    Attributes:
        desc: Map rows.
        map_id: Map id.
        size: Grid side length.
        actions: Executed actions.
        cells: Agent cells visited, starting cell first (``len(actions) + 1`` entries).
        reached_goal: The episode ended on the goal.
        fell_in_hole: The episode ended in a hole.
        n_invalid: Invalid actions (off-grid or into a hole).
        n_off_grid: Off-grid actions only.
        optimal_length: BFS shortest path length.
        metrics: The dict from :func:`score_episode`.
    """

    desc: tuple[str, ...]
    map_id: str
    size: int
    actions: list[int] = field(default_factory=list)
    cells: list[tuple[int, int]] = field(default_factory=list)
    reached_goal: bool = False
    fell_in_hole: bool = False
    n_invalid: int = 0
    n_off_grid: int = 0
    optimal_length: int = 0
    metrics: dict = field(default_factory=dict)


def run_actions(desc: Sequence[str], actions: Iterable[int], max_steps: int) -> EpisodeRecord:
    """Execute ``actions`` from the start cell on ``desc`` (no env) and return the record with metrics."""
    desc = tuple(desc)
    cell = find_cell(desc, "S")
    rec = EpisodeRecord(desc=desc, map_id=map_id(desc), size=len(desc), cells=[cell],
                        optimal_length=optimal_length(desc))
    for a in actions:
        if len(rec.actions) >= max_steps or rec.reached_goal or rec.fell_in_hole:
            break
        a = int(a)
        if a not in (0, 1, 2, 3):
            raise ValueError(f"action {a} is not one of 0-3")
        cell, off = move(desc, cell, a)
        rec.actions.append(a)
        rec.cells.append(cell)
        letter = desc[cell[0]][cell[1]]
        rec.n_off_grid += off
        rec.fell_in_hole = letter == "H"
        rec.reached_goal = letter == "G"
        rec.n_invalid += off or rec.fell_in_hole
    rec.metrics = _metrics(rec)
    return rec


def _metrics(rec: EpisodeRecord) -> dict:
    opt = rec.optimal_length
    n = len(rec.actions)
    prefix = 0
    for cell, a in zip(rec.cells, rec.actions):
        if a not in optimal_actions(rec.desc, cell):
            break
        prefix += 1
    success = rec.reached_goal
    return {
        "success": float(success),
        "exact_match": float(success and n == opt and rec.n_invalid == 0),
        "progress_rate": prefix / opt if opt > 0 else float(success),
        "invalid_action_rate": rec.n_invalid / n if n else 0.0,
        "hole": float(rec.fell_in_hole),
        "steps_over_optimal": n / opt if success and opt > 0 else math.nan,
    }


def score_episode(desc: Sequence[str], actions: Iterable[int], max_steps: int) -> dict:
    """Score an action sequence on a map (see the module docstring for the definitions).

    Args:
        desc: Map rows.
        actions: Actions 0-3 in gymnasium codes, executed from the start cell.
        max_steps: Step limit; actions past it (or past the end of the episode) are ignored.

    Returns:
        Dict with success, exact_match, progress_rate, invalid_action_rate, hole, steps_over_optimal,
        plus n_steps, n_invalid and optimal_length.
    """
    rec = run_actions(desc, actions, max_steps)
    return {**rec.metrics, "n_steps": len(rec.actions), "n_invalid": rec.n_invalid,
            "optimal_length": rec.optimal_length}


def _mean(metrics: list[dict]) -> dict:
    out: dict[str, float] = {"episodes": len(metrics)}
    for k in METRIC_KEYS:
        vals = np.array([m[k] for m in metrics], dtype=float)
        vals = vals[~np.isnan(vals)]
        out[k] = float(vals.mean()) if len(vals) else math.nan
    return out


def aggregate(records: Iterable[EpisodeRecord | dict]) -> dict:
    """Mean of each metric overall and per map size.

    Args:
        records: EpisodeRecords, or dicts holding the metric keys and ``"size"``.

    Returns:
        ``{"overall": {...}, "per_size": {"3": {...}, ...}}``; each inner dict has ``episodes`` and
        the means of ``METRIC_KEYS`` (NaNs skipped).
    """
    per_size: dict[int, list[dict]] = defaultdict(list)
    all_m: list[dict] = []
    for rec in records:
        m, size = (rec.metrics, rec.size) if isinstance(rec, EpisodeRecord) else (rec, int(rec["size"]))
        per_size[size].append(m)
        all_m.append(m)
    return {"overall": _mean(all_m), "per_size": {str(s): _mean(per_size[s]) for s in sorted(per_size)}}

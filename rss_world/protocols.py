"""Run planners and baseline agents in a real FrozenLake env they are given, and score them.

Protocols:

* **open loop** (the published benchmark): one plan from the start frame; its actions are executed in the
  real env until the episode ends or the plan runs out.
* **closed loop (MPC)**: after every real action the real frame is re-encoded, a new plan is made and its
  first action is taken (a planner with a ``decide`` method, such as the gate planner, imagines only that first
  step); the episode ends on goal, hole, the env's step limit, or a repeated real frame
  (planner and env are deterministic, so a repeat is a cycle that can never end in success).
* **agent**: an agent acts on each real observation (the random, greedy-Manhattan and oracle baselines read
  the map; frame agents such as the PPO baseline see only the frames).

Every episode is replayed with :func:`rss_world.envs.metrics.run_actions` and checked against the env.
``ms_per_decision`` is the mean wall time of one planner (or agent) call: one per episode in open loop, one
per action in closed loop.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from rss_world.envs.frozenlake import VisualFrozenLakeEnv
from rss_world.envs.maps import MapSpec, load_default_suite, load_suite
from rss_world.envs.metrics import EpisodeRecord, aggregate, run_actions
from rss_world.envs.oracle import POLICIES, optimal_actions
from rss_world.envs.render import DEFAULT_CELL_PX
from rss_world.planners import Plan

PROTOCOLS = ("open", "closed")
SUMMARY_KEYS = ("success_rate", "exact_match", "progress_rate", "invalid_action_rate", "hole_rate",
                "steps_over_optimal", "ms_per_decision")
_FROM_METRICS = {"success_rate": "success", "exact_match": "exact_match", "progress_rate": "progress_rate",
                 "invalid_action_rate": "invalid_action_rate", "hole_rate": "hole",
                 "steps_over_optimal": "steps_over_optimal"}


@dataclass
class EpisodeTrace:
    """One episode in the real env.

    Attributes:
        map_id: the map's id.
        size: grid side.
        actions: executed actions.
        real_frames: real observations, the start frame first (``len(actions) + 1``).
        imagined_frames: the model's frames aligned with ``real_frames`` (open loop: the plan's frames, which
            may be longer or shorter; closed loop: each step's one-step prediction); empty for agents.
        on_optimal: per executed action, whether it starts a shortest path from the real cell.
        decision_ms: wall time of every planner or agent call.
        record: the scored record (``record.metrics``).
        plans: planner outputs (open loop: one; closed loop: one per step).
    """

    map_id: str
    size: int
    actions: list[int] = field(default_factory=list)
    real_frames: list[np.ndarray] = field(default_factory=list)
    imagined_frames: list[np.ndarray] = field(default_factory=list)
    on_optimal: list[bool] = field(default_factory=list)
    decision_ms: list[float] = field(default_factory=list)
    record: EpisodeRecord | None = None
    plans: list[Plan] = field(default_factory=list)


# A decision function: (observation, info, step index) -> action, or None to stop (an open-loop plan ran out).
Decide = Callable[[np.ndarray, dict, int], int | None]


def load_maps(path: str | None, split: str) -> list[MapSpec]:
    """Maps from a JSONL suite file, or the shipped default suite ``split``."""
    return load_suite(path) if path else load_default_suite(split)


def select_maps(maps: Sequence[MapSpec], sizes: Iterable[int] | None, episodes: int | None,
                seed: int = 0) -> list[MapSpec]:
    """Pick ``episodes`` distinct maps spread evenly over ``sizes``, each map at most once.

    Within a size the maps are shuffled with ``seed``; the sizes take turns (round-robin), and a size whose maps
    are used up drops out of the rotation, so no map is ever played twice.

    Args:
        maps: candidate maps.
        sizes: sizes to use, every one must have maps; ``None``: every size among ``maps``.
        episodes: how many maps in total; ``None``: every map of those sizes.
        seed: shuffle seed.

    Returns:
        The maps, sorted by size (stable).

    Raises:
        ValueError: a size has no map, ``episodes`` < 1, or more episodes than there are maps.
    """
    have = sorted({m.size for m in maps})
    sizes = have if sizes is None else sorted(set(sizes))
    if not sizes:
        raise ValueError("the map file has no maps")
    rng = np.random.default_rng(seed)
    by_size = {}
    for s in sizes:
        pool = [m for m in maps if m.size == s]
        if not pool:
            raise ValueError(f"no map of size {s} in the map file (it has sizes {have})")
        by_size[s] = [pool[i] for i in rng.permutation(len(pool))]
    total = sum(len(p) for p in by_size.values())
    if episodes is None:
        return [m for s in sizes for m in by_size[s]]
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if episodes > total:
        raise ValueError(f"asked for {episodes} episodes, but there are only {total} distinct maps of sizes {sizes}")
    out: list[MapSpec] = []
    for k in range(max(len(p) for p in by_size.values())):
        out += [by_size[s][k] for s in sizes if k < len(by_size[s])]
    return sorted(out[:episodes], key=lambda m: m.size)


def per_episode(traces: Sequence[EpisodeTrace]) -> list[dict]:
    """One row per episode: ``map_id``, ``size``, ``success``, ``steps`` (actions executed), ``optimal`` (the
    shortest path's length) and ``actions``."""
    return [{"map_id": t.map_id, "size": t.size, "success": bool(t.record.reached_goal), "steps": len(t.actions),
             "optimal": int(t.record.optimal_length), "actions": [int(a) for a in t.actions]} for t in traces]


def _play(env: VisualFrozenLakeEnv, spec: MapSpec, seed: int, decide: Decide, trace: EpisodeTrace) -> EpisodeTrace:
    obs, info = env.reset(seed=seed, options={"desc": spec.desc})
    trace.real_frames.append(obs)
    reward, t = 0.0, 0
    while True:
        a = decide(obs, info, t)
        if a is None:
            break
        trace.on_optimal.append(a in optimal_actions(env.desc, info["cell"]))
        obs, reward, term, trunc, info = env.step(int(a))
        trace.actions.append(int(a))
        trace.real_frames.append(obs)
        t += 1
        if term or trunc:
            break
    rec = run_actions(env.desc, trace.actions, env.max_steps)
    if rec.reached_goal != (reward == 1.0) or rec.cells[-1] != info["cell"]:
        raise RuntimeError(f"metrics replay disagrees with the env on map {spec.id}")
    trace.record = rec
    return trace


def _timed(fn: Callable, trace: EpisodeTrace, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    trace.decision_ms.append(1000 * (time.perf_counter() - t0))
    return out


def _open_loop(planner, keep_frames: bool = True) -> Callable[[EpisodeTrace], Decide]:
    def make(trace: EpisodeTrace) -> Decide:
        def decide(obs: np.ndarray, info: dict, t: int) -> int | None:
            if t == 0:
                plan = _timed(planner.plan, trace, obs)
                trace.plans.append(plan)
                if keep_frames:
                    trace.imagined_frames.extend(plan.frames)
            actions = trace.plans[0].actions
            return actions[t] if t < len(actions) else None
        return decide
    return make


def _closed_loop(planner, keep_frames: bool = True) -> Callable[[EpisodeTrace], Decide]:
    def make(trace: EpisodeTrace) -> Decide:
        seen: set[bytes] = set()

        def decide(obs: np.ndarray, info: dict, t: int) -> int | None:
            # Planners are deterministic and so is the env: a frame seen before in this episode means the
            # controller is in a cycle it can never leave, so the episode stops there (a failure) instead of
            # running to the step limit.
            key = hashlib.sha1(np.ascontiguousarray(obs)).digest()
            if key in seen:
                return None
            seen.add(key)
            plan = _timed(getattr(planner, "decide", planner.plan), trace, obs)
            trace.plans.append(plan)
            if keep_frames and t == 0:
                trace.imagined_frames.append(plan.frames[0])
            if not plan.actions:
                return None
            if keep_frames:
                trace.imagined_frames.append(plan.frames[1])
            return plan.actions[0]
        return decide
    return make


def _agent(agent) -> Callable[[EpisodeTrace], Decide]:
    def make(trace: EpisodeTrace) -> Decide:
        agent.reset()
        return lambda obs, info, t: _timed(agent.act, trace, obs, info)
    return make


def _run(make: Callable[[EpisodeTrace], Decide], maps: Sequence[MapSpec], cell_px: int, seed: int,
         progress: bool | str, max_steps: int | None = None, keep_frames: bool = True) -> list[EpisodeTrace]:
    envs: dict[int, VisualFrozenLakeEnv] = {}
    traces = []
    desc = progress if isinstance(progress, str) else None
    for i, spec in enumerate(tqdm(maps, desc=desc, disable=not progress, leave=False)):
        if spec.size not in envs:
            envs[spec.size] = VisualFrozenLakeEnv(suite=[s for s in maps if s.size == spec.size], cell_px=cell_px,
                                                  renderer="atlas", max_steps=max_steps)
        trace = EpisodeTrace(map_id=spec.id, size=spec.size)
        traces.append(_play(envs[spec.size], spec, seed + i, make(trace), trace))
        if not keep_frames:  # a long suite at 32x32 would otherwise hold gigabytes of frames and latents
            trace.real_frames.clear()
            for plan in trace.plans:
                plan.latents, plan.frames = [], np.zeros((0,), np.uint8)
    for env in envs.values():
        env.close()
    return traces


def run_planner(planner, maps: Sequence[MapSpec], protocol: str, cell_px: int = DEFAULT_CELL_PX, seed: int = 0,
                progress: bool | str = False, max_steps: int | None = None,
                keep_frames: bool = True) -> list[EpisodeTrace]:
    """Run a planner (``plan(frame) -> Plan``) on ``maps`` in the real env.

    Args:
        planner: a :class:`~rss_world.planners.GatePlanner`, :class:`~rss_world.planners.SearchPlanner` or alike.
        maps: maps to play, one episode each.
        protocol: "open" or "closed".
        cell_px: pixels per cell (the model's).
        seed: env seed of the first episode (episode ``i`` uses ``seed + i``).
        progress: show a tqdm bar (a string is its label).
        max_steps: env step limit (default ``4 * size²``).
        keep_frames: keep every episode's real and imagined frames and its plans' latents (videos need them); off,
            the traces keep actions, records, timings and plan statistics only, and no plan's frames are decoded.

    Raises:
        ValueError: an unknown protocol, or ``cell_px`` differs from the planner's model's (its frames would be
            read as a grid of another size).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}, expected one of {PROTOCOLS}")
    model_px = getattr(getattr(getattr(planner, "model", None), "cfg", None), "cell_px", cell_px)
    if model_px != cell_px:
        raise ValueError(f"frames of {cell_px} px per cell do not match the model's cell_px={model_px}")
    make = (_open_loop if protocol == "open" else _closed_loop)(planner, keep_frames)
    return _run(make, maps, cell_px, seed, progress, max_steps, keep_frames)


def run_agent(agent, maps: Sequence[MapSpec], cell_px: int = DEFAULT_CELL_PX, seed: int = 0,
              progress: bool | str = False, max_steps: int | None = None) -> list[EpisodeTrace]:
    """Run an agent (``reset()``, ``act(obs, info) -> int``) on ``maps`` in the real env, one episode each."""
    return _run(_agent(agent), maps, cell_px, seed, progress, max_steps)


def _clean(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def summarize(traces: Sequence[EpisodeTrace]) -> dict:
    """The benchmark summary: ``{"episodes", <SUMMARY_KEYS>, "per_size": {"3": {"episodes", ...}}}``.

    ``steps_over_optimal`` is over successful episodes only (``None`` when there are none).
    """
    if not traces:
        raise ValueError("no episodes to summarize")
    agg = aggregate([t.record for t in traces])

    def block(m: dict, group: Sequence[EpisodeTrace]) -> dict:
        ms = [x for t in group for x in t.decision_ms]
        out = {k: _clean(m[src]) for k, src in _FROM_METRICS.items()}
        out["ms_per_decision"] = _clean(float(np.mean(ms))) if ms else None
        return out

    per_size = {s: block(m, [t for t in traces if str(t.size) == s]) | {"episodes": int(m["episodes"])}
                for s, m in agg["per_size"].items()}
    return {"episodes": len(traces), **block(agg["overall"], traces), "per_size": per_size}


def planner_stats(traces: Sequence[EpisodeTrace]) -> dict:
    """Planner extras: mean steps saved by halting, share of plans halted early, mean expansions per plan."""
    plans = [p for t in traces for p in t.plans]
    if not plans:
        return {"steps_saved": None, "halted_early": None, "expansions": None}
    return {"steps_saved": float(np.mean([p.steps_saved for p in plans])),
            "halted_early": float(np.mean([p.halted_early for p in plans])),
            "expansions": float(np.mean([p.expansions for p in plans]))}


# ---------------------------------------------------------------------------------------------- baselines
class MapPolicyAgent:
    """A reference policy from :mod:`rss_world.envs.oracle` that reads the true map and cell (baselines only).

    Args:
        name: "random", "greedy_manhattan" or "oracle".
        env_desc: callable returning the current map rows (the env's ``desc``).
        seed: RNG seed (random tie-breaks and the random policy).
    """

    def __init__(self, name: str, env_desc: Callable[[], Sequence[str]], seed: int = 0) -> None:
        if name not in POLICIES:
            raise ValueError(f"unknown baseline {name!r}, expected one of {sorted(POLICIES)}")
        self.name, self.policy, self.env_desc = name, POLICIES[name](), env_desc
        self.rng = np.random.default_rng(seed)

    def reset(self) -> None:
        self.policy.reset()

    def act(self, obs: np.ndarray, info: dict) -> int:
        return int(self.policy.act(self.env_desc(), info["cell"], self.rng))


def run_map_baseline(name: str, maps: Sequence[MapSpec], cell_px: int = DEFAULT_CELL_PX, seed: int = 0,
                     progress: bool | str = False) -> list[EpisodeTrace]:
    """Run random, greedy-Manhattan or oracle on ``maps`` (they are given the true map of each episode)."""
    current: dict[str, Sequence[str]] = {}
    agent = MapPolicyAgent(name, lambda: current["desc"], seed)

    def make(trace: EpisodeTrace) -> Decide:
        current["desc"] = next(m.desc for m in maps if m.id == trace.map_id)
        return _agent(agent)(trace)

    return _run(make, maps, cell_px, seed, progress)

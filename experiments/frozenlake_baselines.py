"""Random, greedy-Manhattan and oracle policies on the FrozenLake test split, in the real env.

Each policy plays 100 test-split maps per size 3-8 in ``VisualFrozenLakeEnv`` (gymnasium's renderer).
Policies read the map and the agent cell from the observed frame with the frame parser (checked against
the env's ``info`` at every step), act, and the executed actions are scored with
``rss_world.envs.metrics``. Writes ``experiments/results/frozenlake_baselines.md``.

Usage::

    python experiments/frozenlake_baselines.py [--maps-per-size 100] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import gymnasium
import numpy as np

from rss_world.envs.frozenlake import VisualFrozenLakeEnv
from rss_world.envs.maps import DEFAULT_SIZES, load_default_suite
from rss_world.envs.metrics import aggregate, run_actions
from rss_world.envs.oracle import POLICIES, Policy
from rss_world.envs.parser import parse_frame
from rss_world.io import atomic_write_text

OUT = Path(__file__).resolve().parent / "results" / "frozenlake_baselines.md"
COLUMNS = (("success", "success"), ("exact_match", "EM"), ("progress_rate", "PR"),
           ("invalid_action_rate", "invalid"), ("hole", "hole"), ("steps_over_optimal", "steps/opt"))


def play(env: VisualFrozenLakeEnv, index: int, policy: Policy, rng: np.random.Generator):
    """One episode on suite map ``index``; returns the scored record."""
    obs, info = env.reset(seed=int(rng.integers(2**31)), options={"map_index": index})
    policy.reset()
    actions: list[int] = []
    reward, done = 0.0, False
    while not done:
        parsed = parse_frame(obs, size=env.size)
        if not parsed.equals_grid(env.desc, info["cell"]):
            raise RuntimeError(f"parser disagrees with env on map {info['map_id']} cell {info['cell']}")
        a = policy.act(parsed.to_desc(), parsed.agent, rng)
        obs, reward, term, trunc, info = env.step(a)
        actions.append(a)
        done = term or trunc
    rec = run_actions(env.desc, actions, env.max_steps)
    if rec.reached_goal != (reward == 1.0) or rec.fell_in_hole != info["hole"] or rec.cells[-1] != info["cell"]:
        raise RuntimeError(f"metrics replay disagrees with env on map {info['map_id']}")
    return rec


def run(maps_per_size: int, seed: int) -> dict[str, dict]:
    """Aggregated metrics per policy."""
    suite = load_default_suite("test")
    results = {}
    for name, cls in POLICIES.items():
        rng = np.random.default_rng(seed)
        records = []
        for size in DEFAULT_SIZES:
            maps = [m for m in suite if m.size == size][:maps_per_size]
            if len(maps) < maps_per_size:
                raise ValueError(f"test split has {len(maps)} maps of size {size}, need {maps_per_size}")
            env = VisualFrozenLakeEnv(suite=maps)
            records += [play(env, i, cls(), rng) for i in range(len(maps))]
            env.close()
        results[name] = aggregate(records)
    return results


def _row(label: str, m: dict) -> str:
    vals = [f"{100 * m[k]:.1f}" if k != "steps_over_optimal" else f"{m[k]:.2f}" for k, _ in COLUMNS]
    return f"| {label} | {m['episodes']} | " + " | ".join(vals) + " |"


def to_markdown(results: dict[str, dict], command: str, seconds: float) -> str:
    """Results tables as markdown."""
    lines = [
        "# FrozenLake baselines (test split)",
        "",
        "Random, greedy-Manhattan and BFS-oracle policies in the real `VisualFrozenLakeEnv` (gymnasium's",
        "renderer, non-slippery, step limit 4·size²), 100 test-split maps per size from",
        "`envs/suites/test.jsonl`. Policies read the map and agent cell from the frame with the frame parser",
        "(checked against the env at every step). Metrics are defined in `envs/metrics.py` and",
        "`docs/frozenlake.md`: success, EM and PR, invalid-action rate (off-grid or into a hole, per executed",
        "action) and hole rate are percentages; steps/opt is over successful episodes only.",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"gymnasium {gymnasium.__version__}, numpy {np.__version__}; took {seconds:.0f} s.",
        "",
    ]
    header = "| size | episodes | " + " | ".join(h for _, h in COLUMNS) + " |"
    sep = "|" + "---|" * (len(COLUMNS) + 2)
    for name, agg in results.items():
        lines += [f"## {name}", "", header, sep]
        lines += [_row(s, m) for s, m in agg["per_size"].items()]
        lines += [_row("**all**", agg["overall"]), ""]
    lines += ["## overall", "", "| policy | episodes | " + " | ".join(h for _, h in COLUMNS) + " |", sep]
    lines += [_row(name, agg["overall"]) for name, agg in results.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run all baselines and write the results file."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--maps-per-size", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    t0 = time.time()
    results = run(args.maps_per_size, args.seed)
    command = " ".join(["python experiments/frozenlake_baselines.py", *sys.argv[1:]])
    text = to_markdown(results, command, time.time() - t0)
    atomic_write_text(args.out, text)
    print(text)
    if results["oracle"]["overall"]["exact_match"] != 1.0:
        raise SystemExit("oracle EM is not 100%")


if __name__ == "__main__":
    main()

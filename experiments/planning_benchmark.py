"""Planning benchmark: latent-space planners in the real FrozenLake env, against the targets and baselines.

Runs :func:`rss_world.benchmark.run_benchmark` (the settings of ``python -m rss_world.evaluate``) on the test split:
the gate planner (the paper's mechanism) and latent search, each in open and closed loop, plus random,
greedy-Manhattan, oracle and PPO (trained in the real env for a stated budget of env steps).
Writes ``experiments/results/planning.md`` with the target table (open loop 3-6 EM, closed loop 3-8
success, sizes 7-8 EM), the full tables, CPU times and the exact command.

Usage::

    python experiments/planning_benchmark.py                      # full: 100 test maps per size 3-8
    python experiments/planning_benchmark.py --quick               # smoke run on a tiny untrained model
    python experiments/planning_benchmark.py maps_per_size=20 ppo.steps=50000   # Hydra overrides
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

from rss_world.benchmark import evaluate_config, run_benchmark
from rss_world.io import atomic_write_text
from rss_world.reports import subset, to_markdown

OUT = Path(__file__).resolve().parent / "results" / "planning.md"
TARGETS = (  # (label, protocol, sizes, metric, target)
    ("open loop, sizes 3-6, EM", "open", (3, 4, 5, 6), "exact_match", 0.97),
    ("closed loop, sizes 3-8, success", "closed", (3, 4, 5, 6, 7, 8), "success_rate", 0.99),
    ("open loop, sizes 7-8, EM", "open", (7, 8), "exact_match", 0.90),
    ("closed loop, sizes 7-8, EM", "closed", (7, 8), "exact_match", 0.90),
)
QUICK = ["maps_per_size=2", "ppo.steps=256", "planners.search.max_expansions=32", "progress=false"]


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _stats(st: dict) -> str:
    return ", ".join(f"{k} {'-' if v is None else f'{v:.2f}'}" for k, v in st.items())


def target_table(results: dict) -> list[str]:
    """Rows: each target, for the gate planner and for search; VPRL's published number for reference."""
    lines = ["| target | gate planner (paper's mechanism, our VI gate) | latent search | goal |", "|---|---|---|---|"]
    for label, protocol, sizes, key, goal in TARGETS:
        cells = []
        for planner in ("gate", "search"):
            r = results["methods"].get(f"{planner} / {protocol} loop")
            cells.append(_pct(subset(r["summary"], sizes, key)) if r else "not run")
        lines.append(f"| {label} | {cells[0]} | {cells[1]} | ≥ {100 * goal:.0f}% |")
    lines.append("| VPRL (Xu et al. 2025, 7B, GPU), open loop 3-6 EM | | | 91.6% (published) |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny untrained model, 2 maps per size (smoke test)")
    ap.add_argument("--out", default=None, help=f"markdown path (default {OUT}; --quick: outputs/planning_quick.md)")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides of configs/evaluate.yaml")
    args = ap.parse_args(argv)
    overrides = list(args.overrides)
    out = Path(args.out) if args.out else (Path("outputs/planning_quick.md") if args.quick else OUT)
    with tempfile.TemporaryDirectory() as tmp:
        if args.quick:
            from omegaconf import OmegaConf

            from rss_world.checkpoint import save_model
            from rss_world.training.config import compose_recipe
            from rss_world.world_model import WorldModel

            torch.manual_seed(0)
            save_model(Path(tmp) / "tiny", WorldModel(OmegaConf.to_object(compose_recipe(["model=tiny"])).model))
            overrides = QUICK + [f"checkpoint={Path(tmp) / 'tiny'}", f"out={tmp}/eval"] + overrides
        cfg = evaluate_config(overrides)
        t0 = time.perf_counter()
        results = run_benchmark(cfg)
        total = time.perf_counter() - t0
    command = "python experiments/planning_benchmark.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    cpu = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads {cfg.threads}"
    cpu_s = {k: round(v["seconds"], 1) for k, v in results["methods"].items()}
    ppo_note = [f"PPO baseline: `rss_world.rl_agents.train_real_ppo` (the tuned recipe) on the {cfg.ppo.split} split, "
                f"sizes {list(cfg.sizes)}, in the real env on frames only, greedy; budget {cfg.ppo.steps} env steps "
                "(its row states the steps trained: SB3 finishes its last rollout).", ""] \
        if "ppo" in cfg.baselines else []
    md = [
        "# Planning in latent space: FrozenLake benchmark",
        "",
        f"Command: `{command.strip()}`  ",
        f"Checkpoint: `{cfg.checkpoint or 'rss_world/checkpoints/frozenlake (shipped)'}`; maps: "
        f"{cfg.maps or cfg.split + ' split'}, sizes {list(cfg.sizes)}, {cfg.maps_per_size} per size "
        f"({results['settings']['episodes']} episodes); seed {cfg.seed}.  ",
        f"Machine: {cpu}. Whole run: {total:.0f} s wall.",
        "" if not args.quick else "\n**Quick smoke run on a tiny untrained model: these numbers mean nothing.**\n",
        "## Targets",
        "",
        *target_table(results),
        "",
        *ppo_note,
        "CPU time for the whole suite (s, wall clock on this CPU, per method): "
        + ", ".join(f"{k}: {v}" for k, v in cpu_s.items()) + ".",
        "",
        "Planner statistics (mean per plan): " + "; ".join(
            f"{k}: {_stats(v['planner_stats'])}" for k, v in results["methods"].items() if "planner_stats" in v) + ".",
        "",
        to_markdown(results),
    ]
    atomic_write_text(out, "\n".join(md))
    print("\n".join(md))
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

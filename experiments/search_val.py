"""Latent search's settings, checked on the validation split: the shipped defaults against the settings they replaced.

    python experiments/search_val.py                  # 20 val maps per size 3-8, closed loop
    python experiments/search_val.py --maps 2 --sizes 3 4   # smoke run

Each candidate runs :class:`~rss_world.planners.SearchPlanner` in closed loop in the real env on the same distinct
val-split maps (never test maps) with the shipped world model. Writes ``experiments/results/search_val.md``.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import asdict, fields
from pathlib import Path

import torch

from rss_world.checkpoint import load_model
from rss_world.envs.maps import load_default_suite
from rss_world.io import atomic_write_text
from rss_world.paths import DEFAULT_CHECKPOINT
from rss_world.planners import SearchPlanner, SearchPlannerConfig
from rss_world.protocols import run_planner, select_maps, summarize

ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = {
    "shipped defaults (re-encoding each child)": {},
    "re-encoding, goal_threshold 0.5": {"goal_threshold": 0.5},
    "pure latent recursion (the defaults before re-encoding)": {"reencode": False},
    "pure latent, goal_threshold 0.5, dedupe_threshold 0.05 (settings replaced earlier)":
        {"reencode": False, "goal_threshold": 0.5, "dedupe_threshold": 0.05},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=None, help="world-model checkpoint (default: the shipped one)")
    ap.add_argument("--maps", type=int, default=20, help="distinct val maps per size")
    ap.add_argument("--sizes", type=int, nargs="+", default=[3, 4, 5, 6, 7, 8])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "experiments" / "results" / "search_val.md")
    args = ap.parse_args()
    torch.set_num_threads(1)
    ckpt = args.checkpoint or str(DEFAULT_CHECKPOINT.relative_to(ROOT))
    model = load_model(ckpt)
    maps = select_maps(load_default_suite("val"), args.sizes, args.maps * len(args.sizes), args.seed)
    known = {f.name for f in fields(SearchPlannerConfig)}
    rows = []
    for name, change in CANDIDATES.items():
        if not set(change) <= known:
            raise ValueError(f"unknown SearchPlannerConfig fields in candidate {name!r}: {set(change) - known}")
        cfg = SearchPlannerConfig(**change)
        t0 = time.perf_counter()
        traces = run_planner(SearchPlanner(model, cfg), maps, "closed", model.cfg.cell_px, seed=args.seed)
        s = summarize(traces)
        per = " · ".join(f"{k}: {100 * v['success_rate']:.0f}%" for k, v in sorted(s["per_size"].items(),
                                                                                  key=lambda kv: int(kv[0])))
        shown = {k: v for k, v in asdict(cfg).items() if k in ("reencode", "goal_threshold", "dedupe_threshold")}
        rows.append(f"| {name} | {shown} | {s['episodes']} | {100 * s['success_rate']:.1f}% | {per} | "
                    f"{time.perf_counter() - t0:.0f} |")
        print(rows[-1], flush=True)
    text = "\n".join([
        "# Latent search settings on the validation split",
        "",
        f"Command: `{' '.join(['python experiments/search_val.py', *sys.argv[1:]])}`  ",
        f"Checkpoint: `{ckpt}`. Machine: {platform.machine()} CPU, 1 torch thread. Maps: {len(maps)} distinct "
        f"val-split maps, sizes {args.sizes} ({args.maps} per size), one closed-loop episode each, env seed "
        f"{args.seed} + i; test maps are not used.",
        "",
        "| candidate | settings | episodes | success | success per size | s |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
    ])
    atomic_write_text(args.out, text)


if __name__ == "__main__":
    main()

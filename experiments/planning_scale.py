"""Planning at every map size, 3 to 32, on test suites no model was trained or tuned on.

For each test suite (``test`` at sizes 3-8, ``test_large`` at 10, 12, 16, 24, 32, ``test_longpath`` at 16 and 32)
and each size it plays ``--maps`` maps (the same seeded choice for every method) with:

* the gate planner (the paper's mechanism: the gate picks the expert, i.e. the action, at every latent step; our
  gate is value iteration over the latent grid), in closed loop (one decision per real step) and in open loop
  (one plan from the start frame, executed blind; by default the planner decodes its imagined frame and encodes it
  again after every latent step, ``GatePlannerConfig.reencode``), and in open loop as pure latent recursion (no
  re-encoding: the ablation row);
* optionally latent search (``--search``), the strong planner, closed loop;
* the map-reading baselines random, greedy-Manhattan and the BFS oracle.

Halting is reported against the horizon a non-halting planner would need on that suite and size: the longest
shortest path among its maps (not size²). Writes ``experiments/results/planning_scale.md`` with the command,
machine and per-row sample counts.

Usage::

    python experiments/planning_scale.py                         # 100 maps per size, gate + baselines
    python experiments/planning_scale.py --maps 20 --search       # fewer maps, latent search too
    python experiments/planning_scale.py --large-maps 30          # 30 maps per suite at sizes 24 and 32
    python experiments/planning_scale.py --quick                  # smoke run: a tiny untrained model, 2 maps
    python experiments/planning_scale.py --time-gate 8 --maps 4   # time closed-loop gate decisions at 32x32 only

``--time-gate K`` times, instead of the study, the closed-loop gate planner's decision on ``--maps`` maps of the
``test_large`` suite (``--sizes``, default 32), ``K`` decisions per map along the planner's own closed-loop path.
At every real frame it calls ``decide`` twice, in alternating order: as the planner runs it (``Plan.frames`` left
undecoded), and followed by reading ``plan.frames`` (the decode of its two imagined frames, which every decision
paid before the frames were lazy). It writes ``experiments/results/gate_decision_time.md`` (or ``--out``) with the
load average.
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

import numpy as np
import torch

from rss_world.benchmark import load_checkpoint
from rss_world.checkpoint import save_model
from rss_world.envs.frozenlake import VisualFrozenLakeEnv
from rss_world.envs.maps import load_default_suite
from rss_world.io import atomic_write_text
from rss_world.planners import make_planner
from rss_world.protocols import run_map_baseline, run_planner, select_maps, summarize

OUT = Path(__file__).resolve().parent / "results" / "planning_scale.md"
TIME_OUT = OUT.with_name("gate_decision_time.md")
SUITES = (("test", (3, 4, 5, 6, 7, 8)), ("test_large", (10, 12, 16, 24, 32)), ("test_longpath", (16, 32)))
BASELINES = ("random", "greedy_manhattan", "oracle")
LARGE = 24  # sizes from here on take --large-maps maps (each closed-loop episode there costs seconds)


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def halting(traces) -> tuple[int, float]:
    """The suite's fixed horizon (its longest shortest path) and the mean latent steps a halting open-loop plan
    saves against it."""
    horizon = max(t.record.optimal_length for t in traces)
    return horizon, float(np.mean([horizon - len(p.actions) for t in traces for p in t.plans]))


def run(args: argparse.Namespace) -> str:
    model = load_checkpoint(args.checkpoint)
    rows, halts = [], []
    for suite, sizes in SUITES:
        for size in sizes:
            if args.sizes and size not in args.sizes:
                continue
            count = args.maps if size < LARGE else (args.large_maps or args.maps)
            maps = select_maps(load_default_suite(suite, [size]), [size], count, args.seed)
            methods = [("gate", "closed", {}), ("gate", "open", {}), ("gate", "open", {"reencode": False})]
            methods += [("search", "closed", {})] if args.search else []
            for planner, protocol, kw in methods:
                torch.manual_seed(args.seed)
                t0 = time.perf_counter()
                traces = run_planner(make_planner(planner, model, **kw), maps, protocol, model.cfg.cell_px, args.seed,
                                     progress=f"{suite} {size} {planner} {protocol}" if args.progress else False,
                                     keep_frames=False)  # 100 long 32x32 episodes: frames would not fit in memory
                name = f"{planner} planner, {protocol} loop" + (", pure latent recursion" if kw else "")
                rows.append((suite, size, name, summarize(traces), len(maps), time.perf_counter() - t0))
                if (planner, protocol, kw) == ("gate", "open", {}):
                    halts.append((suite, size, *halting(traces), len(maps)))
            for name in BASELINES:
                t0 = time.perf_counter()
                traces = run_map_baseline(name, maps, model.cfg.cell_px, args.seed)
                rows.append((suite, size, name, summarize(traces), len(maps), time.perf_counter() - t0))
            print(f"{suite} {size}: " + ", ".join(f"{r[2]} {pct(r[3]['success_rate'])}%" for r in rows
                                                    if r[:2] == (suite, size)), flush=True)
    return report(args, rows, halts)


class _TwoWays:
    """A closed-loop gate planner that times every decision twice: as it runs (frames left undecoded) and with its
    imagined frames read (decoded) inside the timing, in alternating order. It plays the first plan's action."""

    def __init__(self, planner) -> None:
        self.planner, self.model = planner, planner.model
        self.ms: dict[str, list[float]] = {"lazy": [], "read": []}

    def _once(self, obs: np.ndarray, read: bool):
        t0 = time.perf_counter()
        plan = self.planner.decide(obs)
        if read:
            plan.frames  # noqa: B018 - the read is what is timed
        self.ms["read" if read else "lazy"].append(1000 * (time.perf_counter() - t0))
        return plan

    def plan(self, obs: np.ndarray):  # the protocol looks it up; closed loop calls decide
        return self.planner.plan(obs)

    def decide(self, obs: np.ndarray):
        first = len(self.ms["lazy"]) % 2 == 1  # alternate which variant runs first
        a, b = self._once(obs, first), self._once(obs, not first)
        if a.actions != b.actions:
            raise RuntimeError("the two timed decisions disagree")
        return a


def time_gate(args: argparse.Namespace) -> str:
    model = load_checkpoint(args.checkpoint)
    sizes = args.sizes or [32]
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    rows = []
    for size in sizes:
        maps = select_maps(load_default_suite("test_large", [size]), [size], args.maps, args.seed)
        timed = _TwoWays(make_planner("gate", model))
        timed.decide(render_start(maps[0], model.cfg.cell_px))  # warm-up, not counted
        timed.ms = {"lazy": [], "read": []}
        run_planner(timed, maps, "closed", model.cfg.cell_px, args.seed, max_steps=args.time_gate)
        rows.append((size, len(maps), timed.ms))
    load1 = os.getloadavg()
    lines = ["# Closed-loop gate decision time", "",
             f"Command: `python experiments/{Path(__file__).name} {shlex.join(sys.argv[1:])}`  ",
             f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, 1 thread; checkpoint "
             f"`{args.checkpoint or 'the shipped model'}`; seed {args.seed}; suite `test_large`.  ",
             f"Load average (1, 5, 15 min) at the start: {', '.join(f'{x:.2f}' for x in load0)}; at the end: "
             f"{', '.join(f'{x:.2f}' for x in load1)}; {time.perf_counter() - t0:.0f} s in all.  ",
             f"Up to {args.time_gate} decisions per map along the planner's own closed-loop path (fewer where the "
             "episode ended sooner), each timed twice on the same frame in alternating order: `decide` as it runs "
             "(imagined frames left undecoded until read) and `decide` followed by reading `plan.frames` (the batched "
             "decode of its two imagined frames, which every decision paid when they were decoded eagerly). The "
             "closed-loop protocol still reads those frames for the episode's trace, outside the timed call.", "",
             "| size | maps | decisions | lazy ms (mean) | lazy ms (median) | with frames read ms (mean) | "
             "with frames read ms (median) | read / lazy (median) |", "|---|---|---|---|---|---|---|---|"]
    for size, n, ms in rows:
        lazy, read = np.array(ms["lazy"]), np.array(ms["read"])
        lines.append(f"| {size} | {n} | {len(lazy)} | {lazy.mean():.1f} | {np.median(lazy):.1f} | {read.mean():.1f} | "
                     f"{np.median(read):.1f} | {np.median(read) / np.median(lazy):.2f} |")
    return "\n".join(lines) + "\n"


def render_start(spec, cell_px: int) -> np.ndarray:
    """The real start frame of a map (the env's own render)."""
    env = VisualFrozenLakeEnv(suite=[spec], cell_px=cell_px, renderer="atlas")
    obs, _ = env.reset(seed=0, options={"desc": spec.desc})
    env.close()
    return obs


def report(args: argparse.Namespace, rows, halts) -> str:
    lines = ["# Planning at every size (3-32)", "",
             f"Command: `python experiments/{Path(__file__).name} {shlex.join(sys.argv[1:])}`  ",
             f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, 1 thread; checkpoint "
             f"`{args.checkpoint or 'the shipped model'}`; seed {args.seed}.  ",
             "Every row rests on the number of distinct test maps in its `maps` column (one episode per map). The "
             "model was trained on sizes 3-8 only (train split); these suites were never trained or tuned on.", "",
             "| suite | size | method | maps | success % | exact match % | steps over optimal | hole % | "
             "ms / decision | seconds |", "|---|---|---|---|---|---|---|---|---|---|"]
    for suite, size, name, s, n, sec in rows:
        sop = "–" if s["steps_over_optimal"] is None else f"{s['steps_over_optimal']:.2f}"
        ms = "–" if s["ms_per_decision"] is None else f"{s['ms_per_decision']:.1f}"
        lines.append(f"| {suite} | {size} | {name} | {n} | {pct(s['success_rate'])} | {pct(s['exact_match'])} | "
                     f"{sop} | {pct(s['hole_rate'])} | {ms} | {sec:.0f} |")
    lines += ["", "## Halting (gate planner, open loop)", "",
              "Latent steps a halting plan saves against the fixed horizon a non-halting planner would need on "
              "that suite and size: its longest shortest path.", "",
              "| suite | size | fixed horizon (longest shortest path) | mean steps saved | maps |",
              "|---|---|---|---|---|"]
    lines += [f"| {s} | {z} | {h} | {saved:.1f} | {n} |" for s, z, h, saved, n in halts]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=None, help="world-model checkpoint (default: the shipped one)")
    ap.add_argument("--maps", type=int, default=100, help="maps per suite and size (distinct, seeded)")
    ap.add_argument("--large-maps", type=int, default=None, help=f"maps per suite at sizes >= {LARGE} (default --maps)")
    ap.add_argument("--sizes", type=int, nargs="*", default=None, help="only these sizes")
    ap.add_argument("--search", action="store_true", help="also run latent search in closed loop")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help=f"report file (default {OUT.name}; with --time-gate {TIME_OUT.name})")
    ap.add_argument("--time-gate", type=int, default=None, metavar="K",
                    help="only time closed-loop gate decisions, K per map (see the module docstring)")
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny untrained model, 2 maps, sizes 3 and 10")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.quick:
        from rss_world.world_model import WorldModel, WorldModelConfig

        tmp = tempfile.mkdtemp()
        args.checkpoint = str(save_model(Path(tmp) / "tiny", WorldModel(WorldModelConfig(dim=32, heads=2))))
        args.maps, args.sizes, args.out = 2, [10] if args.time_gate else [3, 10], str(Path(tmp) / "scale.md")
    text = time_gate(args) if args.time_gate else run(args)
    atomic_write_text(args.out or (TIME_OUT if args.time_gate else OUT), text)
    print(text)


if __name__ == "__main__":
    main()

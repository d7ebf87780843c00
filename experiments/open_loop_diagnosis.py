"""Why open-loop gate plans fail: the first place where an imagined rollout leaves the real one.

For each map it makes one open-loop plan with the gate planner (the paper's mechanism, our value-iteration gate),
plays it blind in the real env, and sorts the episode into:

* ``ok``: it reaches the goal and every action is on a shortest path (exact match);
* ``gate wrong on a right frame``: the first off-path action comes while every imagined frame so far still shows
  the real one (the latent drifted where the pixels did not, or the gate erred);
* ``frame off at step k``: the imagined frame ``k`` differs from the real one first (a dynamics error; at step 0
  the reconstruction of the start frame is off);
* ``other``: neither (for example the plan stopped early on a right frame).

It runs both settings of ``GatePlannerConfig.reencode`` on the same maps. The real grid is read by the evaluation's
map replay only; the planner sees the start frame. Default split: ``val`` (the tuning split; the test suites are
for the final tables).

    python experiments/open_loop_diagnosis.py                      # val, sizes 3-8, 100 maps each
    python experiments/open_loop_diagnosis.py --sizes 6 --maps 20  # a quick look
"""

from __future__ import annotations

import argparse
import collections
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

from rss_world.benchmark import load_checkpoint
from rss_world.envs.maps import load_default_suite
from rss_world.io import atomic_write_text
from rss_world.planners import make_planner, same_frame
from rss_world.protocols import EpisodeTrace, run_planner, select_maps

OUT = Path(__file__).resolve().parent / "results" / "open_loop_diagnosis.md"
KINDS = ("ok", "gate wrong on a right frame", *(f"frame off at step {k}" for k in range(5)), "frame off at step 5+",
         "other")


def classify(trace: EpisodeTrace, cell_px: int) -> str:
    """One of :data:`KINDS` for an open-loop episode."""
    if trace.record.reached_goal and all(trace.on_optimal):
        return "ok"
    first_off = next((i for i, (r, im) in enumerate(zip(trace.real_frames, trace.imagined_frames, strict=False))
                      if not same_frame(r, im, cell_px)), None)
    first_wrong = next((i for i, ok in enumerate(trace.on_optimal) if not ok), None)
    if first_wrong is not None and (first_off is None or first_wrong < first_off):
        return "gate wrong on a right frame"  # action i leaves frame i, which was still right
    if first_off is not None:
        return f"frame off at step {first_off}" if first_off < 5 else "frame off at step 5+"
    return "other"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=None, help="world-model checkpoint (default: the shipped one)")
    ap.add_argument("--split", default="val", help="map suite (default val)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[3, 4, 5, 6, 7, 8])
    ap.add_argument("--maps", type=int, default=100, help="distinct maps per size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    if args.maps < 1:
        ap.error(f"--maps must be >= 1, got {args.maps}")
    torch.set_num_threads(1)
    model = load_checkpoint(args.checkpoint)
    counts: dict[tuple[bool, int], collections.Counter] = {}
    t0 = time.time()
    for size in args.sizes:
        maps = select_maps(load_default_suite(args.split, [size]), [size], args.maps, args.seed)
        for reencode in (True, False):
            planner = make_planner("gate", model, reencode=reencode)
            traces = run_planner(planner, maps, "open", model.cfg.cell_px, args.seed)
            counts[reencode, size] = collections.Counter(classify(t, model.cfg.cell_px) for t in traces)
            print(size, "re-encode" if reencode else "pure latent", dict(counts[reencode, size]), flush=True)
    cmd = f"python experiments/{Path(__file__).name} {shlex.join(sys.argv[1:] if argv is None else argv)}".strip()
    lines = ["# Open-loop gate plans: where they leave the real rollout", "", f"Command: `{cmd}`  ",
             f"Machine: {platform.machine()}, torch {torch.__version__}, 1 thread; checkpoint "
             f"`{args.checkpoint or 'the shipped model'}`; split `{args.split}`, {args.maps} distinct maps per size "
             f"(one episode each), seed {args.seed}; {time.time() - t0:.0f} s.", "",
             "Gate planner = the paper's mechanism (the gate picks the expert, i.e. the action, at every latent step) "
             "with our value-iteration gate. Each cell counts episodes.", "",
             "| planner setting | size | " + " | ".join(KINDS) + " |", "|---|---|" + "---|" * len(KINDS)]
    for reencode in (True, False):
        name = "re-encode each step (default)" if reencode else "pure latent recursion"
        total: collections.Counter = collections.Counter()
        for size in args.sizes:
            c = counts[reencode, size]
            total += c
            lines.append(f"| {name} | {size} | " + " | ".join(str(c[k]) for k in KINDS) + " |")
        lines.append(f"| {name} | all | " + " | ".join(str(total[k]) for k in KINDS) + " |")
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

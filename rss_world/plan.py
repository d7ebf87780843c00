"""``python -m rss_world.plan --env frozenlake``: plan in latent space with the shipped model and act in the real env.

Examples::

    python -m rss_world.plan --env frozenlake                          # a few test maps, table + GIF
    python -m rss_world.plan --env frozenlake --planner gate --protocol closed --sizes 3-8 --episodes 60 \\
        --json outputs/plan/result.json --video outputs/plan/run.mp4
    python -m rss_world.plan --env frozenlake --maps my_maps.jsonl --checkpoint outputs/train/frozenlake/best

Bad input (unknown env, unreadable map file, missing checkpoint, bad option) prints one line on stderr and
exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

ENVS = ("frozenlake",)
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "frozenlake"
DEFAULT_VIDEO = "outputs/plan/frozenlake.gif"
COLUMNS = (("success_rate", "success"), ("exact_match", "EM"), ("progress_rate", "PR"),
           ("invalid_action_rate", "invalid"), ("hole_rate", "hole"), ("steps_over_optimal", "steps/opt"),
           ("ms_per_decision", "ms/decision"))


class UsageError(Exception):
    """Bad input from the command line: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump
        raise UsageError(message)


def parse_sizes(text: str) -> list[int]:
    """``"3-8"``, ``"4"`` or ``"3,5,7"`` -> sorted sizes (each 2-16)."""
    sizes: set[int] = set()
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            a, b = int(lo), int(hi or lo)
            if a > b:
                raise UsageError(f"--sizes range {part!r} is empty")
            sizes.update(range(a, b + 1))
    except ValueError as err:
        raise UsageError(f"--sizes must look like 3-8, 5 or 3,5,7; got {text!r}") from err
    if not sizes or min(sizes) < 2 or max(sizes) > 16:
        raise UsageError(f"--sizes must be within 2-16, got {text!r}")
    return sorted(sizes)


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="python -m rss_world.plan", description=__doc__,
                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", default="frozenlake", help=f"environment: {', '.join(ENVS)}")
    ap.add_argument("--maps", default=None, help="JSONL map suite (default: the shipped test split)")
    ap.add_argument("--sizes", default="3-8", help="map sizes, e.g. 3-8 or 3,5 (default 3-8)")
    ap.add_argument("--episodes", type=int, default=6, help="episodes, spread evenly over the sizes (default 6)")
    ap.add_argument("--planner", default="search", choices=("gate", "search"), help="gate (the paper) or search")
    ap.add_argument("--protocol", default="closed", choices=("open", "closed"),
                    help="closed loop (MPC: re-encode and re-plan after every action; default) or open loop")
    ap.add_argument("--checkpoint", default=None, help="checkpoint directory (default: the shipped model)")
    ap.add_argument("--seed", type=int, default=0, help="map selection and env seed")
    ap.add_argument("--video", default=DEFAULT_VIDEO, help=f"GIF or MP4 of the episodes (default {DEFAULT_VIDEO})")
    ap.add_argument("--no-video", action="store_true", help="do not write a video")
    ap.add_argument("--video-episodes", type=int, default=3, help="episodes in the video (default 3)")
    ap.add_argument("--json", default=None, help="write the summary JSON here")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return ap


def _fmt(key: str, v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if key == "steps_over_optimal":
        return f"{v:.2f}"
    if key == "ms_per_decision":
        return f"{v:.1f}"
    return f"{100 * v:.1f}%"


def format_table(summary: dict, title: str = "") -> str:
    """A plain-text table of a :func:`rss_world.evaluation.summarize` result, one row per size and overall."""
    head = ["size", "episodes"] + [name for _, name in COLUMNS]
    rows = [[s, str(m["episodes"])] + [_fmt(k, m[k]) for k, _ in COLUMNS] for s, m in summary["per_size"].items()]
    rows.append(["all", str(summary["episodes"])] + [_fmt(k, summary[k]) for k, _ in COLUMNS])
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    line = lambda r: "  ".join(c.rjust(w) for c, w in zip(r, widths))  # noqa: E731
    out = ([title] if title else []) + [line(head), "  ".join("-" * w for w in widths)] + [line(r) for r in rows]
    return "\n".join(out)


def _check(args: argparse.Namespace) -> list[int]:
    if args.env not in ENVS:
        raise UsageError(f"unknown env {args.env!r}; available: {', '.join(ENVS)}")
    if args.episodes < 1:
        raise UsageError(f"--episodes must be >= 1, got {args.episodes}")
    if args.threads < 1 or args.video_episodes < 0:
        raise UsageError("--threads must be >= 1 and --video-episodes >= 0")
    if not args.no_video and Path(args.video).suffix.lower() not in (".gif", ".mp4"):
        raise UsageError(f"--video must end in .gif or .mp4, got {args.video!r}")
    if args.maps is not None and not Path(args.maps).is_file():
        raise UsageError(f"map file {args.maps} does not exist")
    return parse_sizes(args.sizes)


def run(args: argparse.Namespace) -> dict:
    """Run the command; raise :class:`UsageError` on bad input. Returns the summary dict."""
    sizes = _check(args)
    import torch

    from rss_world.checkpoint import load_model
    from rss_world.evaluation import load_maps, planner_stats, run_planner, select_maps, summarize
    from rss_world.planning import make_planner

    ckpt = Path(args.checkpoint) if args.checkpoint else DEFAULT_CHECKPOINT
    try:
        model = load_model(ckpt)
    except (FileNotFoundError, ValueError) as err:
        hint = "" if args.checkpoint else " (the shipped model could not be loaded: pass --checkpoint DIR)"
        raise UsageError(f"cannot load checkpoint: {err}{hint}") from err
    try:
        maps = select_maps(load_maps(args.maps), sizes, args.episodes, args.seed)
    except (OSError, ValueError) as err:
        raise UsageError(f"bad map file: {err}" if args.maps else str(err)) from err
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    planner = make_planner(args.planner, model)
    label = f"{args.planner} planner, {args.protocol} loop"
    traces = run_planner(planner, maps, args.protocol, cell_px=model.cfg.cell_px, seed=args.seed,
                         progress=False if args.no_progress else label)
    summary = summarize(traces)
    print(format_table(summary, f"FrozenLake, {label}, checkpoint {ckpt}"))
    st = planner_stats(traces)
    print(f"plans: {st['expansions']:.1f} expansions each, {100 * st['halted_early']:.0f}% halted early, "
          f"{st['steps_saved']:.1f} latent steps saved on average")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=1))
        print(f"summary: {args.json}")
    if not args.no_video and args.video_episodes > 0:
        from rss_world.video import write_video

        n = write_video(traces[: args.video_episodes], args.video)
        print(f"video: {args.video} ({n} frames: real | imagined | difference)")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 on bad input)."""
    parser = build_parser()
    try:
        run(parser.parse_args(argv))
    except UsageError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

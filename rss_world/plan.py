"""``python -m rss_world.plan --env frozenlake``: plan in latent space with the shipped model and act in the real env.

Examples::

    python -m rss_world.plan --env frozenlake                          # one test map per size 3-8, table + GIF
    python -m rss_world.plan --maps my_maps.jsonl                      # every map of your file, once
    python -m rss_world.plan --env frozenlake --planner gate --protocol closed --sizes 3-8 --episodes 60 \\
        --json outputs/plan/result.json --video outputs/plan/run.mp4
    python -m rss_world.plan --env frozenlake --maps my_maps.jsonl --checkpoint outputs/train/frozenlake/checkpoint

Bad input (unknown env, unreadable map file, missing checkpoint, bad option) prints one line on stderr and
exits with status 2. The defaults are those of :class:`rss_world.plan_runs.PlanConfig`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rss_world.benchmark import ENVS
from rss_world.cli import ArgumentParser, run_command
from rss_world.plan_runs import DEMO_EPISODES, DEMO_SIZES, PlanConfig, run_plan
from rss_world.planners import PLANNERS
from rss_world.protocols import PROTOCOLS


def build_parser() -> argparse.ArgumentParser:
    """The command's options; every default is read from :class:`PlanConfig`."""
    d = PlanConfig()
    ap = ArgumentParser(prog="python -m rss_world.plan", description=__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", default=d.env, help=f"environment: {', '.join(ENVS)}")
    ap.add_argument("--maps", default=d.maps, help="JSONL map suite (default: the shipped test split)")
    ap.add_argument("--sizes", default=d.sizes,
                    help=f"play only maps of these sizes, e.g. 3-8 or 3,5 (default: every size of --maps, or "
                         f"{DEMO_SIZES} of the test split)")
    ap.add_argument("--episodes", type=int, default=d.episodes,
                    help=f"distinct maps to play, spread evenly over the sizes (default: every map of --maps, or "
                         f"{DEMO_EPISODES} of the test split)")
    ap.add_argument("--planner", default=d.planner, choices=PLANNERS,
                    help=f"gate (one expert per latent step) or search (default {d.planner})")
    ap.add_argument("--protocol", default=d.protocol, choices=PROTOCOLS,
                    help=f"closed loop (MPC: re-encode and re-plan after every action) or open loop "
                         f"(default {d.protocol})")
    ap.add_argument("--checkpoint", default=d.checkpoint, help="checkpoint directory (default: the shipped model)")
    ap.add_argument("--seed", type=int, default=d.seed, help=f"map selection and env seed (default {d.seed})")
    ap.add_argument("--video", default=d.video,
                    help=f"GIF or MP4 of the longest episodes, and a filmstrip PNG beside it (default {d.video})")
    ap.add_argument("--no-video", dest="video", action="store_const", const=None, help="do not write a video")
    ap.add_argument("--video-episodes", type=int, default=d.video_episodes,
                    help=f"episodes in the video (default {d.video_episodes})")
    ap.add_argument("--json", default=d.json, help="write the summary JSON here")
    ap.add_argument("--threads", type=int, default=d.threads, help=f"torch CPU threads (default {d.threads})")
    ap.add_argument("--no-progress", dest="progress", action="store_false", default=d.progress,
                    help="hide the progress bar")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 on bad input)."""
    return run_command(build_parser(), argv, lambda args: run_plan(PlanConfig(**vars(args))))


if __name__ == "__main__":
    sys.exit(main())

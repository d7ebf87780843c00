"""``python -m rss_world.evaluate [key=value ...]``: the full planning benchmark.

Runs every planner (gate, search) under every protocol (open, closed loop) on the chosen split, plus the
baselines (random, greedy-Manhattan, oracle, PPO with a stated budget of env steps), and writes ``results.json``
and ``results.md`` under ``out``. The settings and their defaults are :class:`rss_world.benchmark.EvaluateConfig`;
Hydra overrides work, e.g.::

    python -m rss_world.evaluate maps_per_size=20 baselines=[oracle] planners.search.max_expansions=200
    python -m rss_world.evaluate checkpoint=outputs/train/frozenlake/checkpoint ppo.steps=100000 video_episodes=2

Bad input (unknown key, bad value, missing checkpoint) prints one line on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rss_world.benchmark import run_evaluate
from rss_world.cli import ArgumentParser, run_command


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 on bad input)."""
    ap = ArgumentParser(prog="python -m rss_world.evaluate", description=__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. maps_per_size=10 baselines=[oracle]")
    return run_command(ap, argv, lambda args: run_evaluate(args.overrides))


if __name__ == "__main__":
    sys.exit(main())

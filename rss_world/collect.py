"""``python -m rss_world.collect --env frozenlake --out DIR [options]``: collect rollout shards (.npz).

Example::

    python -m rss_world.collect --env frozenlake --suite train --episodes 2000 --out outputs/data/fl_train --resume

Every default is the shipped recipe's training split (:class:`rss_world.rollouts.CollectConfig`); the shard format
and the behaviour policy are described in :mod:`rss_world.rollouts`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rss_world.cli import ArgumentParser, run_command
from rss_world.envs.maps import SUITES
from rss_world.rollouts import CollectConfig, collect


def parser() -> argparse.ArgumentParser:
    d = CollectConfig()
    ap = ArgumentParser(prog="python -m rss_world.collect", description=__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", required=True, choices=["frozenlake"], help="environment family")
    ap.add_argument("--out", required=True, help="directory for the shards and their manifest.json")
    ap.add_argument("--suite", default=d.suite, help=f"a shipped suite ({', '.join(SUITES)}) or a .jsonl path")
    ap.add_argument("--episodes", type=int, default=d.episodes, help=f"episodes to collect (default {d.episodes})")
    ap.add_argument("--seed", type=int, default=d.seed,
                    help=f"seeds each episode's map, kind and actions (default {d.seed})")
    ap.add_argument("--eps", type=float, default=d.eps, help="random-action probability in ε-oracle episodes")
    ap.add_argument("--random-frac", type=float, default=d.random_frac, help="fraction of fully random episodes")
    ap.add_argument("--bump-frac", type=float, default=d.bump_frac,
                    help="fraction of episodes with bursts of presses against the grid's edge")
    ap.add_argument("--shard-size", type=int, default=d.shard_size, help="episodes per shard file")
    ap.add_argument("--cell-px", type=int, default=d.cell_px, help="pixels per grid cell")
    ap.add_argument("--horizon", type=int, default=d.horizon, help="steps per episode (default 4 * size)")
    ap.add_argument("--sizes", type=int, nargs="+", default=d.sizes, help="grid sizes to keep (default: all)")
    ap.add_argument("--resume", action="store_true", help="keep existing shards and write the missing ones")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    return ap


def _collect(args: argparse.Namespace) -> None:
    cfg = CollectConfig(suite=args.suite, episodes=args.episodes, seed=args.seed, eps=args.eps,
                        random_frac=args.random_frac, bump_frac=args.bump_frac, shard_size=args.shard_size,
                        cell_px=args.cell_px, horizon=args.horizon, sizes=args.sizes)
    paths = collect(args.out, cfg, resume=args.resume, progress=not args.no_progress)
    print(f"{len(paths)} shards in {args.out}")


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 on bad input)."""
    return run_command(parser(), argv, _collect)


if __name__ == "__main__":
    sys.exit(main())

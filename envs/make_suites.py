"""``python -m rss_world.envs.make_suites``: write the shipped FrozenLake map suites (``envs/suites/<name>.jsonl``).

Every shipped suite is rewritten, byte for byte, by one command::

    python -m rss_world.envs.make_suites --out envs/suites --family all

The recipes (families) are described in :mod:`rss_world.envs.suite_families`; the default family, ``default``,
is the command the first suites were made with.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rss_world.envs.maps import DEFAULT_P_HOLE, DEFAULT_SEED, default_suite_path, save_suite
from rss_world.envs.suite_families import FAMILIES, Family, build_family


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: write the suites of one family (or all of them); returns the exit status."""
    ap = argparse.ArgumentParser(description="Write FrozenLake map suites (envs/suites/<name>.jsonl)")
    ap.add_argument("--out", default=str(default_suite_path("train").parent))
    ap.add_argument("--family", choices=[*FAMILIES, "all"], default="default",
                    help="which recipe to write (see the module docstring); 'all' writes every shipped suite")
    ap.add_argument("--sizes", type=int, nargs="+", help="override the family's sizes")
    ap.add_argument("--train", type=int, help="override the maps per size of the train split")
    ap.add_argument("--val", type=int, help="override the maps per size of the val split")
    ap.add_argument("--test", type=int, help="override the maps per size of the test split")
    ap.add_argument("--p-hole", type=float, default=DEFAULT_P_HOLE)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = ap.parse_args(argv)
    names = list(FAMILIES) if args.family == "all" else [args.family]
    for name in names:
        fam = FAMILIES[name]
        quotas = {s: q if getattr(args, s) is None else getattr(args, s) for s, q in fam.quotas.items()}
        fam = Family(fam.suffix, tuple(args.sizes or fam.sizes), quotas, fam.long_path)
        for fname, maps in build_family(fam, args.p_hole, args.seed).items():
            path = Path(args.out) / fname
            save_suite(path, maps)
            print(f"{path}: {len(maps)} maps")
    return 0


if __name__ == "__main__":
    sys.exit(main())

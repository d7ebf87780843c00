"""Write the default FrozenLake map suites.

The shipped suites were made with::

    python -m rss_world.envs.make_suites --out envs/suites

(6 sizes 3-8; per size 1000 train, 100 val, 100 test maps; hole probability 0.2; seed 0).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from rss_world.envs.maps import (
    DEFAULT_P_HOLE,
    DEFAULT_QUOTAS,
    DEFAULT_SEED,
    DEFAULT_SIZES,
    default_suite_path,
    make_suites,
    save_suite,
)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: write the default suites."""
    ap = argparse.ArgumentParser(description="Write FrozenLake map suites {train,val,test}.jsonl")
    ap.add_argument("--out", default=str(default_suite_path("train").parent))
    ap.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES))
    ap.add_argument("--train", type=int, default=DEFAULT_QUOTAS["train"], help="maps per size")
    ap.add_argument("--val", type=int, default=DEFAULT_QUOTAS["val"], help="maps per size")
    ap.add_argument("--test", type=int, default=DEFAULT_QUOTAS["test"], help="maps per size")
    ap.add_argument("--p-hole", type=float, default=DEFAULT_P_HOLE)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = ap.parse_args(argv)
    quotas = {"train": args.train, "val": args.val, "test": args.test}
    suites = make_suites(args.sizes, quotas, args.p_hole, args.seed)
    for split, maps in suites.items():
        path = Path(args.out) / f"{split}.jsonl"
        save_suite(path, maps)
        print(f"{path}: {len(maps)} maps")


if __name__ == "__main__":
    main()

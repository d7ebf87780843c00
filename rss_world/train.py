"""``python -m rss_world.train (--env frozenlake [--resume] | --variant dit|sd3) [key=value ...]``.

Trains the FrozenLake world model (``configs/train.yaml``) or RSR adapters on a DiT / SD3 transformer
(``configs/train_variant.yaml``); the ``key=value`` arguments are Hydra overrides of that config.

Examples::

    python -m rss_world.train --env frozenlake                       # the shipped model's recipe
    python -m rss_world.train --env frozenlake model=tiny train.steps=50 out=outputs/try
    python -m rss_world.train --variant dit steps=200 lr=2e-3         # RSR fine-tuning of a (tiny or local) DiT
    # two CPU processes (gloo); on a CPU-only machine accelerate needs --multi_gpu, not --cpu, to spawn them
    accelerate launch --multi_gpu --num_processes 2 -m rss_world.train --env frozenlake train.steps=100
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rss_world.cli import ArgumentParser, run_command

ENVS = ("frozenlake",)
VARIANTS = ("dit", "sd3")


def parser() -> argparse.ArgumentParser:
    ap = ArgumentParser(prog="python -m rss_world.train", description=__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--env", choices=ENVS, help="train the world model of this environment")
    what.add_argument("--variant", choices=VARIANTS, help="fine-tune RSR adapters on this diffusers transformer")
    ap.add_argument("--resume", action="store_true", help="--env: continue from <out>/checkpoint exactly")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. train.steps=100 model=tiny")
    return ap


def _train(args: argparse.Namespace) -> None:
    if args.variant:
        if args.resume:
            raise ValueError("--resume applies to --env training only")
        from rss_world.variants.config import compose_variant
        from rss_world.variants.training import train_variant

        result = train_variant(compose_variant(args.variant, args.overrides))
        if result["main_process"]:
            print(f"adapters saved to {result['output_dir']}/adapters", flush=True)
        return
    from rss_world.training.config import compose_recipe
    from rss_world.training.recipe import run_frozenlake

    run_frozenlake(compose_recipe([*args.overrides, *(["resume=true"] if args.resume else [])]))


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 on bad input)."""
    return run_command(parser(), argv, _train)


if __name__ == "__main__":
    sys.exit(main())

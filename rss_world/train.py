"""``python -m rss_world.train (--env frozenlake [--resume] | --variant dit|sd3) [key=value ...]``.

Trains the FrozenLake world model (``configs/train.yaml``) or RSR adapters on a DiT / SD3 transformer
(``configs/train_variant.yaml``); the ``key=value`` arguments are Hydra overrides of that config. ``--resume``
continues ``<out>/checkpoint`` exactly and needs the same settings as the run that wrote it. Ctrl-C stops with
one line that names the last checkpoint (exit status 130); bad input gives one line and exit status 2.

Examples::

    python -m rss_world.train --env frozenlake                       # the shipped model's recipe (hours)
    # a tiny run in seconds: a tiny model, a little data of 3x3 maps, few steps of both stages
    python -m rss_world.train --env frozenlake model=tiny train.steps=20 train.gate_steps=5 train.val_windows=4 \\
        data.train_episodes=8 data.val_episodes=2 'data.sizes=[3]' out=outputs/try \\
        data.train_dir=outputs/try/data/train data.val_dir=outputs/try/data/val
    python -m rss_world.train --env frozenlake --resume model=tiny ...   # the same settings: continue outputs/try
    python -m rss_world.train --variant dit steps=200 lr=2e-3         # RSR fine-tuning of a (tiny or local) DiT
    # two CPU processes (gloo); on a CPU-only machine accelerate needs --multi_gpu, not --cpu, to spawn them
    accelerate launch --multi_gpu --num_processes 2 -m rss_world.train --env frozenlake train.steps=100
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence

from rss_world.cli import ArgumentParser, run_command

ENVS = ("frozenlake",)
VARIANTS = ("dit", "sd3")
PROG = "python -m rss_world.train"


class _Parser(ArgumentParser):
    """Options may come anywhere among the overrides (``train.steps=5 --resume model=tiny``)."""

    def parse_args(self, args=None, namespace=None):
        return self.parse_intermixed_args(args, namespace)


def parser() -> argparse.ArgumentParser:
    ap = _Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--env", choices=ENVS, help="train the world model of this environment")
    what.add_argument("--variant", choices=VARIANTS, help="fine-tune RSR adapters on this diffusers transformer")
    ap.add_argument("--resume", action="store_true",
                    help="--env: continue from <out>/checkpoint exactly (with the settings of the run that wrote it)")
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

    try:
        run_frozenlake(compose_recipe([*args.overrides, *(["resume=true"] if args.resume else [])]))
    except KeyboardInterrupt as stop:  # Ctrl-C: say how to go on (training.loop.Interrupted knows where it stopped)
        if getattr(stop, "checkpoint", None) is not None:
            stop.args = (f"{stop}: {PROG} {shlex.join(['--env', args.env, '--resume', *args.overrides])}",)
        raise


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 on bad input, 130 on Ctrl-C)."""
    try:
        return run_command(parser(), argv, _train)
    except KeyboardInterrupt as stop:
        print(f"{PROG}: interrupted" + (f": {stop}" if str(stop) else ""), file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

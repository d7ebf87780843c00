"""``python -m rss_world.train --env frozenlake [--resume] [hydra overrides]``.

Examples::

    python -m rss_world.train --env frozenlake                       # the shipped model's recipe
    python -m rss_world.train --env frozenlake model=tiny train.steps=50 out=outputs/try
    # two CPU processes (gloo); on a CPU-only machine accelerate needs --multi_gpu, not --cpu, to spawn them
    accelerate launch --multi_gpu --num_processes 2 -m rss_world.train --env frozenlake train.steps=100
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

ENVS = ("frozenlake",)


def compose(overrides: Sequence[str], config_name: str = "train"):
    """Compose the Hydra config from the installed ``rss_world.configs`` package (no working-dir change)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    with initialize_config_module(config_module="rss_world.configs", version_base=None):
        return hydra_compose(config_name=config_name, overrides=list(overrides))


def frame_check():
    """The evaluation-only frame checker: does the parser read the decoded frame as the true grid?"""
    from rss_world.envs.parser import CODE_LETTERS, parse_frame

    def check(frame, tiles, cell) -> bool:
        desc = tuple("".join(CODE_LETTERS[int(v)] for v in row) for row in tiles)
        return parse_frame(frame).equals_grid(desc, cell)

    return check


def ensure_data(directory: str, suite: str, episodes: int, seed: int, sizes, **kw) -> None:
    """Collect the rollouts the recipe asks for into ``directory``, or complete them there. A directory that holds a
    collection made with other settings raises ``ValueError`` (its manifest differs) rather than being used."""
    from rss_world.collect import collect

    collect(directory, suite=suite, episodes=episodes, seed=seed, sizes=sizes, resume=True, **kw)


def ensure_recipe_data(data) -> None:
    """The recipe's rollouts (the ``data`` config group): the train split with its behaviour mix, and the val split
    collected ε-oracle only (ε = 0.1), so validation windows are the same whatever the training mix."""
    sizes = list(data.sizes)
    ensure_data(data.train_dir, "train", data.train_episodes, data.seed, sizes, eps=data.eps,
                random_frac=data.random_frac, bump_frac=data.bump_frac)
    ensure_data(data.val_dir, "val", data.val_episodes, data.seed + 1, sizes, eps=0.1, random_frac=0.0)


def run_frozenlake(cfg) -> dict:
    import torch
    from omegaconf import OmegaConf

    from rss_world.data import load_shards
    from rss_world.training import TrainConfig, train
    from rss_world.world_model import WorldModel, WorldModelConfig

    torch.set_num_threads(int(cfg.threads))
    mcfg = WorldModelConfig(**cfg.model)
    tcfg = TrainConfig(**cfg.train)
    tcfg.validate()
    sizes = list(cfg.data.sizes)
    ensure_recipe_data(cfg.data)
    train_data = load_shards(cfg.data.train_dir, sizes)
    val_data = load_shards(cfg.data.val_dir, sizes)
    model = WorldModel(mcfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_config.yaml").write_text(OmegaConf.to_yaml(cfg))  # the resolved recipe, next to the log
    return train(model, train_data, val_data, tcfg, cfg.out, check=frame_check(), resume=bool(cfg.resume))


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m rss_world.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", default=None, help=f"environment to model: {', '.join(ENVS)}")
    ap.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint exactly")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. train.steps=100 model=tiny variant=dit")
    args = ap.parse_args(argv)
    variant = [o for o in args.overrides if o.startswith("variant=")]
    try:
        if variant:
            from rss_world.variants.training import main as variant_main

            variant_main(compose(args.overrides, "train_variant"))
            return 0
        if args.env not in ENVS:
            raise ValueError(f"unknown --env {args.env!r}; choose one of {', '.join(ENVS)} (or pass variant=dit|sd3)")
        overrides = list(args.overrides) + (["resume=true"] if args.resume else [])
        run_frozenlake(compose(overrides))
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

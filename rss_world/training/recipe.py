"""The FrozenLake world model's recipe end to end: collect the rollouts when missing, build the model, train both
stages (what ``python -m rss_world.train --env frozenlake`` runs)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
from omegaconf import OmegaConf

from rss_world.checkpoint import TRAIN_STATE
from rss_world.data import load_shards
from rss_world.io import atomic_write_text
from rss_world.rollouts import ensure_recipe_data
from rss_world.world_model import WorldModel

from .config import TrainRecipe
from .loop import CHECKPOINT, make_accelerator
from .world_model import FrameCheck, train


def frame_check() -> FrameCheck:
    """The evaluation-only frame checker: does the parser read the decoded frame as the true grid?"""
    from rss_world.envs.parser import CODE_LETTERS, parse_frame

    def check(frame, tiles, cell) -> bool:
        desc = tuple("".join(CODE_LETTERS[int(v)] for v in row) for row in tiles)
        return parse_frame(frame).equals_grid(desc, cell)

    return check


def run_frozenlake(cfg) -> dict:
    """Train the world model as the recipe ``cfg`` says (a :class:`TrainRecipe`, or its composed Hydra config).

    The data are collected first where missing (the main process first, the others then find them), the model's
    initial weights are drawn from ``train.seed``, and the resolved recipe is written as ``<out>/train_config.yaml``
    next to the log.

    Returns:
        The last validation metrics.

    Raises:
        ValueError: bad settings, or ``resume`` without a checkpoint to continue from (both before any work).
    """
    recipe: TrainRecipe = cfg if isinstance(cfg, TrainRecipe) else OmegaConf.to_object(cfg)
    recipe.train.validate()
    out = Path(recipe.out)
    if recipe.resume and not (out / CHECKPOINT / TRAIN_STATE).exists():
        raise ValueError(f"nothing to resume: {out / CHECKPOINT} holds no {TRAIN_STATE}")
    torch.set_num_threads(recipe.threads)
    trackers = {"log_with": recipe.log_with, "project_dir": recipe.out} if recipe.log_with else {}
    acc = make_accelerator(**trackers)
    with acc.main_process_first():
        ensure_recipe_data(recipe.data)
    sizes = list(recipe.data.sizes)
    train_data = load_shards(recipe.data.train_dir, sizes)
    val_data = load_shards(recipe.data.val_dir, sizes)
    torch.manual_seed(recipe.train.seed)  # the initial weights, so that one recipe gives one model
    model = WorldModel(recipe.model)
    if acc.is_main_process:
        atomic_write_text(out / "train_config.yaml", OmegaConf.to_yaml(OmegaConf.structured(recipe)))
    if recipe.log_with:
        acc.init_trackers("world_model", config=asdict(recipe.train))
    last_val = train(model, train_data, val_data, recipe.train, out, check=frame_check(), resume=recipe.resume,
                     accelerator=acc)
    acc.end_training()
    return last_val

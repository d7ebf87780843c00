"""The FrozenLake world model's recipe end to end: collect the rollouts when missing, build the model, train both
stages (what ``python -m rss_world.train --env frozenlake`` runs)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from rss_world.checkpoint import TRAIN_STATE, load_train_state, read_config
from rss_world.data import load_shards
from rss_world.io import atomic_write_text
from rss_world.rollouts import ensure_recipe_data
from rss_world.world_model import WorldModel

from .config import TrainRecipe
from .loop import CHECKPOINT, Interrupted, make_accelerator
from .world_model import train

# What a resume may change: where the run lives (a moved folder), and how fast it runs or where else it reports
# (``threads`` can change float sums in their last bits; ``log_with`` adds trackers, the JSONL log is the same).
# Every other setting (model, train, data, env) decides the numbers of the run, so it must match the checkpoint's.
RESUME_MAY_DIFFER = ("resume", "out", "threads", "log_with")


def recorded_recipe(recipe: TrainRecipe) -> dict[str, Any]:
    """The settings a checkpoint records and a resume must repeat: the recipe less :data:`RESUME_MAY_DIFFER`,
    as JSON values."""
    return json.loads(json.dumps({k: v for k, v in asdict(recipe).items() if k not in RESUME_MAY_DIFFER}))


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tree.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def check_resume(recipe: TrainRecipe) -> int:
    """Check that ``recipe`` can resume ``<out>/checkpoint``, reading nothing else and writing nothing.

    The recipe must equal the one the checkpoint was trained with in every setting but :data:`RESUME_MAY_DIFFER`:
    a resume continues that run exactly, and another model, data or schedule (``train.steps`` included: the
    learning rate decays over it) would silently make a different run than either recipe describes.

    Returns:
        The checkpoint's step.

    Raises:
        ValueError: there is no checkpoint to resume, or the recipe differs (one line naming every differing key).
    """
    ckpt = Path(recipe.out) / CHECKPOINT
    if not (ckpt / TRAIN_STATE).exists():
        raise ValueError(f"nothing to resume: {ckpt} holds no {TRAIN_STATE}")
    state = load_train_state(ckpt)
    given = _flat(recorded_recipe(recipe))
    saved = state.get("meta", {}).get("recipe")
    if saved is None:  # a train state from before the recipe was recorded: its config.json has model and train
        cfg = read_config(ckpt)
        saved = {"model": cfg["model"], "train": cfg["meta"].get("train", {})}
        given = {k: v for k, v in given.items() if k.split(".")[0] in saved}
    saved = _flat(saved)
    missing = "(unset)"
    diff = [f"{k} (checkpoint {saved.get(k, missing)!r}, given {given.get(k, missing)!r})"
            for k in sorted(saved.keys() | given.keys()) if saved.get(k, missing) != given.get(k, missing)]
    if diff:
        raise ValueError(f"--resume needs the recipe of the checkpoint in {ckpt} (step {state['step']}); "
                         f"{len(diff)} setting(s) differ: {', '.join(diff)}; give the same settings as that run "
                         f"(its train_config.yaml), or train afresh without --resume in another out folder")
    return int(state["step"])


def _interrupted(stop: KeyboardInterrupt, recipe: TrainRecipe) -> Interrupted:
    """``stop`` (from either stage) told as what ``--resume`` will continue from."""
    ckpt, steps = Path(recipe.out) / CHECKPOINT, recipe.train.steps
    if not isinstance(stop, Interrupted):  # between the loops (their set-up, between the stages): ask the disk
        if not (ckpt / TRAIN_STATE).exists():
            return Interrupted(None, 0, steps, None, None, "stopped before the first checkpoint; nothing to resume")
        step = int(load_train_state(ckpt)["step"])
        return Interrupted(None, step, steps, ckpt, step, (
            f"stopped; the last checkpoint is {ckpt} (step {step}); --resume continues from it"))
    if stop.stage == "gate":  # stage 2 keeps no train state of its own; stage 1's is complete
        return Interrupted(stop.stage, stop.step, stop.steps, ckpt, steps, (
            f"stopped in stage 2 (gate) after gate step {stop.step} of {stop.steps}; the last checkpoint is {ckpt} "
            f"(step {steps}, stage 1 complete); --resume trains stage 2 again from its start"))
    if stop.checkpoint is None:
        return Interrupted(stop.stage, stop.step, steps, None, None, (
            f"stopped after step {stop.step} of {steps}, before the first checkpoint (train.ckpt_every="
            f"{recipe.train.ckpt_every}); nothing to resume: run it again without --resume"))
    return Interrupted(stop.stage, stop.step, steps, ckpt, stop.checkpoint_step, (
        f"stopped after step {stop.step} of {steps}; the last checkpoint is {ckpt} (step {stop.checkpoint_step}); "
        f"--resume continues from it"))


def run_frozenlake(cfg) -> dict:
    """Train the world model as the recipe ``cfg`` says (a :class:`TrainRecipe`, or its composed Hydra config).

    The data are collected first where missing (the main process first, the others then find them), the model's
    initial weights are drawn from ``train.seed``, and the resolved recipe is written as ``<out>/train_config.yaml``
    next to the log (a resume keeps the file of the run it continues). Every checkpoint records the recipe too.

    Returns:
        The last validation metrics.

    Raises:
        ValueError: bad settings, ``resume`` without a checkpoint to continue from, or with a recipe other than the
            checkpoint's (:func:`check_resume`); all before anything is written.
        Interrupted: Ctrl-C in either stage; its message names the last checkpoint, its step, and what a resume does.
    """
    recipe: TrainRecipe = cfg if isinstance(cfg, TrainRecipe) else OmegaConf.to_object(cfg)
    recipe.train.validate()
    out = Path(recipe.out)
    if recipe.resume:
        check_resume(recipe)
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
    if acc.is_main_process and not recipe.resume:  # a resume keeps the file of the run it continues
        atomic_write_text(out / "train_config.yaml", OmegaConf.to_yaml(OmegaConf.structured(recipe)))
    if recipe.log_with:
        acc.init_trackers("world_model", config=asdict(recipe.train))
    try:
        last_val = train(model, train_data, val_data, recipe.train, out, resume=recipe.resume, accelerator=acc,
                         meta={"recipe": recorded_recipe(recipe), "train_sizes": sizes})
    except KeyboardInterrupt as stop:
        raise _interrupted(stop, recipe) from None
    acc.end_training()
    return last_val

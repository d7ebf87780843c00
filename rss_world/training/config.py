"""Settings of a world-model training run. The dataclass defaults are the shipped recipe; ``configs/train.yaml``
and any preset list only what differs, and Hydra checks every override against these types."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from rss_world.rollouts import DataConfig
from rss_world.world_model import WorldModelConfig

SCHEMA = "train_schema"  # the name ``configs/train.yaml`` builds on


@dataclass
class TrainConfig:
    """Optimisation settings of the two stages (the ``train`` settings); ``TrainConfig()`` is the shipped recipe."""

    steps: int = 4000
    batch: int = 16
    horizon: int = 8
    lr: float = 1.5e-3
    weight_decay: float = 0.0
    warmup: int = 100
    lr_min_ratio: float = 0.05  # cosine decay from lr to lr * lr_min_ratio over the run (1.0: constant)
    recon_weight: float = 10.0
    changed_weight: float = 20.0  # extra reconstruction weight on the cells that change between frames
    rare_weight: float = 5.0  # extra reconstruction weight on cells unlike the frame's most common cell
    status_weight: float = 1.0
    latent_weight: float = 0.0  # pull each imagined latent towards the encoding of the real frame it predicts
    balance_weight: float = 0.01
    grad_clip: float = 1.0
    val_every: int = 500
    val_windows: int = 48
    ckpt_every: int = 100
    seed: int = 0
    reencode: bool = False  # ablation "no recursion": decode, quantise and re-encode after every step
    gate_steps: int = 1000  # stage 2: steps of planning-gate training on the frozen world model's latents
    gate_batch: int = 16
    gate_lr: float = 3e-3

    def validate(self) -> None:
        """Raise ``ValueError`` naming every bad field."""
        bad = [k for k in ("steps", "batch", "horizon", "val_every", "ckpt_every", "val_windows")
               if getattr(self, k) < 1]
        if not (self.lr > 0 and math.isfinite(self.lr)):
            bad.append("lr")
        if not 0 <= self.lr_min_ratio <= 1:
            bad.append("lr_min_ratio")
        if self.warmup < 1:
            bad.append("warmup")
        if self.gate_steps < 0 or self.gate_batch < 1 or not self.gate_lr > 0:
            bad.append("gate_steps/gate_batch/gate_lr")
        if bad:
            raise ValueError(f"invalid training config values for {bad}: {self}")


@dataclass
class TrainRecipe:
    """Everything ``python -m rss_world.train --env frozenlake`` reads (``configs/train.yaml``).

    Attributes:
        model: the world model's sizes (the ``model`` preset group, ``configs/model/``).
        train: optimisation settings.
        data: the rollouts to train and validate on (collected when missing).
        env: the environment modelled.
        out: run directory: ``checkpoint/``, ``metrics.jsonl``, the resolved ``train_config.yaml``.
        resume: continue from ``<out>/checkpoint`` exactly.
        threads: torch CPU threads.
        log_with: accelerate trackers to log to as well, e.g. ``tensorboard`` (``None``: the JSONL log only).
    """

    model: WorldModelConfig = field(default_factory=WorldModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    env: str = "frozenlake"
    out: str = "outputs/train/frozenlake"
    resume: bool = False
    threads: int = 1
    log_with: str | None = None


def compose_recipe(overrides: Sequence[str] = ()):
    """``configs/train.yaml`` composed with Hydra ``key=value`` overrides, typed by :class:`TrainRecipe`.

    Raises:
        ValueError: an override names an unknown key or preset, has a wrong type, or does not parse.
    """
    from hydra.core.config_store import ConfigStore

    from rss_world.config import compose

    ConfigStore.instance().store(name=SCHEMA, node=TrainRecipe)
    return compose("train", overrides)

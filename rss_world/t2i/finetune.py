"""Fine-tuning a base model on a fixed compositional set, in the package's one training loop.

A :class:`Variant` says what trains: nothing (``base``), every transformer weight (``full``: continued training of
the base, the control for "any extra training helps"), or adapters (``rsr``) attached with
:func:`rss_world.variants.sd3.attach_rsr` on some of the transformer's blocks. At ``E = 1, T = 1`` the RSR core
builds no gate and is plain LoRA on the vision q/k/v (``tests/test_nn_core.py::test_e1_t1_equals_peft_lora``), so
LoRA rows are RSR rows with one expert and one step: the same code, no extra parameters.

The fine-tuning set is fixed (``FinetuneConfig.data_size`` renders of the train split, drawn with ``data_seed``),
the same for every variant and seed, as the paper fine-tunes on a fixed set of 1,000 samples. The text encoder stays
frozen; ``prompt_dropout`` keeps the unconditional flow trained for classifier-free guidance.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from rss_world.compbench import CATEGORIES, prompts_in, render, scene_for
from rss_world.nn import RSRConfig
from rss_world.t2i.model import TextToImage
from rss_world.training.loop import LoopConfig, Task, make_accelerator, run, warmup_cosine
from rss_world.variants import get_handle, sd3
from rss_world.variants.losses import balance_weight
from rss_world.variants.study import adapter_params

KINDS = ("base", "full", "rsr")


@dataclass(frozen=True)
class Variant:
    """One row of a study.

    Attributes:
        name: the row's label (says what it is: "LoRA r=8 (rank-matched)", "RSR E=5 T=1 (no recursion)", ...).
        kind: ``base`` (no training), ``full`` (all transformer weights) or ``rsr`` (adapters on ``layers``).
        experts, steps, rank: the RSR core's ``E``, ``T`` and LoRA rank (``E = T = 1``: plain LoRA).
        layers: the transformer blocks that get adapters.
        state_update: the RSR reading of the intermediate states (:class:`rss_world.nn.RSRConfig`).
        match: the row this one is compared with (its parameter- or rank-matched LoRA), or ``None``.
    """

    name: str
    kind: str
    experts: int = 1
    steps: int = 1
    rank: int = 8
    layers: tuple[int, ...] = ()
    state_update: str = "delta"
    match: str | None = None

    def validate(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"variant {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "rsr":
            if not self.layers:
                raise ValueError(f"variant {self.name!r}: an rsr variant needs layers")
            self.rsr_config().validate()

    def rsr_config(self) -> RSRConfig:
        return RSRConfig(num_experts=self.experts, steps=self.steps, rank=self.rank, state_update=self.state_update)


@dataclass(frozen=True)
class FinetuneConfig:
    """How every variant fine-tunes (the same for all rows; only the learning rate is searched per row).

    Attributes:
        steps: optimizer steps.
        batch_size: images per step, drawn with replacement from the fixed set.
        data_size: renders in the fixed fine-tuning set (train split, categories uniform).
        data_seed: seeds the fixed set (the same set for every row and seed).
        prompt_dropout: share of prompts replaced by ``""`` (keeps classifier-free guidance working).
        warmup: linear warm-up steps of the learning rate, then cosine down to ``lr * lr_floor``.
        grad_clip: largest gradient norm.
        balance_weight: weight of the routing balance loss, applied only for ``E > 3`` (as the paper).
    """

    steps: int = 100
    batch_size: int = 32
    data_size: int = 1000
    data_seed: int = 12345
    prompt_dropout: float = 0.1
    warmup: int = 10
    lr_floor: float = 0.1
    grad_clip: float = 1.0
    balance_weight: float = 0.01

    def validate(self) -> None:
        for name in ("steps", "batch_size", "data_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.prompt_dropout < 1:
            raise ValueError(f"prompt_dropout must be in [0, 1), got {self.prompt_dropout}")


def finetune_set(cfg: FinetuneConfig, size: int) -> tuple[np.ndarray, list[str]]:
    """The fixed fine-tuning set: ``(images (N, S, S, 3) uint8, texts)`` of train-split prompts, categories uniform."""
    rng = np.random.default_rng(cfg.data_seed)
    pools = [prompts_in("train", c) for c in CATEGORIES]
    prompts = []
    for c in rng.integers(len(pools), size=cfg.data_size):
        prompts.append(pools[c][rng.integers(len(pools[c]))])
    images = np.stack([render(scene_for(p, rng, size)) for p in prompts])
    return images, [p.text for p in prompts]


def trainable(model: TextToImage, variant: Variant) -> list[nn.Parameter]:
    """Make ``variant``'s weights trainable on ``model`` (attaching adapters for ``rsr``); return them."""
    variant.validate()
    tr = model.transformer
    if variant.kind == "base":
        return []
    if variant.kind == "full":
        tr.requires_grad_(True)
        return [p for p in tr.parameters()]
    return sd3.attach_rsr(tr, list(variant.layers), variant.rsr_config()).parameters()


def count_trainable(transformer: nn.Module, variant: Variant) -> int:
    """Trainable parameters ``variant`` adds or trains on a diffusers SD3 transformer like ``transformer`` (ours, or
    SD3-medium loaded from a local path); ``transformer`` is untouched."""
    variant.validate()
    if variant.kind == "base":
        return 0
    if variant.kind == "full":
        return sum(p.numel() for p in transformer.parameters())
    return adapter_params(transformer, list(variant.layers), variant.rsr_config())


def finetune(model: TextToImage, variant: Variant, cfg: FinetuneConfig, lr: float, seed: int, out: str | Path,
             data: tuple[np.ndarray, list[str]] | None = None) -> dict[str, Any]:
    """Fine-tune ``model`` in place as ``variant`` says; log to ``out/metrics.jsonl``.

    Returns:
        ``losses`` (flow loss per step), ``seconds``, ``params`` (trainable count).

    Raises:
        FloatingPointError: a non-finite loss (names the step).
        ValueError: bad settings, or a model whose text encoder still trains.
    """
    cfg.validate()
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    if not model.text_frozen:
        raise ValueError("fine-tuning starts from a base whose text encoder is frozen")
    params = trainable(model, variant)
    if not params:
        return {"losses": [], "seconds": 0.0, "params": 0}
    images, texts = data if data is not None else finetune_set(cfg, model.cfg.transformer.sample_size)
    x_all = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (N, 3, S, S)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    handle = get_handle(model.transformer)
    balance = balance_weight(cfg.balance_weight, variant.experts) if handle is not None else 0.0
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)

    def draw():
        i = rng.integers(len(texts), size=cfg.batch_size)
        drop = rng.random(cfg.batch_size) < cfg.prompt_dropout
        batch_texts = ["" if d else texts[j] for j, d in zip(i, drop, strict=True)]
        return (x_all[i], model.tokens(batch_texts)), {}

    def losses(m: nn.Module, batch) -> dict[str, Tensor]:
        flow = m.loss(*batch)
        if balance > 0:
            return {"loss": flow + balance * handle.balance_loss(), "flow": flow}
        return {"loss": flow}

    task = Task(model=model, optimizer=opt, draw=draw, losses=losses, rng=rng,
                schedule=lambda s: warmup_cosine(s, cfg.steps, cfg.warmup, cfg.lr_floor))
    t0 = time.time()
    result = run(task, LoopConfig(steps=cfg.steps, grad_clip=cfg.grad_clip, resumable=False), out,
                 make_accelerator(cpu=True), progress=False, local=True)
    model.eval()
    return {"losses": result.losses, "seconds": time.time() - t0, "params": sum(p.numel() for p in params)}

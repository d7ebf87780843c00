"""Fine-tune RSR adapters on a diffusers DiT or SD3 transformer, in the package's one training loop.

``python -m rss_world.train --variant dit|sd3 [key=value ...]`` composes ``configs/train_variant.yaml``
(:func:`rss_world.variants.config.compose_variant`) and calls :func:`train_variant`. The same command runs
multi-process under ``accelerate launch`` (e.g. ``accelerate launch --multi_gpu --num_processes 2 -m
rss_world.train --variant dit``; gloo on CPU).

The loss is the base model's scheduler objective (:mod:`rss_world.variants.losses`) plus ``balance_weight`` times
the routing balance loss (only for ``E > 3``, the paper's rule). Only the adapters and gates are optimised; the
base stays frozen. At the end the adapters are saved with :func:`rss_world.variants.save_adapters` under
``output_dir/adapters``, the per-step log is ``output_dir/metrics.jsonl``, a summary ``output_dir/train_summary.json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from diffusers import DDPMScheduler, DiTTransformer2DModel, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from rss_world.io import atomic_write_text
from rss_world.training.loop import LoopConfig, Task, make_accelerator, run

from . import attach_rsr, get_handle, save_adapters
from .config import VariantConfig, VariantTrainConfig
from .losses import balance_weight, class_prompt_embeds, digits_images, variant_loss

MODEL_CLASSES = {"dit": DiTTransformer2DModel, "sd3": SD3Transformer2DModel}


def as_settings(cfg: Any) -> VariantTrainConfig:
    """A :class:`VariantTrainConfig` from itself or from its composed Hydra config."""
    if isinstance(cfg, VariantTrainConfig):
        return cfg
    from omegaconf import OmegaConf

    return OmegaConf.to_object(cfg)


def build_model(variant: VariantConfig) -> nn.Module:
    """The base transformer: ``from_pretrained(variant.pretrained)`` from a local directory, else from ``model``.

    ``pretrained`` may be a transformer directory or a pipeline directory with ``subfolder: transformer``.
    """
    if variant.kind not in MODEL_CLASSES:
        raise ValueError(f"variant.kind must be one of {sorted(MODEL_CLASSES)}, got {variant.kind!r}")
    cls = MODEL_CLASSES[variant.kind]
    if variant.pretrained:
        path = Path(variant.pretrained)
        if not path.is_dir():
            raise ValueError(f"variant.pretrained must be a local directory (no hub access), got {path}")
        return cls.from_pretrained(path, subfolder=variant.subfolder)
    return cls(**variant.model.kwargs())


def build_scheduler(variant: VariantConfig) -> DDPMScheduler | FlowMatchEulerDiscreteScheduler:
    """The training scheduler: from ``scheduler_path`` (a local scheduler directory) or ``scheduler``."""
    cls = DDPMScheduler if variant.kind == "dit" else FlowMatchEulerDiscreteScheduler
    if variant.scheduler_path:
        return cls.from_pretrained(variant.scheduler_path)
    return cls(**variant.scheduler.kwargs())


def build_dataset(cfg: VariantTrainConfig, model: nn.Module) -> TensorDataset:
    """Training tensors: ``(x0, class_labels)`` for DiT, ``(x0, prompt_embeds, pooled)`` for SD3.

    ``data.kind``: ``digits`` (scikit-learn digits in pixel space at the model's sample size; SD3 gets a fixed
    random text embedding per class) or ``tensors`` (a safetensors file with ``latents`` and ``class_labels`` or
    ``prompt_embeds`` + ``pooled_prompt_embeds``, e.g. precomputed with the real VAE and text encoders).
    """
    data, kind = cfg.data, cfg.variant.kind
    mc = model.config
    if data.kind == "digits":
        x, y = digits_images(mc.sample_size, mc.in_channels)
        if kind == "dit":
            n_cls = mc.num_embeds_ada_norm
            if n_cls < 10:
                raise ValueError(f"digits need 10 classes, the DiT embeds only num_embeds_ada_norm={n_cls}")
            return TensorDataset(x, y)
        pe, pooled = class_prompt_embeds(y, 10, data.prompt_len, mc.joint_attention_dim, mc.pooled_projection_dim)
        return TensorDataset(x, pe, pooled)
    if data.kind == "tensors":
        if not data.path:
            raise ValueError("data.kind=tensors needs data.path, a safetensors file")
        t = load_file(data.path)
        keys = ["latents", "class_labels"] if kind == "dit" else ["latents", "prompt_embeds", "pooled_prompt_embeds"]
        missing = [k for k in keys if k not in t]
        if missing:
            raise ValueError(f"{data.path} lacks tensors {missing} needed for {kind}")
        if t["latents"].shape[1:] != (mc.in_channels, mc.sample_size, mc.sample_size):
            raise ValueError(f"latents are {tuple(t['latents'].shape[1:])}, the model expects "
                             f"({mc.in_channels}, {mc.sample_size}, {mc.sample_size})")
        return TensorDataset(*(t[k] for k in keys))
    raise ValueError(f"data.kind must be 'digits' or 'tensors', got {data.kind!r}")


def _forever(loader: Iterable) -> Iterator:
    """The loader's batches, epoch after epoch (each epoch reshuffles)."""
    while True:
        yield from loader


def train_variant(cfg: Any, progress: bool = True) -> dict:
    """Fine-tune RSR adapters as ``cfg`` (a :class:`VariantTrainConfig` or its Hydra config) says.

    Returns:
        ``losses`` (the mean loss of every step), ``output_dir``, the unwrapped ``model`` and its ``handle``,
        ``main_process`` and ``replicas_in_sync`` (every process holds the same adapters).

    Raises:
        FloatingPointError: when the loss becomes NaN or infinite (names the step).
        ValueError: for bad config values (model kind, layers, data).
    """
    from accelerate.utils import set_seed

    cfg = as_settings(cfg)
    variant = cfg.variant
    trackers = {"log_with": cfg.log_with, "project_dir": cfg.output_dir} if cfg.log_with else {}
    accelerator = make_accelerator(cpu=cfg.cpu, mixed_precision=cfg.mixed_precision, **trackers)
    set_seed(cfg.seed)
    model = build_model(variant)
    handle = attach_rsr(model, list(variant.layers), variant.rsr)
    scheduler = build_scheduler(variant)
    loader = DataLoader(build_dataset(cfg, model), batch_size=cfg.batch_size, shuffle=True, drop_last=True)
    opt = torch.optim.AdamW(handle.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    model, opt, loader = accelerator.prepare(model, opt, loader)
    torch.manual_seed(cfg.seed + accelerator.process_index)  # per-process noise, timesteps, Gumbel draws
    balance_w = balance_weight(cfg.balance_weight, variant.rsr.num_experts)
    batches = _forever(loader)

    def losses(m: nn.Module, batch) -> dict[str, torch.Tensor]:
        loss = variant_loss(variant.kind, m, scheduler, batch, cfg.weighting)
        if balance_w > 0:
            loss = loss + balance_w * handle.balance_loss()
        return {"loss": loss}

    if cfg.log_with:
        accelerator.init_trackers(f"variant_{variant.kind}")
    task = Task(model=model, optimizer=opt, draw=lambda: (next(batches), {}), losses=losses)
    loop = LoopConfig(steps=cfg.steps, grad_clip=cfg.grad_clip, log_every=cfg.log_every)
    out = Path(cfg.output_dir)
    result = run(task, loop, out, accelerator, progress=progress)
    accelerator.wait_for_everyone()
    checksum = torch.stack([p.detach().double().sum() for p in handle.parameters()]).sum()
    replicas = accelerator.gather(checksum[None].to(accelerator.device))  # one adapter checksum per process
    in_sync = bool(torch.allclose(replicas, replicas[0].expand_as(replicas)))
    if accelerator.is_main_process:
        save_adapters(accelerator.unwrap_model(model), out / "adapters")
        summary = {"steps": cfg.steps, "final_loss": result.losses[-1] if result.losses else None,
                   "losses": result.losses, "processes": accelerator.num_processes, "replicas_in_sync": in_sync}
        atomic_write_text(out / "train_summary.json", json.dumps(summary, indent=1) + "\n")
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    outcome = {"losses": result.losses, "output_dir": str(out), "model": unwrapped, "handle": get_handle(unwrapped),
               "main_process": accelerator.is_main_process, "replicas_in_sync": in_sync}
    accelerator.end_training()  # closes the trackers and the process group: last
    return outcome

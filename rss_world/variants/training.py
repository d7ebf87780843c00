"""Fine-tune RSR adapters on a diffusers DiT or SD3 transformer with accelerate.

Entry point: ``python -m rss_world.train variant=dit|sd3 [key=value ...]`` composes ``configs/train_variant.yaml``
and calls :func:`main`. The same command runs multi-process under ``accelerate launch`` (e.g.
``accelerate launch --cpu --num_processes 2 -m rss_world.train variant=dit``; gloo on CPU).

The loss is the base model's scheduler objective (:mod:`rss_world.variants.losses`) plus ``balance_weight`` times
the routing balance loss (only for ``E > 1``). Only the adapters and gates are optimised; the base stays frozen.
At the end the adapters are saved with :func:`rss_world.variants.save_adapters` under ``output_dir/adapters``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from diffusers import DDPMScheduler, DiTTransformer2DModel, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel
from safetensors.torch import load_file
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from rss_world.nn import RSRConfig

from . import attach_rsr, get_handle, save_adapters
from .losses import class_prompt_embeds, digits_images, dit_loss, sd3_loss

MODEL_CLASSES = {"dit": DiTTransformer2DModel, "sd3": SD3Transformer2DModel}


def _plain(cfg: Any) -> dict:
    """A Hydra ``DictConfig`` (or a plain mapping) as a resolved plain dict."""
    try:
        from omegaconf import DictConfig, OmegaConf
    except ImportError:  # pragma: no cover - omegaconf ships with hydra-core
        return dict(cfg)
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)
    return dict(cfg)


def build_model(variant: dict) -> nn.Module:
    """The base transformer: ``from_pretrained(variant.pretrained)`` from a local directory, else from ``model``.

    ``pretrained`` may be a transformer directory or a pipeline directory with ``subfolder: transformer``.
    """
    kind = variant.get("kind")
    if kind not in MODEL_CLASSES:
        raise ValueError(f"variant.kind must be one of {sorted(MODEL_CLASSES)}, got {kind!r}")
    cls = MODEL_CLASSES[kind]
    if variant.get("pretrained"):
        path = Path(variant["pretrained"])
        if not path.is_dir():
            raise ValueError(f"variant.pretrained must be a local directory (no hub access), got {path}")
        return cls.from_pretrained(path, subfolder=variant.get("subfolder"))
    return cls(**variant.get("model", {}))


def build_scheduler(variant: dict) -> DDPMScheduler | FlowMatchEulerDiscreteScheduler:
    """The training scheduler: from ``scheduler_path`` (a local scheduler directory) or ``scheduler`` kwargs."""
    cls = DDPMScheduler if variant["kind"] == "dit" else FlowMatchEulerDiscreteScheduler
    if variant.get("scheduler_path"):
        return cls.from_pretrained(variant["scheduler_path"])
    return cls(**variant.get("scheduler", {}))


def build_dataset(cfg: dict, model: nn.Module) -> TensorDataset:
    """Training tensors: ``(x0, class_labels)`` for DiT, ``(x0, prompt_embeds, pooled)`` for SD3.

    ``data.kind``: ``digits`` (scikit-learn digits in pixel space at the model's sample size; SD3 gets a fixed
    random text embedding per class) or ``tensors`` (a safetensors file with ``latents`` and ``class_labels`` or
    ``prompt_embeds`` + ``pooled_prompt_embeds``, e.g. precomputed with the real VAE and text encoders).
    """
    data, kind = cfg["data"], cfg["variant"]["kind"]
    mc = model.config
    if data["kind"] == "digits":
        x, y = digits_images(mc.sample_size, mc.in_channels)
        if kind == "dit":
            n_cls = mc.num_embeds_ada_norm
            if n_cls < 10:
                raise ValueError(f"digits need 10 classes, the DiT embeds only num_embeds_ada_norm={n_cls}")
            return TensorDataset(x, y)
        pe, pooled = class_prompt_embeds(y, 10, data.get("prompt_len", 4), mc.joint_attention_dim,
                                         mc.pooled_projection_dim)
        return TensorDataset(x, pe, pooled)
    if data["kind"] == "tensors":
        if not data.get("path"):
            raise ValueError("data.kind=tensors needs data.path, a safetensors file")
        t = load_file(data["path"])
        keys = ["latents", "class_labels"] if kind == "dit" else ["latents", "prompt_embeds", "pooled_prompt_embeds"]
        missing = [k for k in keys if k not in t]
        if missing:
            raise ValueError(f"{data['path']} lacks tensors {missing} needed for {kind}")
        if t["latents"].shape[1:] != (mc.in_channels, mc.sample_size, mc.sample_size):
            raise ValueError(f"latents are {tuple(t['latents'].shape[1:])}, the model expects "
                             f"({mc.in_channels}, {mc.sample_size}, {mc.sample_size})")
        return TensorDataset(*(t[k] for k in keys))
    raise ValueError(f"data.kind must be 'digits' or 'tensors', got {data['kind']!r}")


def train_variant(cfg: Any) -> dict:
    """Fine-tune RSR adapters as ``cfg`` says; returns a summary (losses, output directory).

    Raises:
        FloatingPointError: when the loss becomes NaN or infinite (names the step).
        ValueError: for bad config values (model kind, layers, data).
    """
    cfg = _plain(cfg)
    variant = cfg["variant"]
    accelerator = Accelerator(cpu=bool(cfg.get("cpu", False)), mixed_precision=cfg.get("mixed_precision", "no"))
    set_seed(int(cfg["seed"]))
    model = build_model(variant)
    rsr = RSRConfig(**variant["rsr"])
    handle = attach_rsr(model, list(variant["layers"]), rsr)
    scheduler = build_scheduler(variant)
    dataset = build_dataset(cfg, model)
    loader = DataLoader(dataset, batch_size=int(cfg["batch_size"]), shuffle=True, drop_last=True)
    opt = torch.optim.AdamW(handle.parameters(), lr=float(cfg["lr"]), weight_decay=float(cfg.get("weight_decay", 0)))
    model, opt, loader = accelerator.prepare(model, opt, loader)
    torch.manual_seed(int(cfg["seed"]) + accelerator.process_index)  # per-process noise, timesteps, Gumbel draws
    model.train()
    balance_w = float(cfg.get("balance_weight", 0.0)) if rsr.num_experts > 1 else 0.0
    losses: list[float] = []
    step, steps = 0, int(cfg["steps"])
    while step < steps:
        for batch in loader:
            if step >= steps:
                break
            loss = _objective(variant["kind"], model, scheduler, batch, cfg)
            if balance_w > 0:
                loss = loss + balance_w * handle.balance_loss()
            mean_loss = accelerator.gather(loss.detach()[None]).mean()  # same value on every process
            if not math.isfinite(mean_loss.item()):
                raise FloatingPointError(f"non-finite loss {mean_loss.item()} at step {step}: lower lr or check data")
            opt.zero_grad()
            accelerator.backward(loss)
            if cfg.get("grad_clip"):
                accelerator.clip_grad_norm_(handle.parameters(), float(cfg["grad_clip"]))
            opt.step()
            losses.append(mean_loss.item())
            if accelerator.is_main_process and (step % int(cfg.get("log_every", 10)) == 0 or step == steps - 1):
                print(f"step {step:5d}  loss {losses[-1]:.5f}", flush=True)
            step += 1
    accelerator.wait_for_everyone()
    checksum = torch.stack([p.detach().double().sum() for p in handle.parameters()]).sum()
    replicas = accelerator.gather(checksum[None].to(accelerator.device))  # one adapter checksum per process
    in_sync = bool(torch.allclose(replicas, replicas[0].expand_as(replicas)))
    out = Path(cfg["output_dir"])
    if accelerator.is_main_process:
        base = accelerator.unwrap_model(model)
        save_adapters(base, out / "adapters")
        summary = {"steps": steps, "final_loss": losses[-1] if losses else None, "losses": losses,
                   "processes": accelerator.num_processes, "replicas_in_sync": in_sync}
        (out / "train_summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    return {"losses": losses, "output_dir": str(out), "model": unwrapped, "handle": get_handle(unwrapped),
            "main_process": accelerator.is_main_process, "replicas_in_sync": in_sync}


def _objective(kind: str, model: nn.Module, scheduler: Any, batch: list[Tensor], cfg: dict) -> Tensor:
    if kind == "dit":
        x0, labels = batch
        return dit_loss(model, scheduler, x0, labels)
    x0, prompt, pooled = batch
    return sd3_loss(model, scheduler, x0, prompt, pooled, weighting=cfg.get("weighting", "logit_normal"))


def main(cfg: Any) -> dict:
    """Hydra entry used by ``python -m rss_world.train variant=...``: train and print where adapters went."""
    result = train_variant(cfg)
    if result["main_process"]:
        print(f"adapters saved to {Path(result['output_dir']) / 'adapters'}", flush=True)
    return result

"""Training objectives of the base models' schedulers, and the small data sources the variant trainer uses.

* DiT: the DDPM objective of its ``DDPMScheduler`` (epsilon, v or sample prediction, as the scheduler config says).
  With a learned-sigma DiT (``out_channels == 2 * in_channels``) only the mean half is trained (DiT's simple loss).
* SD3: rectified-flow matching with ``FlowMatchEulerDiscreteScheduler``: ``x_t = (1 - σ) x_0 + σ ε``, target
  ``ε - x_0``, timesteps drawn from the scheduler's own (shifted) grid as in diffusers' SD3 DreamBooth script.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler
from diffusers.training_utils import compute_density_for_timestep_sampling
from torch import Tensor, nn

from rss_world.variants.config import VariantTrainConfig

BALANCE_MIN_EXPERTS = 4  # the paper: "for more than three experts, we employ the expert balance loss"


def balance_weight(weight: float, num_experts: int) -> float:
    """The routing balance loss's weight for a layer of ``num_experts`` experts: ``weight`` when ``E > 3``, as in
    the paper, else 0.

    Raises:
        ValueError: a negative weight or fewer than one expert.
    """
    if not weight >= 0:
        raise ValueError(f"balance weight must be >= 0, got {weight}")
    if num_experts < 1:
        raise ValueError(f"num_experts must be >= 1, got {num_experts}")
    return float(weight) if num_experts >= BALANCE_MIN_EXPERTS else 0.0


def dit_loss(
    model: nn.Module, scheduler: DDPMScheduler, x0: Tensor, class_labels: Tensor,
    generator: torch.Generator | None = None,
) -> Tensor:
    """DDPM loss of a class-conditioned DiT on clean latents (or pixels) ``x0 (B, C, H, W)``."""
    b, c = x0.shape[:2]
    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)  # (B, C, H, W)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (b,), generator=generator, device=x0.device)
    xt = scheduler.add_noise(x0, noise, t)  # (B, C, H, W)
    pred = model(xt, timestep=t, class_labels=class_labels).sample  # (B, C or 2C, H, W)
    if pred.shape[1] == 2 * c:
        pred = pred[:, :c]  # learned sigma: train the mean half only
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        target = noise
    elif kind == "v_prediction":
        target = scheduler.get_velocity(x0, noise, t)
    elif kind == "sample":
        target = x0
    else:
        raise ValueError(f"unsupported DDPM prediction_type {kind!r}")
    return F.mse_loss(pred.float(), target.float())


def sd3_loss(
    model: nn.Module, scheduler: FlowMatchEulerDiscreteScheduler, x0: Tensor, prompt_embeds: Tensor,
    pooled_prompt_embeds: Tensor, weighting: str = VariantTrainConfig.weighting,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Flow-matching loss of an SD3 transformer on clean latents ``x0 (B, C, H, W)``.

    Args:
        prompt_embeds: ``(B, L, joint_attention_dim)`` text tokens.
        pooled_prompt_embeds: ``(B, pooled_projection_dim)`` pooled text embedding.
        weighting: timestep density, ``"logit_normal"`` (SD3) or ``"uniform"``.
    """
    b = x0.shape[0]
    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)  # (B, C, H, W)
    u = compute_density_for_timestep_sampling(weighting, b, logit_mean=0.0, logit_std=1.0, generator=generator)
    n = scheduler.config.num_train_timesteps
    idx = (u * n).long().clamp(0, n - 1)
    timesteps = scheduler.timesteps[idx].to(x0.device)  # (B,)
    sigmas = scheduler.sigmas[idx].to(device=x0.device, dtype=x0.dtype)[:, None, None, None]  # (B, 1, 1, 1)
    xt = (1.0 - sigmas) * x0 + sigmas * noise  # (B, C, H, W)
    pred = model(hidden_states=xt, timestep=timesteps, encoder_hidden_states=prompt_embeds,
                 pooled_projections=pooled_prompt_embeds).sample
    return F.mse_loss(pred.float(), (noise - x0).float())


def digits_images(size: int = 16, channels: int = 1) -> tuple[Tensor, Tensor]:
    """scikit-learn's 1,797 labelled 8x8 digits, upsampled (bilinear) to ``size`` and scaled to ``[-1, 1]``.

    Returns:
        ``(images (N, channels, size, size) float32, labels (N,) int64)``.
    """
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32)[:, None] / 16.0  # (N, 1, 8, 8) in [0, 1]
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)  # (N, 1, S, S)
    x = (x.clamp(0, 1) * 2 - 1).repeat(1, channels, 1, 1)  # (N, C, S, S)
    return x, torch.tensor(data.target, dtype=torch.int64)


def class_prompt_embeds(
    labels: Tensor, num_classes: int, seq_len: int, text_dim: int, pooled_dim: int, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Stand-in text conditioning for class labels: a fixed random embedding table per class.

    Used to train a tiny SD3 on a labelled set without text encoders. Returns ``(prompt (B, L, text_dim),
    pooled (B, pooled_dim))``.
    """
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(num_classes, seq_len, text_dim, generator=g)  # (K, L, text_dim)
    pooled = torch.randn(num_classes, pooled_dim, generator=g)  # (K, pooled_dim)
    return table[labels], pooled[labels]


def variant_loss(kind: str, model: nn.Module, scheduler, batch: Sequence[Tensor], weighting: str) -> Tensor:
    """The scheduler objective of a ``kind`` (``dit`` or ``sd3``) transformer on one batch of the variant trainer:
    ``(x0, class_labels)`` for DiT, ``(x0, prompt_embeds, pooled)`` for SD3 (``weighting``: its timestep density)."""
    if kind == "dit":
        x0, labels = batch
        return dit_loss(model, scheduler, x0, labels)
    x0, prompt, pooled = batch
    return sd3_loss(model, scheduler, x0, prompt, pooled, weighting=weighting)

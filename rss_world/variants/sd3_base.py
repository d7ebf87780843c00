"""A small SD3 transformer trained from scratch in pixel space: its build, its flow-matching loss and an Euler sampler.

The transformer is a diffusers ``SD3Transformer2DModel`` built from :class:`~rss_world.variants.config.
BaseModelConfig` (no VAE, no hub: ``in_channels`` 3 are RGB pixels in ``[-1, 1]``). Training uses the same
rectified-flow objective as the adapter trainer (:func:`rss_world.variants.losses.sd3_loss`): ``x_t = (1 - σ) x_0 +
σ ε`` at timestep ``1000 σ``, velocity target ``ε - x_0``. Sampling integrates the velocity with
``FlowMatchEulerDiscreteScheduler`` from pure noise (σ from 1 down to 0), with optional classifier-free guidance
(``v = v_uncond + g (v_cond - v_uncond)``).

``prediction`` says what the transformer's output means. ``"velocity"`` is SD3's: the output is ``ε - x_0``.
``"sample"`` reads it as the clean image ``x_0`` (JiT's x-prediction, which suits pixel patches far wider than the
model's noise-free content); the loss and the sampler turn it into the velocity ``(x_t - x_0) / σ``, so the loss is
still the velocity error, and the scheduler still steps on a velocity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel
from diffusers.training_utils import compute_density_for_timestep_sampling
from torch import Tensor

from .config import BaseModelConfig, SchedulerConfig
from .losses import sd3_loss

__all__ = ["PREDICTIONS", "build_transformer", "flow_loss", "flow_scheduler", "pixel_config", "sample", "velocity"]

PREDICTIONS = ("velocity", "sample")
MIN_SIGMA = 0.05  # x-prediction: the velocity (x_t - x_0) / σ divides by at least this in the loss (JiT's clip)


# The pixel-space SD3 transformer of the compbench base: the one source of its sizes (``pixel_config`` overrides).
PIXEL_MODEL = {"sample_size": 32, "patch_size": 4, "num_layers": 4, "heads": 4, "head_dim": 32, "text_dim": 64,
               "pooled_dim": 64}


def pixel_config(**sizes: int) -> BaseModelConfig:
    """An SD3 :class:`BaseModelConfig` on RGB pixels (3 channels in and out): :data:`PIXEL_MODEL` with ``sizes``
    overriding any of its keys."""
    unknown = set(sizes) - set(PIXEL_MODEL)
    if unknown:
        raise ValueError(f"unknown pixel-model sizes {sorted(unknown)}; known: {sorted(PIXEL_MODEL)}")
    s = {**PIXEL_MODEL, **sizes}
    sample_size, patch_size, num_layers, heads = s["sample_size"], s["patch_size"], s["num_layers"], s["heads"]
    head_dim, text_dim, pooled_dim = s["head_dim"], s["text_dim"], s["pooled_dim"]
    if sample_size % patch_size:
        raise ValueError(f"sample_size {sample_size} is not a multiple of patch_size {patch_size}")
    return BaseModelConfig(
        num_embeds_ada_norm=None, sample_size=sample_size, patch_size=patch_size, in_channels=3, out_channels=3,
        num_layers=num_layers, attention_head_dim=head_dim, num_attention_heads=heads, joint_attention_dim=text_dim,
        caption_projection_dim=heads * head_dim, pooled_projection_dim=pooled_dim,
        pos_embed_max_size=sample_size // patch_size,
    )


def build_transformer(cfg: BaseModelConfig) -> SD3Transformer2DModel:
    """A freshly initialised ``SD3Transformer2DModel`` from ``cfg`` (seed torch first for reproducible weights)."""
    kwargs = cfg.kwargs()
    if "num_embeds_ada_norm" in kwargs:
        raise ValueError("an SD3 config takes no num_embeds_ada_norm (set it to None; that field is DiT's)")
    missing = [k for k in ("joint_attention_dim", "caption_projection_dim", "pooled_projection_dim",
                           "pos_embed_max_size") if k not in kwargs]
    if missing:
        raise ValueError(f"an SD3 config needs {missing}")
    return SD3Transformer2DModel(**kwargs)


def flow_scheduler(shift: float) -> FlowMatchEulerDiscreteScheduler:
    """The flow-matching scheduler (1000 training timesteps, ``shift`` as SD3's; 1.0 for small images)."""
    if not shift > 0:
        raise ValueError(f"scheduler shift must be positive, got {shift}")
    return FlowMatchEulerDiscreteScheduler(**SchedulerConfig(beta_schedule=None, shift=float(shift)).kwargs())


def _check_prediction(prediction: str) -> None:
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")


def velocity(out: Tensor, xt: Tensor, sigma: Tensor, prediction: str, min_sigma: float = 0.0) -> Tensor:
    """The flow velocity ``ε - x_0`` that the transformer output ``out`` stands for at ``xt`` and noise level
    ``sigma`` (broadcastable to ``xt``): ``out`` itself, or ``(xt - out) / max(σ, min_sigma)`` for x-prediction."""
    _check_prediction(prediction)
    if prediction == "velocity":
        return out
    return (xt - out) / sigma.clamp_min(min_sigma)


def flow_loss(model: SD3Transformer2DModel, scheduler: FlowMatchEulerDiscreteScheduler, x0: Tensor,
              prompt_embeds: Tensor, pooled: Tensor, weighting: str, prediction: str) -> Tensor:
    """Rectified-flow loss on clean images ``x0 (B, 3, H, W)`` in ``[-1, 1]``: the mean squared velocity error.

    With ``prediction="velocity"`` this is ``losses.sd3_loss``. With ``"sample"`` the output is read as ``x_0`` and
    turned into a velocity (σ clipped at :data:`MIN_SIGMA`); timesteps are drawn the same way.
    """
    _check_prediction(prediction)
    if prediction == "velocity":
        return sd3_loss(model, scheduler, x0, prompt_embeds, pooled, weighting=weighting)
    b = x0.shape[0]
    noise = torch.randn_like(x0)  # (B, C, H, W)
    u = compute_density_for_timestep_sampling(weighting, b, logit_mean=0.0, logit_std=1.0)
    n = scheduler.config.num_train_timesteps
    idx = (u * n).long().clamp(0, n - 1)
    timesteps = scheduler.timesteps[idx].to(x0.device)  # (B,) = 1000 σ
    sigmas = scheduler.sigmas[idx].to(device=x0.device, dtype=x0.dtype)[:, None, None, None]  # (B, 1, 1, 1)
    xt = (1.0 - sigmas) * x0 + sigmas * noise  # (B, C, H, W)
    out = model(hidden_states=xt, timestep=timesteps, encoder_hidden_states=prompt_embeds,
                pooled_projections=pooled).sample  # (B, C, H, W): x_0
    v = velocity(out, xt, sigmas, prediction, MIN_SIGMA)  # (B, C, H, W)
    return F.mse_loss(v.float(), (noise - x0).float())


@torch.no_grad()
def sample(model: SD3Transformer2DModel, prompt_embeds: Tensor, pooled: Tensor, *, shift: float, prediction: str,
           steps: int = 20, guidance: float = 1.0, null_embeds: tuple[Tensor, Tensor] | None = None,
           generator: torch.Generator | None = None) -> Tensor:
    """Euler-integrate the flow from noise to images ``(B, C, H, W)`` clamped to ``[-1, 1]``; ``model`` in eval.

    Args:
        prompt_embeds, pooled: ``(B, L, text)`` and ``(B, pooled)`` text conditioning.
        steps: Euler steps (model calls per image; twice that with guidance).
        guidance: classifier-free guidance scale; 1.0 runs the conditional model only.
        null_embeds: the unconditional ``(1, L, text)`` and ``(1, pooled)`` inputs, needed when ``guidance != 1``.
        generator: for the initial noise.
        prediction: what the model outputs (see the module docstring); guidance mixes the velocities.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    _check_prediction(prediction)
    if guidance != 1.0 and null_embeds is None:
        raise ValueError("classifier-free guidance needs null_embeds (the empty prompt's encoding)")
    model.eval()
    cfg = model.config
    b = prompt_embeds.shape[0]
    shape = (b, cfg.out_channels, cfg.sample_size, cfg.sample_size)
    dev, dtype = prompt_embeds.device, prompt_embeds.dtype
    x = torch.randn(shape, generator=generator, device=generator.device if generator else dev, dtype=dtype).to(dev)
    if guidance != 1.0:
        prompt_embeds = torch.cat([null_embeds[0].expand_as(prompt_embeds), prompt_embeds])  # (2B, L, text)
        pooled = torch.cat([null_embeds[1].expand_as(pooled), pooled])  # (2B, pooled)
    scheduler = flow_scheduler(shift)
    scheduler.set_timesteps(steps, device=dev)
    for i, t in enumerate(scheduler.timesteps):
        xin = torch.cat([x, x]) if guidance != 1.0 else x  # (B or 2B, C, H, W)
        out = model(hidden_states=xin, timestep=t.expand(xin.shape[0]), encoder_hidden_states=prompt_embeds,
                    pooled_projections=pooled).sample  # (B or 2B, C, H, W)
        v = velocity(out, xin, scheduler.sigmas[i].to(dev, dtype), prediction)  # (B or 2B, C, H, W)
        if guidance != 1.0:
            v_null, v_cond = v.chunk(2)
            v = v_null + guidance * (v_cond - v_null)
        x = scheduler.step(v, t, x).prev_sample  # (B, C, H, W)
    return x.clamp(-1, 1)

"""Recursive sparse attention inside diffusers' ``DiTTransformer2DModel`` (class-conditioned self-attention).

Usage::

    from rss_world.nn import RSRConfig
    from rss_world.variants import dit

    handle = dit.attach_rsr(pipe.transformer, layers=[12], cfg=RSRConfig(num_experts=2, steps=2, rank=64))
    images = pipe(class_labels=[207, 360]).images     # DiTPipeline runs with the experts in place
    dit.save_adapters(pipe.transformer, "outputs/dit_rsr")
    dit.detach_rsr(pipe.transformer)                   # the base DiT again, bit for bit

The gate's condition is the block's own adaLN-Zero conditioning embedding ``c = emb_t(t) + emb_y(y)`` (timestep
plus class label, width ``D``). DiT computes it inside ``block.norm1.emb`` and never hands it to the attention
layer, so :func:`attach_rsr` registers a forward hook on ``block.norm1.emb`` of every routed block; the hook
stores its output on the block's processor just before the block's self-attention runs.
"""

from __future__ import annotations

import os

from diffusers import DiTTransformer2DModel
from diffusers.models.attention_processor import Attention
from diffusers.models.normalization import AdaLayerNormZero
from torch import Tensor, nn

from rss_world.nn import RSRConfig

from . import common
from .common import RSRHandle, RSRProcessor, detach_rsr, recording, save_adapters

__all__ = ["DiTRSRProcessor", "attach_rsr", "detach_rsr", "load_adapters", "recording", "save_adapters"]

KIND = "dit"


class DiTRSRProcessor(RSRProcessor):
    """Replaces ``AttnProcessor2_0`` on a DiT block's self-attention (``attn1``).

    It does what ``AttnProcessor2_0`` does for DiT (3-D tokens, no mask, no group/spatial norm), except that the
    projections and the attention run through the recursive sparse attention; the dropout ``to_out[1]``, the
    optional residual and ``rescale_output_factor`` are applied as diffusers does.
    """

    def forward(
        self,
        attn: Attention,
        hidden_states: Tensor,
        encoder_hidden_states: Tensor | None = None,
        attention_mask: Tensor | None = None,
        temb: Tensor | None = None,
        **kwargs,
    ) -> Tensor:
        if encoder_hidden_states is not None:
            raise ValueError("the DiT RSR processor routes self-attention only; got encoder_hidden_states")
        if attention_mask is not None:
            raise ValueError("the DiT RSR processor does not support an attention mask (DiT passes none)")
        if hidden_states.dim() != 3:
            raise ValueError(f"DiT tokens must be (B, N, D), got {tuple(hidden_states.shape)}")
        residual = hidden_states
        out = self.run(hidden_states).out  # (B, N, D): base output + recursive adapter contribution
        out = attn.to_out[1](out)  # dropout, as AttnProcessor2_0
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def _check_model(model: nn.Module) -> None:
    common.check_model(model, DiTTransformer2DModel, KIND, "sd3")


def _attn(model: DiTTransformer2DModel, i: int) -> Attention:
    block = model.transformer_blocks[i]
    attn = block.attn1
    if not isinstance(block.norm1, AdaLayerNormZero) or block.norm1.emb is None:
        raise ValueError(f"DiT block {i} has no adaLN-Zero timestep+class embedding to condition the gate on")
    if not isinstance(attn, Attention) or attn.is_cross_attention:
        raise ValueError(f"DiT block {i}: attn1 is not a diffusers self-attention module")
    if attn.group_norm is not None or attn.spatial_norm is not None:
        raise ValueError(f"DiT block {i}: attention with group_norm or spatial_norm is not supported")
    return attn


def attach_rsr(model: DiTTransformer2DModel, layers: list[int], cfg: RSRConfig) -> RSRHandle:
    """Route the self-attention of ``model.transformer_blocks[i]`` for ``i`` in ``layers`` through RSR.

    The whole model is frozen; only the new LoRA experts and gates are trainable (``handle.parameters()``).

    Args:
        model: a diffusers ``DiTTransformer2DModel`` (e.g. ``pipe.transformer``).
        layers: 0-based block indices, e.g. ``[12]`` or ``[4, 8, 12]``.
        cfg: RSR hyper-parameters. ``cond_dim`` may be 0: it is set to the model width ``D`` (the gate always
            reads the timestep + class embedding).

    Returns:
        The :class:`~rss_world.variants.common.RSRHandle` (also stored on the model).

    Raises:
        ValueError: not a DiT, bad layer indices, a ``cond_dim`` other than 0 or ``D``, or RSR already attached.
    """
    _check_model(model)

    def hooks(procs: dict[int, RSRProcessor]) -> list:
        out = []
        for i, proc in procs.items():
            emb = model.transformer_blocks[i].norm1.emb  # CombinedTimestepLabelEmbeddings -> (B, D)
            out.append(emb.register_forward_hook(lambda _m, _a, c, p=proc: p.set_condition(c)))
        return out

    return common.attach(model, KIND, layers, cfg, lambda i: _attn(model, i), DiTRSRProcessor, hooks)


def load_adapters(model: DiTTransformer2DModel, path: str | os.PathLike) -> RSRHandle:
    """Load adapters saved by :func:`save_adapters` onto a base DiT (attaching RSR with the saved config).

    Raises:
        ValueError: not a DiT, adapters saved for another model or size, or a config that differs from the
            one already attached.
    """
    _check_model(model)
    return common.load_adapters(model, path, KIND, attach_rsr)

"""Recursive sparse joint attention inside diffusers' ``SD3Transformer2DModel`` (text-conditioned MMDiT).

Usage::

    from rss_world.nn import RSRConfig
    from rss_world.variants import sd3

    handle = sd3.attach_rsr(pipe.transformer, layers=[12], cfg=RSRConfig(num_experts=2, steps=2, rank=64))
    image = pipe(prompt_embeds=pe, pooled_prompt_embeds=pooled, ...).images[0]
    sd3.detach_rsr(pipe.transformer)

Only the vision stream is routed through the experts. The text stream is projected once (``add_q/k/v_proj`` plus
``norm_added_q/k`` exactly as ``JointAttnProcessor2_0`` does) and rejoins the joint attention unchanged at every
latent step; its final-step attention output goes through ``to_add_out`` as usual.

The gate reads the vision tokens and ``temb`` = timestep embedding + pooled text embedding (width ``D``).
SD3 computes ``temb`` once per forward in ``model.time_text_embed``; :func:`attach_rsr` registers one forward hook
there that hands it to every routed block's processor.
"""

from __future__ import annotations

import os

from diffusers import SD3Transformer2DModel
from diffusers.models.attention_processor import Attention
from torch import Tensor, nn

from rss_world.nn import RSRConfig

from . import common
from .common import RSRHandle, RSRProcessor, detach_rsr, recording, save_adapters

__all__ = ["SD3RSRProcessor", "attach_rsr", "detach_rsr", "load_adapters", "recording", "save_adapters"]

KIND = "sd3"


class SD3RSRProcessor(RSRProcessor):
    """Replaces ``JointAttnProcessor2_0`` on an SD3 block's joint attention (``attn``).

    Returns ``(vision_out, text_out)`` like the diffusers processor when text tokens are given, else
    ``vision_out``.
    """

    def forward(
        self,
        attn: Attention,
        hidden_states: Tensor,
        encoder_hidden_states: Tensor | None = None,
        attention_mask: Tensor | None = None,
        *args,
        **kwargs,
    ) -> Tensor | tuple[Tensor, Tensor]:
        if attention_mask is not None:
            raise ValueError("the SD3 RSR processor does not support an attention mask (SD3 passes none)")
        b = hidden_states.shape[0]
        ctx = None
        if encoder_hidden_states is not None:
            d = attn.to_q.out_features // attn.heads
            q = attn.add_q_proj(encoder_hidden_states).view(b, -1, attn.heads, d).transpose(1, 2)  # (B, H, M, d)
            k = attn.add_k_proj(encoder_hidden_states).view(b, -1, attn.heads, d).transpose(1, 2)
            v = attn.add_v_proj(encoder_hidden_states).view(b, -1, attn.heads, d).transpose(1, 2)
            if attn.norm_added_q is not None:
                q = attn.norm_added_q(q)
            if attn.norm_added_k is not None:
                k = attn.norm_added_k(k)
            ctx = (q, k, v)
        res = self.run(hidden_states, ctx)
        out = attn.to_out[1](res.out)  # (B, N, D), dropout as JointAttnProcessor2_0
        if encoder_hidden_states is None:
            return out
        text = res.context  # (B, M, H*d) final-step attention rows of the text tokens
        if not attn.context_pre_only:
            text = attn.to_add_out(text)  # (B, M, D)
        return out, text


def _check_model(model: nn.Module) -> None:
    common.check_model(model, SD3Transformer2DModel, KIND, "dit")


def _attn(model: SD3Transformer2DModel, i: int) -> Attention:
    attn = model.transformer_blocks[i].attn
    if not isinstance(attn, Attention) or attn.add_q_proj is None:
        raise ValueError(f"SD3 block {i}: attn is not a diffusers joint attention module")
    return attn


def attach_rsr(model: SD3Transformer2DModel, layers: list[int], cfg: RSRConfig) -> RSRHandle:
    """Route the joint attention of ``model.transformer_blocks[i]`` for ``i`` in ``layers`` through RSR.

    The whole model is frozen; only the new LoRA experts (vision q/k/v) and gates are trainable.

    Args:
        model: a diffusers ``SD3Transformer2DModel`` (e.g. ``pipe.transformer``).
        layers: 0-based block indices, e.g. ``[12]`` (SD3-medium's middle) or ``[4, 8, 12]``.
        cfg: RSR hyper-parameters; ``cond_dim`` 0 is set to the model width (the ``temb`` width).

    Returns:
        The :class:`~rss_world.variants.common.RSRHandle` (also stored on the model).

    Raises:
        ValueError: not an SD3 transformer, bad layer indices, a mismatched ``cond_dim``, or already attached.
    """
    _check_model(model)

    def hooks(procs: dict[int, RSRProcessor]) -> list:
        def capture(_module: nn.Module, _args: tuple, temb: Tensor) -> None:
            for p in procs.values():  # temb: (B, D) timestep + pooled text embedding
                p.set_condition(temb)

        return [model.time_text_embed.register_forward_hook(capture)]

    return common.attach(model, KIND, layers, cfg, lambda i: _attn(model, i), SD3RSRProcessor, hooks)


def load_adapters(model: SD3Transformer2DModel, path: str | os.PathLike) -> RSRHandle:
    """Load adapters saved by :func:`save_adapters` onto a base SD3 transformer.

    Raises:
        ValueError: not an SD3 transformer, adapters saved for another model or size, or a config that differs
            from the one already attached.
    """
    _check_model(model)
    return common.load_adapters(model, path, KIND, attach_rsr)

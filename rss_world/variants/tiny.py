"""Tiny DiT / SD3 models and pipelines built from configs (no downloads), for tests, docs and smoke runs."""

from __future__ import annotations

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DiTPipeline,
    DiTTransformer2DModel,
    FlowMatchEulerDiscreteScheduler,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
)

TEXT_DIM = 16  # joint_attention_dim and pooled_projection_dim of the tiny SD3


def tiny_dit(seed: int = 0, num_layers: int = 2, learn_sigma: bool = True) -> DiTTransformer2DModel:
    """A 2-block DiT on 4x8x8 latents, 1000 classes (so DiTPipeline's null class 1000 exists), in eval mode."""
    torch.manual_seed(seed)
    return DiTTransformer2DModel(
        num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8 if learn_sigma else 4,
        num_layers=num_layers, sample_size=8, patch_size=2, num_embeds_ada_norm=1000,
    ).eval()


def tiny_sd3(seed: int = 0, num_layers: int = 2, qk_norm: str | None = None) -> SD3Transformer2DModel:
    """A 2-block SD3 transformer on 4x8x8 latents with 16-wide text embeddings, in eval mode."""
    torch.manual_seed(seed)
    return SD3Transformer2DModel(
        sample_size=8, patch_size=2, in_channels=4, num_layers=num_layers, attention_head_dim=8,
        num_attention_heads=2, joint_attention_dim=TEXT_DIM, caption_projection_dim=16,
        pooled_projection_dim=TEXT_DIM, out_channels=4, pos_embed_max_size=8, qk_norm=qk_norm,
    ).eval()


def tiny_vae(seed: int = 0) -> AutoencoderKL:
    """A 2-level AutoencoderKL (3 -> 4 latent channels, factor 2), in eval mode."""
    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 8), latent_channels=4,
        norm_num_groups=4, sample_size=16, shift_factor=0.0,
    ).eval()


def dit_pipeline(transformer: DiTTransformer2DModel, seed: int = 0) -> DiTPipeline:
    """``DiTPipeline`` around ``transformer`` with a tiny VAE and a DDIM scheduler."""
    pipe = DiTPipeline(transformer=transformer, vae=tiny_vae(seed), scheduler=DDIMScheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sd3_pipeline(transformer: SD3Transformer2DModel, seed: int = 0) -> StableDiffusion3Pipeline:
    """``StableDiffusion3Pipeline`` without text encoders: pass ``prompt_embeds`` and ``pooled_prompt_embeds``."""
    pipe = StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(), vae=tiny_vae(seed),
        text_encoder=None, tokenizer=None, text_encoder_2=None, tokenizer_2=None, text_encoder_3=None,
        tokenizer_3=None,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe

"""A small text encoder over the closed vocabulary of :mod:`rss_world.compbench`, giving SD3's two text inputs.

Prompts are split on spaces into words of the benchmark's vocabulary (:func:`vocabulary`). A two-layer transformer
encoder turns the word ids into per-token states (SD3's ``encoder_hidden_states``, ``(B, L, joint_attention_dim)``)
and a masked mean of them into one vector (SD3's ``pooled_projections``, ``(B, pooled_dim)``). It is learned with
the base model and frozen afterwards (:func:`rss_world.t2i.model.TextToImage.freeze_text`).

The empty prompt ``""`` is the unconditional input of classifier-free guidance: it reads as the single token
``<null>``. Padding positions come out as zeros, so a prompt's states do not depend on the padded length.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import torch
from torch import Tensor, nn

from rss_world.compbench import all_prompts

PAD, NULL = "<pad>", "<null>"


@cache
def vocabulary() -> tuple[str, ...]:
    """``<pad>`` (id 0), ``<null>`` (id 1), then every word of the benchmark's prompts, sorted."""
    words = sorted({w for p in all_prompts() for w in p.text.split()})
    return (PAD, NULL, *words)


def max_words() -> int:
    """The longest prompt of the benchmark, in words."""
    return max(len(p.text.split()) for p in all_prompts())


@dataclass
class TextEncoderConfig:
    """Sizes of the text encoder.

    Attributes:
        width: token width inside the encoder.
        layers: transformer encoder layers.
        heads: attention heads (must divide ``width``).
        max_len: token positions; prompts are padded to this length.
        out_dim: per-token output width (SD3's ``joint_attention_dim``).
        pooled_dim: pooled output width (SD3's ``pooled_projection_dim``).
    """

    width: int = 64
    layers: int = 2
    heads: int = 4
    max_len: int = 8
    out_dim: int = 64
    pooled_dim: int = 64

    def validate(self) -> None:
        for name in ("width", "layers", "heads", "max_len", "out_dim", "pooled_dim"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"text encoder {name} must be a positive integer, got {getattr(self, name)!r}")
        if self.width % self.heads:
            raise ValueError(f"text encoder width {self.width} is not divisible by heads {self.heads}")
        if self.max_len < max_words():
            raise ValueError(f"text encoder max_len {self.max_len} is below the longest prompt ({max_words()} words)")


def tokenize(texts: Sequence[str], max_len: int) -> Tensor:
    """Word ids ``(B, max_len)`` int64, padded with 0; ``""`` becomes ``<null>``.

    Raises:
        ValueError: a word outside :func:`vocabulary`, or a prompt longer than ``max_len`` words.
    """
    if isinstance(texts, str):
        raise ValueError("tokenize takes a list of prompts, not one string")
    index = {w: i for i, w in enumerate(vocabulary())}
    ids = torch.zeros(len(texts), max_len, dtype=torch.long)
    for row, text in enumerate(texts):
        words = text.split() or [NULL]
        if len(words) > max_len:
            raise ValueError(f"prompt {text!r} has {len(words)} words, the encoder takes at most {max_len}")
        for col, word in enumerate(words):
            if word not in index or word == PAD:
                raise ValueError(f"word {word!r} of prompt {text!r} is not in the benchmark's vocabulary")
            ids[row, col] = index[word]
    return ids


class TextEncoder(nn.Module):
    """Word ids -> (per-token states, pooled vector). Deterministic (no dropout)."""

    def __init__(self, cfg: TextEncoderConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.embed = nn.Embedding(len(vocabulary()), cfg.width, padding_idx=0)
        self.pos = nn.Parameter(torch.randn(cfg.max_len, cfg.width) * 0.02)
        layer = nn.TransformerEncoderLayer(cfg.width, cfg.heads, 2 * cfg.width, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.width)
        self.to_tokens = nn.Linear(cfg.width, cfg.out_dim)
        self.to_pooled = nn.Linear(cfg.width, cfg.pooled_dim)

    def forward(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        """``ids (B, L)`` -> ``(encoder_hidden_states (B, L, out_dim), pooled_projections (B, pooled_dim))``."""
        if ids.ndim != 2 or ids.shape[1] != self.cfg.max_len:
            raise ValueError(f"ids must be (B, {self.cfg.max_len}), got {tuple(ids.shape)}")
        keep = ids != 0  # (B, L)
        if not bool(keep[:, 0].all()):
            raise ValueError("every prompt needs at least one token (use '' for the unconditional prompt)")
        x = self.embed(ids) + self.pos  # (B, L, W)
        x = self.norm(self.encoder(x, src_key_padding_mask=~keep))  # (B, L, W)
        x = x * keep[..., None]  # (B, L, W) pads are zeros
        pooled = x.sum(1) / keep.sum(1, keepdim=True)  # (B, W) mean over real tokens
        return self.to_tokens(x) * keep[..., None], self.to_pooled(pooled)  # (B, L, out), (B, pooled)

    def encode(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Tokenize ``texts`` and run the encoder on the module's device."""
        return self(tokenize(texts, self.cfg.max_len).to(self.pos.device))

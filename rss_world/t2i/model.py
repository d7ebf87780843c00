"""The compbench text-to-image base model: a :class:`~rss_world.t2i.text.TextEncoder` and a small pixel-space
``SD3Transformer2DModel``, trained together with flow matching; the text encoder is frozen afterwards.

    >>> model = TextToImage(T2IConfig())
    >>> images = model.generate(["a red circle and a blue square"], steps=20, guidance=2.0, seed=0)  # (1, 32, 32, 3)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from rss_world.t2i.text import TextEncoder, TextEncoderConfig, tokenize
from rss_world.variants.config import BaseModelConfig
from rss_world.variants.sd3_base import PREDICTIONS, build_transformer, flow_loss, flow_scheduler, pixel_config, sample

SAMPLE_BATCH = 64  # images sampled at once by default (generate, and the benchmark through it)

@dataclass
class T2IConfig:
    """The whole model: text encoder sizes, transformer sizes and the flow scheduler's shift.

    Attributes:
        text: the text encoder (its ``out_dim`` and ``pooled_dim`` must match the transformer's text widths).
        transformer: the SD3 transformer (RGB pixels, see :func:`rss_world.variants.sd3_base.pixel_config`).
        shift: timestep shift of the flow scheduler, in training and sampling.
        weighting: training timestep density, ``logit_normal`` (SD3) or ``uniform``.
        prediction: what the transformer outputs, ``velocity`` (SD3) or ``sample`` (the clean image; see
            :mod:`rss_world.variants.sd3_base`).
    """

    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    transformer: BaseModelConfig = field(default_factory=pixel_config)
    shift: float = 1.0
    weighting: str = "logit_normal"
    prediction: str = "velocity"

    def validate(self) -> None:
        self.text.validate()
        t = self.transformer
        if (t.joint_attention_dim, t.pooled_projection_dim) != (self.text.out_dim, self.text.pooled_dim):
            raise ValueError(f"text encoder widths (out_dim {self.text.out_dim}, pooled_dim {self.text.pooled_dim}) "
                             f"do not match the transformer's (joint_attention_dim {t.joint_attention_dim}, "
                             f"pooled_projection_dim {t.pooled_projection_dim})")
        if t.in_channels != 3 or t.out_channels != 3:
            raise ValueError(f"the base model works on RGB pixels: in/out channels must be 3, got "
                             f"{t.in_channels}/{t.out_channels}")
        if self.weighting not in ("logit_normal", "uniform"):
            raise ValueError(f"weighting must be 'logit_normal' or 'uniform', got {self.weighting!r}")
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {self.prediction!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> T2IConfig:
        """Rebuild from :meth:`to_dict`; unknown or missing keys are a ``ValueError``."""
        try:
            cfg = cls(text=TextEncoderConfig(**d["text"]), transformer=BaseModelConfig(**d["transformer"]),
                      **{k: v for k, v in d.items() if k not in ("text", "transformer")})
        except (KeyError, TypeError) as err:
            raise ValueError(f"not a T2IConfig: {err}") from err
        cfg.validate()
        return cfg


class TextToImage(nn.Module):
    """Text encoder + SD3 transformer. ``text_frozen`` says whether the encoder still trains."""

    def __init__(self, cfg: T2IConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.text = TextEncoder(cfg.text)
        self.transformer = build_transformer(cfg.transformer)
        self.scheduler = flow_scheduler(cfg.shift)

    @property
    def text_frozen(self) -> bool:
        return not any(p.requires_grad for p in self.text.parameters())

    def freeze_text(self) -> None:
        """Stop training the text encoder (after base training): no gradients, eval mode from now on."""
        self.text.requires_grad_(False)
        self.text.eval()

    def train(self, mode: bool = True) -> TextToImage:
        super().train(mode)
        if self.text_frozen:
            self.text.eval()
        return self

    def encode(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """SD3's ``(encoder_hidden_states (B, L, text), pooled_projections (B, pooled))`` for ``texts``."""
        if self.text_frozen:
            with torch.no_grad():
                return self.text.encode(texts)
        return self.text.encode(texts)

    def loss(self, images: Tensor, ids: Tensor) -> Tensor:
        """Flow-matching loss on ``images (B, 3, H, W)`` in ``[-1, 1]`` with token ids ``(B, L)``."""
        embeds, pooled = self.text(ids)  # (B, L, text), (B, pooled)
        return flow_loss(self.transformer, self.scheduler, images, embeds, pooled, self.cfg.weighting,
                         self.cfg.prediction)

    @torch.no_grad()
    def generate(self, texts: Sequence[str], steps: int = 20, guidance: float = 1.0, seed: int = 0,
                 batch_size: int | None = None) -> np.ndarray:
        """Images for ``texts`` as ``(B, H, W, 3)`` uint8, in batches; the same seed gives the same images.

        Args:
            steps: Euler steps of the sampler.
            guidance: classifier-free guidance scale (1.0: none).
            seed: seeds the initial noise of the first batch (batch ``i`` uses ``seed + i``).
            batch_size: images sampled at once (``None``: :data:`SAMPLE_BATCH`).
        """
        batch_size = SAMPLE_BATCH if batch_size is None else batch_size
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        was_training = self.training
        self.eval()
        null = self.text.encode([""]) if guidance != 1.0 else None
        out = []
        device = self.text.pos.device
        for i, start in enumerate(range(0, len(texts), batch_size)):
            embeds, pooled = self.text.encode(list(texts[start:start + batch_size]))
            gen = torch.Generator(device="cpu").manual_seed(seed + i)
            x = sample(self.transformer, embeds, pooled, steps=steps, shift=self.cfg.shift, guidance=guidance,
                       null_embeds=null, generator=gen, prediction=self.cfg.prediction).to(device)  # (b, 3, H, W)
            out.append(((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())
        self.train(was_training)
        return np.concatenate(out) if out else np.zeros((0, *self.image_shape), dtype=np.uint8)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        s = self.cfg.transformer.sample_size
        return s, s, 3

    def tokens(self, texts: Sequence[str]) -> Tensor:
        """Token ids for ``texts`` on the model's device."""
        return tokenize(texts, self.cfg.text.max_len).to(self.text.pos.device)

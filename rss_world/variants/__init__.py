"""Recursive sparse attention inside diffusers DiT and SD3 transformers: the only package that imports diffusers.
(peft is not a runtime dependency of the method; the tests use it to check that E=1, T=1 is plain LoRA.)

``attach_rsr`` / ``load_adapters`` here dispatch on the model type; ``rss_world.variants.dit`` and
``rss_world.variants.sd3`` hold the variant-specific processors. See ``docs/variants.md``.
"""

from __future__ import annotations

import os

from torch import nn

from rss_world.nn import RSRConfig

from .common import RouteSnapshot, RSRHandle, detach_rsr, get_handle, recording, save_adapters

__all__ = [
    "RSRHandle",
    "RouteSnapshot",
    "attach_rsr",
    "detach_rsr",
    "get_handle",
    "load_adapters",
    "recording",
    "save_adapters",
    "variant_of",
]


def variant_of(model: nn.Module):
    """The variant module (``dit`` or ``sd3``) for a diffusers transformer.

    Raises:
        ValueError: for any other model type.
    """
    from diffusers import DiTTransformer2DModel, SD3Transformer2DModel

    from . import dit, sd3

    if isinstance(model, DiTTransformer2DModel):
        return dit
    if isinstance(model, SD3Transformer2DModel):
        return sd3
    hint = " (pass pipe.transformer, not the pipeline)" if hasattr(model, "transformer") else ""
    raise ValueError(f"RSR variants support DiTTransformer2DModel and SD3Transformer2DModel, got "
                     f"{type(model).__name__}{hint}")


def attach_rsr(model: nn.Module, layers: list[int], cfg: RSRConfig) -> RSRHandle:
    """Attach RSR to a DiT or SD3 transformer (see ``dit.attach_rsr`` and ``sd3.attach_rsr``)."""
    return variant_of(model).attach_rsr(model, layers, cfg)


def load_adapters(model: nn.Module, path: str | os.PathLike) -> RSRHandle:
    """Load saved adapters onto a DiT or SD3 transformer (see ``dit.load_adapters``)."""
    return variant_of(model).load_adapters(model, path)

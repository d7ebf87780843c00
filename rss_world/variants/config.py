"""Settings of RSR fine-tuning on a DiT or SD3 transformer. The dataclass defaults are the shipped run (a tiny
pixel-space DiT on scikit-learn digits); ``configs/train_variant.yaml`` and the ``variant`` presets
(``configs/variant/{dit,sd3}.yaml``) list only what differs, and Hydra checks every override against these types."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from rss_world.nn import RSRConfig

SCHEMA = "train_variant_schema"  # the name ``configs/train_variant.yaml`` builds on
KINDS = ("dit", "sd3")


def _given(settings: Any) -> dict[str, Any]:
    """A dataclass's fields without the ones left ``None`` (those that belong to the other kind of model)."""
    return {k: v for k, v in asdict(settings).items() if v is not None}


@dataclass
class BaseModelConfig:
    """Sizes of a base transformer built from scratch (when ``pretrained`` is null); ``None``: the other kind's."""

    num_embeds_ada_norm: int | None = 10  # DiT: classes
    sample_size: int = 16
    patch_size: int = 2
    in_channels: int = 1
    out_channels: int = 1
    num_layers: int = 2
    attention_head_dim: int = 16
    num_attention_heads: int = 2
    joint_attention_dim: int | None = None  # SD3: text-token width
    caption_projection_dim: int | None = None  # SD3
    pooled_projection_dim: int | None = None  # SD3: pooled-text width
    pos_embed_max_size: int | None = None  # SD3

    def kwargs(self) -> dict[str, Any]:
        """The constructor arguments of the diffusers transformer."""
        return _given(self)


@dataclass
class SchedulerConfig:
    """The training noise scheduler's arguments (when ``scheduler_path`` is null); ``None``: the other kind's."""

    num_train_timesteps: int = 1000
    beta_schedule: str | None = "squaredcos_cap_v2"  # DDPM (DiT)
    shift: float | None = None  # flow matching (SD3)

    def kwargs(self) -> dict[str, Any]:
        """The constructor arguments of the diffusers scheduler."""
        return _given(self)


@dataclass
class VariantConfig:
    """Which transformer, and where RSR goes (the ``variant`` preset group).

    Attributes:
        kind: ``dit`` (class-conditioned, self-attention) or ``sd3`` (text-conditioned, joint attention).
        pretrained: a local diffusers directory to fine-tune (no hub access); null: build ``model`` from scratch.
        subfolder: the transformer's subfolder of a pipeline directory, e.g. ``transformer``.
        scheduler_path: a local scheduler directory; null: build ``scheduler``.
        layers: 0-based indices into ``transformer_blocks`` (paper: ``[12]`` or ``[4, 8, 12]``).
        rsr: the recursive sparse attention (``cond_dim`` 0: the model width).
    """

    kind: str = "dit"
    pretrained: str | None = None
    subfolder: str | None = None
    scheduler_path: str | None = None
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    layers: list[int] = field(default_factory=lambda: [1])
    rsr: RSRConfig = field(default_factory=RSRConfig)
    model: BaseModelConfig = field(default_factory=BaseModelConfig)


@dataclass
class VariantDataConfig:
    """What to train on.

    Attributes:
        kind: ``digits`` (scikit-learn digits in pixel space at the model's sample size) or ``tensors`` (a
            safetensors file).
        path: for ``tensors``: ``latents`` + ``class_labels`` (DiT) or ``prompt_embeds`` + ``pooled_prompt_embeds``
            (SD3).
        prompt_len: SD3 on digits: tokens of the per-class stand-in text embedding.
    """

    kind: str = "digits"
    path: str | None = None
    prompt_len: int = 4


@dataclass
class VariantTrainConfig:
    """Everything ``python -m rss_world.train --variant dit|sd3`` reads (``configs/train_variant.yaml``).

    Attributes:
        balance_weight: weight of the routing balance loss (used only when E > 3, as in the paper).
        log_every: print the loss every this many steps.
        cpu: train on the CPU (false: the accelerator's device).
        mixed_precision: ``no``, ``fp16`` or ``bf16``.
        weighting: SD3 timestep density, ``logit_normal`` or ``uniform``.
        log_with: accelerate trackers to log to as well, e.g. ``tensorboard`` (``None``: the JSONL log only).
    """

    variant: VariantConfig = field(default_factory=VariantConfig)
    data: VariantDataConfig = field(default_factory=VariantDataConfig)
    seed: int = 0
    output_dir: str = "outputs/variant_${variant.kind}"
    steps: int = 50
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 0.0
    balance_weight: float = 0.01
    grad_clip: float = 1.0
    log_every: int = 10
    cpu: bool = True
    mixed_precision: str = "no"
    weighting: str = "logit_normal"
    log_with: str | None = None


def compose_variant(kind: str, overrides: Sequence[str] = ()):
    """``configs/train_variant.yaml`` with the ``kind`` preset and Hydra ``key=value`` overrides, typed by
    :class:`VariantTrainConfig`.

    Raises:
        ValueError: an unknown kind, or an override that names an unknown key, has a wrong type or does not parse.
    """
    from hydra.core.config_store import ConfigStore

    from rss_world.config import compose

    if kind not in KINDS:
        raise ValueError(f"unknown variant {kind!r}; choose one of {', '.join(KINDS)}")
    ConfigStore.instance().store(name=SCHEMA, node=VariantTrainConfig)
    return compose("train_variant", [f"variant={kind}", *overrides])

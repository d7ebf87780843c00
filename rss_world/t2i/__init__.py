"""Text-to-image on the compositional benchmark: a small text encoder and a pixel-space SD3 base model trained
from scratch with flow matching (the base that RSR and LoRA fine-tunes start from).

* :mod:`~rss_world.t2i.text`: the closed-vocabulary tokenizer and text encoder (SD3's two text inputs).
* :mod:`~rss_world.t2i.model`: :class:`TextToImage` (encoder + ``SD3Transformer2DModel``), loss and sampling.
* :mod:`~rss_world.t2i.train`: base training in the package's training loop; the encoder is frozen at the end.
* :mod:`~rss_world.t2i.checkpoint`: self-checking checkpoints; :func:`shipped_base` is the one in the package.
* :mod:`~rss_world.t2i.bench`: per-category scores with intervals and sampling time.
* :mod:`~rss_world.t2i.finetune`: fine-tuning a base as one study row (continued training, LoRA or RSR adapters).
* :mod:`~rss_world.t2i.study`: the compositional SD3 study (rows, learning-rate search, seeds, paired bootstrap).

diffusers stays in :mod:`rss_world.variants` (:mod:`rss_world.variants.sd3_base`).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from rss_world.t2i.bench import evaluate
from rss_world.t2i.checkpoint import load_base, save_base
from rss_world.t2i.model import T2IConfig, TextToImage
from rss_world.t2i.text import TextEncoder, TextEncoderConfig, tokenize, vocabulary
from rss_world.t2i.train import BaseTrainConfig, train_base

__all__ = ["BaseTrainConfig", "T2IConfig", "TextEncoder", "TextEncoderConfig", "TextToImage", "evaluate",
           "load_base", "save_base", "shipped_base", "shipped_base_path", "tokenize", "train_base", "vocabulary"]


def shipped_base_path() -> Path:
    """Folder of the base checkpoint shipped in the package (``rss_world/checkpoints/compbench_base``)."""
    return Path(str(files("rss_world") / "checkpoints" / "compbench_base"))


def shipped_base() -> TextToImage:
    """The shipped base model (text encoder frozen), in eval mode."""
    return load_base(shipped_base_path())

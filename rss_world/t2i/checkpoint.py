"""Base-model checkpoints: a directory with ``model.safetensors`` and ``config.json`` (format, model config, sha256
of the weights, whether the text encoder is frozen, free-form ``meta``), each written atomically.

:func:`load_base` checks everything before it loads anything: a missing file, another format, a config that does
not rebuild, weights whose sha256 differs from the recorded one (a corrupt or swapped file), whose tensors do not
fit the config or are not finite are each a ``ValueError`` that says which. Writing and checking the weights file is
:func:`rss_world.checkpoint.write_weights` / :func:`~rss_world.checkpoint.read_weights`, shared with the world
model's checkpoints.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from rss_world.checkpoint import read_weights, write_weights
from rss_world.io import atomic_write_text
from rss_world.t2i.model import T2IConfig, TextToImage

FORMAT = "rss_world.t2i.base/1"
KIND = "compbench_t2i"
WEIGHTS, CONFIG = "model.safetensors", "config.json"


def save_base(path: str | Path, model: TextToImage, meta: dict[str, Any] | None = None) -> Path:
    """Write ``model`` to directory ``path`` (weights first, then the config naming their sha256)."""
    path = Path(path)
    digest = write_weights(path / WEIGHTS, model, metadata={"format": FORMAT})
    config = {"format": FORMAT, "kind": KIND, "model": model.cfg.to_dict(), "text_frozen": model.text_frozen,
              "sha256": digest, "meta": meta or {}}
    atomic_write_text(path / CONFIG, json.dumps(config, indent=1) + "\n")
    return path


def read_base_config(path: str | Path) -> dict[str, Any]:
    """The checked ``config.json`` of a base checkpoint (see the module docstring for what raises)."""
    path = Path(path)
    if not (path / CONFIG).is_file() or not (path / WEIGHTS).is_file():
        raise ValueError(f"{path} is not a base-model checkpoint: expected {CONFIG} and {WEIGHTS} in it")
    try:
        config = json.loads((path / CONFIG).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path / CONFIG} is not valid JSON: {err}") from err
    if not isinstance(config, dict) or config.get("format") != FORMAT or config.get("kind") != KIND:
        got = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise ValueError(f"{path / CONFIG} is not a {FORMAT} {KIND} checkpoint (format {got!r})")
    for key, kind in (("model", dict), ("sha256", str), ("text_frozen", bool), ("meta", dict)):
        if not isinstance(config.get(key), kind):
            raise ValueError(f"{path / CONFIG}: field {key!r} must be a {kind.__name__}, got {config.get(key)!r}")
    return config


def load_base(path: str | Path, device: str | torch.device = "cpu") -> TextToImage:
    """Rebuild the model saved in ``path``; a frozen text encoder comes back frozen. Returned in eval mode."""
    path = Path(path)
    config = read_base_config(path)
    model = TextToImage(T2IConfig.from_dict(config["model"]))
    model.load_state_dict(read_weights(path / WEIGHTS, config["sha256"], model))
    if config["text_frozen"]:
        model.freeze_text()
    return model.to(device).eval()

"""Base-model checkpoints: a directory with ``model.safetensors`` and ``config.json`` (format, model config, sha256
of the weights, whether the text encoder is frozen, free-form ``meta``), each written atomically.

:func:`load_base` checks everything before it builds anything: a missing file, another format, a config that does
not rebuild, weights whose sha256 differs from the recorded one (a corrupt or swapped file) or whose tensors do not
fit the config are each a ``ValueError`` that says which.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from rss_world.checkpoint import weights_digest
from rss_world.io import atomic_write, atomic_write_text
from rss_world.t2i.model import T2IConfig, TextToImage

FORMAT = "rss_world.t2i.base/1"
KIND = "compbench_t2i"
WEIGHTS, CONFIG = "model.safetensors", "config.json"


def save_base(path: str | Path, model: TextToImage, meta: dict[str, Any] | None = None) -> Path:
    """Write ``model`` to directory ``path`` (weights first, then the config naming their sha256)."""
    path = Path(path)
    state = {k: v.detach().contiguous().cpu().clone() for k, v in model.state_dict().items()}
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise ValueError(f"refusing to save non-finite weights in {bad[:5]}")
    atomic_write(path / WEIGHTS, lambda tmp: save_file(state, tmp, metadata={"format": FORMAT}))
    config = {"format": FORMAT, "kind": KIND, "model": model.cfg.to_dict(), "text_frozen": model.text_frozen,
              "sha256": weights_digest(path / WEIGHTS), "meta": meta or {}}
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
    cfg = T2IConfig.from_dict(config["model"])
    digest = weights_digest(path / WEIGHTS)
    if digest != config["sha256"]:
        raise ValueError(f"{path / WEIGHTS} is corrupt or was replaced: sha256 {digest[:12]}... differs from the "
                         f"recorded {config['sha256'][:12]}...")
    try:
        state = load_file(str(path / WEIGHTS))
    except SafetensorError as err:
        raise ValueError(f"{path / WEIGHTS} is not a readable safetensors file: {err}") from err
    model = TextToImage(cfg)
    want = model.state_dict()
    missing, extra = sorted(set(want) - set(state)), sorted(set(state) - set(want))
    if missing or extra:
        raise ValueError(f"{path / WEIGHTS} does not fit its config: missing {missing[:4]}, unexpected {extra[:4]}")
    bad = [k for k in want if want[k].shape != state[k].shape]
    if bad:
        raise ValueError(f"{path / WEIGHTS}: tensor {bad[0]} is {tuple(state[bad[0]].shape)}, the config needs "
                         f"{tuple(want[bad[0]].shape)}")
    model.load_state_dict(state)
    if config["text_frozen"]:
        model.freeze_text()
    return model.to(device).eval()

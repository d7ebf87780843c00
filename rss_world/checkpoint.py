"""Self-describing checkpoints: safetensors weights + JSON config, written atomically.

A checkpoint is a directory holding ``model.safetensors`` and ``config.json`` (``{"format": ..., "kind":
"world_model", "model": {WorldModelConfig fields}, "meta": {...}}``), and, for training runs,
``train_state.pt`` (optimizer, step, RNG). Every file is written to a temporary name and renamed, so an
interrupted save never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from rss_world.io import atomic_write
from rss_world.world_model import WorldModel, WorldModelConfig

FORMAT = "rss_world.checkpoint/1"
WEIGHTS, CONFIG, TRAIN_STATE = "model.safetensors", "config.json", "train_state.pt"


def save_model(path: str | Path, model: WorldModel, meta: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (weights + config) to the directory ``path``."""
    path = Path(path)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    cfg = {"format": FORMAT, "kind": "world_model", "model": model.cfg.to_dict(), "meta": meta or {}}
    atomic_write(path / WEIGHTS, lambda tmp: save_file(state, tmp))
    atomic_write(path / CONFIG, lambda tmp: Path(tmp).write_text(json.dumps(cfg, indent=1)))
    return path


def read_config(path: str | Path) -> dict[str, Any]:
    """Read and check a checkpoint's ``config.json``."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint directory {path} does not exist")
    f = path / CONFIG
    if not f.exists():
        raise FileNotFoundError(f"checkpoint {path} has no {CONFIG}")
    try:
        cfg = json.loads(f.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"checkpoint config {f} is not valid JSON: {err}") from err
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT or cfg.get("kind") != "world_model":
        raise ValueError(f"{f} is not a {FORMAT} world-model checkpoint config")
    return cfg


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> WorldModel:
    """Rebuild a :class:`WorldModel` from a checkpoint directory alone, in eval mode.

    Raises:
        FileNotFoundError: the directory or one of its files is missing.
        ValueError: the config is invalid, the weights file is corrupt, or weights and config do not match.
    """
    path = Path(path)
    cfg = read_config(path)
    model = WorldModel(WorldModelConfig.from_dict(cfg["model"]))
    f = path / WEIGHTS
    if not f.exists():
        raise FileNotFoundError(f"checkpoint {path} has no {WEIGHTS}")
    try:
        state = load_file(f, device=str(map_location))
    except (SafetensorError, OSError) as err:
        raise ValueError(f"checkpoint weights {f} are corrupt or unreadable: {err}") from err
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    bad_shape = [k for k in set(own) & set(state) if own[k].shape != state[k].shape]
    if missing or unexpected or bad_shape:
        raise ValueError(
            f"checkpoint {path} does not match its config: missing {missing[:5]}, unexpected {unexpected[:5]}, "
            f"wrong shapes {sorted(bad_shape)[:5]}"
        )
    model.load_state_dict(state)
    return model.eval()


def save_train_state(path: str | Path, state: dict[str, Any]) -> None:
    """Write optimizer/step/RNG state next to the weights (atomically)."""
    atomic_write(Path(path) / TRAIN_STATE, lambda tmp: torch.save(state, tmp))


def load_train_state(path: str | Path) -> dict[str, Any]:
    f = Path(path) / TRAIN_STATE
    if not f.exists():
        raise FileNotFoundError(f"{path} has no {TRAIN_STATE}: it cannot be resumed")
    try:
        return torch.load(f, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, OSError) as err:
        raise ValueError(f"training state {f} is corrupt: {err}") from err

"""Self-describing checkpoints: safetensors weights + JSON config, written atomically.

A checkpoint is a directory holding ``model.safetensors`` and ``config.json`` (``{"format": ..., "kind":
"world_model", "arch": name in rss_world.world_model.ARCHS, "model": {its config's fields}, "sha256": of the
weights file, "meta": {...}}``), and, for training runs,
``train_state.pt`` (optimizer, step, RNG). Every file is written to a temporary name and renamed, so an
interrupted save never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from rss_world.io import atomic_write, atomic_write_text
from rss_world.world_model import ARCHS, WorldModel

FORMAT = "rss_world.checkpoint/3"
LEGACY_FORMATS = {  # world model v1: absolute grid positions up to 16, trained on map labels; no conversion exists
    "rss_world.checkpoint/1": "world model v1, before the world_model package",
    "rss_world.checkpoint/2": "world model v1: learned absolute positions up to 16x16, trained on map labels",
}
WEIGHTS, CONFIG, TRAIN_STATE = "model.safetensors", "config.json", "train_state.pt"


def weights_digest(path: str | Path) -> str:
    """sha256 of a weights file, hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _non_finite(state: dict[str, torch.Tensor]) -> list[str]:
    return [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def write_weights(file: str | Path, module: torch.nn.Module, metadata: dict[str, str] | None = None) -> str:
    """Write ``module``'s state dict to the safetensors ``file`` atomically; return the file's sha256.

    Raises:
        ValueError: a weight is not finite (nothing is written).
    """
    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    bad = _non_finite(state)
    if bad:
        raise ValueError(f"refusing to save non-finite weights in {bad[:5]}")
    atomic_write(Path(file), lambda tmp: save_file(state, tmp, metadata=metadata))
    return weights_digest(file)


def read_weights(file: str | Path, sha256: str, module: torch.nn.Module,
                 map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The state dict in the safetensors ``file``, checked before anything is loaded: its sha256 is the recorded
    one, it reads, its tensors fit ``module`` (names and shapes) and are finite. Both checkpoint kinds use it.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: which check failed.
    """
    f = Path(file)
    if not f.exists():
        raise FileNotFoundError(f"checkpoint {f.parent} has no {f.name}")
    if weights_digest(f) != sha256:
        raise ValueError(f"checkpoint weights {f} do not match the sha256 in {CONFIG}: the file is corrupt or "
                         "was replaced")
    try:
        state = load_file(f, device=str(map_location))
    except (SafetensorError, OSError) as err:
        raise ValueError(f"checkpoint weights {f} are corrupt or unreadable: {err}") from err
    own = module.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    bad_shape = [k for k in set(own) & set(state) if own[k].shape != state[k].shape]
    if missing or unexpected or bad_shape:
        raise ValueError(
            f"checkpoint {f.parent} does not match its config (the weights file does not fit it): missing "
            f"{missing[:5]}, unexpected {unexpected[:5]}, wrong shapes {sorted(bad_shape)[:5]}"
        )
    bad = _non_finite(state)
    if bad:
        raise ValueError(f"checkpoint {f.parent} holds non-finite weights in {bad[:5]}")
    return state


def save_model(path: str | Path, model: WorldModel, meta: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (weights, then a config that names its architecture and the weights' sha256) to ``path``."""
    path = Path(path)
    cfg = {"format": FORMAT, "kind": "world_model", "arch": model.arch, "model": model.cfg.to_dict(),
           "sha256": write_weights(path / WEIGHTS, model), "meta": meta or {}}
    atomic_write_text(path / CONFIG, json.dumps(cfg, indent=1))
    return path


def read_config(path: str | Path) -> dict[str, Any]:
    """Read and check a checkpoint's ``config.json`` against its schema.

    Raises:
        FileNotFoundError: the directory or its config is missing.
        ValueError: the config is not JSON, is of another format or kind, or a field has a wrong type or value.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint directory {path} does not exist")
    f = path / CONFIG
    if not f.exists():
        raise FileNotFoundError(f"checkpoint {path} has no {CONFIG}")
    try:
        cfg = json.loads(f.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"checkpoint config {f} is not valid JSON: {err}") from err
    if not isinstance(cfg, dict):
        raise ValueError(f"{f} must hold a JSON object, got {type(cfg).__name__}")
    if cfg.get("format") in LEGACY_FORMATS:
        raise ValueError(f"{f} is a {cfg['format']} checkpoint ({LEGACY_FORMATS[cfg['format']]}); this version "
                         f"reads {FORMAT} (world model v2) and cannot convert it: retrain with python -m "
                         f"rss_world.train --env frozenlake")
    if cfg.get("format") != FORMAT or cfg.get("kind") != "world_model":
        raise ValueError(f"{f} is not a {FORMAT} world-model checkpoint config")
    for key, kind in (("arch", str), ("model", dict), ("sha256", str), ("meta", dict)):
        if not isinstance(cfg.get(key), kind):
            raise ValueError(f"{f}: field {key!r} must be a {kind.__name__}, got {cfg.get(key)!r:.60}")
    if cfg["arch"] not in ARCHS:
        raise ValueError(f"{f}: unknown architecture {cfg['arch']!r}; known: {', '.join(ARCHS)}")
    try:
        ARCHS[cfg["arch"]].config_class.from_dict(cfg["model"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"{f}: bad 'model' settings: {err}") from None
    return cfg


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> WorldModel:
    """Rebuild a world model from a checkpoint directory alone, in eval mode.

    Raises:
        FileNotFoundError: the directory or one of its files is missing.
        ValueError: the config is invalid; the weights are corrupt, do not match their recorded sha256, hold
            non-finite values, or do not match the config.
    """
    path = Path(path)
    cfg = read_config(path)
    cls = ARCHS[cfg["arch"]]
    model = cls(cls.config_class.from_dict(cfg["model"]))
    model.load_state_dict(read_weights(path / WEIGHTS, cfg["sha256"], model, map_location))
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

"""Checkpoints describe themselves and prove they are intact: bad ones are refused with one clear line."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from rss_world.checkpoint import CONFIG, WEIGHTS, load_model, save_model, weights_digest
from rss_world.world_model import ARCHS, build_world_model


@pytest.fixture
def ckpt(tmp_path, tiny_settings) -> Path:
    torch.manual_seed(0)
    return save_model(tmp_path / "ck", build_world_model(**tiny_settings), {"note": "test"})


def edit_config(path: Path, change) -> None:
    cfg = json.loads((path / CONFIG).read_text())
    change(cfg)
    (path / CONFIG).write_text(json.dumps(cfg))


def rewrite_weights(path: Path, change) -> None:
    """Change the weights and re-record their sha256, so only the content check can catch the change."""
    state = load_file(path / WEIGHTS)
    change(state)
    save_file(state, path / WEIGHTS)
    edit_config(path, lambda c: c.update(sha256=weights_digest(path / WEIGHTS)))


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_every_architecture_round_trips(tmp_path, tiny_settings, arch):
    torch.manual_seed(0)
    m = build_world_model(arch, **tiny_settings).eval()
    m2 = load_model(save_model(tmp_path / arch, m))
    assert type(m2) is type(m) and m2.cfg == m.cfg
    z = torch.randn(2, 9, 32)
    with torch.no_grad():
        assert torch.equal(m.imagine(z, steps=2).frames, m2.imagine(z, steps=2).frames)


BAD = {
    "legacy layout": (lambda p: edit_config(p, lambda c: c.update(format="rss_world.checkpoint/1")),
                      "rss_world.checkpoint/1 checkpoint"),
    "bytes changed": (lambda p: (p / WEIGHTS).write_bytes((p / WEIGHTS).read_bytes()[:-7] + b"garbage"),
                      "do not match the sha256"),
    "NaN weights": (lambda p: rewrite_weights(p, lambda s: s["dec_out.weight"].fill_(float("nan"))),
                    r"non-finite weights in \['dec_out.weight'\]"),
    "wrong type": (lambda p: edit_config(p, lambda c: c["model"].update(dim="32")), "dim='32' \\(expected int\\)"),
    "missing model": (lambda p: edit_config(p, lambda c: c.pop("model")), "field 'model' must be a dict"),
    "unknown key": (lambda p: edit_config(p, lambda c: c["model"].update(depth=3)), r"unknown .* keys \['depth'\]"),
    "unknown arch": (lambda p: edit_config(p, lambda c: c.update(arch="mlp")), "unknown architecture 'mlp'"),
    "other shapes": (lambda p: edit_config(p, lambda c: c["model"].update(dim=64)), "does not match its config"),
    "not json": (lambda p: (p / CONFIG).write_text("{not json"), "not valid JSON"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_checkpoints_are_refused(ckpt, tmp_path, case):
    bad = tmp_path / "bad"
    shutil.copytree(ckpt, bad)
    damage, message = BAD[case]
    damage(bad)
    with pytest.raises(ValueError, match=message):
        load_model(bad)


def test_missing_checkpoint_and_nan_save(tmp_path, tiny_settings):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "nope")
    m = build_world_model(**tiny_settings)
    with torch.no_grad():
        m.status_head.bias.fill_(float("inf"))
    with pytest.raises(ValueError, match="refusing to save non-finite"):
        save_model(tmp_path / "inf", m)
    assert not (tmp_path / "inf").exists() or not any((tmp_path / "inf").iterdir())


@pytest.mark.parametrize("old", ["rss_world.checkpoint/1", "rss_world.checkpoint/2"])
def test_world_model_v1_checkpoints_are_refused_with_the_way_out(ckpt, old):
    edit_config(ckpt, lambda c: c.update(format=old))
    with pytest.raises(ValueError, match=f"{old} checkpoint .*cannot convert it: retrain with python -m rss_world"):
        load_model(ckpt)

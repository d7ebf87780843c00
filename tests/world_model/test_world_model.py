"""World model: API, checkpoints, bad input (its training: tests/training/)."""

import shutil

import numpy as np
import pytest
import torch
from wm_helpers import MAP3, tiny_model

from rss_world.checkpoint import load_model, save_model
from rss_world.envs.render import render_grid
from rss_world.world_model import MultiExpertConfig


def frames_of(*cells, desc=MAP3):
    return torch.from_numpy(np.stack([render_grid(desc, c) for c in cells]))


def test_shapes_and_api():
    m = tiny_model()
    f = frames_of((0, 0), (1, 0))
    z = m.encode(f)
    assert z.shape == (2, 9, 32)
    z1, logits, sel = m.step(z, torch.tensor([2, 1]))
    assert z1.shape == z.shape and logits.shape == (2, 4) and sel.index.tolist() == [2, 1]
    assert m.decode(z1).shape == (2, 48, 48, 3)
    assert torch.allclose(m.policy(z).sum(-1), torch.ones(2))
    assert m.status(z).shape == (2, 2)
    im = m.imagine(z, actions=torch.tensor([[2, 1, 1], [0, 0, 3]]))
    assert im.frames.shape == (2, 4, 48, 48, 3) and len(im.latents) == 4 and im.actions.shape == (2, 3)
    im = m.imagine(z, steps=2)  # the gate picks
    assert im.actions.shape == (2, 2) and len(im.route) == 2
    big = m.encode(torch.zeros(1, 128, 128, 3, dtype=torch.uint8))  # other grid sizes share the model
    assert big.shape == (1, 64, 32)
    m8 = tiny_model(arch="multi_expert")
    _, logits, sel = m8.step(m8.encode(f), torch.tensor([3, 0]))
    assert logits.shape == (2, 8) and (sel.index // 2).tolist() == [3, 0]


def test_bad_inputs_raise():
    m = tiny_model()
    with pytest.raises(ValueError, match="multiple of cell_px"):
        m.encode(torch.zeros(1, 50, 50, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\(B, H, W, 3\)"):
        m.encode(torch.zeros(1, 48, 48, dtype=torch.uint8))
    with pytest.raises(ValueError, match="uint8"):
        m.encode(torch.zeros(1, 48, 48, 3))
    z = m.encode(frames_of((0, 0)))
    with pytest.raises(ValueError, match="actions must be in"):
        m.step(z, torch.tensor([4]))
    with pytest.raises(ValueError, match="shape"):
        m.step(z, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="experts_per_action"):
        MultiExpertConfig(experts_per_action=0).validate()


def test_save_load_identical_outputs(tmp_path):
    m = tiny_model(seed=3).eval()
    save_model(tmp_path / "ck", m, {"note": "test"})
    m2 = load_model(tmp_path / "ck")
    f = frames_of((0, 1), (2, 1))
    with torch.no_grad():
        a = m.imagine(m.encode(f), actions=torch.tensor([[1, 2], [3, 3]]))
        b = m2.imagine(m2.encode(f), actions=torch.tensor([[1, 2], [3, 3]]))
    assert torch.equal(a.frames, b.frames) and torch.equal(a.status, b.status)


def test_corrupt_and_mismatched_checkpoints(tmp_path):
    m = tiny_model()
    ck = save_model(tmp_path / "ck", m)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "nope")
    bad = tmp_path / "corrupt"
    shutil.copytree(ck, bad)
    (bad / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ValueError, match="corrupt"):
        load_model(bad)
    mismatch = tmp_path / "mismatch"
    shutil.copytree(ck, mismatch)
    cfg = (mismatch / "config.json").read_text().replace('"dim": 32', '"dim": 64')
    (mismatch / "config.json").write_text(cfg)
    with pytest.raises(ValueError, match="does not match"):
        load_model(mismatch)
    (mismatch / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_model(mismatch)

"""World model: API, learning a forced move, checkpoints, resume, bad input."""

import dataclasses
import shutil

import numpy as np
import pytest
import torch
from wm_helpers import MAP3, tiny_model, transitions

from rss_world.checkpoint import load_model, save_model
from rss_world.envs.oracle import move
from rss_world.envs.render import render_grid
from rss_world.training import TrainConfig, train
from rss_world.world_model import MultiExpertConfig, WorldModel, WorldModelConfig


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


def test_forced_action_moves_agent_after_brief_training(tmp_path):
    """After brief training on one 3x3 map, the frame decoded after a forced action is closer to the true next
    frame of *that* action than to the next frame of any other action (a move, not a blur of all moves)."""
    torch.manual_seed(0)
    m = tiny_model(dim=64, heads=4, rank=16, gate_sweeps=0)
    data = transitions()
    cfg = TrainConfig(steps=250, batch=32, horizon=1, lr=3e-3, warmup=10, val_every=10_000, ckpt_every=10_000)
    train(m, {3: data}, None, cfg, tmp_path / "run", progress=False)
    m.eval()
    starts = sorted({tuple(c) for c in data.cells[:, 0].tolist()})
    right = total = 0
    with torch.no_grad():
        for cell in starts:
            z = m.encode(frames_of(*[cell] * 4))
            pred = m.decode(m.step(z, torch.arange(4))[0]).numpy() * 255.0  # (4, H, W, 3)
            truth = np.stack([render_grid(MAP3, move(MAP3, cell, a)[0]) for a in range(4)]).astype(np.float32)
            for a in range(4):
                dist = ((truth - pred[a]) ** 2).mean(axis=(1, 2, 3))
                others = [b for b in range(4) if not np.array_equal(truth[b], truth[a])]
                right += all(dist[a] < dist[b] for b in others)
                total += 1
    assert right / total >= 0.9, f"{right}/{total} forced moves decoded the right way"


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


def test_resume_continues_identically(tmp_path):
    data = {3: transitions()}
    cfg = TrainConfig(steps=6, batch=8, horizon=1, lr=1e-3, warmup=2, val_every=10_000, ckpt_every=3)
    straight = tiny_model(seed=1)
    train(straight, data, None, cfg, tmp_path / "a", progress=False)
    interrupted = tiny_model(seed=1)
    train(interrupted, data, None, cfg, tmp_path / "b", progress=False, stop_after=3)
    resumed = tiny_model(seed=99)  # different init: everything must come from the checkpoint
    train(resumed, data, None, cfg, tmp_path / "b", progress=False, resume=True)
    for (k, p), q in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p, q), k


def test_nan_loss_stops_and_keeps_checkpoint(tmp_path):
    data = {3: transitions()}
    cfg = TrainConfig(steps=4, batch=8, horizon=1, val_every=10_000, ckpt_every=2)
    m = tiny_model()
    train(m, data, None, cfg, tmp_path / "r", progress=False, stop_after=2)
    before = (tmp_path / "r" / "checkpoint" / "model.safetensors").read_bytes()
    with torch.no_grad():
        m.patch.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="last good"):
        train(m, data, None, cfg, tmp_path / "r", progress=False)
    assert (tmp_path / "r" / "checkpoint" / "model.safetensors").read_bytes() == before
    assert isinstance(load_model(tmp_path / "r" / "checkpoint"), WorldModel)


def test_gate_stage_changes_only_the_gate(tmp_path):
    data = {3: transitions()}
    cfg = TrainConfig(steps=2, batch=8, horizon=1, val_every=10_000, ckpt_every=2, gate_steps=3, gate_batch=8)
    m = tiny_model(seed=2)
    train(m, data, None, dataclasses.replace(cfg, gate_steps=0), tmp_path / "r", progress=False)  # stage 1 only
    before = {k: v.clone() for k, v in m.state_dict().items()}
    train(m, data, None, cfg, tmp_path / "r", progress=False, resume=True)  # stage 1 is complete: only stage 2
    gate_keys = ("value_gate.", "sub_gate.", "trunk", "gate.", "gate_pool", "policy_head")
    changed = {k for k, v in m.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith(gate_keys) for k in changed), sorted(changed)
    shipped = load_model(tmp_path / "r" / "checkpoint")
    for k, v in shipped.state_dict().items():
        assert torch.equal(v, m.state_dict()[k]), k

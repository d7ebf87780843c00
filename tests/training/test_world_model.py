"""The world model's two training stages in the loop: stage 1 learns forced moves, stage 2 changes only the gate."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from rss_world.checkpoint import load_model
from rss_world.envs.oracle import move
from rss_world.envs.render import render_grid
from rss_world.training.config import TrainConfig
from rss_world.training.world_model import train

# The recipe's settings scaled to one 3x3 map and one-step windows; no validation, no stage 2.
SMALL = dict(batch=8, horizon=1, val_every=10_000, ckpt_every=10_000, gate_steps=0)


@pytest.mark.slow
def test_forced_action_moves_agent_after_brief_training(tmp_path, new_tiny, map3, map3_transitions):
    """After brief training on one 3x3 map, the frame decoded after a forced action is closer to the true next
    frame of *that* action than to the next frame of any other action (a move, not a blur of all moves)."""
    m = new_tiny(dim=64, heads=4, rank=16)
    data = map3_transitions
    cfg = TrainConfig(**{**SMALL, "steps": 250, "batch": 32, "lr": 3e-3, "warmup": 10})
    train(m, {3: data}, None, cfg, tmp_path / "run", progress=False)
    m.eval()
    starts = [(r, c) for r in range(3) for c in range(3) if map3[r][c] not in "HG"]
    right = total = 0
    with torch.no_grad():
        for cell in starts:
            z = m.encode(torch.from_numpy(np.stack([render_grid(map3, cell)] * 4)))
            pred = m.decode(m.step(z, torch.arange(4))[0]).numpy() * 255.0  # (4, H, W, 3)
            truth = np.stack([render_grid(map3, move(map3, cell, a)[0]) for a in range(4)]).astype(np.float32)
            for a in range(4):
                dist = ((truth - pred[a]) ** 2).mean(axis=(1, 2, 3))
                others = [b for b in range(4) if not np.array_equal(truth[b], truth[a])]
                right += all(dist[a] < dist[b] for b in others)
                total += 1
    assert right / total >= 0.9, f"{right}/{total} forced moves decoded the right way"
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 251)) and rows[0]["size"] == 3
    shipped = load_model(tmp_path / "run" / "checkpoint")  # the checkpoint holds the trained weights
    assert shipped.cfg == m.cfg
    for k, v in shipped.state_dict().items():
        assert torch.equal(v, m.state_dict()[k]), k


def test_gate_stage_changes_only_the_gate(tmp_path, new_tiny, map3_transitions):
    data = {3: map3_transitions}
    cfg = TrainConfig(**{**SMALL, "steps": 2, "ckpt_every": 2, "gate_steps": 3, "gate_batch": 8})
    m = new_tiny(seed=2)
    gate = {id(p) for p in m.gate_parameters()}
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    train(m, data, None, dataclasses.replace(cfg, gate_steps=0), tmp_path / "r", progress=False)  # stage 1 only
    stage1 = {n for n, p in m.named_parameters() if not torch.equal(p, before[n])}
    assert stage1 and not any(id(p) in gate for n, p in m.named_parameters() if n in stage1)  # gate frozen
    assert all(p.requires_grad for p in m.parameters())
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    train(m, data, None, cfg, tmp_path / "r", progress=False, resume=True)  # stage 1 is complete: only stage 2
    changed = {n for n, p in m.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(id(p) in gate for n, p in m.named_parameters() if n in changed), sorted(changed)
    shipped = load_model(tmp_path / "r" / "checkpoint")
    for k, v in shipped.state_dict().items():
        assert torch.equal(v, m.state_dict()[k]), k
    rows = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [(r.get("stage"), r.get("step", r.get("gate_step"))) for r in rows] == [
        (None, 1), (None, 2), ("gate", 1), ("gate", 2), ("gate", 3)]

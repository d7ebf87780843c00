"""The shipped checkpoint: loads with one call, decodes real test maps of the trained sizes and of sizes it never
saw (up to 32x32), reproduces the outputs recorded when it was shipped, and carries no unused parameter."""

import json
from pathlib import Path

import numpy as np
import torch

from rss_world.checkpoint import load_model
from rss_world.envs.maps import find_cell, load_default_suite
from rss_world.envs.oracle import move, optimal_actions
from rss_world.envs.parser import parse_frame
from rss_world.envs.render import render_grid
from rss_world.paths import DEFAULT_CHECKPOINT
from rss_world.world_model import WorldModel, WorldModelConfig


def test_shipped_model_decodes_first_step_of_test_maps():
    """Trained on sizes 3-8; the 16x16 and 32x32 maps are from the large test suite."""
    model = load_model(DEFAULT_CHECKPOINT)
    maps = [m for size in (3, 5, 8) for m in load_default_suite("test", sizes=[size])[:3]]
    maps += [m for size in (16, 32) for m in load_default_suite("test_large", sizes=[size])[:2]]
    for spec in maps:
        start = find_cell(spec.desc, "S")
        action = min(optimal_actions(spec.desc, start))
        nxt, _ = move(spec.desc, start, action)
        with torch.no_grad():
            z = model.encode(torch.from_numpy(render_grid(spec.desc, start)[None]))
            z1, _, _ = model.step(z, torch.tensor([action]))
            frames = model.to_uint8(torch.stack([model.decode(z), model.decode(z1)])).numpy()[:, 0]
        assert parse_frame(frames[0]).equals_grid(spec.desc, start), spec.id
        assert parse_frame(frames[1]).equals_grid(spec.desc, nxt), spec.id
        assert np.abs(frames[1].astype(int) - render_grid(spec.desc, nxt).astype(int)).mean() < 10


def start_frames(size: int) -> torch.Tensor:
    maps = load_default_suite("test", sizes=[size])[:4]
    return torch.from_numpy(np.stack([render_grid(m.desc, find_cell(m.desc, "S")) for m in maps]))


def test_shipped_model_reproduces_outputs_recorded_when_it_was_shipped():
    """Policy, one step per action and a 6-step gate imagination on 4 test maps each of sizes 3, 5 and 8, against
    values recorded from the shipped checkpoint (``shipped_golden.json``): a change to the model code that changes
    what the shipped weights compute fails here."""
    golden = json.loads((Path(__file__).parent / "shipped_golden.json").read_text())
    model = load_model(DEFAULT_CHECKPOINT)
    with torch.no_grad():
        for size in (3, 5, 8):
            z = model.encode(start_frames(size))
            np.testing.assert_allclose(model.policy(z).numpy(), golden[f"policy_{size}"], atol=1e-4)
            sums = [float(model.step(z, torch.full((4,), a))[0].double().sum()) for a in range(4)]
            np.testing.assert_allclose(sums, golden[f"step_sums_{size}"], rtol=1e-4)
            im = model.imagine(z, steps=6)
            assert im.actions.tolist() == golden[f"imagined_actions_{size}"]
            np.testing.assert_allclose(im.frames.mean((2, 3, 4)).numpy(), golden[f"imagined_frame_means_{size}"],
                                       atol=1e-4)


def test_shipped_model_is_the_default_architecture_and_every_parameter_is_used():
    model = load_model(DEFAULT_CHECKPOINT).train()
    assert type(model) is WorldModel and model.cfg == WorldModelConfig()
    z = model.encode(start_frames(4))
    z1, _, _ = model.step(z, torch.tensor([0, 1, 2, 3]), with_logits=False)
    loss = model.decode(z1).sum() + model.status_logits(z1).sum() + model.gate_logits(z1.detach()).sum()
    loss.backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert unused == []

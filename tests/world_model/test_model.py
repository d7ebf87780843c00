"""World model: API and bad input (its checkpoints: tests/test_checkpoint.py; its training: tests/training/)."""

import numpy as np
import pytest
import torch

from rss_world.envs.render import render_grid
from rss_world.world_model import MultiExpertConfig


@pytest.fixture
def frames_of(map3):
    """``frames_of(*cells)``: the frames of :func:`map3` with the agent on each cell, ``(B, H, W, 3)`` uint8."""
    return lambda *cells: torch.from_numpy(np.stack([render_grid(map3, c) for c in cells]))


def test_shapes_and_api(new_tiny, frames_of):
    m = new_tiny()
    f = frames_of((0, 0), (1, 0))
    z = m.encode(f)
    assert z.shape == (2, 9, 32)
    z1, logits, sel = m.step(z, torch.tensor([2, 1]))
    assert z1.shape == z.shape and logits.shape == (2, 4) and sel.index.tolist() == [2, 1]
    assert m.decode(z1).shape == (2, 48, 48, 3)
    assert torch.allclose(m.policy(z).sum(-1), torch.ones(2))
    assert m.status(z).shape == (2, 2)
    actions = torch.tensor([[2, 1, 1], [0, 0, 3]])
    im = m.imagine(z, actions=actions)
    assert im.frames.shape == (2, 4, 48, 48, 3) and len(im.latents) == 4 and torch.equal(im.actions, actions)
    # imagining is stepping and decoding: its first step is step() on the first forced actions, then decode()
    first = m.step(z, actions[:, 0])[0]
    assert torch.equal(im.latents[0], z) and torch.allclose(im.latents[1], first)
    assert torch.allclose(im.frames[:, 0], m.decode(z)) and torch.allclose(im.frames[:, 1], m.decode(first))
    im = m.imagine(z, steps=2)  # the gate picks
    assert im.actions.shape == (2, 2) and len(im.route) == 2
    big = m.encode(torch.zeros(1, 128, 128, 3, dtype=torch.uint8))  # other grid sizes share the model
    assert big.shape == (1, 64, 32)
    m8 = new_tiny(arch="multi_expert")
    _, logits, sel = m8.step(m8.encode(f), torch.tensor([3, 0]))
    assert logits.shape == (2, 8) and (sel.index // 2).tolist() == [3, 0]


def test_bad_inputs_raise(new_tiny, frames_of):
    m = new_tiny()
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


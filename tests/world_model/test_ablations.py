"""The world-model architectures built by name (the shipped one and its ablations): each gives a policy, picks
experts that belong to the action taken, and imagines; an unknown name is refused."""

import pytest
import torch

from rss_world.world_model import ARCHS, build_world_model


def test_unknown_architecture_raises():
    with pytest.raises(ValueError, match="unknown world-model architecture 'mlp'"):
        build_world_model("mlp")


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_every_architecture_gives_a_policy_and_picks_experts(arch, new_tiny):
    m = new_tiny(arch=arch).eval()
    z = torch.randn(3, 16, 32)
    logits = m.gate_logits(z)
    assert logits.shape == (3, m.num_experts if arch != "shared_expert" else 4) and torch.isfinite(logits).all()
    assert torch.allclose(m.policy(z).sum(-1), torch.ones(3))
    z1, _, sel = m.step(z)  # the gate picks; in eval that is its argmax expert
    assert z1.shape == z.shape and (sel.index < m.num_experts).all()
    assert torch.equal(sel.action, logits.argmax(-1) // m.experts_per_action)
    if arch != "shared_expert":  # the expert that ran belongs to the action taken
        assert torch.equal(sel.index // m.experts_per_action, sel.action)
    im = m.imagine(z, steps=2)
    assert im.actions.shape == (3, 2) and torch.equal(im.actions[:, 0], sel.action)

"""The value-iteration planning gate: its structure can express exact shortest-path planning and it validates its
settings (how it plugs into each architecture: test_ablations.py)."""

import numpy as np
import pytest
import torch

from rss_world.envs.maps import generate_map
from rss_world.envs.oracle import optimal_actions
from rss_world.world_model.value_gate import ValueIterationGate

# FrozenLake actions LEFT, DOWN, RIGHT, UP -> index of the neighbour in the 3x3 cross-correlation kernel.
NEIGHBOUR = {0: 3, 1: 7, 2: 5, 3: 1}


def exact_maps(desc, agent):
    """Per-token logits a perfect reader of the latent would give: goal, walkable, agent."""
    size = len(desc)
    maps = torch.full((1, size * size, 3), -30.0)
    for r, row in enumerate(desc):
        for c, ch in enumerate(row):
            i = r * size + c
            maps[0, i, 0] = 30.0 if ch == "G" else -30.0
            maps[0, i, 1] = -30.0 if ch == "H" else 30.0
    maps[0, agent[0] * size + agent[1], 2] = 30.0
    return maps


def oracle_kernel_gate(sweeps=32):
    gate = ValueIterationGate(dim=8, num_actions=4, sweeps=sweeps)
    with torch.no_grad():
        gate.kernel.fill_(-40.0)
        for a, k in NEIGHBOUR.items():
            gate.kernel[a, k] = 40.0
    return gate


@pytest.mark.parametrize("size", [3, 5, 8])
def test_value_iteration_with_exact_maps_picks_a_shortest_path_action(size):
    rng = np.random.default_rng(size)
    gate = oracle_kernel_gate()
    checked = 0
    for _ in range(6):
        desc = generate_map(size, rng=rng)
        for r in range(size):
            for c in range(size):
                if desc[r][c] in "HG":
                    continue
                opt = optimal_actions(desc, (r, c))
                if not opt:
                    continue
                maps = exact_maps(desc, (r, c))
                q = torch.nn.functional.conv2d(gate.values(maps), gate.kernels(), padding=1).flatten(2)[0]
                q_here = q[:, r * size + c]
                assert int(q_here.argmax()) in opt, (desc, (r, c), q_here.tolist(), opt)
                checked += 1
    assert checked > 10


def test_too_few_sweeps_cannot_see_a_far_goal():
    desc = ("SFFFF", "FFFFF", "FFFFF", "FFFFF", "FFFFG")
    maps = exact_maps(desc, (0, 0))
    far = oracle_kernel_gate(sweeps=2).values(maps)[0, 0, 0, 0].item()
    near = oracle_kernel_gate(sweeps=16).values(maps)[0, 0, 0, 0].item()
    assert far < 1e-6 and near == pytest.approx(0.9 ** 8, rel=1e-3)


@pytest.mark.parametrize("kw", [dict(sweeps=-1), dict(gamma=1.0), dict(gamma=0.0), dict(dim=0)])
def test_bad_settings_raise(kw):
    with pytest.raises(ValueError, match="ValueIterationGate"):
        ValueIterationGate(**{"dim": 8, "num_actions": 4, "sweeps": 4, **kw})

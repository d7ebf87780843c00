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
    """Per-token logits a perfect reader of the latent would give: goal, hole, agent."""
    size = len(desc)
    maps = torch.full((1, size * size, 3), -30.0)
    for r, row in enumerate(desc):
        for c, ch in enumerate(row):
            i = r * size + c
            maps[0, i, 0] = 30.0 if ch == "G" else -30.0
            maps[0, i, 1] = 30.0 if ch == "H" else -30.0
    maps[0, agent[0] * size + agent[1], 2] = 30.0
    return maps


def oracle_kernel_gate(max_sweeps=None):
    gate = ValueIterationGate(dim=8, num_actions=4, max_sweeps=max_sweeps)
    with torch.no_grad():
        gate.kernel.fill_(-40.0)
        for a, k in NEIGHBOUR.items():
            gate.kernel[a, k] = 40.0
    return gate


@pytest.mark.parametrize("size, hard", [(3, False), (5, False), (8, False), (8, True), (32, True)])
def test_value_iteration_with_exact_maps_picks_a_shortest_path_action(size, hard):
    """Soft (training) and hard (eval) value iteration; the sweeps run until the values settle, so a far goal on a
    32x32 map is found as surely as a near one on a 3x3 map."""
    rng = np.random.default_rng(size)
    gate = oracle_kernel_gate()
    checked = 0
    for _ in range(6 if size < 32 else 1):
        desc = generate_map(size, rng=rng, min_path=size)
        values = gate.values(exact_maps(desc, (0, 0)), hard=hard)
        q = torch.nn.functional.conv2d(values, gate.kernels(hard), padding=1).flatten(2)[0]  # (A, N)
        for r in range(size):
            for c in range(size):
                opt = optimal_actions(desc, (r, c)) if desc[r][c] not in "HG" else ()
                if opt:
                    q_here = q[:, r * size + c]
                    assert int(q_here.argmax()) in opt, (desc, (r, c), q_here.tolist(), opt)
                    checked += 1
    assert checked > 10


def test_too_few_sweeps_cannot_see_a_far_goal_and_hard_values_are_exact_discounted_distances():
    desc = ("SFFFF", "FFFFF", "FFFFF", "FFFFF", "FFFFG")
    maps = exact_maps(desc, (0, 0))
    far = oracle_kernel_gate(max_sweeps=2).values(maps)[0, 0, 0, 0].item()
    near = oracle_kernel_gate().values(maps, hard=True)[0, 0, 0, 0].item()
    assert far < 1e-6 and near == pytest.approx(0.97 ** 8, rel=1e-6)


def test_eval_mode_reads_the_agent_token_and_training_mode_is_differentiable():
    desc = ("SFFH", "FHFF", "FFFF", "HFFG")
    gate = oracle_kernel_gate()
    with torch.no_grad():  # heads that pass the first three latent features through: goal, hole, agent
        gate.heads[1].weight.zero_()
        gate.heads[1].bias.zero_()
    maps = exact_maps(desc, (0, 0))
    gate.token_logits = lambda z: z  # read the exact maps as the latent
    logits, where = gate.eval()(maps)
    assert int(where.argmax()) == 0 and where.sum() == 1 and int(logits.argmax()) in optimal_actions(desc, (0, 0))
    soft = maps.clone().requires_grad_(True)
    logits, _ = gate.train()(soft)
    logits[0, 1].backward()
    assert soft.grad.abs().sum() > 0


@pytest.mark.parametrize("kw", [dict(max_sweeps=0), dict(gamma=1.0), dict(gamma=0.0), dict(dim=0)])
def test_bad_settings_raise(kw):
    with pytest.raises(ValueError, match="ValueIterationGate"):
        ValueIterationGate(**{"dim": 8, "num_actions": 4, **kw})

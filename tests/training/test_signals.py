"""Training signals made from pixels, rewards and terminations only: which cells change, which are rare, and the
gate's multiple-instance losses (lower for heads that point at the agent, the goal and the hole)."""

import numpy as np
import torch

from rss_world.data import Episodes, sample_windows
from rss_world.envs.render import render_grid
from rss_world.training.signals import demo_nll, gate_signal_losses, rare_cells

MAP = ("SFFH", "FHFF", "FFFF", "HFFG")
PX = 16


def frames(*cells):
    return torch.from_numpy(np.stack([render_grid(MAP, c, PX) for c in cells]))[None]  # (1, T+1, H, W, 3)


def test_changed_cells_are_where_the_agent_was_and_went():
    """The windows' ``changed`` cells, which the losses read: a move right, then a press up against the edge."""
    episode = Episodes(size=4, frames=frames((0, 0), (0, 1), (0, 1)).numpy(), actions=np.array([[2, 3]], np.int8),
                       rewards=np.zeros((1, 2), np.float32), terminated=np.zeros((1, 2), bool),
                       truncated=np.array([[False, True]]), lengths=np.array([2], np.int16))
    ch = sample_windows(episode, 1, 2, np.random.default_rng(0), long=True)["changed"][0]  # the window at step 0
    assert set(ch[0].nonzero().flatten().tolist()) == {0, 1} and not ch[1].any()


def test_rare_cells_are_the_few_unlike_the_floor():
    rare = rare_cells(frames((2, 2)), PX)[0, 0]
    want = {0, 3, 5, 12, 15, 2 * 4 + 2}  # start, holes, goal, agent
    got = set(rare.nonzero().flatten().tolist())
    # gymnasium draws a few floor tiles slightly differently next to others; most of the floor is common
    assert want <= got and len(got - want) <= 2, got


def logits_at(n: int, cells: dict[int, list[int]]) -> torch.Tensor:
    """Per-token logits (1, n, 3): +8 at the given cells of each head (0 goal, 1 hole, 2 agent), -8 elsewhere."""
    tl = torch.full((1, n, 3), -8.0)
    for head, where in cells.items():
        tl[0, where, head] = 8.0
    return tl


def test_gate_losses_are_low_for_heads_that_read_the_right_cells():
    changed = torch.zeros(1, 16, dtype=torch.bool)
    changed[0, [14, 15]] = True  # the agent steps from (3, 2) onto the goal (3, 3): reward 1, terminated
    reward, term, use = torch.tensor([1.0]), torch.tensor([True]), torch.tensor([True])
    right = gate_signal_losses(logits_at(16, {0: [15], 2: [14]}), logits_at(16, {0: [15], 2: [15]}), changed,
                               reward, term, use)
    wrong = gate_signal_losses(logits_at(16, {0: [3], 2: [0]}), logits_at(16, {0: [3], 2: [0]}), changed,
                               reward, term, use)
    for k in ("agent", "goal"):
        assert right[k] < 0.01 < wrong[k], (k, right[k], wrong[k])
    # The same step without reward ends in a hole: a goal head firing there is now wrong, a hole head right.
    hole = gate_signal_losses(logits_at(16, {1: [15], 2: [14]}), logits_at(16, {2: [15]}), changed,
                              torch.tensor([0.0]), term, use)
    goal_there = gate_signal_losses(logits_at(16, {0: [15], 2: [14]}), logits_at(16, {2: [15]}), changed,
                                    torch.tensor([0.0]), term, use)
    assert hole["hole"] < 0.01 and goal_there["goal"] > 1.0
    unused = gate_signal_losses(logits_at(16, {}), logits_at(16, {}), changed, reward, term, torch.tensor([False]))
    assert all(float(v) == 0.0 for v in unused.values())


def test_demo_nll_counts_only_the_demonstrations():
    logits = torch.tensor([[5.0, 0, 0, 0], [0, 5.0, 0, 0]])
    actions = torch.tensor([0, 3])
    assert demo_nll(logits, actions, torch.tensor([True, False])) < 0.1
    assert demo_nll(logits, actions, torch.tensor([False, True])) > 4.0
    assert float(demo_nll(logits, actions, torch.tensor([False, False]))) == 0.0

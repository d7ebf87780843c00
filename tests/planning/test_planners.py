"""rss_world.planners on a perfect stand-in world model (search optimality, halting) and a tiny real model."""

import numpy as np
import pytest
import torch
from torch import nn

from rss_world.envs.maps import find_cell, load_default_suite
from rss_world.envs.metrics import score_episode
from rss_world.envs.oracle import move, optimal_actions, optimal_length
from rss_world.envs.render import render_grid
from rss_world.planners import GatePlanner, GatePlannerConfig, Plan, SearchPlanner, SearchPlannerConfig, make_planner
from rss_world.world_model import StepSelection, WorldModel, WorldModelConfig

torch.set_num_threads(1)


class GridModel(nn.Module):
    """A perfect world model of one known map, with the WorldModel API (a test stand-in only).

    Token ``n`` of the latent is ``[agent here, hole here, goal here, 1]``. ``policy`` is the oracle's action
    (``gate="oracle"``), always one action (an int), or uniform (``None``).
    """

    def __init__(self, desc, gate=None):
        super().__init__()
        self.cfg = WorldModelConfig(dim=4, heads=1)
        self.dummy = nn.Parameter(torch.zeros(1))
        self.desc, self.n, self.gate = tuple(desc), len(desc), gate
        flat = "".join(desc)
        self.hole = torch.tensor([c == "H" for c in flat], dtype=torch.float32)
        self.goal = torch.tensor([c == "G" for c in flat], dtype=torch.float32)
        self.frames = {divmod(i, self.n): render_grid(desc, divmod(i, self.n)) for i in range(self.n ** 2)}

    check_frames = WorldModel.check_frames
    to_uint8 = staticmethod(WorldModel.to_uint8)
    reencode = WorldModel.reencode

    def _latent(self, cells):
        z = torch.zeros(len(cells), self.n ** 2, 4)
        for b, (r, c) in enumerate(cells):
            z[b, r * self.n + c, 0] = 1
        z[..., 1], z[..., 2], z[..., 3] = self.hole, self.goal, 1
        return z

    def _cells(self, z):
        return [divmod(int(i), self.n) for i in z[..., 0].argmax(1)]

    def encode(self, frames):
        out = []
        for f in frames.numpy():
            out.append(next(cell for cell, img in self.frames.items() if np.array_equal(img, f)))
        return self._latent(out)

    def decode(self, z):
        return torch.stack([torch.from_numpy(self.frames[c]).float() / 255 for c in self._cells(z)])

    def status(self, z):
        return torch.stack([(z[..., 0] * self.goal).amax(1), (z[..., 0] * self.hole).amax(1)], 1)

    def policy(self, z):
        if self.gate is None:
            return torch.full((z.shape[0], 4), 0.25)
        acts = [self.gate if isinstance(self.gate, int) else min(optimal_actions(self.desc, c) or {0})
                for c in self._cells(z)]
        return torch.nn.functional.one_hot(torch.tensor(acts), 4).float() * 0.97 + 0.0075

    def step(self, z, action=None):
        probs = self.policy(z)
        if action is None:
            action = probs.argmax(1)
        cells = []
        for (r, c), a in zip(self._cells(z), action.tolist()):
            done = self.desc[r][c] in "HG"
            cells.append((r, c) if done else move(self.desc, (r, c), a)[0])
        sel = StepSelection(index=action, coef=torch.ones(len(action)), probs=probs, logits=probs.log(), action=action)
        return self._latent(cells), probs.log(), sel


def _maps(k=2):
    return [m.desc for s in (3, 5, 8) for m in load_default_suite("test", [s])[:k]]


@pytest.mark.parametrize("dedupe", ["frame", "latent"])
def test_search_finds_shortest_paths_in_a_perfect_model(dedupe):
    for desc in _maps():
        start = render_grid(desc, find_cell(desc, "S"))
        plan = SearchPlanner(GridModel(desc), SearchPlannerConfig(dedupe=dedupe)).plan(start)
        assert plan.reached_goal and plan.reason == "goal", desc
        assert len(plan.actions) == optimal_length(desc)
        assert score_episode(desc, plan.actions, 4 * len(desc) ** 2)["exact_match"] == 1.0
        assert plan.frames.shape == (len(plan.actions) + 1, *start.shape) and plan.frames.dtype == np.uint8
        assert np.array_equal(plan.frames[0], start)
        assert plan.steps_saved == len(desc) ** 2 - len(plan.actions) and plan.halted_early


def test_search_budget_beam_and_fallback():
    desc = _maps(1)[-1]  # 8x8
    start = render_grid(desc, find_cell(desc, "S"))
    beam = SearchPlanner(GridModel(desc, gate="oracle"), SearchPlannerConfig(beam_width=2, batch=2)).plan(start)
    assert beam.reached_goal and len(beam.actions) == optimal_length(desc)
    tiny = SearchPlanner(GridModel(desc), SearchPlannerConfig(max_expansions=2, batch=1)).plan(start)
    assert not tiny.reached_goal and tiny.reason == "budget" and 1 <= len(tiny.actions) <= 2
    assert tiny.expansions == 2


def test_gate_planner_follows_the_gate_and_halts_at_the_goal():
    for desc in _maps():
        start = render_grid(desc, find_cell(desc, "S"))
        plan = GatePlanner(GridModel(desc, gate="oracle")).plan(start)
        assert plan.reason == "goal" and plan.reached_goal
        assert len(plan.actions) == optimal_length(desc)
        assert plan.steps_saved == len(desc) ** 2 - len(plan.actions)
        assert len(plan.route) == len(plan.actions) and plan.status.shape == (len(plan.actions) + 1, 2)
        full = GatePlanner(GridModel(desc, gate="oracle"), GatePlannerConfig(halt=False)).plan(start)
        assert len(full.actions) == len(desc) ** 2 and full.steps_saved == 0 and not full.halted_early


def test_gate_planner_halts_when_the_latent_converges():
    desc = ("SFF", "FFF", "FFG")
    plan = GatePlanner(GridModel(desc, gate=0)).plan(render_grid(desc, (0, 0)))  # LEFT at the left edge: no-op
    assert plan.reason == "converged" and plan.actions == [0] and plan.steps_saved == 8


def test_real_tiny_model_plans_have_consistent_shapes(new_tiny):
    model = new_tiny().train()
    desc = ("SFH", "FFF", "HFG")
    frame = render_grid(desc, (0, 0))
    for name in ("gate", "search"):
        plan = make_planner(name, model, goal_threshold=1.1, hole_threshold=1.1).plan(frame)
        assert isinstance(plan, Plan) and not model.training
        assert plan.frames.shape == (len(plan.actions) + 1, 48, 48, 3) and plan.frames.dtype == np.uint8
        assert all(a in range(4) for a in plan.actions) and len(plan.actions) >= 1
        assert plan.steps_saved == 9 - len(plan.actions)
    with pytest.raises(ValueError, match="one \\(H, W, 3\\)"):
        GatePlanner(model).plan(frame[None])
    with pytest.raises(ValueError, match="unknown planner"):
        make_planner("bfs", model)
    with pytest.raises(ValueError, match="dedupe"):
        SearchPlanner(model, SearchPlannerConfig(dedupe="x"))


def _count_decodes(model):
    calls = []
    decode = model.decode
    model.decode = lambda z: calls.append(z.shape[0]) or decode(z)
    return calls


@pytest.mark.parametrize("name", ["gate", "search"])
def test_plan_frames_are_decoded_only_when_read(new_tiny, name):
    """Planning leaves the frames undecoded; the first read decodes the plan's latents once, as the eager code did
    (one batched decode under no_grad in eval mode), and later reads return that same array."""
    model = new_tiny()
    frame = render_grid(("SFH", "FFF", "HFG"), (0, 0))
    planner = make_planner(name, model, goal_threshold=1.1, hole_threshold=1.1, reencode=False,  # re-encoding and
                           **({"dedupe": "latent"} if name == "search" else {}))  # "frame" keys decode as they plan
    calls = _count_decodes(model)
    for plan in (planner.plan(frame), planner.decide(frame)):
        assert calls == []
        model.train()  # a read may come later, with grad on and the model back in training
        eager = model.to_uint8(model.decode(torch.stack(plan.latents)).detach()).numpy()
        calls.clear()
        frames = plan.frames
        assert calls == [len(plan.latents)] and model.training
        assert frames.dtype == np.uint8 and np.array_equal(frames, eager)
        assert plan.frames is frames and calls == [len(plan.latents)]
        calls.clear()
    plan.frames = np.zeros((1, 48, 48, 3), np.uint8)  # an array set by hand is kept as it is
    assert plan.frames.shape == (1, 48, 48, 3) and calls == []


def test_a_reencoding_gate_plan_keeps_the_frames_it_reencoded(new_tiny):
    """By default the gate planner re-encodes every imagined frame; the plan holds exactly those frames (no second
    decode), each latent after the first is the encoding of its frame, and the plan differs from pure recursion."""
    model = new_tiny()
    frame = render_grid(("SFH", "FFF", "HFG"), (0, 0))
    plan = make_planner("gate", model, goal_threshold=1.1, hole_threshold=1.1).plan(frame)
    with torch.no_grad():
        assert np.array_equal(plan.frames[0], model.to_uint8(model.decode(plan.latents[0][None]))[0].numpy())
        assert torch.allclose(model.encode(plan.frames[1:]), torch.stack(plan.latents[1:]), atol=1e-5)
    calls = _count_decodes(model)
    assert plan.frames.shape == (len(plan.actions) + 1, 48, 48, 3) and calls == []
    pure = make_planner("gate", model, goal_threshold=1.1, hole_threshold=1.1, reencode=False).plan(frame)
    assert not torch.equal(torch.stack(pure.latents[1:]), torch.stack(plan.latents[1:]))


def test_reencoding_search_scores_the_stepped_latent_and_keeps_the_encoded_one(new_tiny):
    """The status heads were trained on stepped latents: a re-encoding search scores each child before re-encoding
    it (scoring the encoding made it miss every goal), and keeps the encoding of its decoded frame as the node."""
    model = new_tiny()
    frame = render_grid(("SFH", "FFF", "HFG"), (0, 0))
    for dedupe in (0.0, 1e9):  # every child kept (a path through the tree), or none (the fallback's one step)
        plan = make_planner("search", model, goal_threshold=1.1, hole_threshold=1.1, max_expansions=3,
                            dedupe_threshold=dedupe).plan(frame)
        assert len(plan.actions) == (2 if dedupe == 0 else 1)  # 3 expansions: the root, then two of depth 1
        _check_reencoded_path(model, plan)


def _check_reencoded_path(model, plan) -> None:
    with torch.no_grad():
        for k, a in enumerate(plan.actions):
            stepped, _, _ = model.step(plan.latents[k][None], torch.tensor([a]))
            assert torch.allclose(torch.as_tensor(plan.status[k + 1]), model.status(stepped)[0], atol=1e-5)
            encoded = model.encode(model.to_uint8(model.decode(stepped)))
            assert torch.allclose(plan.latents[k + 1], encoded[0], atol=1e-5)


def test_search_reuses_the_plan_ahead_with_one_decode():
    """Closed-loop search: the plan ahead is checked against the real frame by decoding the goal plan once (shared
    with the plan's own frames); its frames are that decode's tail."""
    desc = _maps(1)[1]  # 5x5
    model = GridModel(desc, gate="oracle")
    planner, cell = SearchPlanner(model), find_cell(desc, "S")
    calls = _count_decodes(model)
    first = planner.decide(render_grid(desc, cell))
    assert first.reason == "goal" and len(first.actions) > 1
    searched = len(calls)
    cell = move(desc, cell, first.actions[0])[0]
    second = planner.decide(render_grid(desc, cell))
    assert second.expansions == 0 and second.actions == first.actions[1:]
    assert len(calls) == searched + 1  # the one decode of the first plan's latents
    assert np.array_equal(second.frames, first.frames[1:]) and len(calls) == searched + 1

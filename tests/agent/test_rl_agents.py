"""rss_world.rl_agents on tiny models: short PPO runs in the batched imagined env and the real env, save and load,
judging in the real env and in the world model, and the planning benchmark's PPO baseline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rss_world import rl_agents
from rss_world.envs.frozenlake import VisualFrozenLakeEnv
from rss_world.envs.maps import load_default_suite
from rss_world.protocols import run_agent, summarize
from rss_world.rl_agents import (
    FrameAgent,
    build_agent,
    eval_maps,
    evaluate_imagined,
    evaluate_real,
    load_agent,
    make_training_env,
    save_agent,
    train_agent,
    train_real_ppo,
)


@pytest.fixture(scope="module")
def wm_agent(tiny):
    """A PPO agent trained for one rollout inside a tiny world model: ``(agent, meta, model)``."""
    model = tiny()
    agent, meta = train_agent("ppo", "wm", 64, load_default_suite("train", [3, 4])[:12], model, n_envs=8, pad_to=4)
    return agent, meta, model


def padded(frame: np.ndarray, side: int) -> np.ndarray:
    out = np.zeros((side, side, 3), np.uint8)
    out[: frame.shape[0], : frame.shape[1]] = frame
    return out


def greedy_outcomes(agent, maps, side: int) -> tuple[float, float]:
    """Success and hole rates of the greedy agent in the real env, played here step by step."""
    goals = holes = 0
    for m in maps:
        env = VisualFrozenLakeEnv(desc=m.desc, renderer="atlas")
        obs, _ = env.reset(seed=0)
        reward, term, trunc = 0.0, False, False
        while not (term or trunc):
            obs, reward, term, trunc, _ = env.step(int(agent.predict(padded(obs, side), deterministic=True)[0]))
        goals += reward > 0
        holes += term and reward == 0
    return goals / len(maps), holes / len(maps)


@pytest.mark.slow
def test_short_ppo_in_the_world_model_saves_loads_and_is_judged(wm_agent, tmp_path):
    agent, meta, _ = wm_agent
    # 8 envs: rollouts of 2048 // 8 = 128 steps each, so one rollout of 1024 steps covers the budget of 64
    assert meta["steps"] == 1024 and meta["real_env_steps"] == 0
    # the imagined env re-encodes every step unless told otherwise; the meta records the period it ran with
    assert (meta["pad_to"], meta["cell_px"], meta["train_max_steps"], meta["reencode_every"]) == (4, 16, 24, 1)
    path = save_agent(agent, tmp_path / "a", meta)
    assert path == tmp_path / "a.zip" and sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.zip"]
    loaded, meta2 = load_agent(path)
    assert meta2 == meta == json.loads((tmp_path / "a.json").read_text())
    obs = np.random.default_rng(0).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], agent.predict(obs, deterministic=True)[0])
    test = eval_maps([3, 4], 4)
    summary = evaluate_real(loaded, meta, test)
    assert summary["episodes"] == 4
    assert (summary["success_rate"], summary["hole_rate"]) == greedy_outcomes(agent, test, 64)


def test_short_real_training_counts_real_steps():
    agent, meta = train_agent("ppo", "real", 32, load_default_suite("train", [3])[:5], n_envs=4, pad_to=3)
    assert meta["real_env_steps"] == meta["steps"] == 512 and meta["reencode_every"] == 0  # 4 envs x 128 steps


def test_training_envs_truncate_at_the_training_horizon(tiny):
    maps = load_default_suite("train", [3, 4])[:6]
    for kind, model in (("wm", tiny(goal=-9.0, hole=-9.0)), ("real", None)):  # the heads never fire
        env = make_training_env(kind, maps, 2, 4, model, seed=0, max_steps=3)
        env.reset()
        hit = None
        for t in range(3):
            _, _, dones, infos = env.step(np.array([0, 0]))  # LEFT: never reaches a goal from these starts in 3 steps
            hit = (t, dones, infos) if hit is None and dones.any() else hit
        t, dones, infos = hit
        if kind == "wm":
            assert t == 2 and dones.all() and all(i["TimeLimit.truncated"] for i in infos)
        else:  # a real episode may end earlier in a hole; the limit itself is the env's
            assert t <= 2 and all(e.max_steps == 3 for padded in env.envs for e in padded.envs.values())
        env.close()
    with pytest.raises(ValueError, match="max_steps"):
        train_agent("ppo", "real", 8, maps, n_envs=2, pad_to=4, max_steps=0)


def test_bad_settings_are_named(tiny):
    maps = load_default_suite("train", [3])[:2]
    with pytest.raises(ValueError, match="unknown env kind 'sim'"):
        make_training_env("sim", maps)
    with pytest.raises(ValueError, match="needs a model"):
        make_training_env("wm", maps)
    with pytest.raises(ValueError, match="unknown algorithm 'a2c'"):
        build_agent("a2c", make_training_env("real", maps, 1, 3))
    with pytest.raises(ValueError, match="steps must be >= 1"):
        train_agent("ppo", "real", 0, maps)
    with pytest.raises(ValueError, match="no map of size <= 2"):
        rl_agents.PaddedRealEnv(maps, pad_to=2)


@pytest.mark.slow
def test_sampled_and_imagined_evaluation(wm_agent, tiny):
    agent, meta, _ = wm_agent
    test = eval_maps([3, 4], 6)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = evaluate_real(agent, meta, test, seed=5, deterministic=False)
    assert torch.equal(torch.rand(1), before)  # the caller's torch RNG is left as it was
    b = evaluate_real(agent, meta, test, seed=5, deterministic=False)
    assert [a[k] for k in ("success_rate", "hole_rate", "progress_rate")] == \
        [b[k] for k in ("success_rate", "hole_rate", "progress_rate")]
    # the goal head always fires: every imagined episode succeeds at its first step
    assert evaluate_imagined(agent, meta, tiny(goal=9.0), test) == {"episodes": 6, "success_rate": 1.0,
                                                                     "hole_rate": 0.0, "timeout_rate": 0.0}
    # no head ever fires: every imagined episode runs into the step limit
    assert evaluate_imagined(agent, meta, tiny(goal=-9.0, hole=-9.0), test)["timeout_rate"] == 1.0


def test_training_in_the_reencoding_env_is_recorded_and_real_env_refuses_it(tiny):
    maps = load_default_suite("train", [3])[:4]
    agent, meta = train_agent("ppo", "wm", 32, maps, tiny(), n_envs=4, pad_to=3, reencode_every=2)
    assert meta["reencode_every"] == 2
    env = make_training_env("wm", maps, 2, 3, tiny(), reencode_every=3)
    assert env.slots.reencode_every == 3
    with pytest.raises(ValueError, match="world-model env only"):
        make_training_env("real", maps, 2, 3, reencode_every=1)


class FixedPolicy:
    """Stands in for an SB3 agent: records the frames it is shown and always answers ``action``."""

    def __init__(self, action: int) -> None:
        self.action, self.seen = action, []

    def predict(self, obs, deterministic=True):
        self.seen.append((obs.copy(), deterministic))
        return np.array(self.action), None


def test_frame_agent_pads_smaller_frames_and_refuses_larger_ones():
    policy = FixedPolicy(2)
    agent = FrameAgent(policy, pad_to=5)
    env = VisualFrozenLakeEnv(desc=("SFF", "FHF", "FFG"), cell_px=16, renderer="atlas")
    obs, info = env.reset(seed=0)
    assert agent.act(obs, info) == 2
    seen, deterministic = policy.seen[-1]
    assert seen.shape == (80, 80, 3) and deterministic
    np.testing.assert_array_equal(seen[:48, :48], obs)
    assert not seen[48:].any() and not seen[:, 48:].any()
    big = VisualFrozenLakeEnv(desc=load_default_suite("test", [6])[0].desc, cell_px=16, renderer="atlas")
    with pytest.raises(ValueError, match="larger than the canvas 80x80"):
        agent.act(big.reset(seed=0)[0])
    # the evaluation protocol drives it like any agent: one padded frame per real step, every action RIGHT
    policy.seen.clear()
    (trace,) = run_agent(agent, [load_default_suite("test", [3])[0]], cell_px=16)
    assert trace.actions == [2] * len(trace.actions) and len(policy.seen) == len(trace.actions) >= 1
    for (shown, _), frame in zip(policy.seen, trace.real_frames, strict=False):
        np.testing.assert_array_equal(shown, padded(frame, 80))


def test_train_real_ppo_is_the_real_env_recipe_padded_to_the_largest_map(monkeypatch):
    calls = []

    def fake_train(*args, **kwargs):
        calls.append((args, kwargs))
        return FixedPolicy(1), {"pad_to": kwargs["pad_to"], "cell_px": 16}

    monkeypatch.setattr(rl_agents, "train_agent", fake_train)
    maps = load_default_suite("train", [3])[:2] + load_default_suite("train", [5])[:2]
    agent, meta = train_real_ppo(maps, 100, seed=7)
    assert calls[-1] == (("ppo", "real", 100, maps), {"pad_to": 5, "seed": 7})  # defaults: n_envs, max_steps
    assert isinstance(agent, FrameAgent) and agent.side == 80 and agent.deterministic and meta["pad_to"] == 5
    _, meta = train_real_ppo(maps, 100, pad_to=8)
    assert calls[-1][1] == {"pad_to": 8, "seed": 0} and meta["pad_to"] == 8
    with pytest.raises(ValueError, match="no maps"):
        train_real_ppo([], 100)


@pytest.mark.slow
def test_train_real_ppo_plays_maps_of_every_size_up_to_the_largest():
    maps = load_default_suite("train", [3])[:3] + load_default_suite("train", [5])[:3]
    agent, meta = train_real_ppo(maps, 1, seed=0)
    assert (meta["algo"], meta["env"], meta["pad_to"], meta["steps"]) == ("ppo", "real", 5, 2048)  # 16 envs x 128
    test = eval_maps([3, 5], 4)
    summary = summarize(run_agent(agent, test, cell_px=16))
    assert summary["episodes"] == 4
    assert (summary["success_rate"], summary["hole_rate"]) == greedy_outcomes(agent.agent, test, 80)

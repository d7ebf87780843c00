"""Agents in the loop on tiny models: a short PPO run in the batched VecEnv saves and loads; eval, replay, CLI."""

from __future__ import annotations

import numpy as np
import torch

from rss_world import agent as ag
from rss_world.checkpoint import save_model
from rss_world.envs.maps import load_default_suite
from rss_world.world_model import WorldModel, WorldModelConfig

torch.set_num_threads(1)


def tiny() -> WorldModel:
    torch.manual_seed(0)
    return WorldModel(WorldModelConfig(dim=32, heads=2, enc_layers=1, dec_layers=1, gate_iters=1, rank=4))


def test_short_ppo_in_vecenv_saves_and_loads(tmp_path):
    maps = load_default_suite("train", [3, 4])[:12]
    agent, meta = ag.train("ppo", "wm", 64, maps, tiny(), n_envs=8, pad_to=4, seed=0)
    assert meta["steps"] >= 64 and meta["real_env_steps"] == 0
    path = ag.save_agent(agent, tmp_path / "a.zip", meta)
    loaded, meta2 = ag.load_agent(path)
    assert meta2 == meta
    obs = np.zeros((64, 64, 3), np.uint8)
    assert loaded.predict(obs, deterministic=True)[0] == agent.predict(obs, deterministic=True)[0]
    summary = ag.evaluate(loaded, meta, ag.eval_maps([3, 4], 4))
    assert summary["episodes"] == 4 and 0 <= summary["success_rate"] <= 1


def test_short_real_training_counts_real_steps():
    agent, meta = ag.train("ppo", "real", 32, load_default_suite("train", [3])[:5], n_envs=4, pad_to=3)
    assert meta["real_env_steps"] == meta["steps"] >= 32


def test_training_envs_truncate_at_the_training_horizon():
    import pytest

    maps = load_default_suite("train", [3, 4])[:6]
    for kind, model in (("wm", WorldModel(WorldModelConfig(dim=32, heads=2, enc_layers=1, dec_layers=1, gate_iters=1,
                                                           rank=4))), ("real", None)):
        if model is not None:
            with torch.no_grad():  # status heads never fire: only the step limit can end an episode
                model.status_head.weight.zero_()
                model.status_head.bias.fill_(-9.0)
        env = ag.make_vec_env(kind, maps, 2, 4, model, seed=0, max_steps=3)
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
        ag.train("ppo", "real", 8, maps, n_envs=2, pad_to=4, max_steps=0)


def test_replay_and_video(tmp_path):
    model = tiny()
    desc = ("SFF", "FHF", "FFG")
    rp = ag.imagine_and_replay(model, desc, "oracle", horizon=16)
    assert rp.actions == [1, 1, 2, 2]
    assert len(rp.real) == len(rp.imagined) == 5 and rp.cells[-1] == (2, 2)
    assert rp.exact(0) is not None and rp.exact(5) is None
    n = ag.write_play_video([rp], tmp_path / "p.gif")
    assert n == 5 and (tmp_path / "p.gif").stat().st_size > 0


def test_cli_play_and_errors(tmp_path, capsys):
    save_model(tmp_path / "wm", tiny())
    out = tmp_path / "v.gif"
    assert ag.main(["play", "--checkpoint", str(tmp_path / "wm"), "--out", str(out), "--episodes", "1",
                    "--sizes", "3", "--horizon", "4"]) == 0
    assert out.exists()
    assert ag.main(["play", "--out", str(out)]) == 2
    assert ag.main(["eval", "--agent", str(tmp_path / "missing.zip")]) == 2
    assert "error" in capsys.readouterr().err


def test_sampled_and_imagined_evaluation():
    maps = load_default_suite("train", [3, 4])[:8]
    model = tiny()
    agent, meta = ag.train("ppo", "wm", 64, maps, model, n_envs=8, pad_to=4, seed=0)
    test = ag.eval_maps([3, 4], 6)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = ag.evaluate(agent, meta, test, seed=5, deterministic=False)
    assert torch.equal(torch.rand(1), before)  # the caller's torch RNG is left as it was
    b = ag.evaluate(agent, meta, test, seed=5, deterministic=False)
    assert [a[k] for k in ("success_rate", "hole_rate", "progress_rate")] == \
        [b[k] for k in ("success_rate", "hole_rate", "progress_rate")]
    with torch.no_grad():  # the goal head always fires: every imagined episode succeeds at its first step
        model.status_head.weight.zero_()
        model.status_head.bias.copy_(torch.tensor([9.0, -9.0]))
    assert ag.evaluate_imagined(agent, meta, model, test) == {"episodes": 6, "success_rate": 1.0, "hole_rate": 0.0,
                                                              "timeout_rate": 0.0}
    with torch.no_grad():  # no head ever fires: every imagined episode runs into the step limit
        model.status_head.bias.fill_(-9.0)
    assert ag.evaluate_imagined(agent, meta, model, test)["timeout_rate"] == 1.0


def test_training_in_the_reencoding_env_is_recorded_and_real_env_refuses_it():
    import pytest

    maps = load_default_suite("train", [3])[:4]
    agent, meta = ag.train("ppo", "wm", 32, maps, tiny(), n_envs=4, pad_to=3, reencode_every=2)
    assert meta["reencode_every"] == 2
    env = ag.make_vec_env("wm", maps, 2, 3, tiny(), reencode_every=3)
    assert env.slots.reencode_every == 3
    with pytest.raises(ValueError, match="world-model env only"):
        ag.make_vec_env("real", maps, 2, 3, reencode_every=1)

"""rss_world.imagination on tiny untrained models: gymnasium checks and registration, batched == single, auto-reset,
head-driven reward/termination, bad actions, start-latent cache, re-encoding, heads vs parser."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from rss_world.envs.maps import load_default_suite, step_limit
from rss_world.imagination import WM_ENV_ID, LatentSlots, WorldModelEnv, start_frame
from rss_world.imagination.slots import resolve_cache_size
from rss_world.imagination.vec_env import WorldModelVecEnv, head_parser_agreement, measure_head_agreement


@pytest.fixture(scope="module")
def maps():
    suite = load_default_suite("train", [3, 4])
    return [m for m in suite if m.size == 3][:3] + [m for m in suite if m.size == 4][:3]


def test_check_env(maps, tiny, map3):
    check_env(WorldModelEnv(tiny(), suite=maps, pad_to=4), skip_render_check=True)
    check_env(WorldModelEnv(tiny(hole=-9.0), desc=map3), skip_render_check=True)


def test_reset_is_real_start_frame_and_shapes(maps, tiny):
    model = tiny()
    env = WorldModelEnv(model, suite=maps, pad_to=5)
    obs, info = env.reset(seed=0, options={"map_index": 4})
    assert obs.shape == (80, 80, 3) and obs.dtype == np.uint8
    assert info["size"] == 4 and info["map_index"] == 4 and info["map_id"] == maps[4].id and info["steps"] == 0
    with torch.no_grad():  # the heads' reading of the encoded real start frame, computed here on its own
        p = model.status(model.encode(torch.as_tensor(start_frame(maps[4].desc))[None]))[0]
    assert (info["p_goal"], info["p_hole"]) == pytest.approx(p.tolist(), abs=1e-6)
    np.testing.assert_array_equal(obs[:64, :64], start_frame(maps[4].desc))
    assert not obs[64:].any() and not obs[:, 64:].any()
    obs2, *_ = env.step(2)
    assert obs2.shape == obs.shape and not obs2[64:].any()


def test_heads_drive_reward_termination_and_truncation(tiny, map3):
    env = WorldModelEnv(tiny(goal=9.0), desc=map3)
    env.reset(seed=0)
    _, r, term, trunc, info = env.step(1)
    assert (r, term, trunc) == (1.0, True, False) and info["p_goal"] > 0.99
    env = WorldModelEnv(tiny(hole=9.0), desc=map3)
    env.reset(seed=0)
    assert env.step(1)[1:4] == (0.0, True, False)
    env = WorldModelEnv(tiny(goal=-9.0), desc=map3, max_steps=3)
    env.reset(seed=0)
    outs = [env.step(0)[1:4] for _ in range(3)]
    assert outs == [(0.0, False, False), (0.0, False, False), (0.0, False, True)]


@pytest.mark.parametrize("bad", [4, -1, 1.0, True, np.array([1]), "1", None])
def test_bad_actions_single(bad, tiny, map3):
    env = WorldModelEnv(tiny(), desc=map3)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(bad)


@pytest.mark.parametrize("bad", [np.array([0, 1, 4]), np.array([0, -1, 2]), np.array([0, 1]),
                                 np.array([[0], [1], [2]]), np.array([0.0, 1.0, 2.0]), np.array([True, False, True])])
def test_bad_actions_vec(bad, tiny, map3):
    env = WorldModelVecEnv(tiny(), 3, desc=map3, seed=0)
    env.reset()
    with pytest.raises(ValueError, match="action"):
        env.step(bad)


def test_bad_construction(maps, tiny, map3):
    with pytest.raises(ValueError, match="pad_to"):
        WorldModelEnv(tiny(), suite=maps)
    with pytest.raises(ValueError, match="exactly one"):
        WorldModelEnv(tiny(), desc=map3, suite=maps)
    with pytest.raises(ValueError, match="no map"):
        WorldModelVecEnv(tiny(), 2, suite=maps, size=7)


def test_batched_equals_single(maps, tiny):
    model = tiny(1, goal=-9.0, hole=-9.0)  # no head-driven ends, so episodes stay aligned
    n = len(maps)
    vec = WorldModelVecEnv(model, n, suite=maps, pad_to=4, max_steps=50, seed=0)
    vec.set_options([{"map_index": i} for i in range(n)])
    vobs = vec.reset()
    singles = [WorldModelEnv(model, suite=maps, pad_to=4, max_steps=50) for _ in range(n)]
    sobs = np.stack([e.reset(seed=0, options={"map_index": i})[0] for i, e in enumerate(singles)])
    np.testing.assert_array_equal(vobs, sobs)
    assert [vec.reset_infos[i]["map_id"] for i in range(n)] == [m.id for m in maps]
    rng = np.random.default_rng(0)
    for _ in range(5):
        a = rng.integers(4, size=n)
        vobs, vr, vd, vinfo = vec.step(a)
        outs = [e.step(int(a[i])) for i, e in enumerate(singles)]
        sobs = np.stack([o[0] for o in outs])
        assert np.abs(vobs.astype(int) - sobs.astype(int)).max() <= 1  # batched matmuls may round differently
        np.testing.assert_array_equal(vr, [o[1] for o in outs])
        np.testing.assert_array_equal(vd, [o[2] or o[3] for o in outs])
        np.testing.assert_allclose([i["p_goal"] for i in vinfo], [o[4]["p_goal"] for o in outs], atol=1e-5)


def test_auto_reset_sb3_semantics(maps, tiny, map3):
    vec = WorldModelVecEnv(tiny(goal=-9.0, hole=-9.0), 4, suite=maps, pad_to=4, max_steps=2, seed=0)
    vec.reset()
    _, _, dones, _ = vec.step(np.zeros(4, np.int64))
    assert not dones.any()
    obs, rew, dones, infos = vec.step(np.ones(4, np.int64))
    assert dones.all() and not rew.any()
    for i, info in enumerate(infos):
        assert info["TimeLimit.truncated"] is True and info["terminal_observation"].shape == obs[i].shape
        n = vec.slots.sizes[i]
        np.testing.assert_array_equal(obs[i][: 16 * n, : 16 * n], start_frame(maps[vec._map_index[i]].desc))
    assert (vec._steps == 0).all()
    vec = WorldModelVecEnv(tiny(goal=9.0), 3, desc=map3, seed=0)
    vec.reset()
    obs, rew, dones, infos = vec.step(np.array([0, 1, 2]))
    assert dones.all() and (rew == 1).all() and not any(i["TimeLimit.truncated"] for i in infos)
    np.testing.assert_array_equal(obs[0], start_frame(map3))


def test_head_parser_agreement(maps, tiny, map3):
    frames = [start_frame(map3), start_frame(map3)]
    got = head_parser_agreement(frames, np.array([[0.1, 0.1], [0.9, 0.1]]), [3, 3])
    assert got["goal_agreement"] == 0.5 and got["hole_agreement"] == 1.0 and got["agreement"] == 0.5
    res = measure_head_agreement(tiny(goal=-9.0, hole=-9.0), maps, steps=2, num_envs=4)
    # heads that never fire agree with the parser exactly on the frames it reads as neither goal nor hole
    assert res["frames"] == 8 and res["heads_goal_rate"] == res["heads_hole_rate"] == 0.0
    assert res["goal_agreement"] == 1.0 - res["parser_goal_rate"]
    assert res["hole_agreement"] == 1.0 - res["parser_hole_rate"]
    assert res == measure_head_agreement(tiny(goal=-9.0, hole=-9.0), maps, steps=2, num_envs=4, pad_to=4)


def test_registered_with_gymnasium_and_envs_stays_free_of_the_model(tiny, map3):
    import subprocess
    import sys

    import gymnasium

    import rss_world.envs

    env = gymnasium.make(WM_ENV_ID, model=tiny(goal=-9.0, hole=-9.0), desc=map3)
    assert isinstance(env.unwrapped, WorldModelEnv)
    env.reset(seed=0)
    ends = [env.step(0)[3] for _ in range(step_limit(3))]
    assert ends == [False] * (step_limit(3) - 1) + [True]  # truncated at the real env's limit, 4 · 3²
    assert not hasattr(rss_world.envs, "WM_ENV_ID")
    code = ("import importlib, pkgutil, sys, rss_world.envs as e\n"
            "for m in pkgutil.iter_modules(e.__path__): importlib.import_module('rss_world.envs.' + m.name)\n"
            "print(sorted(k for k in ('torch', 'stable_baselines3', 'rss_world.world_model', 'rss_world.imagination')"
            " if k in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_start_latent_cache_matches_fresh_encoding_and_is_bounded(maps, tiny):
    m = tiny(seed=3)
    slots = LatentSlots(m, 4, canvas=4, cache_size=2)
    descs = [maps[0].desc, maps[3].desc, maps[0].desc, maps[4].desc]
    obs, status = slots.load(np.arange(4), descs)
    assert len(slots._cache) == 2  # three distinct maps, the least recently used one dropped
    with torch.no_grad():
        fresh = m.encode(torch.as_tensor(start_frame(maps[0].desc))[None])[0]
        fresh4 = m.encode(torch.as_tensor(start_frame(maps[4].desc))[None])[0]
    assert torch.allclose(slots.z[0, :9], fresh, atol=1e-6) and torch.allclose(slots.z[2, :9], fresh, atol=1e-6)
    assert torch.allclose(slots.z[3, :16], fresh4, atol=1e-6)
    assert np.allclose(status[0], status[2])
    slots.load(np.array([1]), [maps[0].desc])  # cached: no forward pass, same latent
    assert torch.allclose(slots.z[1, :9], fresh, atol=1e-6)


def test_preencode_runs_the_encoder_once_per_map_and_never_on_reset(maps, tiny):
    m = tiny(seed=4)
    # pure latent envs (a re-encoding env runs the encoder on steps by design); same weights, its own encoder
    lazy = WorldModelVecEnv(tiny(seed=4), 5, suite=maps, pad_to=4, seed=2, reencode_every=0)
    calls = []
    encode = m.encode
    m.encode = lambda frames: calls.append(len(frames)) or encode(frames)  # count the frames encoded
    eager = WorldModelVecEnv(m, 5, suite=maps, pad_to=4, seed=2, preencode=True, reencode_every=0)
    assert sum(calls) == len(maps) and len(calls) == 2  # one batch per grid size (3 and 4)
    assert eager.slots.preencode([mp.desc for mp in maps]) == 0  # all cached: nothing left to encode
    obs_e, obs_l = eager.reset(), lazy.reset()
    rng = np.random.default_rng(0)
    for _ in range(6):  # random actions end episodes, so slots are reset onto new maps
        a = rng.integers(4, size=5)
        (oe, re, de, _), (ol, rl, dl, _) = eager.step(a), lazy.step(a)
        assert np.abs(oe.astype(int) - ol.astype(int)).max() <= 1
        assert np.array_equal(de, dl) and np.array_equal(re, rl)
    assert sum(calls) == len(maps)  # resets and steps of the pre-encoded env never ran the encoder
    assert np.array_equal(obs_e, obs_l)


def test_preencode_needs_the_maps_to_fit_the_cache(maps, tiny):
    assert resolve_cache_size(None, True, 5000) == 5000  # pre-encoding grows the default cache to the suite
    assert resolve_cache_size(None, False, 5000) == 4096 and resolve_cache_size(7, True, 5000) == 7
    with pytest.raises(ValueError, match="do not fit the start-latent cache"):
        WorldModelVecEnv(tiny(), 2, suite=maps, pad_to=4, preencode=True, cache_size=len(maps) - 1)
    with pytest.raises(ValueError, match="cache_size must be >= 0"):
        LatentSlots(tiny(), 2, canvas=4, cache_size=-1)
    with pytest.raises(ValueError, match="batch must be >= 1"):
        LatentSlots(tiny(), 2, canvas=4).preencode([maps[0].desc], batch=0)


def test_reencode_every_grounds_the_latent_in_the_decoded_frame_per_episode(maps, tiny):
    model = tiny(2)
    descs = [maps[0].desc, maps[1].desc]  # two 3x3 maps: one size group
    plain, every2 = LatentSlots(model, 2, 3, reencode_every=0), LatentSlots(model, 2, 3, reencode_every=2)
    for slots in (plain, every2):
        slots.load(np.array([0, 1]), descs)
    a = np.array([1, 2])
    obs_p, _ = plain.step(a)
    obs_r, _ = every2.step(a)  # step 1 of both episodes: not due, the latent stays the recursive one
    np.testing.assert_array_equal(obs_p, obs_r)
    torch.testing.assert_close(every2.z, plain.z)
    every2.load(np.array([1]), [descs[1]])  # episode 1 restarts: its count starts again
    obs, _ = every2.step(a)  # episode 0 at step 2 (due), episode 1 at step 1 (not due)
    with torch.no_grad():
        fresh = model.encode(torch.as_tensor(obs[:1]))
        z1 = model.step(model.encode(torch.as_tensor(start_frame(descs[1], model.cfg.cell_px))[None]),
                        torch.tensor([2]), with_logits=False)[0]
    torch.testing.assert_close(every2.z[:1], fresh)
    torch.testing.assert_close(every2.z[1:], z1)
    plain.step(a)
    assert not torch.allclose(plain.z[:1], fresh, atol=1e-3)  # without re-encoding the latent is not the frame's
    assert every2.age.tolist() == [2, 1]
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="reencode_every"):
            LatentSlots(model, 1, 3, reencode_every=bad)
    with pytest.raises(ValueError, match="reencode_every"):
        WorldModelVecEnv(model, 2, suite=maps, pad_to=4, reencode_every=-2)
    env = WorldModelEnv(model, desc=maps[0].desc, reencode_every=1)
    env.reset()
    obs1 = env.step(0)[0]
    torch.testing.assert_close(env.slots.z[:1], model.encode(torch.as_tensor(obs1)[None]))

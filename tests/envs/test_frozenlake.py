"""The visual env: registration, check_env, dynamics against gymnasium, frames, suites."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import rss_world.envs  # noqa: F401  (registers the env)
from rss_world.envs import ENV_ID
from rss_world.envs.frozenlake import VisualFrozenLakeEnv
from rss_world.envs.maps import load_default_suite, map_id
from rss_world.envs.render import render_grid

DESC = ("SFFH", "FHFF", "FFFH", "HFFG")


def test_registered_and_check_env():
    env = gym.make(ENV_ID, desc=DESC, render_mode="rgb_array")
    check_env(env.unwrapped)
    obs, info = env.reset(seed=0)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8
    assert info["cell"] == (0, 0) and info["size"] == 4 and info["map_id"] == map_id(DESC)
    assert np.array_equal(env.render(), obs)
    env.close()


def test_reimport_does_not_register_twice():
    import importlib

    importlib.reload(rss_world.envs)
    assert ENV_ID in gym.registry


def test_dynamics_reward_invalid_hole_and_truncation():
    env = VisualFrozenLakeEnv(desc=DESC, max_steps=5)
    env.reset(seed=0)
    _, r, term, trunc, info = env.step(3)  # UP off the grid
    assert info["invalid"] and info["cell"] == (0, 0) and r == 0 and not term
    _, r, term, _, info = env.step(1)
    _, r, term, _, info = env.step(2)  # into the hole at (1,1)
    assert term and info["hole"] and r == 0
    env.reset(seed=0)
    for a in (2, 0, 2, 0, 2):
        _, r, term, trunc, info = env.step(a)
    assert trunc and not term and info["steps"] == 5
    env.reset(seed=0)
    for a in (1, 1, 2, 2, 1, 2):
        _, r, term, trunc, info = env.step(a)
    assert term and r == 1.0 and info["cell"] == (3, 3)


def test_frames_match_render_grid_and_suite_options():
    suite = load_default_suite("test", sizes=[5])[:20]
    env = VisualFrozenLakeEnv(suite=suite, cell_px=8)
    rng = np.random.default_rng(0)
    for i in range(10):
        obs, info = env.reset(seed=i, options={"map_index": i})
        assert info["map_id"] == suite[i].id and obs.shape == (40, 40, 3)
        for _ in range(6):
            assert np.array_equal(obs, render_grid(env.desc, info["cell"], 8))
            obs, _, term, trunc, info = env.step(int(rng.integers(4)))
            if term or trunc:
                break
    obs, info = env.reset(options={"desc": ("SFFFF", "FFFFF", "FFHFF", "FFFFF", "FFFFG")})
    assert info["map_index"] == -1
    seen = {env.reset(seed=s)[1]["map_index"] for s in range(30)}
    assert len(seen) > 5
    assert env.reset(seed=3)[1] == env.reset(seed=3)[1]


def test_atlas_renderer_and_facing_options():
    a = VisualFrozenLakeEnv(desc=DESC, renderer="atlas", facing="last_action")
    b = VisualFrozenLakeEnv(desc=DESC, facing="last_action")
    for env in (a, b):
        env.reset(seed=0)
    for act in (2, 1, 0, 3, 2):
        assert np.array_equal(a.step(act)[0], b.step(act)[0])


def test_bad_arguments():
    with pytest.raises(ValueError, match="exactly one of desc= and suite="):
        VisualFrozenLakeEnv()
    with pytest.raises(ValueError, match="sizes \\[3, 4\\]"):
        VisualFrozenLakeEnv(suite=[("SFF", "FFF", "FFG"), DESC])
    with pytest.raises(ValueError, match="no map of size 6"):
        VisualFrozenLakeEnv(suite=[DESC], size=6)
    with pytest.raises(ValueError, match="unsolvable"):
        VisualFrozenLakeEnv(desc=("SH", "HG"))
    with pytest.raises(ValueError, match="facing"):
        VisualFrozenLakeEnv(desc=DESC, facing="north")
    env = VisualFrozenLakeEnv(desc=DESC)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action 4"):
        env.step(4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cell_px": 0}, "cell_px must be a positive integer, got 0"),
        ({"cell_px": -16}, "cell_px must be a positive integer, got -16"),
        ({"cell_px": 2.5}, "cell_px must be a positive integer, got 2.5 \\(float\\)"),
        ({"cell_px": 16.0}, "cell_px must be a positive integer, got 16.0 \\(float\\)"),
        ({"cell_px": "16"}, "cell_px must be a positive integer, got '16' \\(str\\)"),
        ({"cell_px": True}, "cell_px must be a positive integer, got True \\(bool\\)"),
        ({"cell_px": None}, "cell_px must be a positive integer, got None"),
        ({"max_steps": 0}, "max_steps must be a positive integer, got 0"),
        ({"max_steps": -3}, "max_steps must be a positive integer, got -3"),
        ({"max_steps": 2.5}, "max_steps must be a positive integer, got 2.5 \\(float\\)"),
        ({"max_steps": False}, "max_steps must be a positive integer, got False \\(bool\\)"),
    ],
)
def test_cell_px_and_max_steps_refused_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VisualFrozenLakeEnv(desc=DESC, **kwargs)


def test_cell_px_and_max_steps_accept_numpy_integers():
    env = VisualFrozenLakeEnv(desc=DESC, cell_px=np.int64(8), max_steps=np.int32(7))
    assert type(env.cell_px) is int and env.cell_px == 8 and type(env.max_steps) is int and env.max_steps == 7
    assert env.reset(seed=0)[0].shape == (32, 32, 3) and env.observation_space.shape == (32, 32, 3)

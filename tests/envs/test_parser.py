"""The frame parser on real renders (gymnasium's own and the env's observations), under noise, and reading actions
from frame pairs."""

import numpy as np
import pytest

from rss_world.envs.frozenlake import VisualFrozenLakeEnv
from rss_world.envs.parser import consistent_actions, parse_frame, read_action
from rss_world.envs.render import render_grid, render_gym


@pytest.mark.slow
def test_parser_exact_on_500_real_renders(render_cases):
    """Frames from gymnasium's own renderer, sizes 3-8, every facing, agent anywhere (holes included)."""
    kinds = set()
    for desc, rc, facing in render_cases(500, 123):
        frame = render_gym(desc, rc, 16, facing)
        p = parse_frame(frame)
        assert p.size == len(desc)
        assert p.equals_grid(desc, rc), (desc, rc, facing)
        letter = desc[rc[0]][rc[1]]
        assert p.agent_in_hole == (letter == "H") and p.agent_on_goal == (letter == "G")
        assert p.confidence.min() == 1.0 and p.distance.max() == 0.0
        kinds.add(letter)
    assert kinds == set("SFHG")


def test_parser_on_env_observations_and_read_action():
    env = VisualFrozenLakeEnv(desc=("SFFF", "FHFH", "FFFH", "HFFG"), facing="last_action")
    obs, info = env.reset(seed=0)
    before = parse_frame(obs)
    assert before.to_desc() == env.desc and before.agent == (0, 0)
    for a in (3, 2, 1, 2, 1, 1):  # off-grid first: read as UP or LEFT, so ambiguous
        obs, _, term, _, info = env.step(a)
        after = parse_frame(obs, size=4)
        assert after.equals_grid(env.desc, info["cell"])
        acts = consistent_actions(before, after)
        assert a in acts
        if len(acts) == 1:
            assert read_action(before, after) == a
        before = after
        if term:
            break


def test_read_action_into_hole_and_unique_moves():
    desc = ("SFF", "FHF", "FFG")
    p0 = parse_frame(render_grid(desc, (0, 1)))
    assert read_action(p0, parse_frame(render_grid(desc, (0, 2)))) == 2
    assert read_action(p0, parse_frame(render_grid(desc, (0, 0)))) == 0
    in_hole = parse_frame(render_grid(desc, (1, 1)))
    assert in_hole.agent is None and in_hole.agent_in_hole
    assert read_action(p0, in_hole) == 1
    assert consistent_actions(p0, p0) == {3}  # only UP is off-grid from (0, 1)
    assert read_action(in_hole, p0) is None


def test_parser_robust_to_noise_with_confidence(render_cases):
    rng = np.random.default_rng(0)
    for desc, rc, _ in render_cases(30, 5):
        frame = render_grid(desc, rc, 16)
        noisy = np.clip(frame + rng.normal(0, 30, frame.shape), 0, 255)
        p = parse_frame(noisy)
        assert p.equals_grid(desc, rc)
        assert 0 < p.confidence.min() < 1
        assert p.confidence.shape == (len(desc), len(desc))
    # a blank frame has low confidence everywhere and no agent
    p = parse_frame(np.full((64, 64, 3), 128, dtype=np.uint8))
    assert p.agent is None and p.confidence.max() < 0.9


def test_parser_size_inference_and_errors():
    frame = render_grid(("SFFFF", "FFFFF", "FFHFF", "FFFFF", "FFFFG"), (2, 3), 8)
    assert parse_frame(frame, size=5).agent == (2, 3)
    assert parse_frame(frame, cell_px=8).agent == (2, 3)
    with pytest.raises(ValueError, match="square"):
        parse_frame(frame[:, :-1])
    with pytest.raises(ValueError, match="not size 3"):
        parse_frame(frame, size=3, cell_px=8)


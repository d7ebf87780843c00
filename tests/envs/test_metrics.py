"""Metrics on hand-made episodes."""

import math

import pytest

from rss_world.envs.metrics import aggregate, run_actions, score_episode
from rss_world.envs.oracle import DOWN, LEFT, RIGHT, UP

# S at (0,0), G at (2,2), hole at (1,1); optimal length 4
DESC = ("SFF", "FHF", "FFG")


def test_optimal_episode():
    m = score_episode(DESC, [RIGHT, RIGHT, DOWN, DOWN], max_steps=20)
    assert m["success"] == 1 and m["exact_match"] == 1 and m["progress_rate"] == 1
    assert m["invalid_action_rate"] == 0 and m["hole"] == 0 and m["steps_over_optimal"] == 1
    assert m["optimal_length"] == 4 and m["n_steps"] == 4


def test_detour_success_without_em():
    m = score_episode(DESC, [RIGHT, LEFT, RIGHT, RIGHT, DOWN, DOWN], max_steps=20)
    assert m["success"] == 1 and m["exact_match"] == 0
    assert m["progress_rate"] == pytest.approx(1 / 4)  # RIGHT optimal, then LEFT is not
    assert m["steps_over_optimal"] == pytest.approx(6 / 4)
    assert m["invalid_action_rate"] == 0


def test_off_grid_is_invalid_and_breaks_prefix():
    m = score_episode(DESC, [UP, RIGHT, RIGHT, DOWN, DOWN], max_steps=20)
    assert m["success"] == 1 and m["exact_match"] == 0 and m["progress_rate"] == 0
    assert m["invalid_action_rate"] == pytest.approx(1 / 5) and m["n_invalid"] == 1


def test_hole_ends_episode_and_counts_invalid():
    m = score_episode(DESC, [RIGHT, DOWN, RIGHT, DOWN], max_steps=20)  # RIGHT ok, DOWN into hole (1,1)
    assert m["success"] == 0 and m["hole"] == 1 and m["n_steps"] == 2
    assert m["progress_rate"] == pytest.approx(1 / 4)
    assert m["invalid_action_rate"] == pytest.approx(1 / 2)
    assert math.isnan(m["steps_over_optimal"])


def test_step_limit_and_empty_plan():
    m = score_episode(DESC, [RIGHT, RIGHT, DOWN, DOWN], max_steps=3)
    assert m["success"] == 0 and m["n_steps"] == 3 and m["progress_rate"] == pytest.approx(3 / 4)
    m = score_episode(DESC, [], max_steps=10)
    assert m["success"] == 0 and m["progress_rate"] == 0 and m["invalid_action_rate"] == 0
    with pytest.raises(ValueError, match="action 7"):
        score_episode(DESC, [7], max_steps=10)


def test_actions_after_goal_are_ignored():
    m = score_episode(DESC, [DOWN, DOWN, RIGHT, RIGHT, UP, UP], max_steps=20)
    assert m["exact_match"] == 1 and m["n_steps"] == 4


def test_aggregate_per_size():
    big = ("SFFF", "FFFF", "FFFF", "FFFG")
    recs = [run_actions(DESC, [RIGHT, RIGHT, DOWN, DOWN], 20), run_actions(DESC, [RIGHT, DOWN], 20),
            run_actions(big, [DOWN] * 3 + [RIGHT] * 3, 20)]
    agg = aggregate(recs)
    assert set(agg["per_size"]) == {"3", "4"}
    assert agg["per_size"]["3"]["episodes"] == 2 and agg["per_size"]["3"]["success"] == 0.5
    assert agg["per_size"]["3"]["steps_over_optimal"] == 1.0  # NaN of the failed episode skipped
    assert agg["overall"]["exact_match"] == pytest.approx(2 / 3)
    assert agg["overall"]["hole"] == pytest.approx(1 / 3)
    assert recs[1].cells == [(0, 0), (0, 1), (1, 1)] and recs[1].fell_in_hole

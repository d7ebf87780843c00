"""Maps up to 32 x 32 end to end: generator, bit-set path length, oracle, env render -> parse, renderer, metrics."""

import numpy as np
import pytest

from rss_world.envs.frozenlake import VisualFrozenLakeEnv
from rss_world.envs.maps import (
    DELTAS,
    MAX_SIZE,
    MapSpec,
    find_cell,
    generate_map,
    is_solvable,
    load_suite,
    map_id,
    save_suite,
    start_goal_distance,
    step_limit,
)
from rss_world.envs.metrics import score_episode
from rss_world.envs.oracle import UNREACHABLE, OraclePolicy, bfs_distances, optimal_actions, optimal_length
from rss_world.envs.parser import parse_frame
from rss_world.envs.render import render_grid, render_gym


def random_desc(rng, n, p):
    """A map with S and G anywhere and holes at rate ``p``, solvable or not (unlike :func:`generate_map`)."""
    grid = np.where(rng.random((n, n)) < p, "H", "F")
    s, g = rng.choice(n * n, 2, replace=False)
    grid[divmod(int(s), n)], grid[divmod(int(g), n)] = "S", "G"
    return tuple("".join(r) for r in grid)


def test_max_size_is_32_and_a_32_map_round_trips(tmp_path):
    assert MAX_SIZE == 32 and step_limit(32) == 4096
    desc = generate_map(32, rng=np.random.default_rng(0))
    save_suite(tmp_path / "big.jsonl", [MapSpec(map_id(desc), desc)])
    assert load_suite(tmp_path / "big.jsonl")[0].desc == desc


def test_start_goal_distance_matches_oracle_bfs():
    rng = np.random.default_rng(1)
    for n in (2, 3, 7, 16, 31, 32):
        for p in (0.1, 0.3, 0.5):
            for _ in range(20):
                d = random_desc(rng, n, p)
                assert start_goal_distance(d) == optimal_length(d), d
                assert is_solvable(d) == (optimal_length(d) >= 0)


@pytest.mark.parametrize("size", [10, 24, 32])
def test_generator_at_large_sizes(size):
    rng = np.random.default_rng(size)
    maps = [generate_map(size, 0.2, rng) for _ in range(50)]
    assert all(len(d) == size and all(len(r) == size for r in d) for d in maps)
    assert all(optimal_length(d) > 0 for d in maps)
    holes = sum(r.count("H") for d in maps for r in d) / (50 * (size * size - 2))
    assert 0.17 < holes < 0.23
    assert len({find_cell(d, "S") for d in maps}) > 40  # start (and goal) anywhere


def test_generator_min_path():
    rng = np.random.default_rng(0)
    for size, min_path in ((16, 24), (32, 48)):
        for _ in range(5):
            d = generate_map(size, 0.2, rng, min_path=min_path)
            assert optimal_length(d) >= min_path
    a = generate_map(32, rng=np.random.default_rng(3), min_path=48)
    assert a == generate_map(32, rng=np.random.default_rng(3), min_path=48)
    with pytest.raises(ValueError, match="min_path 63 outside 0-62 for size 32"):
        generate_map(32, min_path=63)
    with pytest.raises(ValueError, match="min_path -1"):
        generate_map(8, min_path=-1)


def test_oracle_actions_consistent_with_bfs_at_32():
    rng = np.random.default_rng(2)
    for p in (0.2, 0.35):
        desc = generate_map(32, p, rng)
        dist = bfs_distances(desc)
        assert dist[find_cell(desc, "G")] == 0
        for r in range(32):
            for c in range(32):
                d = dist[r, c]
                nbrs = [(r + dr, c + dc) for dr, dc in DELTAS if 0 <= r + dr < 32 and 0 <= c + dc < 32]
                nd = [dist[x] for x in nbrs if dist[x] != UNREACHABLE]
                if desc[r][c] == "H":
                    assert d == UNREACHABLE and optimal_actions(desc, (r, c)) == frozenset()
                elif d == UNREACHABLE:  # cut off: no neighbour reaches the goal either
                    assert not nd and optimal_actions(desc, (r, c)) == frozenset()
                elif d > 0:  # Bellman: one step shorter through every optimal action, none better
                    assert min(nd) == d - 1
                    acts = optimal_actions(desc, (r, c))
                    assert acts and all(dist[r + DELTAS[a][0], c + DELTAS[a][1]] == d - 1 for a in acts)
                    assert len(acts) == sum(x == d - 1 for x in nd)


def test_env_round_trip_at_32_render_parse_oracle_metrics():
    desc = generate_map(32, 0.2, np.random.default_rng(5), min_path=48)
    env = VisualFrozenLakeEnv(desc=desc)
    assert env.max_steps == 4096 and env.observation_space.shape == (512, 512, 3)
    obs, info = env.reset(seed=0)
    rng, policy, actions = np.random.default_rng(0), OraclePolicy(random_tiebreak=True), []
    for t in range(10_000):
        if t % 7 == 0:  # parse every 7th frame: exact, and the atlas renderer agrees with gymnasium
            assert parse_frame(obs).equals_grid(desc, info["cell"])
            assert np.array_equal(obs, render_grid(desc, info["cell"]))
        a = policy.act(desc, info["cell"], rng)
        actions.append(a)
        obs, reward, term, trunc, info = env.step(a)
        if term or trunc:
            break
    assert reward == 1.0 and term and len(actions) == optimal_length(desc) >= 48
    assert parse_frame(obs).agent_on_goal
    m = score_episode(desc, actions, env.max_steps)
    assert m["exact_match"] == 1.0 and m["progress_rate"] == 1.0
    env.close()


@pytest.mark.parametrize(("size", "cell_px"), [(24, 16), (32, 16), (32, 8)])
def test_render_and_parse_at_large_sizes(size, cell_px, render_cases):
    for desc, rc, facing in render_cases(4, size + cell_px, sizes=[size]):
        frame = render_gym(desc, rc, cell_px, facing)
        assert frame.shape == (size * cell_px, size * cell_px, 3)
        assert np.array_equal(render_grid(desc, rc, cell_px, facing), frame)
        assert parse_frame(frame, size=size).equals_grid(desc, rc)


def test_env_at_32_with_atlas_and_invisible_agent_in_hole():
    desc = list(generate_map(32, 0.2, np.random.default_rng(9)))
    sr, sc = find_cell(desc, "S")
    env = VisualFrozenLakeEnv(desc=desc, renderer="atlas", max_steps=3)
    obs, info = env.reset(seed=1)
    assert parse_frame(obs).agent == (sr, sc)
    for _ in range(3):
        obs, _, term, trunc, info = env.step(0 if sc > 0 else 2)
        if term:
            break
    assert term or (trunc and info["steps"] == 3)
    assert parse_frame(obs).equals_grid(tuple(desc), info["cell"])

"""BFS distances and optimal action sets against brute-force search; baseline policies."""

import itertools

import numpy as np
import pytest

from rss_world.envs.maps import find_cell, generate_map
from rss_world.envs.oracle import (
    DOWN,
    LEFT,
    RIGHT,
    UP,
    GreedyManhattanPolicy,
    OraclePolicy,
    RandomPolicy,
    bfs_distances,
    move,
    optimal_actions,
    optimal_length,
)


def brute_force_distance(desc, cell, max_len=9):
    """Shortest action sequence to the goal by enumerating all sequences (holes end the episode)."""
    if desc[cell[0]][cell[1]] == "H":
        return -1
    if desc[cell[0]][cell[1]] == "G":
        return 0
    for length in range(1, max_len + 1):
        for seq in itertools.product(range(4), repeat=length):
            c = cell
            for i, a in enumerate(seq):
                c, _ = move(desc, c, a)
                letter = desc[c[0]][c[1]]
                if letter == "G" and i == length - 1:
                    return length
                if letter in "GH":
                    break
    return -1


def test_bfs_matches_brute_force_on_small_maps():
    rng = np.random.default_rng(0)
    for _ in range(12):
        size = int(rng.integers(2, 4))
        desc = generate_map(size, 0.3, rng)
        dist = bfs_distances(desc)
        for r in range(size):
            for c in range(size):
                want = brute_force_distance(desc, (r, c), max_len=size * size)
                assert dist[r, c] == want, (desc, (r, c))
                # optimal actions = first actions of all shortest sequences
                if want > 0:
                    firsts = {a for a in range(4) if not move(desc, (r, c), a)[1]
                              and brute_force_distance(desc, move(desc, (r, c), a)[0], want) == want - 1}
                    assert optimal_actions(desc, (r, c)) == frozenset(firsts)
                else:
                    assert optimal_actions(desc, (r, c)) == frozenset()


def test_all_shortest_actions_and_unreachable():
    desc = ("SFF", "FFF", "FFG")
    assert optimal_actions(desc, (0, 0)) == {DOWN, RIGHT}
    assert optimal_actions(desc, (2, 1)) == {RIGHT}
    assert optimal_length(desc) == 4
    walled = ("SFH", "FHF", "HFG")
    dist = bfs_distances(walled)
    assert dist[0, 0] == -1 and dist[1, 1] == -1 and dist[1, 2] == 1
    assert optimal_actions(walled, (0, 0)) == frozenset()


def test_move_off_grid_is_noop():
    desc = ("SF", "FG")
    assert move(desc, (0, 0), LEFT) == ((0, 0), True)
    assert move(desc, (0, 0), UP) == ((0, 0), True)
    assert move(desc, (0, 0), RIGHT) == ((0, 1), False)


def test_policies():
    rng = np.random.default_rng(0)
    desc = ("SFF", "HHF", "GFF")
    cell, steps = find_cell(desc, "S"), 0
    oracle = OraclePolicy()
    while desc[cell[0]][cell[1]] != "G":
        cell, off = move(desc, cell, oracle.act(desc, cell, rng))
        assert not off
        steps += 1
    assert steps == optimal_length(desc) == 6
    greedy = GreedyManhattanPolicy()
    assert greedy.act(desc, (0, 0), rng) == DOWN  # walks straight into the hole: that is the baseline
    assert greedy.act(("SFG", "FFF", "FFF"), (0, 0), rng) == RIGHT
    assert greedy.act(("GFF", "FFF", "FFS"), (2, 2), rng) == UP  # tie goes to the vertical move
    acts = {RandomPolicy().act(desc, (0, 0), rng) for _ in range(100)}
    assert acts == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="no optimal action"):
        oracle.act(desc, (1, 0), rng)

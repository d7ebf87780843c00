"""experiments/imagined_drift.py: scripted actors and a tiny end-to-end run."""

import numpy as np
import pytest

from rss_world.checkpoint import save_model
from rss_world.envs.maps import find_cell, load_default_suite
from rss_world.envs.oracle import move, off_grid_actions


@pytest.fixture(scope="module")
def drift(experiment):
    return experiment("imagined_drift")


def test_edge_actor_walks_around_holes_then_presses_against_the_edge(drift):
    rng = np.random.default_rng(0)
    maps = [m for m in load_default_suite("test") if m.size in (4, 6)][:40]
    pressed = 0
    for m in maps:
        actor = drift.ScriptedActor("edge", int(rng.integers(1000)))
        actor.plan(m.desc, 24)
        assert len(actor.actions) == 24
        walk, target = drift.walk_to_border(m.desc, np.random.default_rng(1))
        cell = find_cell(m.desc, "S")
        for a in walk:
            cell, off = move(m.desc, cell, a)
            assert not off and m.desc[cell[0]][cell[1]] not in "HG"
        if target is not None:
            assert cell == target and off_grid_actions(m.size, target)
            pressed += 1
    assert pressed > 30
    sticky = drift.ScriptedActor("sticky", 0)
    sticky.plan(maps[0].desc, 24)
    assert max(len(list(g)) for g in np.split(sticky.actions, np.flatnonzero(np.diff(sticky.actions)) + 1)) >= 3
    with pytest.raises(ValueError, match="unknown actor"):
        drift.ScriptedActor("greedy", 0)


def test_presses_before_counts_the_run_that_ends_at_k(drift):
    desc = ("SFF", "FHF", "FFG")
    cells = [(0, 0), (0, 0), (0, 0), (0, 1), (0, 1)]
    actions = [3, 0, 2, 3]  # up (off), left (off), right, up (off)
    assert drift.presses_before(desc, cells, actions, 2) == 2
    assert drift.presses_before(desc, cells, actions, 3) == 0
    assert drift.presses_before(desc, cells, actions, 4) == 1


def test_script_runs_end_to_end_on_a_tiny_model(tmp_path, capsys, drift, tiny):
    save_model(tmp_path / "ck", tiny())
    out = tmp_path / "drift.md"
    assert drift.main([str(tmp_path / "ck"), "--maps", "4", "--actors", "edge", "--out", str(out)]) == 0
    row = next(line for line in out.read_text().splitlines() if line.startswith(f"| `{tmp_path / 'ck'}` | edge |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert len(cells) == 2 + len(drift.HORIZONS) + 2
    # k=1: every real episode of the 4 maps lasts at least one step, and an untrained model decodes none exactly
    assert cells[2] == "0.000 (4)"
    # so every episode first goes wrong at step 1, after at most one press: none right after 3 or more presses
    assert (int(cells[-2]), int(cells[-1])) == (4, 0)
    assert drift.main([str(tmp_path / "nope"), "--maps", "4", "--out", str(tmp_path / "x.md")]) == 2
    assert "error: checkpoint" in capsys.readouterr().err and not (tmp_path / "x.md").exists()

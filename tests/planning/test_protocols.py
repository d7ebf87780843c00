"""rss_world.protocols: open and closed loop in the real env, map baselines, map selection and the summary schema."""

import json
import math

import numpy as np
import pytest

from rss_world.envs.maps import MapSpec, step_limit
from rss_world.envs.oracle import DOWN, LEFT, RIGHT, optimal_actions
from rss_world.planners import GatePlanner, GatePlannerConfig, SearchPlanner
from rss_world.protocols import (
    SUMMARY_KEYS,
    planner_stats,
    run_agent,
    run_map_baseline,
    run_planner,
    select_maps,
    summarize,
)


def check_schema(summary: dict, episodes: int) -> None:
    assert set(summary) == {"episodes", *SUMMARY_KEYS, "per_size"}
    assert summary["episodes"] == episodes == sum(b["episodes"] for b in summary["per_size"].values())
    for block in [summary, *summary["per_size"].values()]:
        for k in SUMMARY_KEYS:
            assert block[k] is None or (isinstance(block[k], float) and math.isfinite(block[k]))
    for s, block in summary["per_size"].items():
        assert s.isdigit() and set(block) == {"episodes", *SUMMARY_KEYS}
    json.loads(json.dumps(summary, allow_nan=False))


def check_replay(trace, spec: MapSpec) -> None:
    """The trace agrees with its scored record: actions, cells, and which actions start a shortest path."""
    rec = trace.record
    assert rec.actions == trace.actions and len(rec.cells) == len(trace.actions) + 1 == len(trace.real_frames)
    assert trace.on_optimal == [a in optimal_actions(spec.desc, c) for a, c in zip(trace.actions, rec.cells)]
    assert trace.decision_ms and all(ms > 0 for ms in trace.decision_ms)


@pytest.mark.parametrize("protocol", ["open", "closed"])
@pytest.mark.parametrize("planner_cls", [GatePlanner, SearchPlanner])
def test_planners_on_3x3_maps(tiny_model, maps3, protocol, planner_cls):
    traces = run_planner(planner_cls(tiny_model), maps3, protocol, cell_px=16, seed=1)
    assert [t.map_id for t in traces] == [m.id for m in maps3]
    for t, spec in zip(traces, maps3):
        check_replay(t, spec)
        assert t.real_frames[0].shape == (48, 48, 3)
        terminal = t.record.reached_goal or t.record.fell_in_hole
        if protocol == "open":
            (plan,) = t.plans
            assert len(t.decision_ms) == 1 and t.actions == plan.actions[: len(t.actions)]
            assert np.array_equal(np.stack(t.imagined_frames), plan.frames)
            if len(t.actions) < len(plan.actions):  # the env ended the episode before the plan ran out
                assert terminal or len(t.actions) == step_limit(3)
        else:
            assert len(t.plans) == len(t.actions) == len(t.decision_ms)
            assert len(t.imagined_frames) == len(t.real_frames) and t.actions == [p.actions[0] for p in t.plans]
            assert all(np.array_equal(f, p.frames[1]) for f, p in zip(t.imagined_frames[1:], t.plans))
            # Every frame before the last is new (a repeat stops the episode at once); a 3x3 map has 9 cells, so
            # an episode that neither hit a terminal cell nor repeated a frame is impossible.
            seen = [f.tobytes() for f in t.real_frames]
            assert len(set(seen[:-1])) == len(seen) - 1
            assert terminal != (seen[-1] in seen[:-1])
    check_schema(summarize(traces), 2)


@pytest.mark.parametrize("protocol", ["open", "closed"])
def test_traces_without_frames_score_the_same_and_hold_no_frames(new_tiny, maps3, protocol):
    """keep_frames=False (long suites at 32x32): the same actions, records and planner statistics, but no real or
    imagined frames, no plan latents, and no plan frame is ever decoded."""
    model = new_tiny().eval()
    full = run_planner(GatePlanner(model), maps3, protocol, cell_px=16, seed=1)
    decode, calls = model.decode, []
    model.decode = lambda z: calls.append(len(z)) or decode(z)
    slim = run_planner(GatePlanner(model, GatePlannerConfig(reencode=False)), maps3, protocol, cell_px=16, seed=1,
                       keep_frames=False)
    assert calls == []  # a pure-latent plan's frames are decoded on read only, and nothing read them
    slim_default = run_planner(GatePlanner(model), maps3, protocol, cell_px=16, seed=1, keep_frames=False)
    for a, b in zip(full, slim_default, strict=True):
        assert (a.actions, a.on_optimal, a.record) == (b.actions, b.on_optimal, b.record)
        assert b.real_frames == b.imagined_frames == [] and all(p.latents == [] and p.frames.size == 0
                                                                 for p in b.plans)
    assert planner_stats(full) == planner_stats(slim_default)
    assert [t.actions for t in slim] == [t.actions for t in run_planner(
        GatePlanner(model, GatePlannerConfig(reencode=False)), maps3, protocol, cell_px=16, seed=1)]


def test_closed_loop_ends_on_goal_hole_empty_plan_or_repeat(maps3, scripted):
    spec = maps3[:1]  # SFH / FFF / HFG
    (goal,) = run_planner(scripted([DOWN, RIGHT, DOWN, RIGHT]), spec, "closed")
    assert goal.actions == [DOWN, RIGHT, DOWN, RIGHT] and goal.record.reached_goal and len(goal.plans) == 4
    assert goal.on_optimal == [True] * 4 and goal.record.metrics["exact_match"] == 1.0
    (hole,) = run_planner(scripted([RIGHT, RIGHT, DOWN]), spec, "closed")
    assert hole.actions == [RIGHT, RIGHT] and hole.record.fell_in_hole and not hole.record.reached_goal
    (empty,) = run_planner(scripted([]), spec, "closed")
    assert empty.actions == [] and len(empty.plans) == 1 and len(empty.imagined_frames) == 1
    (cycle,) = run_planner(scripted([LEFT, DOWN]), spec, "closed")  # LEFT at the west wall: the frame repeats
    assert cycle.actions == [LEFT] and len(cycle.plans) == 1 and not cycle.record.reached_goal


def test_open_loop_executes_one_plan_until_it_runs_out(maps3, scripted):
    planner = scripted([DOWN, RIGHT])
    (trace,) = run_planner(planner, maps3[:1], "open")
    assert planner.calls == 1 and trace.actions == [DOWN, RIGHT] and trace.record.cells[-1] == (1, 1)
    assert not trace.record.reached_goal and len(trace.imagined_frames) == 3
    assert planner_stats([trace]) == {"steps_saved": 2.0, "halted_early": 1.0, "expansions": 3.0}
    with pytest.raises(ValueError, match="unknown protocol"):
        run_planner(planner, maps3, "sideways")


def test_map_baselines_oracle_perfect_random_seeded(maps3):
    summary = summarize(run_map_baseline("oracle", maps3))
    check_schema(summary, 2)
    assert summary["success_rate"] == summary["exact_match"] == summary["progress_rate"] == 1.0
    assert summary["steps_over_optimal"] == 1.0 and summary["per_size"]["3"]["episodes"] == 2
    assert summary["invalid_action_rate"] == summary["hole_rate"] == 0.0
    a = [t.actions for t in run_map_baseline("random", maps3, seed=3)]
    assert a == [t.actions for t in run_map_baseline("random", maps3, seed=3)]
    assert a != [t.actions for t in run_map_baseline("random", maps3, seed=4)]
    with pytest.raises(ValueError, match="unknown baseline"):
        run_map_baseline("chess", maps3)


def test_run_agent_resets_each_episode_and_has_no_planner_stats(maps3):
    class Down:
        resets = 0

        def reset(self):
            self.resets += 1

        def act(self, obs, info):
            return DOWN

    agent = Down()
    traces = run_agent(agent, maps3)
    assert agent.resets == 2 and traces[0].actions == [DOWN, DOWN] and traces[0].record.fell_in_hole
    assert planner_stats(traces) == {"steps_saved": None, "halted_early": None, "expansions": None}
    assert all(not t.imagined_frames and not t.plans for t in traces)


def test_summarize_groups_by_size_and_times_decisions(maps3):
    four = MapSpec("four", ("SFFF", "FFFF", "FFFF", "FFFG"))
    traces = run_map_baseline("oracle", [*maps3, four])
    traces[0].decision_ms[:] = [1.0, 3.0]
    traces[1].decision_ms[:] = [2.0]
    traces[2].decision_ms[:] = [10.0]
    summary = summarize(traces)
    assert {s: b["episodes"] for s, b in summary["per_size"].items()} == {"3": 2, "4": 1}
    assert summary["per_size"]["3"]["ms_per_decision"] == 2.0 and summary["ms_per_decision"] == 4.0
    with pytest.raises(ValueError, match="no episodes"):
        summarize([])


def test_select_maps_takes_distinct_maps_spread_over_sizes(maps3):
    fours = [MapSpec(f"four{i}", ("SFFF", "FFFF", "FFFF", "FFF" + "G" * (i == 0) + "F" * (i > 0)))
             for i in range(3)]
    maps = [*maps3, *fours]
    picked = select_maps(maps, [3, 4], 5, seed=0)
    assert [m.size for m in picked] == [3, 3, 4, 4, 4]  # size 3 runs out after 2: no map is played twice
    assert len({m.id for m in picked}) == 5
    assert [m.size for m in select_maps(maps, [3, 4], 3, seed=0)] == [3, 3, 4]  # round-robin
    assert sorted(m.id for m in select_maps(maps, None, None)) == sorted(m.id for m in maps)  # every map once
    assert [m.size for m in select_maps(maps, [4], None)] == [4, 4, 4]  # sizes filter
    with pytest.raises(ValueError, match="asked for 6 episodes, but there are only 5 distinct maps"):
        select_maps(maps, [3, 4], 6)
    with pytest.raises(ValueError, match="no map of size 5"):
        select_maps(maps, [5], 2)
    with pytest.raises(ValueError, match="episodes must be >= 1"):
        select_maps(maps, [3], 0)

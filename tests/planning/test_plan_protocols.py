"""Open and closed loop on a tiny model and a 3x3 map, the summary schema, videos, filmstrips and figures."""

import json
import math

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from rss_world.envs.maps import MapSpec, map_id
from rss_world.evaluation import SUMMARY_KEYS, planner_stats, run_map_baseline, run_planner, select_maps, summarize
from rss_world.planning import GatePlanner, Plan, SearchPlanner, SearchPlannerConfig
from rss_world.video import filmstrip, routing_figures, write_video
from rss_world.world_model import WorldModel, WorldModelConfig

torch.set_num_threads(1)
DESC = ("SFH", "FFF", "HFG")
MAPS = [MapSpec(map_id(DESC), DESC), MapSpec(map_id(("FFS", "FHF", "GFF")), ("FFS", "FHF", "GFF"))]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return WorldModel(WorldModelConfig(dim=32, heads=2, enc_layers=1, dec_layers=1, gate_iters=1, rank=4)).eval()


def check_schema(summary: dict, episodes: int) -> None:
    assert set(summary) == {"episodes", *SUMMARY_KEYS, "per_size"}
    assert summary["episodes"] == episodes
    for block in [summary, *summary["per_size"].values()]:
        for k in SUMMARY_KEYS:
            assert block[k] is None or (isinstance(block[k], float) and math.isfinite(block[k]))
    for s, block in summary["per_size"].items():
        assert s.isdigit() and set(block) == {"episodes", *SUMMARY_KEYS}
    json.loads(json.dumps(summary, allow_nan=False))


@pytest.mark.parametrize("protocol", ["open", "closed"])
@pytest.mark.parametrize("planner_cls", [GatePlanner, SearchPlanner])
def test_protocols_on_a_3x3_map(model, protocol, planner_cls):
    traces = run_planner(planner_cls(model), MAPS, protocol, seed=1)
    assert len(traces) == 2
    for t in traces:
        assert len(t.real_frames) == len(t.actions) + 1 and t.real_frames[0].shape == (48, 48, 3)
        assert t.record.actions == t.actions and len(t.on_optimal) == len(t.actions)
        assert t.decision_ms and all(ms > 0 for ms in t.decision_ms)
        if protocol == "open":
            assert len(t.plans) == 1 == len(t.decision_ms) and t.actions == t.plans[0].actions[: len(t.actions)]
            assert len(t.imagined_frames) == len(t.plans[0].frames)
        else:
            assert len(t.plans) == len(t.actions) == len(t.decision_ms)
            assert len(t.imagined_frames) == len(t.real_frames)
            assert t.actions == [p.actions[0] for p in t.plans]
            cycled = len({f.tobytes() for f in t.real_frames}) < len(t.real_frames)
            assert t.record.reached_goal or t.record.fell_in_hole or cycled or len(t.actions) == 36
    check_schema(summarize(traces), 2)
    assert set(planner_stats(traces)) == {"steps_saved", "halted_early", "expansions"}


def test_closed_loop_stops_at_a_repeated_frame():
    class Left:  # walks into the west wall from the start at column 0: the next frame repeats the first
        def plan(self, frame):
            return Plan(actions=[0], frames=np.zeros((2, 48, 48, 3), np.uint8), halted_early=False, steps_saved=0,
                        expansions=1)

    (trace,) = run_planner(Left(), MAPS[:1], "closed")
    assert trace.actions == [0] and len(trace.plans) == 1 and not trace.record.reached_goal


def test_oracle_baseline_scores_perfectly_and_random_is_seeded():
    summary = summarize(run_map_baseline("oracle", MAPS))
    check_schema(summary, 2)
    assert summary["success_rate"] == summary["exact_match"] == summary["progress_rate"] == 1.0
    assert summary["steps_over_optimal"] == 1.0 and summary["per_size"]["3"]["episodes"] == 2
    a = [t.actions for t in run_map_baseline("random", MAPS, seed=3)]
    assert a == [t.actions for t in run_map_baseline("random", MAPS, seed=3)]


def test_select_maps_spreads_over_sizes_and_checks():
    maps = MAPS + [MapSpec("four", ("SFFF", "FFFF", "FFFF", "FFFG"))]
    picked = select_maps(maps, [3, 4], 5, seed=0)
    assert [m.size for m in picked] == [3, 3, 3, 4, 4]
    with pytest.raises(ValueError, match="no map of size 5"):
        select_maps(maps, [5], 2)


@pytest.mark.parametrize("ext", [".gif", ".mp4"])
def test_video_has_expected_frames_and_size(model, tmp_path, ext):
    traces = run_planner(GatePlanner(model), MAPS, "closed", seed=0)
    expected = sum(max(len(t.real_frames), len(t.imagined_frames)) for t in traces)
    path = tmp_path / f"ep{ext}"
    assert write_video(traces, path, fps=4) == expected
    video = iio.imread(path, index=None)
    assert video.shape == (expected, 160, 400, 3)
    with pytest.raises(ValueError, match=".gif or .mp4"):
        write_video(traces, tmp_path / "ep.avi")


def test_filmstrip_and_routing_figures(model, tmp_path):
    plan = SearchPlanner(model, SearchPlannerConfig(goal_threshold=1.1, hole_threshold=1.1, max_expansions=8)).plan(
        np.asarray(run_planner(GatePlanner(model), MAPS[:1], "open")[0].real_frames[0]))
    img = iio.imread(filmstrip(plan.frames, tmp_path / "strip.png", panel=64, actions=plan.actions))
    assert img.shape == (64 + 24, len(plan.frames) * 68 + 4, 3)
    starts = np.stack([run_planner(GatePlanner(model), [m], "open")[0].real_frames[0] for m in MAPS])
    for p in routing_figures(model, starts, tmp_path, steps=3):
        assert p.exists() and p.stat().st_size > 1000

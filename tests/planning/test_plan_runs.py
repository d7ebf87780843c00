"""rss_world.plan_runs (the ``plan`` command's library): which maps a run plays, the JSON with every episode, the
warning on unseen sizes, the video of the longest plans, and whole outputs when two runs share a path."""

import json
import subprocess
import sys

import imageio.v3 as iio
import pytest

from rss_world.checkpoint import CONFIG
from rss_world.plan_runs import DEMO_EPISODES, PlanConfig, plan_maps, run_plan
from rss_world.reports import COLUMNS
from rss_world.video import filmstrip_path

SUMMARY = {"episodes", "per_size", "per_episode", *(k for k, _ in COLUMNS)}


@pytest.fixture
def maps_file(tmp_path):
    """Five maps: three of size 3, two of size 4."""
    rows = [["SFF", "FHF", "FFG"], ["SFH", "FFF", "HFG"], ["FFS", "FHF", "GFF"],
            ["SFFF", "FHFF", "FFFH", "HFFG"], ["SFFF", "FFFF", "FFFF", "FFFG"]]
    path = tmp_path / "maps.jsonl"
    path.write_text("".join(json.dumps({"id": f"m{i}", "desc": r}) + "\n" for i, r in enumerate(rows)))
    return path


def test_a_map_file_runs_whole_and_sizes_and_episodes_select_distinct_maps(maps_file):
    every = plan_maps(PlanConfig(maps=str(maps_file)))
    assert sorted(m.id for m in every) == [f"m{i}" for i in range(5)]  # every map once, at all of its sizes
    assert [m.size for m in plan_maps(PlanConfig(maps=str(maps_file), sizes="4"))] == [4, 4]
    picked = plan_maps(PlanConfig(maps=str(maps_file), episodes=5, seed=3))
    assert len({m.id for m in picked}) == 5  # no map twice
    with pytest.raises(ValueError, match="asked for 6 episodes, but there are only 5 distinct maps"):
        plan_maps(PlanConfig(maps=str(maps_file), episodes=6))
    demo = plan_maps(PlanConfig())  # no file: one test map of each size 3-8
    assert [m.size for m in demo] == [3, 4, 5, 6, 7, 8] and len(demo) == DEMO_EPISODES
    assert [m.size for m in plan_maps(PlanConfig(sizes="16,32", episodes=4))] == [16, 16, 32, 32]  # test_large


def test_run_plan_writes_every_episode_the_longest_in_the_video_and_a_filmstrip(tiny_ckpt, maps_file, tmp_path,
                                                                                  capsys):
    out_json, video = tmp_path / "r.json", tmp_path / "v.gif"
    summary = run_plan(PlanConfig(checkpoint=str(tiny_ckpt), maps=str(maps_file), planner="gate", json=str(out_json),
                                  video=str(video), video_episodes=2, progress=False, seed=1))
    printed = capsys.readouterr()
    assert "gate planner, closed loop" in printed.out and "plans:" in printed.out and f"video: {video}" in printed.out
    assert json.loads(out_json.read_text()) == summary and set(summary) == SUMMARY
    assert {s: b["episodes"] for s, b in summary["per_size"].items()} == {"3": 3, "4": 2}
    rows = summary["per_episode"]
    assert sorted(r["map_id"] for r in rows) == [f"m{i}" for i in range(5)]
    for r in rows:
        assert set(r) == {"map_id", "size", "success", "steps", "optimal", "actions"}
        assert r["steps"] == len(r["actions"]) and r["optimal"] >= 2 and isinstance(r["success"], bool)
    frames = iio.imread(video, index=None)
    assert frames.shape[1] >= 256 and frames[0].std() > 10
    assert filmstrip_path(video).is_file()
    assert "warning" not in printed.err  # the tiny checkpoint records no training sizes


def test_maps_larger_than_the_training_sizes_get_a_one_line_warning(tiny_ckpt, maps_file, tmp_path, capsys):
    ckpt = tmp_path / "ck"
    ckpt.mkdir()
    for f in tiny_ckpt.iterdir():
        (ckpt / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((ckpt / CONFIG).read_text())
    cfg["meta"]["train_sizes"] = [3]
    (ckpt / CONFIG).write_text(json.dumps(cfg))
    run_plan(PlanConfig(checkpoint=str(ckpt), maps=str(maps_file), planner="gate", video=None, progress=False))
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["warning: maps of size [4] are larger than the checkpoint's training sizes 3-3"]


def untimed(x):
    """``x`` without its wall-time fields (``ms_per_decision``), which differ between any two runs."""
    if isinstance(x, dict):
        return {k: untimed(v) for k, v in x.items() if k != "ms_per_decision"}
    return [untimed(v) for v in x] if isinstance(x, list) else x


@pytest.mark.slow  # four interpreters
def test_two_runs_sharing_outputs_leave_each_file_whole_and_from_one_run(tiny_ckpt, maps_file, tmp_path):
    """Two planners (different seeds and maps, so different outputs) write the same JSON and GIF at the same time;
    each file must equal, byte for byte, what one of the runs writes alone."""

    def command(seed: int, sizes: str, out: str) -> list[str]:
        return [sys.executable, "-m", "rss_world.plan", "--checkpoint", str(tiny_ckpt), "--maps", str(maps_file),
                "--sizes", sizes, "--seed", str(seed), "--planner", "gate", "--no-progress",
                "--json", str(tmp_path / f"{out}.json"), "--video", str(tmp_path / f"{out}.gif")]

    runs = {"a": (0, "3"), "b": (1, "3-4")}
    for name, (seed, sizes) in runs.items():  # each alone
        subprocess.run(command(seed, sizes, name), check=True, capture_output=True, timeout=300)
    both = [subprocess.Popen(command(seed, sizes, "shared"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for seed, sizes in runs.values()]
    for p in both:
        assert p.wait(timeout=300) == 0, p.stderr.read()
    shared_gif = (tmp_path / "shared.gif").read_bytes()
    assert shared_gif in ((tmp_path / "a.gif").read_bytes(), (tmp_path / "b.gif").read_bytes())
    assert filmstrip_path(tmp_path / "shared.gif").read_bytes() in [
        filmstrip_path(tmp_path / f"{n}.gif").read_bytes() for n in runs]
    results = {n: untimed(json.loads((tmp_path / f"{n}.json").read_text())) for n in [*runs, "shared"]}
    assert results["a"] != results["b"] and results["shared"] in (results["a"], results["b"])
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left

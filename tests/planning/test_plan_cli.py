"""``python -m rss_world.plan`` and ``python -m rss_world.evaluate``: outputs, config, and exit code 2 on bad input."""

import dataclasses
import json
import subprocess
import sys

import imageio.v3 as iio
import pytest
import torch
import yaml

from rss_world import evaluate, plan
from rss_world.checkpoint import save_model
from rss_world.planning import GatePlannerConfig, SearchPlannerConfig
from rss_world.world_model import WorldModel, WorldModelConfig

torch.set_num_threads(1)
SUMMARY = {"episodes", "success_rate", "exact_match", "progress_rate", "invalid_action_rate", "hole_rate",
           "steps_over_optimal", "ms_per_decision", "per_size"}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    save_model(path, WorldModel(WorldModelConfig(dim=32, heads=2, enc_layers=1, dec_layers=1, gate_iters=1, rank=4)))
    return path


@pytest.fixture(scope="module")
def bad_maps(tmp_path_factory):
    path = tmp_path_factory.mktemp("maps") / "bad.jsonl"
    path.write_text('{"id": "a", "desc": ["SFF", "FHF", "FFF"]}\n')  # no goal
    return path


@pytest.mark.parametrize("args, message", [
    (["--env", "atari"], "unknown env 'atari'"),
    (["--maps", "BAD"], "bad map file"),
    (["--checkpoint", "/nonexistent/ckpt"], "cannot load checkpoint"),
    (["--episodes", "many"], "--episodes"),
])
def test_cli_errors_exit_2_with_one_line(args, message, ckpt, bad_maps):
    args = [str(bad_maps) if a == "BAD" else a for a in args]
    if "--checkpoint" not in args:
        args += ["--checkpoint", str(ckpt)]
    res = subprocess.run([sys.executable, "-m", "rss_world.plan", *args], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in res.stderr, res.stderr


@pytest.mark.parametrize("args", [["--sizes", "9-3"], ["--sizes", "3-20"], ["--video", "out.avi"],
                                  ["--maps", "/nonexistent.jsonl"], ["--planner", "bfs"], ["--sizes", "9"]])
def test_cli_bad_options_in_process(args, ckpt, capsys):
    extra = [] if "--video" in args else ["--no-video"]
    assert plan.main([*args, "--checkpoint", str(ckpt), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("python -m rss_world.plan: error:")


def test_cli_writes_json_table_and_video(ckpt, tmp_path, capsys):
    out_json, video = tmp_path / "r.json", tmp_path / "v.gif"
    rc = plan.main(["--env", "frozenlake", "--checkpoint", str(ckpt), "--sizes", "3-4", "--episodes", "3",
                    "--planner", "gate", "--protocol", "closed", "--json", str(out_json), "--video", str(video),
                    "--video-episodes", "1", "--no-progress", "--seed", "1"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "success" in text and "all" in text and "video:" in text
    summary = json.loads(out_json.read_text())
    assert set(summary) == SUMMARY and summary["episodes"] == 3
    assert set(summary["per_size"]) == {"3", "4"} and summary["per_size"]["3"]["episodes"] == 2
    assert iio.imread(video, index=None).shape[1:] == (160, 400, 3)


def test_planner_yaml_mirrors_dataclass_defaults():
    for name, cls in (("gate", GatePlannerConfig), ("search", SearchPlannerConfig)):
        from importlib.resources import files

        cfg = yaml.safe_load((files("rss_world.configs") / "planner" / f"{name}.yaml").read_text())
        assert cfg == dataclasses.asdict(cls()), name


def test_evaluate_runs_with_overrides(ckpt, tmp_path, capsys):
    rc = evaluate.main([f"checkpoint={ckpt}", f"out={tmp_path}", "sizes=[3]", "maps_per_size=2", "progress=false",
                        "run_planners=[search]", "protocols=[open]", "baselines=[oracle,random]",
                        "planners.search.max_expansions=16"])
    assert rc == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert list(results["methods"]) == ["search / open loop", "oracle", "random"]
    assert results["methods"]["oracle"]["summary"]["exact_match"] == 1.0
    assert results["settings"]["planners"]["search"]["max_expansions"] == 16
    assert "| oracle | 2 |" in (tmp_path / "results.md").read_text()
    assert evaluate.main([f"checkpoint={ckpt}", "baselines=[chess]"]) == 2
    assert evaluate.main(["no_such_key=1"]) == 2
    assert "error" in capsys.readouterr().err

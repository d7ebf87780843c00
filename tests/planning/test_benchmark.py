"""rss_world.benchmark: settings from the dataclasses, the full benchmark, its checks and PPO row."""

import json
from dataclasses import asdict

import pytest

from rss_world.benchmark import (
    EvaluateConfig,
    benchmark_maps,
    evaluate_config,
    parse_sizes,
    run_benchmark,
    run_evaluate,
)
from rss_world.planners import GatePlannerConfig, SearchPlannerConfig
from rss_world.reports import COLUMNS

SUMMARY = {"episodes", "per_size", *(k for k, _ in COLUMNS)}


def test_evaluate_config_is_the_dataclass_defaults_plus_overrides():
    assert evaluate_config() == EvaluateConfig()
    cfg = evaluate_config(["planners.search.max_expansions=16", "sizes=[3,5]", "maps_per_size=null"])
    assert cfg.planners.search == SearchPlannerConfig(max_expansions=16) and cfg.planners.gate == GatePlannerConfig()
    assert cfg.sizes == [3, 5] and cfg.maps_per_size is None
    for bad in (["no_such_key=1"], ["planners.search.batch=many"], ["sizes=abc"]):
        with pytest.raises(ValueError, match="bad config override"):
            evaluate_config(bad)


def test_parse_sizes():
    assert parse_sizes("3-5") == [3, 4, 5] and parse_sizes("7,3, 4") == [3, 4, 7] and parse_sizes("2") == [2]
    for text, message in (("9-3", "is empty"), ("3-40", "within 2-32"), ("x", "must look like"), ("", "look like")):
        with pytest.raises(ValueError, match=message):
            parse_sizes(text)


def test_benchmark_maps_per_size_or_all():
    cfg = EvaluateConfig(sizes=[4, 3], maps_per_size=3)
    maps = benchmark_maps(cfg)
    assert [m.size for m in maps] == [4, 4, 4, 3, 3, 3] and len({m.id for m in maps}) == 6
    assert [m.id for m in maps] == [m.id for m in benchmark_maps(cfg)]  # seeded
    assert len(benchmark_maps(EvaluateConfig(sizes=[3], maps_per_size=None))) == 100  # the whole test split


def test_run_benchmark_planners_and_map_baselines(tiny_ckpt, tmp_path):
    cfg = evaluate_config([f"checkpoint={tiny_ckpt}", f"out={tmp_path}", "sizes=[3]", "maps_per_size=2",
                           "progress=false", "run_planners=[search]", "protocols=[open,closed]",
                           "baselines=[oracle,random]", "planners.search.max_expansions=16", "video_episodes=1"])
    results = run_benchmark(cfg)
    methods = results["methods"]
    assert list(methods) == ["search / open loop", "search / closed loop", "oracle", "random"]
    assert methods["oracle"]["summary"]["exact_match"] == 1.0 and "planner_stats" not in methods["oracle"]
    assert methods["search / open loop"]["planner_stats"]["expansions"] <= 16
    assert all(set(m["summary"]) == SUMMARY and m["summary"]["episodes"] == 2 for m in methods.values())
    assert results["settings"] == asdict(cfg) | {"episodes": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["search_closed.filmstrip.png", "search_closed.gif",
                                                           "search_open.filmstrip.png", "search_open.gif"]


@pytest.mark.parametrize("override, message", [
    ("baselines=[chess]", r"unknown baseline\(s\) \['chess'\]"),
    ("run_planners=[bfs]", r"unknown planner\(s\)"),
    ("protocols=[sideways]", r"unknown protocol\(s\)"),
    ("env=atari", "unknown env"),
    ("ppo.steps=0", "ppo.steps must be >= 1"),
    ("maps_per_size=0", "maps_per_size"),
    ("checkpoint=/nonexistent", "cannot load checkpoint"),
    ("sizes=[9]", "no map of size 9"),
])
def test_run_benchmark_rejects_bad_settings_before_writing(override, message, tiny_ckpt, tmp_path):
    cfg = evaluate_config([f"checkpoint={tiny_ckpt}", f"out={tmp_path / 'out'}", "video_episodes=1", override])
    with pytest.raises(ValueError, match=message):
        run_benchmark(cfg)
    assert not (tmp_path / "out").exists()


def test_run_evaluate_writes_json_and_markdown(tiny_ckpt, tmp_path, capsys):
    results = run_evaluate([f"checkpoint={tiny_ckpt}", f"out={tmp_path}", "sizes=[3]", "maps_per_size=2",
                            "progress=false", "run_planners=[]", "baselines=[oracle]"])
    assert json.loads((tmp_path / "results.json").read_text()) == json.loads(json.dumps(results))
    md = (tmp_path / "results.md").read_text()
    assert "| oracle | 2 | 100.0% | 100.0% |" in md and md in capsys.readouterr().out


@pytest.mark.slow  # trains PPO for one rollout (2048 env steps)
def test_ppo_row_states_the_env_steps_trained(tiny_ckpt, tmp_path):
    cfg = evaluate_config([f"checkpoint={tiny_ckpt}", f"out={tmp_path}", "sizes=[3]", "maps_per_size=2",
                           "progress=false", "run_planners=[]", "baselines=[ppo]", "ppo.steps=64"])
    (name, entry), = run_benchmark(cfg)["methods"].items()
    assert name == f"ppo ({entry['env_steps']} env steps)" and entry["env_steps"] >= 64
    assert entry["summary"]["episodes"] == 2 and 0 < entry["train_seconds"] < entry["seconds"]

"""``python -m rss_world.evaluate`` in a subprocess (nothing imports an entry point): overrides, outputs, exit 2."""

import json
import subprocess
import sys

import pytest


def evaluate(*overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rss_world.evaluate", *overrides], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow  # one interpreter
def test_overrides_reach_the_benchmark(tiny_ckpt, tmp_path):
    res = evaluate(f"checkpoint={tiny_ckpt}", f"out={tmp_path}", "sizes=[3]", "maps_per_size=2", "progress=false",
                   "run_planners=[search]", "protocols=[open]", "baselines=[oracle,random]",
                   "planners.search.max_expansions=16")
    assert res.returncode == 0, res.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    assert list(results["methods"]) == ["search / open loop", "oracle", "random"]
    assert results["settings"]["planners"]["search"]["max_expansions"] == 16
    assert "| oracle | 2 | 100.0% |" in (tmp_path / "results.md").read_text() and "written:" in res.stdout


@pytest.mark.slow  # one interpreter per case
@pytest.mark.parametrize("override, message", [("baselines=[chess]", "unknown baseline(s) ['chess']"),
                                               ("no_such_key=1", "bad config override")])
def test_bad_input_exits_2_with_one_line(override, message, tmp_path):
    res = evaluate(override, f"out={tmp_path / 'out'}")
    assert res.returncode == 2 and not (tmp_path / "out").exists()
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m rss_world.evaluate: error:") and message in lines[0]

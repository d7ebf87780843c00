"""``python -m rss_world.plan`` in a subprocess (nothing imports an entry point): options, outputs, exit status 2."""

import json
import subprocess
import sys
import time

import imageio.v3 as iio
import pytest

from rss_world.paths import DEFAULT_CHECKPOINT


def plan(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rss_world.plan", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow  # one interpreter
def test_options_reach_the_run(tiny_ckpt, tmp_path):
    out = tmp_path / "r.json"
    res = plan("--checkpoint", str(tiny_ckpt), "--sizes", "3,4", "--episodes", "3", "--planner", "gate", "--protocol",
               "open", "--json", str(out), "--no-video", "--no-progress", "--seed", "1", "--threads", "1")
    assert res.returncode == 0, res.stderr
    assert "gate planner, open loop" in res.stdout and "video:" not in res.stdout
    summary = json.loads(out.read_text())
    assert {s: b["episodes"] for s, b in summary["per_size"].items()} == {"3": 2, "4": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]  # --no-video: no video


@pytest.mark.slow  # the shipped model plans 6 maps of sizes 3-8 with latent search
def test_default_command_on_the_shipped_model(tmp_path):
    assert (DEFAULT_CHECKPOINT / "model.safetensors").exists(), f"shipped checkpoint {DEFAULT_CHECKPOINT} missing"
    out, video = tmp_path / "summary.json", tmp_path / "v.gif"
    t0 = time.perf_counter()
    res = plan("--env", "frozenlake", "--json", str(out), "--video", str(video), "--no-progress")
    seconds = time.perf_counter() - t0
    assert res.returncode == 0, res.stderr
    summary = json.loads(out.read_text())
    assert summary["episodes"] == 6 and set(summary["per_size"]) == {"3", "4", "5", "6", "7", "8"}
    assert summary["success_rate"] == 1.0, res.stdout
    frames = iio.imread(video, index=None)  # the 3 longest episodes: the start and every step each
    longest = sorted((r["steps"] for r in summary["per_episode"]), reverse=True)[:3]
    assert frames.shape[1] >= 256 and len(frames) >= sum(longest) + 3 and frames[0].std() > 10
    assert video.with_suffix(".filmstrip.png").is_file()
    assert seconds < 60, f"default command took {seconds:.0f} s"

"""The default command on the shipped model (``rss_world/checkpoints/frozenlake``) succeeds on seeded test maps."""

import json
import subprocess
import sys
import time

from rss_world.plan import DEFAULT_CHECKPOINT


def test_default_command_on_the_shipped_model(tmp_path):
    assert (DEFAULT_CHECKPOINT / "model.safetensors").exists(), f"shipped checkpoint {DEFAULT_CHECKPOINT} missing"
    out = tmp_path / "summary.json"
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "rss_world.plan", "--env", "frozenlake", "--json", str(out),
                          "--video", str(tmp_path / "v.gif"), "--no-progress"],
                         capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - t0
    assert res.returncode == 0, res.stderr
    summary = json.loads(out.read_text())
    assert summary["episodes"] == 6 and set(summary["per_size"]) == {"3", "4", "5", "6", "7", "8"}
    assert summary["success_rate"] == 1.0, res.stdout
    assert (tmp_path / "v.gif").stat().st_size > 0
    assert seconds < 60, f"default command took {seconds:.0f} s"

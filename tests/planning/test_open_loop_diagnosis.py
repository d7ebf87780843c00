"""experiments/open_loop_diagnosis.py: its sorting of failed open-loop episodes, and a tiny end-to-end run."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from rss_world.checkpoint import save_model
from rss_world.envs.maps import load_default_suite
from rss_world.protocols import run_map_baseline

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "open_loop_diagnosis.py"


def _load():
    spec = importlib.util.spec_from_file_location("experiment_open_loop_diagnosis", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_classify_names_the_first_place_an_episode_goes_wrong():
    diag = _load()
    maps = [m for m in load_default_suite("val", [5]) if len(m.desc) == 5][:10]
    trace = next(t for t in run_map_baseline("oracle", maps) if len(t.actions) >= 4)
    trace.imagined_frames = [f.copy() for f in trace.real_frames]
    assert diag.classify(trace, 16) == "ok"
    trace.on_optimal[2] = False  # an off-path action from frame 2, which is still right
    assert diag.classify(trace, 16) == "gate wrong on a right frame"
    trace.imagined_frames[2] = np.zeros_like(trace.imagined_frames[2])  # frame 2 itself is already wrong
    assert diag.classify(trace, 16) == "frame off at step 2"
    trace.imagined_frames[1] = np.zeros_like(trace.imagined_frames[1])
    assert diag.classify(trace, 16) == "frame off at step 1"


def test_the_report_counts_every_map_once_per_setting(new_tiny, tmp_path):
    diag = _load()
    save_model(tmp_path / "ck", new_tiny())
    out = tmp_path / "diag.md"
    assert diag.main(["--checkpoint", str(tmp_path / "ck"), "--sizes", "3", "4", "--maps", "2", "--out", str(out)]) == 0
    rows = [line.split(" | ") for line in out.read_text().splitlines() if line.startswith("| re-") or
            line.startswith("| pure")]
    assert len(rows) == 6  # 2 settings x (2 sizes + all)
    for row in rows:
        assert sum(int(x.strip(" |")) for x in row[2:]) == (4 if row[1] == "all" else 2)

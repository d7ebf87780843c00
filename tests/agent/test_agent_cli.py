"""``python -m rss_world.agent``: train, eval and play on a tiny model, and one-line errors."""

from __future__ import annotations

import json

import pytest

from rss_world.agent import main
from rss_world.checkpoint import save_model


@pytest.mark.slow
def test_train_then_eval(tmp_path, capsys):
    out = tmp_path / "agents" / "ppo_real.zip"
    assert main(["train", "--env", "real", "--steps", "32", "--n-envs", "4", "--sizes", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    meta = json.loads((tmp_path / "agents" / "ppo_real.json").read_text())
    assert printed.startswith(f"saved {out}: ") and json.loads(printed.split(": ", 1)[1]) == meta
    assert (meta["env"], meta["steps"], meta["pad_to"], meta["train_max_steps"]) == ("real", 512, 3, 24)
    assert main(["eval", "--agent", str(out), "--episodes", "2", "--sizes", "3"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["episodes"] == 2 and set(summary["per_size"]) == {"3"}


def test_play_and_errors(tmp_path, capsys, tiny):
    save_model(tmp_path / "wm", tiny())
    out = tmp_path / "v.gif"
    assert main(["play", "--checkpoint", str(tmp_path / "wm"), "--out", str(out), "--episodes", "1",
                 "--sizes", "3", "--horizon", "4"]) == 0
    assert capsys.readouterr().out.startswith("wrote ") and out.exists()
    assert main(["play", "--out", str(out)]) == 2
    assert "error: play needs --checkpoint" in capsys.readouterr().err
    assert main(["eval", "--agent", str(tmp_path / "missing.zip")]) == 2
    assert "error: no agent at" in capsys.readouterr().err
    assert main(["train", "--env", "real", "--steps", "0", "--out", str(tmp_path / "x.zip")]) == 2
    assert "error: steps must be >= 1" in capsys.readouterr().err and not (tmp_path / "x.zip").exists()

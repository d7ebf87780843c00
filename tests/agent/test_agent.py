"""``python -m rss_world.agent``: train, eval and play on a tiny model, and one-line errors. The entry point runs
as ``python -m`` runs it (the root conftest's ``run_cli``), never imported."""

from __future__ import annotations

import json

import imageio.v2 as imageio
import pytest

from rss_world.checkpoint import save_model


@pytest.fixture
def agent_cli(run_cli):
    """``agent_cli(argv)``: the exit status of ``python -m rss_world.agent <argv>``."""
    return lambda argv: run_cli("rss_world.agent", argv)


@pytest.mark.slow
def test_train_then_eval(tmp_path, capsys, agent_cli):
    out = tmp_path / "agents" / "ppo_real.zip"
    argv = ["train", "--env", "real", "--steps", "32", "--n-envs", "4", "--sizes", "3", "--out", str(out)]
    assert agent_cli(argv) == 0
    printed = capsys.readouterr().out
    meta = json.loads((tmp_path / "agents" / "ppo_real.json").read_text())
    assert printed.startswith(f"saved {out}: ") and json.loads(printed.split(": ", 1)[1]) == meta
    assert (meta["env"], meta["steps"], meta["pad_to"], meta["train_max_steps"]) == ("real", 512, 3, 24)
    assert agent_cli(["eval", "--agent", str(out), "--episodes", "2", "--sizes", "3"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["episodes"] == 2 and set(summary["per_size"]) == {"3"}


def test_play_and_errors(tmp_path, capsys, tiny, agent_cli):
    save_model(tmp_path / "wm", tiny())
    out = tmp_path / "v.gif"
    assert agent_cli(["play", "--checkpoint", str(tmp_path / "wm"), "--out", str(out), "--episodes", "1",
                      "--sizes", "3", "--horizon", "4"]) == 0
    printed = capsys.readouterr().out
    frames = len(imageio.mimread(out))
    assert printed == f"wrote {frames} frames to {out}\n" and 2 <= frames <= 5  # start + 1 to 4 steps
    assert agent_cli(["play", "--out", str(out)]) == 2
    assert "error: play needs --checkpoint" in capsys.readouterr().err
    assert agent_cli(["eval", "--agent", str(tmp_path / "missing.zip")]) == 2
    assert "error: no agent at" in capsys.readouterr().err
    assert agent_cli(["train", "--env", "real", "--steps", "0", "--out", str(tmp_path / "x.zip")]) == 2
    assert "error: steps must be >= 1" in capsys.readouterr().err and not (tmp_path / "x.zip").exists()

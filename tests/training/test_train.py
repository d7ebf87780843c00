"""``python -m rss_world.train --env frozenlake``: one-line errors for bad input, one source for the recipe, a run,
a resume refused unless the recipe is the checkpoint's, Ctrl-C in either stage."""

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from rss_world.checkpoint import load_model
from rss_world.rollouts import DataConfig
from rss_world.training.config import TrainConfig, TrainRecipe, compose_recipe
from rss_world.world_model import WorldModelConfig


@pytest.mark.parametrize("argv", [
    ["--env", "frozenlake", "train.steps=abc"],
    ["--env", "frozenlake", "train.foo=1"],
    ["--env", "frozenlake", "model=huge"],
    ["--env", "frozenlake", "train.steps=["],
    ["--env", "frozenlake", "train.steps=0"],
    ["--env", "atari"],
    ["train.steps=3"],
    ["--env", "frozenlake", "--variant", "dit"],
    ["--env", "frozenlake", "--resume"],
])
def test_bad_input_is_one_line_and_exit_2(argv, capsys, tmp_path, monkeypatch, run_cli):
    monkeypatch.chdir(tmp_path)  # nothing may be written: the run must not start
    assert run_cli("rss_world.train", argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m rss_world.train: error: ") and err.count("\n") == 1, err
    assert not any(tmp_path.iterdir())


def test_the_dataclass_defaults_are_the_recipe():
    recipe = OmegaConf.to_object(compose_recipe())
    assert recipe == TrainRecipe()
    assert (recipe.model, recipe.train, recipe.data) == (WorldModelConfig(), TrainConfig(), DataConfig())
    assert TrainConfig().steps == 4000 and DataConfig().bump_frac == 0.2
    assert OmegaConf.to_object(compose_recipe(["model=tiny"])).model != WorldModelConfig()


@pytest.mark.slow
def test_tiny_recipe_trains_both_stages_and_resumes_into_stage_2(tmp_path, run_cli, tiny_settings):
    data = ["data.train_episodes=4", "data.val_episodes=2", "data.sizes=[3]", f"data.train_dir={tmp_path}/train",
            f"data.val_dir={tmp_path}/val"]
    run = ["model=tiny", "train.steps=2", "train.gate_steps=1", "train.val_every=2", "train.val_windows=2",
           "train.batch=4", "train.gate_batch=4", f"out={tmp_path}/run", *data]
    assert run_cli("rss_world.train", ["--env", "frozenlake", *run]) == 0
    out = tmp_path / "run"
    written = OmegaConf.merge(OmegaConf.structured(TrainRecipe), OmegaConf.load(out / "train_config.yaml"))
    written = OmegaConf.to_object(written)
    assert written == OmegaConf.to_object(compose_recipe(run))  # the resolved recipe of the run
    assert load_model(out / "checkpoint").cfg == WorldModelConfig(**tiny_settings)  # a tiny model, loadable
    first = (out / "metrics.jsonl").read_text().splitlines()
    # stage 1 is done: the resume goes straight to stage 2, which starts afresh and replaces its rows
    assert run_cli("rss_world.train", ["--env", "frozenlake", "--resume", *run]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r.get("stage"), r.get("step", r.get("gate_step"))) for r in rows] == [(None, 1), (None, 2), ("gate", 1)]
    assert len(first) == len(rows) and "frame_acc_step0" in rows[1] and "gate_demo_agree" in rows[2]


def files(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``root``: its modification time and bytes."""
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(root.rglob("*"))
            if p.is_file()}


def one_error_line(err: str) -> str:
    """The one line of stderr, after the data collection's progress bars (``rss_world.rollouts``, shown even when
    all the data are there)."""
    assert err.endswith("\n"), err
    lines = [line for line in err[:-1].split("\n") if not line.startswith("\rcollect:")]
    assert len(lines) == 1 and lines[0].startswith("python -m rss_world.train: "), err
    return lines[0]


@pytest.mark.parametrize("change, named", [
    ("model=default", "model.dim (checkpoint 32, given 128)"),
    ("train.steps=100", "train.steps (checkpoint 4, given 100)"),
    ("train.lr=0.01", "train.lr (checkpoint 0.0015, given 0.01)"),
    ("train.ckpt_every=1", "train.ckpt_every"),
    ("data.train_episodes=5", "data.train_episodes (checkpoint 4, given 5)"),
])
def test_resume_with_another_recipe_is_refused_before_anything_is_written(change, named, finished_run, run_cli,
                                                                          capsys):
    root, recipe = finished_run
    before = files(root)
    assert run_cli("rss_world.train", ["--env", "frozenlake", "--resume", *recipe, change]) == 2
    err = one_error_line(capsys.readouterr().err)
    assert "error: --resume needs the recipe of the checkpoint" in err and "(step 4)" in err and named in err, err
    assert files(root) == before  # not a byte, not a time stamp, no new file (data folders included)


def test_resume_without_a_checkpoint_and_options_among_the_overrides(tmp_path, run_cli, capsys, tiny_recipe):
    # --resume and --env may come anywhere among the overrides
    argv = ["train.steps=5", "--resume", "model=tiny", "--env", "frozenlake", *tiny_recipe(tmp_path)]
    assert run_cli("rss_world.train", argv) == 2
    err = one_error_line(capsys.readouterr().err)
    assert f"error: nothing to resume: {tmp_path}/run/checkpoint holds no train_state.pt" in err, err
    assert not any(tmp_path.iterdir())


def test_a_moved_run_resumes_and_logs_each_step_once(copy_of_run, finished_run, run_cli):
    run, recipe = copy_of_run  # out differs from the recorded one: a run folder may move
    half = len(recipe) // 2
    assert run_cli("rss_world.train", ["--env", "frozenlake", *recipe[:half], "--resume", *recipe[half:]]) == 0
    assert rows(run) == rows(finished_run[0] / "run")  # stage 1 was complete: stage 2 ran again, the same way
    assert [(r.get("stage"), r.get("step", r.get("gate_step"))) for r in rows(run)] == [
        (None, 1), (None, 2), (None, 3), (None, 4), ("gate", 1), ("gate", 2)]


def rows(run: Path) -> list[dict]:
    """The run's log rows less their times."""
    return [{k: v for k, v in json.loads(line).items() if k != "time_s"}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


def interrupt_on_call(n: int, fn):
    """``fn`` that raises ``KeyboardInterrupt`` (as Ctrl-C does) on its ``n``-th call."""
    calls = []

    def wrapped(*args, **kw):
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt
        return fn(*args, **kw)

    return wrapped


def test_ctrl_c_in_stage_1_names_the_checkpoint_and_the_resume_continues(finished_run, tmp_path, run_cli, capsys,
                                                                         monkeypatch, tiny_recipe):
    import rss_world.training.world_model as stage1

    root, _ = finished_run
    recipe = tiny_recipe(root, tmp_path / "run")
    monkeypatch.setattr(stage1, "sample_batch", interrupt_on_call(4, stage1.sample_batch))  # in step 4
    assert run_cli("rss_world.train", ["--env", "frozenlake", *recipe]) == 130
    err = one_error_line(capsys.readouterr().err)
    assert err.startswith(f"python -m rss_world.train: interrupted: stopped after step 3 of 4; the last checkpoint is "
                          f"{tmp_path}/run/checkpoint (step 2); --resume continues from it: python -m "
                          f"rss_world.train --env frozenlake --resume model=tiny "), err
    assert [r["step"] for r in rows(tmp_path / "run")] == [1, 2, 3]
    monkeypatch.undo()
    assert run_cli("rss_world.train", ["--env", "frozenlake", "--resume", *recipe]) == 0
    assert rows(tmp_path / "run") == rows(root / "run")  # each step once, as in the run never stopped


def test_ctrl_c_in_stage_2_names_the_complete_stage_1_and_the_resume_redoes_stage_2(copy_of_run, finished_run,
                                                                                     run_cli, capsys, monkeypatch):
    import rss_world.training.gate as stage2

    run, recipe = copy_of_run
    monkeypatch.setattr(stage2, "gate_losses", interrupt_on_call(2, stage2.gate_losses))
    assert run_cli("rss_world.train", ["--env", "frozenlake", "--resume", *recipe]) == 130
    err = one_error_line(capsys.readouterr().err)
    assert (f"interrupted: stopped in stage 2 (gate) after gate step 1 of 2; the last checkpoint is {run}/checkpoint "
            f"(step 4, stage 1 complete); --resume trains stage 2 again from its start: python -m rss_world.train "
            f"--env frozenlake --resume ") in err, err
    monkeypatch.undo()
    assert run_cli("rss_world.train", ["--env", "frozenlake", "--resume", *recipe]) == 0
    assert rows(run) == rows(finished_run[0] / "run")

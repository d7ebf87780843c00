"""``python -m rss_world.train --env frozenlake``: one-line errors for bad input, one source for the recipe, a run."""

import json

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
    assert len(first) == len(rows) and "frame_acc_step0" in rows[1] and "gate_top1" in rows[2]

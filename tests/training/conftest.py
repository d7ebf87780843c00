"""Fixtures of the training tests: the tiny recipe on the command line, and a finished run of it."""

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

# The recipe scaled down to seconds: the tiny model, a few episodes of 3x3 maps, a few steps of both stages.
TINY = ["model=tiny", "train.steps=4", "train.ckpt_every=2", "train.gate_steps=2", "train.val_every=4",
        "train.val_windows=2", "train.batch=4", "train.gate_batch=4", "data.train_episodes=4", "data.val_episodes=2",
        "data.sizes=[3]"]


@pytest.fixture(scope="session")
def tiny_recipe() -> Callable[..., list[str]]:
    """``tiny_recipe(root, out=None, *changes)``: the overrides of a tiny ``--env frozenlake`` run whose data live
    under ``root/data`` and whose outputs go to ``out`` (``None``: ``root/run``); ``changes`` are more overrides of
    other keys."""

    def recipe(root: Path, out: Path | None = None, *changes: str) -> list[str]:
        return [*TINY, f"data.train_dir={root}/data/train", f"data.val_dir={root}/data/val",
                f"out={out or root / 'run'}", *changes]

    return recipe


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, run_cli, tiny_recipe) -> tuple[Path, list[str]]:
    """A tiny run trained to the end (both stages) once per module: its root folder and its overrides. Tests that
    would change it work on a copy (:func:`copy_of_run`)."""
    root = tmp_path_factory.mktemp("finished")
    recipe = tiny_recipe(root)
    assert run_cli("rss_world.train", ["--env", "frozenlake", *recipe]) == 0
    return root, recipe


@pytest.fixture
def copy_of_run(finished_run, tmp_path, tiny_recipe) -> tuple[Path, list[str]]:
    """A copy of :func:`finished_run` of this test's own (same data folders, its own out folder)."""
    root, _ = finished_run
    shutil.copytree(root / "run", tmp_path / "run")
    return tmp_path / "run", tiny_recipe(root, tmp_path / "run")

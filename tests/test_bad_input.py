"""Bad input, one row each: every command refuses it with exit status 2, one line on stderr that names the problem,
no traceback, and no file written or changed.

Each case runs its entry point in this process (``run_cli``, as ``python -m`` does) from inside a fresh folder
that also holds whatever the case needs (a checkpoint, a map file, an agent); the whole folder is compared byte
for byte and by modification time before and after. A traceback would escape ``run_cli`` as an exception and fail
the case. The library-level rows at the end check the same refusals where no command is involved.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from rss_world.checkpoint import CONFIG, WEIGHTS, save_model, weights_digest
from rss_world.world_model import build_world_model

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@dataclass
class Case:
    """``python -m rss_world.<module> <argv>`` after ``setup(folder)``; its one error line contains ``message``.
    ``{ckpt}``, ``{maps}``, ``{agent}`` and ``{dir}`` in ``argv`` are replaced by what ``setup`` made."""

    module: str
    argv: list[str]
    message: str
    setup: Callable[[Path], None] = field(default=lambda folder: None)


def _edit_config(change) -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        cfg = json.loads((folder / "ckpt" / CONFIG).read_text())
        change(cfg)
        (folder / "ckpt" / CONFIG).write_text(json.dumps(cfg))

    return setup


def _nan_weights(folder: Path) -> None:
    path = folder / "ckpt" / WEIGHTS
    state = load_file(path)
    state["dec_out.weight"].fill_(float("nan"))
    save_file(state, path)
    _edit_config(lambda c: c.update(sha256=weights_digest(path)))(folder)  # only the finiteness check can catch it


def _random_bytes(folder: Path) -> None:
    path = folder / "ckpt" / WEIGHTS
    path.write_bytes(np.random.default_rng(0).bytes(500_000))


def _maps(*lines: str) -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        (folder / "maps.jsonl").write_text("".join(line + "\n" for line in lines))

    return setup


def _row(mid: str, *rows: str) -> str:
    return json.dumps({"id": mid, "desc": list(rows)})


SMALL_MAPS = _maps(_row("a3", "SFF", "FHF", "FFG"), _row("b3", "SFH", "FFF", "HFG"),
                   _row("a4", "SFFF", "FHFF", "FFFH", "HFFG"))


def _agent_sidecar(change) -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        meta = json.loads((folder / "agent.json").read_text())
        change(meta)
        (folder / "agent.json").write_text(json.dumps(meta))

    return setup


def _truncated_policy(folder: Path) -> None:
    src = folder / "agent.zip"
    with zipfile.ZipFile(src) as z:
        members = {n: z.read(n) for n in z.namelist()}
    assert "policy.pth" in members
    members["policy.pth"] = members["policy.pth"][: len(members["policy.pth"]) // 2]
    with zipfile.ZipFile(src, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)


def _unwritable_parent(folder: Path) -> None:
    (folder / "afile").write_text("x")


RUN = ["model=tiny", "train.steps=4", "train.ckpt_every=2", "train.gate_steps=2", "train.val_every=4",
       "train.val_windows=2", "train.batch=4", "train.gate_batch=4", "data.train_episodes=4", "data.val_episodes=2",
       "data.sizes=[3]", "data.train_dir={dir}/data/train", "data.val_dir={dir}/data/val", "out={dir}/run"]


def _finished_run(folder: Path) -> None:
    """A finished tiny training run under ``folder/adir`` (the recipe :data:`RUN`)."""
    from rss_world.training.config import compose_recipe
    from rss_world.training.recipe import run_frozenlake

    (folder / "adir").mkdir(exist_ok=True)
    run_frozenlake(compose_recipe([a.replace("{dir}", str(folder / "adir")) for a in RUN]))


PLAN = "rss_world.plan"
CK = ["--checkpoint", "{ckpt}", "--no-progress"]
CASES = {
    # plan: options
    "plan unknown env": Case(PLAN, ["--env", "atari", *CK], "unknown env 'atari'"),
    "plan unknown planner": Case(PLAN, ["--planner", "bfs", *CK], "invalid choice: 'bfs'"),
    "plan unknown protocol": Case(PLAN, ["--protocol", "sideways", *CK], "invalid choice: 'sideways'"),
    "plan sizes unparsable": Case(PLAN, ["--sizes", "three", *CK], "--sizes must look like 3-8"),
    "plan sizes empty range": Case(PLAN, ["--sizes", "8-3", *CK], "range '8-3' is empty"),
    "plan sizes too large": Case(PLAN, ["--sizes", "40", *CK], "--sizes must be within 2-32"),
    "plan episodes 0": Case(PLAN, ["--episodes", "0", *CK], "--episodes must be >= 1"),
    "plan more episodes than maps": Case(PLAN, ["--sizes", "3", "--episodes", "101", *CK],
                                         "asked for 101 episodes, but there are only 100 distinct maps"),
    "plan seed 1e23": Case(PLAN, ["--seed", "1e23", *CK], "invalid int value: '1e23'"),
    "plan threads 0": Case(PLAN, ["--threads", "0", *CK], "--threads must be >= 1"),
    "plan video format": Case(PLAN, ["--video", "run.avi", *CK], "--video must end in .gif or .mp4"),
    # plan: map files
    "maps missing": Case(PLAN, ["--maps", "nope.jsonl", *CK], "map file nope.jsonl does not exist"),
    "maps not json": Case(PLAN, ["--maps", "{maps}", *CK], "line 1: invalid JSON", _maps("{not json")),
    "maps no desc": Case(PLAN, ["--maps", "{maps}", *CK], "expected an object with 'id' and 'desc'",
                         _maps(json.dumps({"id": "x"}))),
    "maps not square": Case(PLAN, ["--maps", "{maps}", *CK], "not square, row 2 has 2 cells",
                            _maps(_row("x", "SFF", "FHF", "FG"))),
    "maps bad letter": Case(PLAN, ["--maps", "{maps}", *CK], "has letters ['X']",
                            _maps(_row("x", "SFF", "FXF", "FFG"))),
    "maps two starts": Case(PLAN, ["--maps", "{maps}", *CK], "has 2 'S' cells", _maps(_row("x", "SFF", "FHF", "FSG"))),
    "maps no goal": Case(PLAN, ["--maps", "{maps}", *CK], "has 0 'G' cells", _maps(_row("x", "SFF", "FHF", "FFF"))),
    "maps unsolvable": Case(PLAN, ["--maps", "{maps}", *CK], "unsolvable", _maps(_row("x", "SHF", "HFF", "FFG"))),
    "maps too large": Case(PLAN, ["--maps", "{maps}", *CK], "size 33 outside 2-32",
                           _maps(_row("x", *(["S" + "F" * 32] + ["F" * 33] * 31 + ["F" * 32 + "G"])))),
    "maps duplicate id": Case(PLAN, ["--maps", "{maps}", *CK], "duplicate id",
                              _maps(_row("x", "SF", "FG"), _row("x", "SG", "FF"))),
    "maps size filter empty": Case(PLAN, ["--maps", "{maps}", "--sizes", "5", *CK], "no map of size 5", SMALL_MAPS),
    "maps more episodes than maps": Case(PLAN, ["--maps", "{maps}", "--episodes", "4", *CK],
                                         "asked for 4 episodes, but there are only 3 distinct maps", SMALL_MAPS),
    # plan: outputs, checked before the run
    "json is a folder": Case(PLAN, ["--json", "{dir}", *CK], "is a folder, not a file"),
    "json under a file": Case(PLAN, ["--json", "afile/out.json", *CK], "afile is a file, not a folder",
                              _unwritable_parent),
    "video is a folder": Case(PLAN, ["--video", "v.gif", *CK], "v.gif is a folder",
                              lambda f: (f / "v.gif").mkdir()),
    "video under a file": Case(PLAN, ["--video", "afile/v.gif", *CK], "afile is a file, not a folder",
                               _unwritable_parent),
    # checkpoints (plan and agent)
    "checkpoint missing": Case(PLAN, ["--checkpoint", "nowhere"], "cannot load checkpoint"),
    "checkpoint NaN weights": Case(PLAN, CK, "non-finite weights in ['dec_out.weight']", _nan_weights),
    "checkpoint random bytes": Case(PLAN, CK, "do not match the sha256", _random_bytes),
    "checkpoint dim is a string": Case(PLAN, CK, "dim='128' (expected int)",
                                       _edit_config(lambda c: c["model"].update(dim="128"))),
    "checkpoint no model key": Case(PLAN, CK, "field 'model' must be a dict", _edit_config(lambda c: c.pop("model"))),
    "checkpoint unknown arch": Case(PLAN, CK, "unknown architecture 'mlp'",
                                    _edit_config(lambda c: c.update(arch="mlp"))),
    "checkpoint legacy format": Case(PLAN, CK, "rss_world.checkpoint/1 checkpoint",
                                     _edit_config(lambda c: c.update(format="rss_world.checkpoint/1"))),
    "agent play checkpoint dim string": Case("rss_world.agent", ["play", "--checkpoint", "{ckpt}", "--out", "p.gif"],
                                             "dim='128' (expected int)",
                                             _edit_config(lambda c: c["model"].update(dim="128"))),
    # agent files
    "agent missing": Case("rss_world.agent", ["eval", "--agent", "nope.zip"], "no agent at nope.zip"),
    "agent unknown algo": Case("rss_world.agent", ["eval", "--agent", "{agent}", "--episodes", "1"],
                               "agent.json names unknown algo 'a2c'", _agent_sidecar(lambda m: m.update(algo="a2c"))),
    "agent sidecar not json": Case("rss_world.agent", ["eval", "--agent", "{agent}", "--episodes", "1"],
                                   "agent.json is not valid JSON", lambda f: (f / "agent.json").write_text("{")),
    "agent truncated policy": Case("rss_world.agent", ["eval", "--agent", "{agent}", "--episodes", "1"],
                                   "agent.zip is damaged", _truncated_policy),
    "agent steps 0": Case("rss_world.agent", ["train", "--env", "real", "--steps", "0", "--out", "x.zip"],
                          "steps must be >= 1"),
    "agent play without checkpoint": Case("rss_world.agent", ["play", "--out", "p.gif"], "play needs --checkpoint"),
    # collect
    "collect unknown env": Case("rss_world.collect", ["--env", "atari", "--out", "c"], "invalid choice: 'atari'"),
    "collect missing suite": Case("rss_world.collect", ["--env", "frozenlake", "--out", "c", "--suite", "nope.jsonl"],
                                  "nope.jsonl"),
    "collect bump frac": Case("rss_world.collect", ["--env", "frozenlake", "--out", "c", "--bump-frac", "0.9"],
                              "bump_frac"),
    "collect cell px 0": Case("rss_world.collect", ["--env", "frozenlake", "--out", "c", "--cell-px", "0"],
                              "cell_px"),
    # evaluate (Hydra overrides)
    "evaluate maps_per_size 0": Case("rss_world.evaluate", ["maps_per_size=0", "checkpoint={ckpt}"],
                                     "maps_per_size (or null) and threads must be >= 1"),
    "evaluate unknown baseline": Case("rss_world.evaluate", ["baselines=[chess]", "checkpoint={ckpt}"],
                                      "unknown baseline(s) ['chess']"),
    "evaluate unknown key": Case("rss_world.evaluate", ["foo=1"], "foo"),
    "evaluate bad type": Case("rss_world.evaluate", ["seed=abc"], "seed"),
    # train (Hydra overrides)
    "train steps not a number": Case("rss_world.train", ["--env", "frozenlake", "train.steps=abc"], "train.steps"),
    "train unknown key": Case("rss_world.train", ["--env", "frozenlake", "train.foo=1"], "foo"),
    "train unknown model preset": Case("rss_world.train", ["--env", "frozenlake", "model=huge"], "huge"),
    "train unparsable override": Case("rss_world.train", ["--env", "frozenlake", "train.steps=["], "'train.steps=['"),
    "train steps 0": Case("rss_world.train", ["--env", "frozenlake", "train.steps=0"],
                          "invalid training config values for ['steps']"),
    "train negative lr": Case("rss_world.train", ["--env", "frozenlake", "train.lr=-1"],
                              "invalid training config values for ['lr']"),
    "train unknown env": Case("rss_world.train", ["--env", "atari"], "invalid choice: 'atari'"),
    "train neither env nor variant": Case("rss_world.train", ["train.steps=3"],
                                          "one of the arguments --env --variant is required"),
    "train unknown option": Case("rss_world.train", ["--env", "frozenlake", "--bogus"],
                                 "unrecognized arguments: --bogus"),
    "train variant resume": Case("rss_world.train", ["--variant", "dit", "--resume"],
                                 "--resume applies to --env training only"),
    "train resume without checkpoint": Case("rss_world.train", ["--env", "frozenlake", "--resume", "out={dir}/none"],
                                            "nothing to resume"),
    "train resume among the overrides": Case("rss_world.train", ["train.steps=5", "--resume", "model=tiny", "--env",
                                                                 "frozenlake", "out={dir}/none"], "nothing to resume"),
    # resume: a finished tiny run (made by _finished_run) with a different recipe
    "resume other model": Case("rss_world.train", ["--env", "frozenlake", "--resume", *RUN, "model=default"],
                               "model.dim (checkpoint 32, given 128)", _finished_run),
    "resume other steps": Case("rss_world.train", ["--env", "frozenlake", "--resume", *RUN, "train.steps=100"],
                               "train.steps (checkpoint 4, given 100)", _finished_run),
    "resume other data": Case("rss_world.train", ["--env", "frozenlake", "--resume", *RUN, "data.train_episodes=5"],
                              "data.train_episodes (checkpoint 4, given 5)", _finished_run),
    "resume without the recipe": Case("rss_world.train", ["--env", "frozenlake", "--resume", "out={dir}/run"],
                                      "--resume needs the recipe of the checkpoint", _finished_run),
}


def tiny_model():
    """An untrained model of the ``tiny`` preset (``configs/model/tiny.yaml``), seeded."""
    from omegaconf import OmegaConf

    torch.manual_seed(0)
    preset = OmegaConf.load(files("rss_world.configs") / "model" / "tiny.yaml")
    return build_world_model(**OmegaConf.to_container(preset))


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    """What cases copy into their folder: a tiny checkpoint and an untrained PPO agent on the real env."""
    from rss_world.envs.maps import load_default_suite
    from rss_world.rl_agents import save_agent, train_agent

    root = tmp_path_factory.mktemp("made")
    save_model(root / "ckpt", tiny_model())
    agent, meta = train_agent("ppo", "real", 8, load_default_suite("train", [3])[:2], n_envs=1, pad_to=3)
    save_agent(agent, root / "agent.zip", meta)
    return root


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else b"<dir>")
            for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_refused_in_one_line_and_changes_nothing(name, made, tmp_path, monkeypatch, capsys, run_cli):
    case = CASES[name]
    shutil.copytree(made, tmp_path, dirs_exist_ok=True)
    case.setup(tmp_path)
    (tmp_path / "adir").mkdir(exist_ok=True)
    capsys.readouterr()  # what the setup printed
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    subs = {"{ckpt}": str(tmp_path / "ckpt"), "{maps}": str(tmp_path / "maps.jsonl"),
            "{agent}": str(tmp_path / "agent.zip"), "{dir}": str(tmp_path / "adir")}
    argv = [_sub(a, subs) for a in case.argv]
    code = run_cli(case.module, argv)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, f"exit status {code}; stderr: {err}"
    assert len(lines) == 1 and lines[0].startswith(f"python -m {case.module}: error: "), err
    assert case.message in lines[0], lines[0]
    assert "Traceback" not in err + out
    assert snapshot(tmp_path) == before, "a file was written or changed"


def _sub(arg: str, subs: dict[str, str]) -> str:
    for key, value in subs.items():
        arg = arg.replace(key, value)
    return arg


# ---------------------------------------------------------------------------------------------- library level
def _env(**kw):
    from rss_world.envs.frozenlake import VisualFrozenLakeEnv

    return VisualFrozenLakeEnv(desc=["SF", "FG"], **kw)


def _encode_other_cell_px():
    model = tiny_model()
    model.encode(np.zeros((1, 3 * model.cfg.cell_px + 1, 3 * model.cfg.cell_px + 1, 3), np.uint8))


def _planner_other_cell_px():
    from rss_world.envs.maps import MapSpec
    from rss_world.planners import GatePlanner
    from rss_world.protocols import run_planner

    model = tiny_model()
    run_planner(GatePlanner(model), [MapSpec("x", ("SF", "FG"))], "open", cell_px=2 * model.cfg.cell_px)


LIBRARY = {
    "env cell_px 0": (lambda: _env(cell_px=0), "cell_px"),
    "env cell_px 2.5": (lambda: _env(cell_px=2.5), "cell_px"),
    "env max_steps 0": (lambda: _env(max_steps=0), "max_steps"),
    "encode frame not a multiple of cell_px": (_encode_other_cell_px, "is not a multiple of cell_px"),
    "planner frames of another cell_px": (_planner_other_cell_px, "do not match the model's cell_px"),
}


@pytest.mark.parametrize("name", sorted(LIBRARY))
def test_library_refuses_bad_input_with_a_clear_error(name, tmp_path, monkeypatch):
    call, message = LIBRARY[name]
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=None) as err:
        call()
    assert message in str(err.value) and len(str(err.value).splitlines()) == 1, str(err.value)
    assert not os.listdir(tmp_path)

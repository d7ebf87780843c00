"""Rollout collection: format, determinism per seed, resume, CLI errors."""

import json

import numpy as np
import pytest

from rss_world.collect import collect, main
from rss_world.envs.maps import load_default_suite
from rss_world.envs.oracle import move, optimal_action_mask
from rss_world.envs.parser import parse_frame

KW = {"suite": "train", "episodes": 24, "seed": 3, "shard_size": 5, "sizes": [3, 5], "progress": False}


def _load(paths):
    return [dict(np.load(p)) for p in paths]


def test_collection_is_deterministic_and_consistent(tmp_path):
    a = _load(collect(tmp_path / "a", **KW))
    b = _load(collect(tmp_path / "b", **KW))
    assert len(a) == len(b) > 2
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            assert np.array_equal(x[k], y[k]), k
    maps = {m.id: m.desc for m in load_default_suite("train")}
    n_eps = 0
    for shard in a:
        size = int(shard["size"])
        assert shard["frames"].shape[1:] == (4 * size + 1, 16 * size, 16 * size, 3)
        for e in range(len(shard["map_ids"])):
            n_eps += 1
            desc = maps[str(shard["map_ids"][e])]
            cell = tuple(shard["cells"][e, 0])
            for t in range(int(shard["lengths"][e])):
                assert np.array_equal(shard["optimal"][e, t], optimal_action_mask(desc, cell))
                assert parse_frame(shard["frames"][e, t]).equals_grid(desc, cell)
                cell, off = move(desc, cell, int(shard["actions"][e, t]))
                assert off == shard["invalid"][e, t] and cell == tuple(shard["cells"][e, t + 1])
            assert shard["reached_goal"][e] == (desc[cell[0]][cell[1]] == "G")
    assert n_eps == 24


def test_other_seed_differs_and_resume_completes(tmp_path):
    a = _load(collect(tmp_path / "a", **KW))
    c = _load(collect(tmp_path / "c", **{**KW, "seed": 4}))
    assert not all(np.array_equal(x["actions"], y["actions"]) for x, y in zip(a, c) if x["actions"].shape ==
                   y["actions"].shape)
    out = tmp_path / "r"
    paths = collect(out, **KW)
    paths[1].unlink()
    mtime = paths[0].stat().st_mtime_ns
    with pytest.raises(ValueError, match="--resume"):
        collect(out, **KW)
    collect(out, **KW, resume=True)
    assert paths[0].stat().st_mtime_ns == mtime
    for x, y in zip(a, _load(paths)):
        assert np.array_equal(x["frames"], y["frames"])
    with pytest.raises(ValueError, match="settings"):
        collect(out, **{**KW, "eps": 0.5}, resume=True)
    assert json.loads((out / "manifest.json").read_text())["seed"] == 3


def test_cli(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--env", "atari", "--episodes", "2", "--out", str(tmp_path)])
    assert e.value.code == 2 and "invalid choice: 'atari'" in capsys.readouterr().err
    assert main(["--env", "frozenlake", "--episodes", "2", "--out", str(tmp_path / "x"), "--suite", "nope.jsonl"]) == 2
    assert main(["--env", "frozenlake", "--episodes", "3", "--out", str(tmp_path / "y"), "--sizes", "3",
                 "--no-progress"]) == 0
    assert len(list((tmp_path / "y").glob("size3_*.npz"))) == 1


def test_collect_import_has_no_side_effects():
    import subprocess
    import sys

    code = "import sys, rss_world.collect; print('gymnasium' in sys.modules, 'pygame' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]

"""Rollout collection (rss_world.rollouts): format, determinism per seed, resume, bump episodes, the recipe's data
(its command line: test_collect.py)."""

import dataclasses
import json
import sys

import numpy as np
import pytest

from rss_world.envs.maps import load_default_suite
from rss_world.envs.oracle import move, optimal_action_mask
from rss_world.envs.parser import parse_frame
from rss_world.rollouts import CollectConfig, DataConfig, ensure_recipe_data
from rss_world.rollouts import collect as collect_cfg

KW = {"suite": "train", "episodes": 24, "seed": 3, "shard_size": 5, "sizes": [3, 5], "bump_frac": 0.0}


def collect(out, resume=False, **settings):
    """Collect with :class:`CollectConfig` settings given as keywords, without a progress bar."""
    return collect_cfg(out, CollectConfig(**settings), resume=resume, progress=False)


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


def test_one_source_for_the_collection_defaults():
    data, collect_defaults = DataConfig(), CollectConfig()
    train_split = data.splits()["train"][1]
    assert dataclasses.replace(train_split, sizes=None) == collect_defaults  # the recipe's train split: defaults
    assert collect_defaults.bump_frac == 0.2 and data.splits()["val"][1].bump_frac == 0.0


def test_collection_library_import_has_no_side_effects():
    import subprocess

    code = "import sys, rss_world.rollouts; print('gymnasium' in sys.modules, 'pygame' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def _runs_of_invalid(shard) -> list[int]:
    runs = []
    for e in range(len(shard["lengths"])):
        run = 0
        for t in range(int(shard["lengths"][e])):
            run = run + 1 if shard["invalid"][e, t] else 0
            if run and (t + 1 == int(shard["lengths"][e]) or not shard["invalid"][e, t + 1]):
                runs.append(run)
    return runs


def test_bump_episodes_press_against_the_edge_and_leave_other_episodes_alone(tmp_path):
    kw = {**KW, "episodes": 40}
    plain = {int(i): (s, j) for s in _load(collect(tmp_path / "p", **kw)) for j, i in enumerate(s["episode_index"])}
    mixed = _load(collect(tmp_path / "m", **{**kw, "bump_frac": 0.5}))
    maps = {m.id: m.desc for m in load_default_suite("train")}
    kinds = np.concatenate([s["kind"] for s in mixed])
    assert set(kinds.tolist()) == {0, 1, 2} and (kinds == 2).sum() >= 10
    bump_runs, n_bump_steps, n_bump_invalid = [], 0, 0
    for s in mixed:
        for j, i in enumerate(s["episode_index"]):
            ps, pj = plain[int(i)]
            if s["kind"][j] != 2:  # the same draw decides the kind: non-bump episodes are untouched
                assert ps["kind"][pj] == s["kind"][j]
                assert np.array_equal(ps["actions"][pj], s["actions"][j])
                continue
            assert ps["kind"][pj] == 0  # bump episodes replace ε-oracle ones only
            desc = maps[str(s["map_ids"][j])]
            cell = tuple(s["cells"][j, 0])
            for t in range(int(s["lengths"][j])):
                assert parse_frame(s["frames"][j, t]).equals_grid(desc, cell)
                cell, off = move(desc, cell, int(s["actions"][j, t]))
                assert off == s["invalid"][j, t] and cell == tuple(s["cells"][j, t + 1])
                n_bump_steps += 1
                n_bump_invalid += int(off)
        one = {k: v[s["kind"] == 2] for k, v in s.items() if np.ndim(v) and len(v) == len(s["kind"])}
        bump_runs += _runs_of_invalid(one)
    plain_runs = [r for s in plain.values() for r in _runs_of_invalid({k: v[s[1]:s[1] + 1] for k, v in s[0].items()
                                                                        if np.ndim(v) and len(v) == len(s[0]["kind"])})]
    assert n_bump_invalid / n_bump_steps > 0.2
    assert max(bump_runs) >= 4 and max(bump_runs) > max(plain_runs, default=0)


def test_bad_mix_and_old_manifests(tmp_path):
    with pytest.raises(ValueError, match="bump_frac"):
        collect(tmp_path / "x", **{**KW, "random_frac": 0.7, "bump_frac": 0.4})
    with pytest.raises(ValueError, match="bump_frac"):
        collect(tmp_path / "x", **{**KW, "bump_frac": -0.1})
    assert not (tmp_path / "x").exists()
    out = tmp_path / "old"
    paths = collect(out, **KW)
    settings = json.loads((out / "manifest.json").read_text())
    del settings["bump_frac"]  # a collection made before bump episodes existed
    (out / "manifest.json").write_text(json.dumps(settings))
    assert collect(out, **KW, resume=True) == paths
    with pytest.raises(ValueError, match="another directory"):
        collect(out, **{**KW, "bump_frac": 0.2}, resume=True)


def test_recipe_data_refuses_a_collection_with_other_settings(tmp_path):
    data = DataConfig(train_dir=str(tmp_path / "t"), val_dir=str(tmp_path / "v"), train_episodes=6, val_episodes=3,
                      sizes=[3])
    ensure_recipe_data(data)
    shards = sorted((tmp_path / "t").glob("size*.npz"))
    mtimes = [p.stat().st_mtime_ns for p in shards]
    ensure_recipe_data(data)  # complete already: nothing rewritten
    assert [p.stat().st_mtime_ns for p in shards] == mtimes
    data.bump_frac = 0.0
    with pytest.raises(ValueError, match="holds a collection with settings"):
        ensure_recipe_data(data)
    assert [p.stat().st_mtime_ns for p in shards] == mtimes

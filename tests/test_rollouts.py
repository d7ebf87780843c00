"""Rollout collection (rss_world.rollouts): format, determinism per seed, resume, bump episodes, the recipe's data
(its command line: test_collect.py; the rollout contract itself: test_data_contract.py)."""

import dataclasses
import json
import sys

import numpy as np
import pytest

from rss_world.data import CONTRACT_KEYS
from rss_world.envs.maps import find_cell
from rss_world.envs.oracle import move
from rss_world.envs.parser import parse_frame
from rss_world.rollouts import (
    FORMAT,
    CollectConfig,
    DataConfig,
    ensure_recipe_data,
    load_maps,
    plan_episodes,
    shard_plan,
)
from rss_world.rollouts import collect as collect_cfg

KW = {"suite": "train", "episodes": 24, "seed": 3, "shard_size": 5, "sizes": [3, 5], "bump_frac": 0.0}


def collect(out, resume=False, **settings):
    """Collect with :class:`CollectConfig` settings given as keywords, without a progress bar."""
    return collect_cfg(out, CollectConfig(**settings), resume=resume, progress=False)


def _load(paths):
    return [dict(np.load(p)) for p in paths]


def episode_plan(**settings) -> list[list[tuple[int, tuple[str, ...], int]]]:
    """Per shard of a collection, per row: (episode index, map rows, kind code), from the settings alone (the shards
    hold no map)."""
    cfg = CollectConfig(**settings)
    maps = load_maps(cfg.suite, cfg.sizes)
    plan = plan_episodes(len(maps), cfg.episodes, cfg.seed, cfg.random_frac, cfg.bump_frac)
    return [[(i, maps[plan[i][0]].desc, plan[i][1]) for i in idx] for _, _, idx in shard_plan(cfg, maps)]


def replay(shard: dict, e: int, desc: tuple[str, ...]) -> list[bool]:
    """Check row ``e`` of ``shard`` against ``desc``: every frame shows the agent where the recorded actions take it,
    rewards and the end flags are the map's; returns the off-grid flag of every step."""
    cell, off_grid = find_cell(desc, "S"), []
    n = int(shard["lengths"][e])
    for t in range(n):
        assert parse_frame(shard["frames"][e, t]).equals_grid(desc, cell)
        cell, off = move(desc, cell, int(shard["actions"][e, t]))
        off_grid.append(off)
        end = desc[cell[0]][cell[1]] in "GH"
        assert shard["rewards"][e, t] == float(desc[cell[0]][cell[1]] == "G")
        assert shard["terminated"][e, t] == end and shard["truncated"][e, t] == (not end and t + 1 == n)
        assert not end or t + 1 == n
    assert parse_frame(shard["frames"][e, n]).equals_grid(desc, cell)
    assert (shard["frames"][e, n:] == shard["frames"][e, n]).all() and (shard["actions"][e, n:] == -1).all()
    return off_grid


def test_collection_is_deterministic_and_consistent(tmp_path):
    a = _load(collect(tmp_path / "a", **KW))
    b = _load(collect(tmp_path / "b", **KW))
    assert len(a) == len(b) > 2
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            assert np.array_equal(x[k], y[k]), k
    n_eps = 0
    for shard, rows in zip(a, episode_plan(**KW), strict=True):
        size = int(shard["size"])
        assert set(shard) == set(CONTRACT_KEYS)
        assert shard["frames"].shape[1:] == (4 * size + 1, 16 * size, 16 * size, 3)
        for e, (_, desc, _) in enumerate(rows):
            assert len(desc) == size
            replay(shard, e, desc)
            n_eps += 1
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
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 3 and manifest["format"] == FORMAT


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


def _runs(flags: list[bool]) -> list[int]:
    """Lengths of the runs of True in ``flags``."""
    runs, run = [], 0
    for f in [*flags, False]:
        if not f and run:
            runs.append(run)
        run = run + 1 if f else 0
    return runs


def test_bump_episodes_press_against_the_edge_and_leave_other_episodes_alone(tmp_path):
    kw = {**KW, "episodes": 40}
    plain_rows = [r for rows in episode_plan(**kw) for r in rows]
    plain = {i: (s, j) for s, rows in zip(_load(collect(tmp_path / "p", **kw)), episode_plan(**kw))
             for j, (i, _, _) in enumerate(rows)}
    mixed_kw = {**kw, "bump_frac": 0.5}
    mixed = _load(collect(tmp_path / "m", **mixed_kw))
    plain_kind = {i: kind for i, _, kind in plain_rows}
    kinds = [kind for rows in episode_plan(**mixed_kw) for _, _, kind in rows]
    assert set(kinds) == {0, 1, 2} and kinds.count(2) >= 10
    bump_runs, n_bump_steps, n_bump_invalid = [], 0, 0
    for s, rows in zip(mixed, episode_plan(**mixed_kw), strict=True):
        for j, (i, desc, kind) in enumerate(rows):
            ps, pj = plain[i]
            if kind != 2:  # the same draw decides the kind: non-bump episodes are untouched
                assert plain_kind[i] == kind
                assert np.array_equal(ps["actions"][pj], s["actions"][j])
                continue
            assert plain_kind[i] == 0  # bump episodes replace ε-oracle ones only
            off = replay(s, j, desc)
            n_bump_steps += len(off)
            n_bump_invalid += sum(off)
            bump_runs += _runs(off)
    plain_runs = [r for i, desc, _ in plain_rows for r in _runs(replay(*plain[i], desc))]
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
    assert collect(out, **KW, resume=True) == paths
    with pytest.raises(ValueError, match="another directory"):
        collect(out, **{**KW, "bump_frac": 0.2}, resume=True)
    settings = json.loads((out / "manifest.json").read_text())
    del settings["format"]  # a collection made before the rollout contract (format 1: map-derived labels)
    (out / "manifest.json").write_text(json.dumps(settings))
    mtimes = [p.stat().st_mtime_ns for p in paths]
    with pytest.raises(ValueError, match=r"format 1, not rss_world.rollouts/2 .*re-collect"):
        collect(out, **KW, resume=True)
    assert [p.stat().st_mtime_ns for p in paths] == mtimes and json.loads((out / "manifest.json").read_text()) == \
        settings


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

"""The rollout contract: a trainer reads frames, actions, rewards, terminated, truncated and lengths, nothing derived
from the map. What the collector writes meets it (checked against the real environment), the training side cannot
reach the map, the parser or the oracle, and :mod:`rss_world.data` refuses anything else and cuts windows from it."""

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import rss_world
from rss_world.data import CONTRACT_KEYS, Episodes, count_windows, load_shards, sample_windows
from rss_world.envs.frozenlake import VisualFrozenLakeEnv
from rss_world.rollouts import CollectConfig, collect, load_maps, plan_episodes, shard_plan

PACKAGE = Path(rss_world.__file__).parent
# Importing any rss_world.envs module runs the package's __init__, which imports rss_world.envs.maps: the training
# side imports nothing of rss_world.envs (the map, the oracle and the parser live there).
FORBIDDEN = "rss_world.envs"
# The collector (rss_world.rollouts) and evaluation may read the map; these files may not.
TRAINING_SIDE = ("training", "world_model", "data.py")
SETTINGS = {"suite": "train", "episodes": 16, "seed": 5, "shard_size": 6, "sizes": [3, 4], "random_frac": 0.3,
            "bump_frac": 0.3}


def training_side_files() -> list[Path]:
    out = []
    for name in TRAINING_SIDE:
        path = PACKAGE / name
        out += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return out


def imported_modules(path: Path, source: str | None = None) -> set[str]:
    """Every module ``path`` (or ``source`` as if it were that file) imports, anywhere in it: relative imports
    resolved, ``from a import b`` counting ``a`` and ``a.b``, and every literal module name passed to
    ``importlib.import_module`` or ``__import__``."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text() if source is None else source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found |= {base} | {f"{base}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            found.add(str(node.args[0].value))
    return found


def test_the_training_side_imports_nothing_of_the_map_the_oracle_or_the_parser():
    files = training_side_files()
    assert len(files) > 5 and PACKAGE / "data.py" in files
    bad = {f"{p.relative_to(PACKAGE.parent)}: {m}" for p in files for m in imported_modules(p)
           if m == FORBIDDEN or m.startswith(FORBIDDEN + ".")}
    assert not bad, "the training side imports the environment side (map, oracle, parser):\n" + "\n".join(sorted(bad))


def test_the_import_check_sees_every_form():
    probe = PACKAGE / "training" / "probe.py"  # never written: its path resolves the relative import
    for src in ("import rss_world.envs.parser", "from rss_world.envs.oracle import move",
                "from rss_world.envs import maps", "from ..envs import parser", "from rss_world import envs",
                "def f():\n    from rss_world.envs.parser import parse_frame",
                "import importlib\nimportlib.import_module('rss_world.envs.maps')"):
        mods = imported_modules(probe, src)
        assert any(m == FORBIDDEN or m.startswith(FORBIDDEN + ".") for m in mods), (src, mods)
    assert imported_modules(probe, "from .loop import run\nimport numpy") == {"rss_world.training.loop",
                                                                           "rss_world.training.loop.run", "numpy"}


@pytest.mark.slow  # fresh interpreters import torch (and accelerate)
def test_importing_the_training_side_loads_no_env_code():
    modules = ["rss_world.data", "rss_world.world_model"]
    modules += [".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts) for p in training_side_files()
                if p.parent.name == "training" and p.stem != "__init__"]
    code = (f"import importlib, sys\nfor m in {modules!r}:\n    importlib.import_module(m)\n"
            "bad = sorted(m for m in sys.modules if m.startswith('rss_world.envs'))\nprint(bad)\nsys.exit(bool(bad))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    """A small collection of every behaviour kind, its shard paths, and per shard the map rows of each row."""
    out = tmp_path_factory.mktemp("rollouts")
    cfg = CollectConfig(**SETTINGS)
    paths = collect(out, cfg, progress=False)
    maps = load_maps(cfg.suite, cfg.sizes)
    plan = plan_episodes(len(maps), cfg.episodes, cfg.seed, cfg.random_frac, cfg.bump_frac)
    descs = [[maps[plan[i][0]].desc for i in idx] for _, _, idx in shard_plan(cfg, maps)]
    return out, paths, descs


def test_a_shard_holds_exactly_the_contract(collection):
    _, paths, _ = collection
    assert CONTRACT_KEYS == ("frames", "actions", "rewards", "terminated", "truncated", "lengths", "size")
    for path in paths:
        with np.load(path) as z:
            s = {k: z[k] for k in z.files}
        b, size = len(s["lengths"]), int(s["size"])
        horizon, side = 4 * size, 16 * size
        expected = {"frames": (np.uint8, (b, horizon + 1, side, side, 3)), "actions": (np.int8, (b, horizon)),
                    "rewards": (np.float32, (b, horizon)), "terminated": (np.bool_, (b, horizon)),
                    "truncated": (np.bool_, (b, horizon)), "lengths": (np.int16, (b,)), "size": (np.int64, ())}
        assert set(s) == set(expected), path
        for k, (dtype, shape) in expected.items():
            assert s[k].dtype == dtype and s[k].shape == shape, (path, k, s[k].dtype, s[k].shape)


def test_rewards_and_ends_are_the_real_environments(collection):
    """Replaying every recorded episode in the real environment (gymnasium's FrozenLake, its renderer) gives the
    recorded frames, rewards, terminations and truncations; the padding after the end is the contract's."""
    _, paths, descs = collection
    outcomes = set()
    for path, rows in zip(paths, descs, strict=True):
        with np.load(path) as s:
            s = {k: s[k] for k in s.files}
        horizon = s["actions"].shape[1]
        for e, desc in enumerate(rows):
            env = VisualFrozenLakeEnv(desc=desc, max_steps=horizon)
            obs, _ = env.reset(seed=0)
            assert np.array_equal(obs, s["frames"][e, 0])
            n = int(s["lengths"][e])
            for t in range(n):
                obs, reward, terminated, truncated, _ = env.step(int(s["actions"][e, t]))
                assert np.array_equal(obs, s["frames"][e, t + 1]), (path, e, t)
                assert (reward, terminated, truncated) == (s["rewards"][e, t], s["terminated"][e, t],
                                                           s["truncated"][e, t]), (path, e, t)
                assert not (terminated or truncated) or t == n - 1  # an episode ends at its first end
            outcomes.add("goal" if reward > 0 else "hole" if terminated else "truncated")
            env.close()
            assert (s["actions"][e, n:] == -1).all() and not s["rewards"][e, n:].any()
            assert not (s["terminated"][e, n:] | s["truncated"][e, n:]).any()
            assert (s["frames"][e, n + 1:] == s["frames"][e, n]).all()
    assert outcomes == {"goal", "hole", "truncated"}  # the collection exercises every way an episode ends


def _contract_shard(collection) -> dict:
    with np.load(collection[1][0]) as z:
        return {k: z[k] for k in z.files}


@pytest.mark.parametrize("change, why", [
    (lambda s: s.update(cells=np.zeros((len(s["lengths"]), 2), np.int8)), r"extra \['cells'\], missing \[\]"),
    (lambda s: s.pop("truncated"), r"extra \[\], missing \['truncated'\]"),
    (lambda s: s.update(optimal=s["terminated"], map_ids=np.array(["m"] * len(s["lengths"]))),
     r"extra \['map_ids', 'optimal'\]"),
])
def test_load_shards_refuses_other_keys_naming_the_file_and_the_fix(collection, tmp_path, change, why):
    shard = _contract_shard(collection)
    change(shard)
    np.savez(tmp_path / "size3_00000.npz", **shard)
    with pytest.raises(ValueError, match=why) as err:
        load_shards(tmp_path)
    assert str(tmp_path / "size3_00000.npz") in str(err.value) and "re-collect" in str(err.value)


def test_load_shards_refuses_bad_dtypes_shapes_and_padding(collection, tmp_path):
    good = _contract_shard(collection)
    n = int(good["lengths"][0])
    bad_actions = good["actions"].copy()
    bad_actions[0, n - 1] = -1
    flags = good["terminated"].copy()
    flags[0, 0] = n > 1
    for change, why in (({"actions": good["actions"].astype(np.int64)}, "actions has dtype int64"),
                        ({"rewards": good["rewards"][:, :-1]}, "rewards has shape"),
                        ({"size": np.int64(5)}, "multiple of size 5"),
                        ({"actions": bad_actions}, "actions must be >= 0"),
                        ({"terminated": flags} if n > 1 else {"lengths": good["lengths"] * 0}, "last step|lengths")):
        np.savez(tmp_path / "size3_00000.npz", **{**good, **change})
        with pytest.raises(ValueError, match=why):
            load_shards(tmp_path)
    np.savez(tmp_path / "size3_00000.npz", **good)
    assert set(load_shards(tmp_path)) == {3}


@pytest.fixture(scope="module")
def episodes(collection) -> dict[int, Episodes]:
    return load_shards(collection[0])


def test_windows_are_the_recorded_steps(episodes):
    ep = episodes[4]
    horizon, n = 6, 16
    w = sample_windows(ep, 32, horizon, np.random.default_rng(0))
    types = {"frames": ("uint8", (32, horizon + 1, 4 * n, 4 * n, 3)), "actions": ("int64", (32, horizon)),
             "valid": ("bool", (32, horizon)), "rewards": ("float32", (32, horizon)),
             "terminated": ("bool", (32, horizon)), "changed": ("bool", (32, horizon, 16)), "success": ("bool", (32,)),
             "episode": ("int64", (32,)), "start": ("int64", (32,))}
    assert {k: (str(v.dtype).removeprefix("torch."), tuple(v.shape)) for k, v in w.items()} == types
    for i in range(32):
        e, s0 = int(w["episode"][i]), int(w["start"][i])
        length = int(ep.lengths[e])
        assert 0 <= s0 < length
        assert bool(w["success"][i]) == bool(ep.rewards[e].sum() > 0 and ep.terminated[e, length - 1])
        for t in range(horizon + 1):
            assert np.array_equal(w["frames"][i, t].numpy(), ep.frames[e, min(s0 + t, length)])
        for t in range(horizon):
            real = s0 + t < length
            assert bool(w["valid"][i, t]) == real
            assert int(w["actions"][i, t]) == (int(ep.actions[e, s0 + t]) if real else 0)
            assert float(w["rewards"][i, t]) == (float(ep.rewards[e, s0 + t]) if real else 0.0)
            assert bool(w["terminated"][i, t]) == (bool(ep.terminated[e, s0 + t]) if real else False)
            before, after = (w["frames"][i, t + j].numpy().reshape(4, n, 4, n, 3) for j in (0, 1))
            cells = (before != after).any((1, 3, 4)).reshape(16)  # per cell, row-major
            assert np.array_equal(w["changed"][i, t].numpy(), cells & real)
            assert cells.sum() <= 2  # FrozenLake: only the cells the agent leaves and enters change
    again = sample_windows(ep, 32, horizon, np.random.default_rng(0))
    assert all(np.array_equal(w[k], again[k]) for k in w)


def test_windows_without_replacement_are_distinct_and_counted(episodes):
    ep = episodes[3]
    for long in (False, True):
        total = count_windows(ep, 5, long=long)
        spans = [max(int(n) - 5 + 1, 1) if long else int(n) for n in ep.lengths]
        assert total == sum(spans)
        w = sample_windows(ep, total, 5, np.random.default_rng(1), long=long, replace=False)
        pairs = set(zip(w["episode"].tolist(), w["start"].tolist(), strict=True))
        assert pairs == {(e, s) for e, span in enumerate(spans) for s in range(span)}
        part = sample_windows(ep, 7, 5, np.random.default_rng(2), long=long, replace=False)
        assert len(set(zip(part["episode"].tolist(), part["start"].tolist(), strict=True))) == 7
        with pytest.raises(ValueError, match=f"{total + 1} distinct windows .* which hold {total}"):
            sample_windows(ep, total + 1, 5, np.random.default_rng(1), long=long, replace=False)

"""The shipped suites of every family (sizes, splits, disjointness, long paths) and the make_suites recipes."""

from collections import Counter

import pytest

from rss_world.envs.maps import (
    SPLITS,
    SUITES,
    default_suite_path,
    load_default_suite,
    load_suite,
    make_suites,
    map_id,
    split_of,
)
from rss_world.envs.oracle import optimal_length
from rss_world.envs.suite_families import FAMILIES, LARGE_SIZES, Family, build_family, long_path_suite

SPLIT_OF_SUITE = {name: name.split("_")[0] for name in SUITES}


@pytest.fixture(scope="module")
def shipped():
    return {name: load_default_suite(name) for name in SUITES}


def test_every_suite_ships_and_names_are_checked(shipped):
    assert set(SUITES) >= {"train", "val", "test", "train_large", "val_large", "test_large", "test_longpath"}
    for name, maps in shipped.items():
        assert maps, name
        assert all(split_of(m.desc) == SPLIT_OF_SUITE[name] for m in maps), name
        assert all(m.id == map_id(m.desc) and m.extra["size"] == m.size for m in maps), name
    with pytest.raises(ValueError, match="unknown suite 'nope'"):
        load_default_suite("nope")
    assert load_default_suite("test_large", [10, 32]) == [m for m in shipped["test_large"] if m.size in (10, 32)]


def test_counts_per_size(shipped):
    per_size = {name: Counter(m.size for m in maps) for name, maps in shipped.items()}
    assert per_size["test"] == dict.fromkeys(range(3, 9), 100)  # the default suites stay as they were
    assert per_size["train"] == dict.fromkeys(range(3, 9), 1000)
    assert per_size["train_large"] == dict.fromkeys(LARGE_SIZES, 300)
    assert per_size["val_large"] == dict.fromkeys(LARGE_SIZES, 100)
    assert per_size["test_large"] == dict.fromkeys(LARGE_SIZES, 100)
    assert per_size["test_longpath"] == {16: 100, 32: 100}
    tests = per_size["test"] + per_size["test_large"]
    assert tests == dict.fromkeys([3, 4, 5, 6, 7, 8, 10, 12, 16, 24, 32], 100)


def test_no_map_in_two_suites(shipped):
    seen: dict[tuple, str] = {}
    for name, maps in shipped.items():
        for m in maps:
            assert m.desc not in seen, f"{m.id} in {seen.get(m.desc)} and {name}"
            seen[m.desc] = name
    total = sum(default_suite_path(n).stat().st_size for n in SUITES)
    assert total < 3_000_000


def test_long_paths_and_hole_density(shipped):
    for size in (16, 32):
        maps = [m for m in shipped["test_longpath"] if m.size == size]
        lengths = [optimal_length(m.desc) for m in maps]
        assert [m.extra["optimal_length"] for m in maps] == lengths
        assert min(lengths) >= 1.5 * size
        holes = sum(r.count("H") for m in maps for r in m.desc) / (len(maps) * (size * size - 2))
        assert 0.18 < holes < 0.23
    for name in ("train_large", "val_large", "test_large"):
        maps = shipped[name]
        holes = sum(r.count("H") for m in maps for r in m.desc) / sum(m.size ** 2 - 2 for m in maps)
        assert 0.18 < holes < 0.22, name


def test_recipes_reproduce_the_shipped_files(shipped):
    """A slice of each recipe is regenerated here; `--family all` rewrites every file byte for byte."""
    assert make_suites((10,), {"test": 100}) == {"train": [], "val": [],
                                                 "test": load_default_suite("test_large", [10])}
    assert make_suites((3,), {"val": 100})["val"] == load_default_suite("val", [3])
    first = long_path_suite((16,), count=5, exclude=[m.desc for m in shipped["test_large"]])
    assert first == shipped["test_longpath"][:5] and [m.extra for m in first] == [m.extra for m in shipped[
        "test_longpath"][:5]]


def test_long_path_suite_and_family_arguments():
    maps = long_path_suite((8,), count=6, factor=1.5, seed=3, split="val")
    assert len(maps) == 6 and len({m.desc for m in maps}) == 6
    assert all(split_of(m.desc) == "val" and optimal_length(m.desc) >= 12 for m in maps)
    again = long_path_suite((8,), count=6, factor=1.5, seed=3, split="val", exclude=[maps[0].desc])
    assert maps[0] not in again and again[:5] == maps[1:]
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        long_path_suite((8,), split="dev")
    assert set(FAMILIES) == {"default", "large", "longpath"}
    assert sorted(build_family(Family("_x", (6,), {"test": 2}, 1.5))) == ["test_x.jsonl"]


def test_cli_writes_one_family(tmp_path, capsys, run_cli):
    argv = ["--out", str(tmp_path), "--family", "large", "--sizes", "10", "--train", "4", "--val", "2", "--test", "3"]
    assert run_cli("rss_world.envs.make_suites", argv) == 0
    got = {p.name: load_suite(p) for p in tmp_path.iterdir()}
    assert sorted(got) == ["test_large.jsonl", "train_large.jsonl", "val_large.jsonl"]
    assert [len(got[f"{s}_large.jsonl"]) for s in SPLITS] == [4, 2, 3]
    assert got["test_large.jsonl"] == load_default_suite("test_large", [10])[:3]
    assert run_cli("rss_world.envs.make_suites",
                   ["--out", str(tmp_path), "--family", "longpath", "--sizes", "8", "--test", "2"]) == 0
    assert [optimal_length(m.desc) >= 12 for m in load_suite(tmp_path / "test_longpath.jsonl")] == [True, True]
    assert "test_longpath.jsonl: 2 maps" in capsys.readouterr().out

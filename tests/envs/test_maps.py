"""Map generator distribution, content-hash splits, JSONL round-trip and every validation error."""

import json

import numpy as np
import pytest

from rss_world.envs.maps import (
    MapSpec,
    default_suite_path,
    generate_map,
    is_solvable,
    load_default_suite,
    load_suite,
    make_suites,
    map_id,
    save_suite,
    split_of,
)


@pytest.mark.parametrize("size", [3, 4, 5, 6, 7, 8])
def test_generator_distribution(size):
    rng = np.random.default_rng(size)
    maps = [generate_map(size, 0.2, rng) for _ in range(300)]
    holes, cells = 0, 0
    starts, goals = set(), set()
    for d in maps:
        assert len(d) == size and all(len(r) == size for r in d)
        assert sum(r.count("S") for r in d) == 1 and sum(r.count("G") for r in d) == 1
        assert is_solvable(d)
        s = next((r, row.index("S")) for r, row in enumerate(d) if "S" in row)
        g = next((r, row.index("G")) for r, row in enumerate(d) if "G" in row)
        assert s != g
        starts.add(s)
        goals.add(g)
        holes += sum(r.count("H") for r in d)
        cells += size * size - 2
    # rejection of unsolvable maps lowers the hole fraction a little below p
    assert 0.13 < holes / cells < 0.22
    # start and goal are placed anywhere, not in fixed corners
    assert len(starts) > min(size * size // 2, 8) and len(goals) > min(size * size // 2, 8)


def test_generator_seeded_and_bad_args():
    a = [generate_map(5, rng=np.random.default_rng(7)) for _ in range(3)]
    b = [generate_map(5, rng=np.random.default_rng(7)) for _ in range(3)]
    assert a == b
    with pytest.raises(ValueError, match="size 33"):
        generate_map(33)
    with pytest.raises(ValueError, match="p_hole"):
        generate_map(4, p_hole=1.0)


def test_split_is_a_function_of_content():
    rng = np.random.default_rng(0)
    maps = {generate_map(6, rng=rng) for _ in range(2000)}
    splits = [split_of(d) for d in maps]
    frac = {s: splits.count(s) / len(splits) for s in ("train", "val", "test")}
    assert 0.75 < frac["train"] < 0.85 and 0.06 < frac["val"] < 0.14 and 0.06 < frac["test"] < 0.14
    d = next(iter(maps))
    assert split_of(list(d)) == split_of(d) and map_id(list(d)) == map_id(d) and len(map_id(d)) == 12


def test_shipped_suites_disjoint_and_sized():
    suites = {s: load_default_suite(s) for s in ("train", "val", "test")}
    for split, maps in suites.items():
        assert all(split_of(m.desc) == split for m in maps)
        assert all(m.id == map_id(m.desc) for m in maps)
        for size in range(3, 9):
            assert sum(m.size == size for m in maps) >= 100
    ids = [{m.desc for m in maps} for maps in suites.values()]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    total = sum(default_suite_path(s).stat().st_size for s in ("train", "val", "test"))
    assert total < 2_000_000


def test_make_suites_quotas():
    s = make_suites(sizes=(3, 4), quotas={"train": 20, "val": 5, "test": 5}, seed=1)
    assert [len(s[k]) for k in ("train", "val", "test")] == [40, 10, 10]
    assert s == make_suites(sizes=(3, 4), quotas={"train": 20, "val": 5, "test": 5}, seed=1)


def test_jsonl_round_trip_keeps_extra_keys(tmp_path):
    maps = [MapSpec(map_id(d), d, {"size": 3, "note": "x", "nested": {"a": [1, 2]}})
            for d in [("SFF", "FHF", "FFG"), ("GFH", "FFF", "HFS")]]
    path = tmp_path / "s.jsonl"
    save_suite(path, maps)
    back = load_suite(path)
    assert back == maps and [m.extra for m in back] == [m.extra for m in maps]


GOOD = ["SFF", "FHF", "FFG"]


@pytest.mark.parametrize(
    ("desc", "message"),
    [
        (["SFF", "FHF", "FG"], "not square, row 2 has 2 cells"),
        (["SFF", "FXF", "FFG"], "letters \\['X'\\]"),
        (["SFF", "FSF", "FFG"], "has 2 'S' cells"),
        (["FFF", "FHF", "FFG"], "has 0 'S' cells"),
        (["SFF", "FGF", "FFG"], "has 2 'G' cells"),
        (["SFF", "FFF", "FFF"], "has 0 'G' cells"),
        (["S"], "size 1 outside 2-32"),
        (["S" + "F" * 32] + ["F" * 33] * 31 + ["F" * 32 + "G"], "size 33 outside 2-32"),
        (["SHF", "HFF", "FFG"], "unsolvable"),
        ("SFFG", "desc must be a list"),
    ],
)
def test_validation_errors_name_map_and_problem(tmp_path, desc, message):
    path = tmp_path / "bad.jsonl"
    lines = [{"id": "ok1", "desc": GOOD}, {"id": "bad-map", "desc": desc}]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    with pytest.raises(ValueError, match=message) as e:
        load_suite(path)
    assert "bad-map" in str(e.value) and "line 2" in str(e.value)


def test_duplicate_ids_and_bad_lines(tmp_path):
    path = tmp_path / "dup.jsonl"
    path.write_text(json.dumps({"id": "m", "desc": GOOD}) + "\n" + json.dumps({"id": "m", "desc": GOOD[::-1]}) + "\n")
    with pytest.raises(ValueError, match="'m' \\(line 2\\): duplicate id, first seen on line 1"):
        load_suite(path)
    path.write_text("{not json\n")
    with pytest.raises(ValueError, match="line 1: invalid JSON"):
        load_suite(path)
    path.write_text(json.dumps({"desc": GOOD}) + "\n")
    with pytest.raises(ValueError, match="line 1: expected an object with 'id' and 'desc'"):
        load_suite(path)

"""``python -m rss_world.collect``: one-line errors for bad input (nothing written), and a small collection whose
manifest is the config's and whose shard holds the rollout contract."""

import json

import numpy as np

from rss_world.data import CONTRACT_KEYS
from rss_world.rollouts import FORMAT, CollectConfig


def test_bad_input_is_one_line_and_a_run_writes_shards_and_manifest(tmp_path, capsys, run_cli):
    for argv, why in ((["--env", "atari", "--out", str(tmp_path)], "invalid choice: 'atari'"),
                      (["--env", "frozenlake", "--out", str(tmp_path / "x"), "--suite", "nope.jsonl"], "nope.jsonl"),
                      (["--env", "frozenlake", "--out", str(tmp_path / "x"), "--bump-frac", "0.9"], "bump_frac")):
        assert run_cli("rss_world.collect", argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("python -m rss_world.collect: error: ") and why in err and err.count("\n") == 1, err
    assert not (tmp_path / "x").exists()
    argv = ["--env", "frozenlake", "--episodes", "3", "--out", str(tmp_path / "y"), "--sizes", "3", "--no-progress"]
    assert run_cli("rss_world.collect", argv) == 0
    shards = list((tmp_path / "y").glob("size3_*.npz"))
    assert len(shards) == 1
    with np.load(shards[0]) as z:
        assert set(z.files) == set(CONTRACT_KEYS) and len(z["lengths"]) == 3
    manifest = json.loads((tmp_path / "y" / "manifest.json").read_text())
    assert manifest == CollectConfig(episodes=3, sizes=[3]).manifest() and manifest["format"] == FORMAT

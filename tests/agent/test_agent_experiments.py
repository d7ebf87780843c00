"""experiments/agent_in_the_loop.py and experiments/checkpoint_throughput.py on tiny models (the throughput
measurements they share: test_throughput.py)."""

from __future__ import annotations

import numpy as np
import pytest

from rss_world.checkpoint import save_model
from rss_world.envs.maps import load_default_suite
from rss_world.imagined_rollouts import imagine_episode
from rss_world.rl_agents import SIZES, eval_maps
from rss_world.throughput import real_steps_per_s


def test_compounding_counts_every_real_episode_long_enough(experiment, tiny):
    ail = experiment("agent_in_the_loop")
    model, maps = tiny(), eval_maps([3, 4], 4)
    got = ail.compounding(model, "oracle", maps)
    lengths = [len(imagine_episode(model, m.desc, "oracle", max(ail.HORIZONS)).actions) for m in maps]
    assert {k: n for k, (_, n) in got.items()} == {k: sum(n >= k for n in lengths) for k in ail.HORIZONS}
    assert got[1][0] == 1.0 - np.mean([imagine_episode(model, m.desc, "oracle", 1).exact(1) is False for m in maps])


def test_checkpoint_throughput_compares_reencoding_settings(experiment, tiny, tmp_path, monkeypatch):
    save_model(tmp_path / "ck", tiny())
    out = tmp_path / "thr.md"
    ct = experiment("checkpoint_throughput")
    few = [m for s in SIZES for m in load_default_suite("train", [s])[:10]]
    monkeypatch.setattr(ct, "load_default_suite", lambda split, sizes: few)  # pre-encoding the whole suite: slow
    monkeypatch.setattr(ct, "real_steps_per_s", lambda maps, renderer, steps: real_steps_per_s(maps, "atlas", 10))
    assert ct.main([str(tmp_path / "ck"), "--reencode-every", "0", "2", "--rounds", "1", "--steps", "1",
                    "--threads", "1", "--out", str(out)]) == 0
    rows = [line for line in out.read_text().splitlines() if line.startswith(f"| `{tmp_path / 'ck'}`")]
    # every (batch, re-encoding) pair once; the first setting is the reference of its batch
    assert [r.split("|")[3:5] for r in rows] == [[" never ", " 64 "], [" 2 ", " 64 "], [" never ", " 256 "],
                                                 [" 2 ", " 256 "]]
    assert all("1.00× (1.00–1.00)" in r for r in rows[::2])
    with pytest.raises(SystemExit):
        ct.main([str(tmp_path / "ck")])  # one checkpoint, one setting: nothing to compare

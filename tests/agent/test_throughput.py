"""rss_world.throughput: steps per second of the real env and of the world-model env, which is built once per
setting and reused."""

from __future__ import annotations

import math

from rss_world.envs.maps import load_default_suite
from rss_world.rl_agents import SIZES
from rss_world.throughput import real_steps_per_s, wm_steps_per_s


def test_throughput_measurements_reuse_their_envs(tiny):
    maps = [m for s in SIZES for m in load_default_suite("train", [s])[:10]]  # every size: the warm-up visits each
    assert 0 < real_steps_per_s(maps, "atlas", 20) < math.inf
    cache: dict = {}
    model = tiny()
    assert 0 < wm_steps_per_s(model, maps, 4, 2, cache=cache, reencode_every=2) < math.inf
    (key, env), = cache.items()
    assert key == (4, "fp32", True, 2) and env.slots.reencode_every == 2 and env.canvas == max(SIZES)
    wm_steps_per_s(model, maps, 4, 2, cache=cache, reencode_every=2)
    assert list(cache.values()) == [env]  # the same settings: the env is built once

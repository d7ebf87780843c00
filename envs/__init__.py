"""Gymnasium side of rss_world: FrozenLake maps, rendering, frame parser, oracle, metrics.

Importing this package registers ``rss_world/VisualFrozenLake-v0`` with gymnasium (once).
"""

from __future__ import annotations

import gymnasium

from rss_world.envs.maps import (
    SUITES,
    MapSpec,
    generate_map,
    load_default_suite,
    load_suite,
    map_id,
    save_suite,
    split_of,
)

ENV_ID = "rss_world/VisualFrozenLake-v0"

if ENV_ID not in gymnasium.registry:
    gymnasium.register(id=ENV_ID, entry_point="rss_world.envs.frozenlake:VisualFrozenLakeEnv")

__all__ = ["ENV_ID", "SUITES", "MapSpec", "generate_map", "load_default_suite", "load_suite", "map_id", "save_suite",
           "split_of"]

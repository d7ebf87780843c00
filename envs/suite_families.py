"""The recipes of the shipped FrozenLake map suites (``envs/suites/<name>.jsonl``): one :class:`Family` per
recipe in :data:`FAMILIES`, built by :func:`build_family`; ``python -m rss_world.envs.make_suites`` writes them.
A family is one recipe; ``--family`` picks one (the default, ``default``, is the command the first suites were
made with). Hole probability 0.2 and seed 0 everywhere; each (family, size) draws from its own seeded stream,
so adding a family or a size never changes the maps of another. Every map lands in the split its content hash
names (:func:`rss_world.envs.maps.split_of`), so the train, val and test suites of all families are disjoint.

- ``default`` -> ``train.jsonl``, ``val.jsonl``, ``test.jsonl``: sizes 3-8; per size 1000 train, 100 val,
  100 test maps. The suites the shipped model was trained and scored on; never rewrite them differently.
- ``large`` -> ``train_large.jsonl``, ``val_large.jsonl``, ``test_large.jsonl``: sizes 10, 12, 16, 24, 32
  (disjoint from the default sizes); per size 300 train, 100 val, 100 test maps. With ``test.jsonl`` the test
  suites cover sizes 3-8, 10, 12, 16, 24 and 32 with 100 maps each. Kept apart from the default files because
  code loads a default split without a size filter (data collection, ``load_maps``) and models stop at 16.
- ``longpath`` -> ``test_longpath.jsonl``: sizes 16 and 32, 100 maps each, drawn like every other map and kept
  only when the shortest start-to-goal path is at least ``ceil(1.5 * size)`` steps (24 and 48), the map is a
  test-split layout, and it is not in ``test_large``. Extra key ``optimal_length``. A test suite only: there is
  no long-path train or val suite.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from rss_world.envs.maps import (
    DEFAULT_P_HOLE,
    DEFAULT_QUOTAS,
    DEFAULT_SEED,
    DEFAULT_SIZES,
    SPLITS,
    MapSpec,
    generate_map,
    make_suites,
    map_id,
    split_of,
    start_goal_distance,
)

LARGE_SIZES = (10, 12, 16, 24, 32)
LARGE_QUOTAS = {"train": 300, "val": 100, "test": 100}
LONGPATH_SIZES = (16, 32)
LONGPATH_COUNT = 100
LONGPATH_FACTOR = 1.5
LONGPATH_STREAM = 1  # third seed word of the long-path streams; the split families use [seed, size]


@dataclass(frozen=True)
class Family:
    """One recipe of shipped suites.

    Attributes:
        suffix: File suffix: ``train{suffix}.jsonl`` and so on.
        sizes: Map sizes.
        quotas: Maps per size per split (a split with quota 0 writes no file).
        long_path: Minimum shortest path as a multiple of the size; 0 for plain draws.
    """

    suffix: str
    sizes: tuple[int, ...]
    quotas: dict[str, int] = field(default_factory=dict)
    long_path: float = 0.0


FAMILIES = {
    "default": Family("", DEFAULT_SIZES, dict(DEFAULT_QUOTAS)),
    "large": Family("_large", LARGE_SIZES, dict(LARGE_QUOTAS)),
    "longpath": Family("_longpath", LONGPATH_SIZES, {"test": LONGPATH_COUNT}, LONGPATH_FACTOR),
}


def long_path_suite(sizes: Sequence[int] = LONGPATH_SIZES, count: int = LONGPATH_COUNT,
                    factor: float = LONGPATH_FACTOR, p_hole: float = DEFAULT_P_HOLE, seed: int = DEFAULT_SEED,
                    split: str = SPLITS[-1], exclude: Iterable[Sequence[str]] = (),
                    max_draws: int = 1_000_000) -> list[MapSpec]:
    """Distinct maps of one split whose shortest start-to-goal path is at least ``ceil(factor * size)``.

    Each map is a :func:`generate_map` draw conditioned on that path length, kept when :func:`split_of` names
    ``split`` and it is not in ``exclude``. Each size draws from the stream ``[seed, size, LONGPATH_STREAM]``.

    Args:
        sizes: Map sizes.
        count: Maps per size.
        factor: Minimum shortest path over the size.
        p_hole: Hole probability.
        seed: Base seed.
        split: The content-hash split every map must belong to.
        exclude: Maps that must not be picked (e.g. another suite of the same split).
        max_draws: Safety bound on long-path draws per size.

    Returns:
        Maps ordered by size, then by draw order, with extra keys ``size`` and ``optimal_length``.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}, expected one of {SPLITS}")
    skip = {tuple(d) for d in exclude}
    out: list[MapSpec] = []
    for size in sizes:
        rng = np.random.default_rng([seed, size, LONGPATH_STREAM])
        min_path = math.ceil(factor * size)
        kept = 0
        for _ in range(max_draws):
            if kept >= count:
                break
            desc = generate_map(size, p_hole, rng, min_path=min_path)
            if split_of(desc) != split or desc in skip:
                continue
            skip.add(desc)
            kept += 1
            out.append(MapSpec(map_id(desc), desc, {"size": size, "optimal_length": start_goal_distance(desc)}))
        else:
            raise RuntimeError(f"size {size}: {count} long-path maps not found in {max_draws} draws, got {kept}")
    return out


def build_family(family: Family, p_hole: float = DEFAULT_P_HOLE, seed: int = DEFAULT_SEED) -> dict[str, list[MapSpec]]:
    """The suites of one family, ``{file name: maps}``.

    A long-path family leaves out the test maps the ``large`` recipe draws at its sizes (same seed and hole
    probability), so ``test_longpath`` and ``test_large`` never share a map.
    """
    if not family.long_path:
        suites = make_suites(family.sizes, family.quotas, p_hole, seed)
        return {f"{split}{family.suffix}.jsonl": maps for split, maps in suites.items() if family.quotas.get(split)}
    (split, count), = family.quotas.items()
    shared = [s for s in family.sizes if s in LARGE_SIZES]
    exclude = [m.desc for m in make_suites(shared, {split: LARGE_QUOTAS[split]}, p_hole, seed)[split]]
    maps = long_path_suite(family.sizes, count, family.long_path, p_hole, seed, split, exclude)
    return {f"{split}{family.suffix}.jsonl": maps}

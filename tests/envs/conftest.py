"""Fixtures of the env tests: random maps with the agent anywhere, to render and parse."""

from collections.abc import Callable, Iterator

import numpy as np
import pytest

from rss_world.envs.maps import generate_map
from rss_world.envs.render import FACINGS


def cases(n: int, seed: int, sizes=range(3, 9)) -> Iterator[tuple[tuple[str, ...], tuple[int, int], str]]:
    """``n`` random ``(desc, cell, facing)`` cases: maps of the given sizes in turn (hole fraction 0.3), the agent on
    any cell (a hole or the goal included), every facing in turn."""
    rng = np.random.default_rng(seed)
    sizes = list(sizes)
    for i in range(n):
        size = sizes[i % len(sizes)]
        desc = generate_map(size, 0.3, rng)
        rc = (int(rng.integers(size)), int(rng.integers(size)))
        yield desc, rc, FACINGS[i % len(FACINGS)]


@pytest.fixture(scope="session")
def render_cases() -> Callable[..., Iterator[tuple[tuple[str, ...], tuple[int, int], str]]]:
    """``render_cases(n, seed, sizes=range(3, 9))``: see :func:`cases`."""
    return cases

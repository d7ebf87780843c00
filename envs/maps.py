"""FrozenLake maps: generation, content-hash ids and splits, JSONL suites with validation.

A map is a tuple of row strings in gymnasium's letters: ``S`` start, ``F`` frozen, ``H`` hole, ``G`` goal.
Maps are square, non-slippery, and have exactly one start and one goal placed anywhere on the grid.

The suites shipped in ``envs/suites/<name>.jsonl`` (names in :data:`SUITES`, loaded with
:func:`load_default_suite`) are written by ``python -m rss_world.envs.make_suites --out envs/suites --family all``
(see that module for what each one holds):

- ``train``, ``val``, ``test``: sizes 3-8; 1000 / 100 / 100 maps per size.
- ``train_large``, ``val_large``, ``test_large``: sizes 10, 12, 16, 24, 32; 300 / 100 / 100 maps per size.
- ``test_longpath``: sizes 16 and 32, 100 maps each, shortest start-to-goal path at least 1.5 x size.

The split of a map is a function of its content hash (:func:`split_of`), so a test layout can never
appear in a training suite, whatever the generator's seed; every shipped suite keeps only maps of its own split.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

LETTERS = frozenset("SFHG")
MIN_SIZE, MAX_SIZE = 2, 32
SPLITS = ("train", "val", "test")
SUITES = (*SPLITS, "train_large", "val_large", "test_large", "test_longpath")  # shipped files envs/suites/<name>.jsonl
DEFAULT_SIZES = (3, 4, 5, 6, 7, 8)
DEFAULT_QUOTAS = {"train": 1000, "val": 100, "test": 100}
DEFAULT_SEED = 0
DEFAULT_P_HOLE = 0.2
DELTAS = ((0, -1), (1, 0), (0, 1), (-1, 0))  # (row, col) moves in gymnasium's action order: LEFT, DOWN, RIGHT, UP


def step_limit(size: int) -> int:
    """The episode step limit of a ``size`` x ``size`` map: ``4 · size²`` (every env and evaluation uses this)."""
    return 4 * size * size


@dataclass(frozen=True)
class MapSpec:
    """One FrozenLake map.

    Attributes:
        id: Map identifier (by default the content hash, see :func:`map_id`).
        desc: Row strings in S/F/H/G letters, top row first.
        extra: Any further JSON keys from the suite file; kept on round-trip.
    """

    id: str
    desc: tuple[str, ...]
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def size(self) -> int:
        """Side length of the square grid."""
        return len(self.desc)


def map_id(desc: Sequence[str]) -> str:
    """Content hash of a map: first 12 hex digits of sha1 over the rows joined by newlines."""
    return hashlib.sha1("\n".join(desc).encode("ascii")).hexdigest()[:12]


def split_of(desc: Sequence[str]) -> str:
    """Deterministic split of a map from its content hash: 80% train, 10% val, 10% test."""
    bucket = int(hashlib.sha1("\n".join(desc).encode("ascii")).hexdigest(), 16) % 100
    return "train" if bucket < 80 else ("val" if bucket < 90 else "test")


def find_cell(desc: Sequence[str], letter: str) -> tuple[int, int]:
    """Return the (row, col) of the first cell holding ``letter``."""
    for r, row in enumerate(desc):
        c = row.find(letter)
        if c >= 0:
            return r, c
    raise ValueError(f"map has no {letter!r} cell")


_OPEN = str.maketrans("SFHG", "1101")


def start_goal_distance(desc: Sequence[str]) -> int:
    """Length of a shortest start-to-goal path around the holes, or -1 when the goal cannot be reached.

    A breadth-first flood fill over bit sets (one Python int, one bit per cell plus a blocked guard column per
    row), one step per iteration: about 0.1 ms on a 32 x 32 map.
    """
    w = len(desc) + 1  # a guard column per row stops moves wrapping to the next row
    open_ = int("".join(row.translate(_OPEN) + "0" for row in desc)[::-1], 2)
    (sr, sc), (gr, gc) = find_cell(desc, "S"), find_cell(desc, "G")
    reach, goal = 1 << (sr * w + sc), 1 << (gr * w + gc)
    dist = 0
    while not reach & goal:
        grown = (reach | reach << 1 | reach >> 1 | reach << w | reach >> w) & open_
        if grown == reach:
            return -1
        reach, dist = grown, dist + 1
    return dist


def is_solvable(desc: Sequence[str]) -> bool:
    """True when the goal can be reached from the start without entering a hole."""
    return start_goal_distance(desc) >= 0


def generate_map(size: int, p_hole: float = DEFAULT_P_HOLE, rng: np.random.Generator | None = None,
                 min_path: int = 0) -> tuple[str, ...]:
    """Sample a solvable square map with random start and goal cells.

    Start and goal are two distinct cells drawn uniformly; every other cell is a hole with probability
    ``p_hole``, else frozen. Draws that are unsolvable, or whose shortest start-to-goal path is shorter than
    ``min_path``, are rejected and redrawn (so the result is a plain draw conditioned on the path length).

    Args:
        size: Side length, ``MIN_SIZE`` to ``MAX_SIZE`` (2 to 32).
        p_hole: Probability that a non-start, non-goal cell is a hole.
        rng: Random generator; a fresh unseeded one when None.
        min_path: Shortest allowed start-to-goal path, 0 to ``2 * (size - 1)`` (the longest Manhattan distance;
            longer paths exist but are rare, so they are refused rather than searched for).

    Returns:
        The map as a tuple of row strings.
    """
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"map size {size} outside {MIN_SIZE}-{MAX_SIZE}")
    if not 0.0 <= p_hole < 1.0:
        raise ValueError(f"p_hole {p_hole} outside [0, 1)")
    if not 0 <= min_path <= 2 * (size - 1):
        raise ValueError(f"min_path {min_path} outside 0-{2 * (size - 1)} for size {size}")
    rng = rng if rng is not None else np.random.default_rng()
    while True:
        cells = np.where(rng.random(size * size) < p_hole, ord("H"), ord("F")).astype(np.uint8)
        cells[rng.choice(size * size, size=2, replace=False)] = (ord("S"), ord("G"))
        text = cells.tobytes().decode("ascii")
        desc = tuple(text[i:i + size] for i in range(0, size * size, size))
        if start_goal_distance(desc) >= min_path:
            return desc


def validate_desc(desc: Sequence[str], name: str) -> None:
    """Raise ``ValueError`` naming ``name`` and the problem when ``desc`` is not a valid map."""
    if not isinstance(desc, list | tuple) or not all(isinstance(r, str) for r in desc):
        raise ValueError(f"map {name}: desc must be a list of row strings")
    n = len(desc)
    if not MIN_SIZE <= n <= MAX_SIZE:
        raise ValueError(f"map {name}: size {n} outside {MIN_SIZE}-{MAX_SIZE}")
    for i, row in enumerate(desc):
        if len(row) != n:
            raise ValueError(f"map {name}: not square, row {i} has {len(row)} cells, expected {n}")
        bad = set(row) - LETTERS
        if bad:
            raise ValueError(f"map {name}: row {i} has letters {sorted(bad)}, expected only S/F/H/G")
    for letter in "SG":
        count = sum(row.count(letter) for row in desc)
        if count != 1:
            raise ValueError(f"map {name}: has {count} {letter!r} cells, expected exactly 1")
    if not is_solvable(desc):
        raise ValueError(f"map {name}: unsolvable, the goal cannot be reached from the start")


def maps_from(desc: Sequence[str] | None = None,
              suite: Iterable[MapSpec | Sequence[str]] | str | Path | None = None) -> list[MapSpec]:
    """The validated maps of one ``desc`` or of a ``suite`` (MapSpecs, row tuples or a JSONL path).

    Raises:
        ValueError: both or neither given, or a map is invalid (the message names it).
    """
    if (desc is None) == (suite is None):
        raise ValueError("give exactly one of desc= and suite=")
    if desc is not None:
        validate_desc(list(desc), map_id(desc))
        return [MapSpec(map_id(desc), tuple(desc))]
    if isinstance(suite, str | Path):
        return load_suite(suite)
    maps = [m if isinstance(m, MapSpec) else MapSpec(map_id(m), tuple(m)) for m in suite]
    for m in maps:
        validate_desc(list(m.desc), m.id)
    return maps


def save_suite(path: str | Path, maps: Iterable[MapSpec]) -> None:
    """Write maps to JSONL, one ``{"id", "desc", **extra}`` object per line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"id": m.id, "desc": list(m.desc), **m.extra}, separators=(",", ":")) for m in maps]
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(line + "\n" for line in lines))
    tmp.replace(path)


def load_suite(path: str | Path) -> list[MapSpec]:
    """Load and validate a JSONL suite.

    Every map is checked before anything is returned: square, letters S/F/H/G only, exactly one S and
    one G, size ``MIN_SIZE``-``MAX_SIZE`` (2-32), solvable, and ids unique.

    Raises:
        ValueError: With the map id (or the line number) and the problem.
    """
    maps: list[MapSpec] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} line {lineno}: invalid JSON ({e.msg})") from e
        if not isinstance(obj, dict) or "id" not in obj or "desc" not in obj:
            raise ValueError(f"{path} line {lineno}: expected an object with 'id' and 'desc'")
        mid = str(obj.pop("id"))
        desc = obj.pop("desc")
        validate_desc(desc, f"{mid!r} (line {lineno})")
        if mid in seen:
            raise ValueError(f"map {mid!r} (line {lineno}): duplicate id, first seen on line {seen[mid]}")
        seen[mid] = lineno
        maps.append(MapSpec(id=mid, desc=tuple(desc), extra=obj))
    return maps


def default_suite_path(name: str) -> Path:
    """Path of a shipped suite, one of :data:`SUITES` (``train``, ``val``, ``test``, ``test_large``, ...)."""
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}, expected one of {SUITES}")
    return Path(__file__).resolve().parent / "suites" / f"{name}.jsonl"


def load_default_suite(split: str, sizes: Iterable[int] | None = None) -> list[MapSpec]:
    """Load a shipped suite by name (one of :data:`SUITES`), optionally keeping only the given sizes."""
    maps = load_suite(default_suite_path(split))
    if sizes is not None:
        keep = set(sizes)
        maps = [m for m in maps if m.size in keep]
    return maps


def make_suites(
    sizes: Sequence[int] = DEFAULT_SIZES,
    quotas: dict[str, int] | None = None,
    p_hole: float = DEFAULT_P_HOLE,
    seed: int = DEFAULT_SEED,
    max_draws: int = 200_000,
) -> dict[str, list[MapSpec]]:
    """Generate distinct maps per size until each split holds its quota.

    Maps are drawn with :func:`generate_map`, deduplicated by content, and routed to a split by
    :func:`split_of`; draws landing in a full split are dropped. Each size has its own seeded stream.

    Args:
        sizes: Map sizes to generate.
        quotas: Maps per size per split; defaults to ``DEFAULT_QUOTAS``.
        p_hole: Hole probability passed to the generator.
        seed: Base seed.
        max_draws: Safety bound on draws per size.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}`` ordered by size, then by draw order.
    """
    quotas = dict(DEFAULT_QUOTAS if quotas is None else quotas)
    out: dict[str, list[MapSpec]] = {s: [] for s in SPLITS}
    for size in sizes:
        rng = np.random.default_rng([seed, size])
        counts = dict.fromkeys(SPLITS, 0)
        seen: set[str] = set()
        for _ in range(max_draws):
            if all(counts[s] >= quotas.get(s, 0) for s in SPLITS):
                break
            desc = generate_map(size, p_hole, rng)
            mid = map_id(desc)
            split = split_of(desc)
            if mid in seen or counts[split] >= quotas.get(split, 0):
                continue
            seen.add(mid)
            counts[split] += 1
            out[split].append(MapSpec(mid, desc, {"size": size}))
        else:
            raise RuntimeError(f"size {size}: quotas {quotas} not met after {max_draws} draws, got {counts}")
    return out

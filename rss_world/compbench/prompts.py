"""Prompts: the vocabulary, the six GenEval categories as structured prompts, and fixed train/val/test splits.

A :class:`Prompt` is a category plus what it asks for (:class:`Want`: a shape, an optional colour, a count) and,
for position prompts, a relation read as ``wants[0] <relation> wants[1]``. Its text is derived from that structure,
so a prompt and its text never disagree. The category tags are GenEval's own (``colors``, ``color_attr``, ...), so
tables line up with GenEval's; field names use British spelling (``colour``).

Splits. The prompt universe is finite (:func:`all_prompts`, 240 prompts). Prompts that describe the same scenes
("a circle left of a square" and "a square right of a circle"; "a circle and a square" and "a square and a circle")
form one group and always go to the same split. Within each category the groups are ordered by a SHA-256 hash of
their key (stable across Python and numpy versions) and cut 60/20/20 into train/val/test, so the splits share no
prompt. Two categories are too small to cut (``single_object`` and ``two_object``: three groups each, the shapes
themselves); their prompts are in every split (:data:`SHARED_CATEGORIES`). Splits are per category: a
(shape, colour) pair held out of ``colors`` may still appear inside a ``color_attr`` training prompt.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from functools import cache

import numpy as np

SHAPES = ("circle", "square", "triangle")
# RGB; every pair of these (background included) is at least 255 apart, so nearest-colour reading is exact.
COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255),
           "yellow": (255, 255, 0), "cyan": (0, 255, 255), "magenta": (255, 0, 255)}
BACKGROUND = (255, 255, 255)
CATEGORIES = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
RELATIONS = ("left of", "right of", "above", "below")
COUNTS = (2, 3, 4)
MAX_OBJECTS = 4
SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)
SHARED_CATEGORIES = ("single_object", "two_object")
_NUMBERS = {1: "one", 2: "two", 3: "three", 4: "four"}
_OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


@dataclass(frozen=True)
class Want:
    """One clause of a prompt: ``count`` objects of ``shape``, all of ``colour`` when it is given."""

    shape: str
    colour: str | None = None
    count: int = 1

    def __post_init__(self):
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}, expected one of {SHAPES}")
        if self.colour is not None and self.colour not in COLOURS:
            raise ValueError(f"unknown colour {self.colour!r}, expected one of {tuple(COLOURS)}")
        if not 1 <= self.count <= MAX_OBJECTS:
            raise ValueError(f"count {self.count} out of range 1..{MAX_OBJECTS}")

    @property
    def text(self) -> str:
        words = [self.colour] if self.colour else []
        if self.count == 1:
            return " ".join(["a", *words, self.shape])
        return " ".join([_NUMBERS[self.count], *words, self.shape + "s"])


@dataclass(frozen=True)
class Prompt:
    """A structured prompt. ``relation`` (position prompts only) reads ``wants[0] <relation> wants[1]``.

    Raises:
        ValueError: the structure does not fit its category (wrong number of clauses, a colour where the category
            has none, two clauses with the same shape, ...).
    """

    category: str
    wants: tuple[Want, ...]
    relation: str | None = None

    def __post_init__(self):
        _validate(self)

    @property
    def text(self) -> str:
        if self.category == "position":
            return f"{self.wants[0].text} {self.relation} {self.wants[1].text}"
        return " and ".join(w.text for w in self.wants)

    @property
    def key(self) -> tuple:
        """Identity of the scenes the prompt describes: equal for prompts that differ only in wording order."""
        wants = self.wants
        relation = self.relation
        if relation in ("right of", "below"):
            wants, relation = wants[::-1], _OPPOSITE[relation]
        if relation is None:
            wants = tuple(sorted(wants, key=lambda w: (w.shape, w.colour or "")))
        return self.category, tuple((w.shape, w.colour, w.count) for w in wants), relation

    def to_dict(self) -> dict:
        return {"category": self.category, "text": self.text, "relation": self.relation,
                "wants": [{"shape": w.shape, "colour": w.colour, "count": w.count} for w in self.wants]}

    @classmethod
    def from_dict(cls, d: dict) -> Prompt:
        """Rebuild from :meth:`to_dict`; a ``text`` that disagrees with the structure is an error."""
        prompt = cls(d["category"], tuple(Want(**w) for w in d["wants"]), d.get("relation"))
        if "text" in d and d["text"] != prompt.text:
            raise ValueError(f"prompt text {d['text']!r} does not match its structure ({prompt.text!r})")
        return prompt


def _validate(p: Prompt) -> None:
    if p.category not in CATEGORIES:
        raise ValueError(f"unknown category {p.category!r}, expected one of {CATEGORIES}")
    n = {"single_object": 1, "colors": 1, "counting": 1}.get(p.category, 2)
    if len(p.wants) != n:
        raise ValueError(f"a {p.category} prompt has {n} clause(s), got {len(p.wants)}")
    if len({w.shape for w in p.wants}) != len(p.wants):
        raise ValueError(f"the clauses of a {p.category} prompt need different shapes, got {p.wants}")
    coloured = p.category in ("colors", "color_attr")
    if any((w.colour is not None) != coloured for w in p.wants):
        raise ValueError(f"{p.category} prompts {'need' if coloured else 'take no'} colours, got {p.wants}")
    if p.category == "color_attr" and p.wants[0].colour == p.wants[1].colour:
        raise ValueError(f"color_attr prompts need two different colours, got {p.wants}")
    counted = p.category == "counting"
    if any((w.count != 1) != counted for w in p.wants):
        raise ValueError(f"{p.category} prompts {'need a count of 2..4' if counted else 'take count 1'}")
    if (p.relation is not None) != (p.category == "position"):
        raise ValueError(f"only position prompts take a relation, got {p.category} with {p.relation!r}")
    if p.relation is not None and p.relation not in RELATIONS:
        raise ValueError(f"unknown relation {p.relation!r}, expected one of {RELATIONS}")


@cache
def all_prompts() -> tuple[Prompt, ...]:
    """Every prompt of the benchmark, category by category, in a fixed order."""
    out = [Prompt("single_object", (Want(s),)) for s in SHAPES]
    pairs = list(itertools.permutations(SHAPES, 2))
    out += [Prompt("two_object", (Want(a), Want(b))) for a, b in pairs]
    out += [Prompt("counting", (Want(s, count=n),)) for s in SHAPES for n in COUNTS]
    out += [Prompt("colors", (Want(s, c),)) for s in SHAPES for c in COLOURS]
    out += [Prompt("position", (Want(a), Want(b)), r) for a, b in pairs for r in RELATIONS]
    out += [Prompt("color_attr", (Want(a, ca), Want(b, cb)))
            for a, b in pairs for ca, cb in itertools.permutations(COLOURS, 2)]
    return tuple(out)


def prompt_from_text(text: str) -> Prompt:
    """The benchmark prompt whose text is ``text``.

    Raises:
        ValueError: no prompt of the benchmark reads so.
    """
    found = _by_text().get(text.strip())
    if found is None:
        raise ValueError(f"{text!r} is not a prompt of the benchmark (see all_prompts())")
    return found


@cache
def _by_text() -> dict[str, Prompt]:
    return {p.text: p for p in all_prompts()}


def split_of(prompt: Prompt) -> str:
    """``train``, ``val`` or ``test``; ``shared`` for the categories too small to cut (see the module docstring)."""
    return _split_table()[prompt.key]


@cache
def _split_table() -> dict[tuple, str]:
    table: dict[tuple, str] = {}
    for category in CATEGORIES:
        keys = sorted({p.key for p in all_prompts() if p.category == category},
                      key=lambda k: hashlib.sha256(repr(k).encode()).hexdigest())
        if category in SHARED_CATEGORIES:
            table.update(dict.fromkeys(keys, "shared"))
            continue
        n_train = round(SPLIT_FRACTIONS[0] * len(keys))
        n_val = round(SPLIT_FRACTIONS[1] * len(keys))
        for i, key in enumerate(keys):
            table[key] = "train" if i < n_train else "val" if i < n_train + n_val else "test"
    return table


def prompts_in(split: str, category: str | None = None) -> tuple[Prompt, ...]:
    """The prompts of ``split`` (``train``, ``val``, ``test`` or ``all``), optionally of one category."""
    if split not in (*SPLITS, "all"):
        raise ValueError(f"unknown split {split!r}, expected one of {(*SPLITS, 'all')}")
    if category is not None and category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}, expected one of {CATEGORIES}")
    return tuple(p for p in all_prompts() if (category is None or p.category == category)
                 and (split == "all" or split_of(p) in (split, "shared")))


def sample_prompts(n_per_category: int, seed: int, split: str) -> list[Prompt]:
    """``n_per_category`` prompts of each category from ``split``, category by category.

    When ``n_per_category`` is at most the category's pool, prompts are drawn without replacement; otherwise the
    pool is used whole, in a shuffled order, as many times as fits, and the rest drawn without replacement, so every
    prompt appears ``n // pool`` or ``n // pool + 1`` times. The same arguments give the same list.
    """
    if n_per_category < 0:
        raise ValueError(f"n_per_category must be >= 0, got {n_per_category}")
    rng = np.random.default_rng(seed)
    out: list[Prompt] = []
    for category in CATEGORIES:
        pool = prompts_in(split, category)
        whole, rest = divmod(n_per_category, len(pool))
        picks = [i for _ in range(whole) for i in rng.permutation(len(pool))]
        picks += list(rng.choice(len(pool), size=rest, replace=False))
        out += [pool[i] for i in picks]
    return out

"""Prompts: the universe, text and dict round trips, validation, fixed splits that share no prompt, seeded sampling."""

import hashlib
from collections import Counter

import pytest

from rss_world.compbench import CATEGORIES, Prompt, Want, all_prompts, prompt_from_text, prompts_in, sample_prompts
from rss_world.compbench.prompts import SHARED_CATEGORIES, split_of


def test_universe_covers_the_six_categories():
    counts = Counter(p.category for p in all_prompts())
    assert counts == {"single_object": 3, "two_object": 6, "counting": 9, "colors": 18, "position": 24,
                      "color_attr": 180}
    assert len({p.text for p in all_prompts()}) == len(all_prompts())


@pytest.mark.parametrize("text", ["a circle", "a circle and a square", "three triangles", "a blue square",
                                  "a circle left of a square", "a red circle and a blue square"])
def test_text_round_trip(text):
    p = prompt_from_text(text)
    assert p.text == text and Prompt.from_dict(p.to_dict()) == p


def test_structure_and_text():
    p = Prompt("position", (Want("triangle"), Want("circle")), "above")
    assert p.text == "a triangle above a circle"
    assert p.key == Prompt("position", (Want("circle"), Want("triangle")), "below").key
    assert Prompt("counting", (Want("square", count=4),)).text == "four squares"


@pytest.mark.parametrize("make, match", [
    (lambda: Want("hexagon"), "unknown shape"),
    (lambda: Want("circle", "pink"), "unknown colour"),
    (lambda: Want("circle", count=5), "count 5"),
    (lambda: Prompt("colors", (Want("circle"),)), "need colours"),
    (lambda: Prompt("two_object", (Want("circle"), Want("circle"))), "different shapes"),
    (lambda: Prompt("color_attr", (Want("circle", "red"), Want("square", "red"))), "different colours"),
    (lambda: Prompt("position", (Want("circle"), Want("square"))), "relation"),
    (lambda: Prompt("single_object", (Want("circle"), Want("square"))), "1 clause"),
    (lambda: Prompt("style", (Want("circle"),)), "unknown category"),
    (lambda: prompt_from_text("a purple circle"), "not a prompt"),
    (lambda: Prompt.from_dict({**prompt_from_text("a circle").to_dict(), "text": "a square"}), "does not match"),
    (lambda: prompts_in("holdout"), "unknown split"),
])
def test_bad_prompts_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_splits_share_no_prompt_and_cover_everything():
    split = {s: set(prompts_in(s)) for s in ("train", "val", "test")}
    assert set().union(*split.values()) == set(all_prompts())
    for category in CATEGORIES:
        parts = [{p.key for p in split[s] if p.category == category} for s in split]
        if category in SHARED_CATEGORIES:  # three shapes: too few to cut, in every split
            assert parts[0] == parts[1] == parts[2]
        else:
            assert all(parts) and not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
            n = sum(map(len, parts))
            assert len(parts[0]) == round(0.6 * n)
    # prompts describing the same scenes stay together ("A left of B" and "B right of A")
    for p in all_prompts():
        twins = [q for q in all_prompts() if q.key == p.key]
        assert {split_of(q) for q in twins} == {split_of(p)}


def test_splits_are_pinned():
    """The split is part of the benchmark: a change to it must be deliberate (update these digests then)."""
    digest = {s: hashlib.sha256("\n".join(p.text for p in prompts_in(s)).encode()).hexdigest()[:16]
              for s in ("train", "val", "test")}
    assert digest == {"train": "fa28df0a5fc54fef", "val": "055d5b55165a794c", "test": "e421672bf7fa8585"}


def test_sample_prompts_is_seeded_balanced_and_stays_in_its_split():
    a, b = sample_prompts(20, seed=3, split="val"), sample_prompts(20, seed=3, split="val")
    assert a == b and a != sample_prompts(20, seed=4, split="val")
    assert Counter(p.category for p in a) == dict.fromkeys(CATEGORIES, 20)
    assert set(a) <= set(prompts_in("val"))
    reps = Counter(p for p in a if p.category == "single_object")  # 3 prompts, 20 draws: 6 or 7 each
    assert sorted(reps.values()) == [6, 7, 7]
    few = [p for p in sample_prompts(2, seed=0, split="train") if p.category == "color_attr"]
    assert len(set(few)) == 2

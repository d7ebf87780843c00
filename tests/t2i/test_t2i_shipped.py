"""The shipped compbench base (``rss_world/checkpoints/compbench_base``): it loads, is small and frozen, records the
sampler chosen on val, and draws the colours simple prompts ask for (as the compbench checker reads them)."""

import pytest

from rss_world.compbench import read_objects
from rss_world.t2i import TextToImage, shipped_base, shipped_base_path
from rss_world.t2i.checkpoint import read_base_config

COLOURED = ("a red circle", "a blue square", "a green triangle", "a yellow circle", "a magenta square",
            "a cyan triangle")


@pytest.fixture(scope="module")
def base():
    return shipped_base()


def colour_hits(model, sampling) -> int:
    texts = [t for t in COLOURED for _ in range(2)]
    images = model.generate(texts, steps=sampling["steps"], guidance=sampling["guidance"], seed=0)
    return sum(any(o.colour == t.split()[1] for o in read_objects(im)) for t, im in zip(texts, images, strict=True))


def test_shipped_base_draws_the_prompted_colours(base):
    sampling = read_base_config(shipped_base_path())["meta"]["sampling"]
    assert sampling["steps"] >= 1 and sampling["guidance"] >= 1
    hits = colour_hits(base, sampling)
    untrained = colour_hits(TextToImage(base.cfg).eval(), sampling)
    assert hits >= 8 and untrained <= 2, (hits, untrained)  # of 12 images


def test_shipped_base_is_small_and_frozen(base):
    size = sum(p.stat().st_size for p in shipped_base_path().iterdir())
    assert size < 10 * 2**20 and base.text_frozen
    assert read_base_config(shipped_base_path())["meta"]["test"]["overall"] > 0

"""The shipped compbench base (``rss_world/checkpoints/compbench_base``): it loads, and draws what simple prompts ask
for, as the compbench checker reads it (with the sampler settings chosen on val, kept in its config)."""

import pytest

from rss_world.compbench import check, prompt_from_text
from rss_world.t2i import shipped_base, shipped_base_path
from rss_world.t2i.checkpoint import read_base_config

PROMPTS = ("a red circle", "a blue square", "a green triangle", "a circle", "a square", "a triangle")
FLOOR = 6  # of 12 images (each prompt twice); the base scores well above this on single objects and colours


@pytest.fixture(scope="module")
def base():
    if not (shipped_base_path() / "config.json").is_file():
        pytest.skip("no base shipped yet (python experiments/compbench_base.py --ship writes it)")
    return shipped_base()


def test_shipped_base_draws_simple_prompts(base):
    sampling = read_base_config(shipped_base_path())["meta"]["sampling"]
    texts = [t for t in PROMPTS for _ in range(2)]
    images = base.generate(texts, steps=sampling["steps"], guidance=sampling["guidance"], seed=0)
    passed = [check(prompt_from_text(t), im).correct for t, im in zip(texts, images, strict=True)]
    assert sum(passed) >= FLOOR, dict(zip(texts, passed, strict=True))


def test_shipped_base_is_small_and_frozen(base):
    size = sum(p.stat().st_size for p in shipped_base_path().iterdir())
    assert size < 10 * 2**20 and base.text_frozen

"""Score a base model (or any :class:`~rss_world.t2i.model.TextToImage`) on the compositional benchmark.

The images of a category are ``n_per_category`` prompts drawn by :func:`rss_world.compbench.sample_prompts` from one
split; small pools repeat (the test split has 2 counting and 3 colour prompts), each repeat with its own noise, so a
category's score is over images, not prompts, as GenEval counts them. The result says both counts.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from rss_world.compbench import CATEGORIES, check, sample_prompts, summarize
from rss_world.t2i.model import TextToImage


def evaluate(model: TextToImage, n_per_category: int = 64, *, split: str, seed: int = 0, steps: int = 20,
             guidance: float = 1.0, batch_size: int | None = None) -> dict[str, Any]:
    """Generate and check ``n_per_category`` images per category.

    Returns:
        The :func:`rss_world.compbench.summarize` dict plus ``distinct_prompts`` (per category), ``images``,
        ``seconds_per_image`` (sampling only, this process), ``steps``, ``guidance``, ``split``, ``seed`` and
        ``prompts``, ``images_array``, ``results`` (for a contact sheet).
    """
    if n_per_category < 1:
        raise ValueError(f"n_per_category must be >= 1, got {n_per_category}")
    prompts = sample_prompts(n_per_category, seed=seed, split=split)
    t0 = time.perf_counter()
    images = model.generate([p.text for p in prompts], steps=steps, guidance=guidance, seed=seed,
                            batch_size=batch_size)
    seconds = time.perf_counter() - t0
    results = [check(p, im) for p, im in zip(prompts, images, strict=True)]
    distinct = Counter()
    for c in CATEGORIES:
        distinct[c] = len({p.text for p in prompts if p.category == c})
    return {**summarize(prompts, results), "distinct_prompts": dict(distinct), "images": len(prompts),
            "seconds_per_image": seconds / len(prompts), "steps": steps, "guidance": guidance, "split": split,
            "seed": seed, "prompts": prompts, "images_array": images, "results": results}

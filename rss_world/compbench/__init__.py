"""A small compositional text-to-image benchmark with an exact checker: GenEval's idea at toy scale.

Images show one to four flat shapes (circle, square, triangle) in six palette colours on a white background. Prompts
cover GenEval's six categories (single object, two objects, counting, colours, position, colour attribution). The
checker reads an image back into objects by colour segmentation and shape templates, and judges each prompt by
GenEval's rules; on ground-truth renders it is exact. Any model's images can be scored: this package imports only
numpy and PIL (and ``rss_world.io``, stdlib only), never torch or diffusers.

    >>> import numpy as np
    >>> from rss_world import compbench as cb
    >>> prompts = cb.sample_prompts(50, seed=0, split="test")
    >>> rng = np.random.default_rng(0)
    >>> images = [cb.render(cb.scene_for(p, rng)) for p in prompts]  # or your model's images, (H, W, 3)
    >>> cb.score(prompts, images)["overall"]
    1.0

Modules: :mod:`~.prompts` (vocabulary, prompts, splits), :mod:`~.scenes` (scenes, rasteriser, sampler, renderer),
:mod:`~.checker` (reading, judging, confidence), :mod:`~.scoring` (scores, intervals, contact sheet).
"""

from rss_world.compbench.checker import CheckResult, Found, check, judge, read_objects
from rss_world.compbench.prompts import (
    BACKGROUND,
    CATEGORIES,
    COLOURS,
    RELATIONS,
    SHAPES,
    Prompt,
    Want,
    all_prompts,
    prompt_from_text,
    prompts_in,
    sample_prompts,
    split_of,
)
from rss_world.compbench.scenes import Scene, SceneObject, relations, render, scene_for
from rss_world.compbench.scoring import score, summarize, wilson, write_contact_sheet

__all__ = [
    "BACKGROUND", "CATEGORIES", "COLOURS", "RELATIONS", "SHAPES", "CheckResult", "Found", "Prompt", "Scene",
    "SceneObject", "Want", "all_prompts", "check", "judge", "prompt_from_text", "prompts_in", "read_objects",
    "relations", "render", "sample_prompts", "scene_for", "score", "split_of", "summarize", "wilson",
    "write_contact_sheet",
]

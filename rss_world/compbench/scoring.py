"""Scores with 95% intervals, GenEval style, and a contact sheet of images with their prompts and verdicts.

A category's score is the fraction of its images judged correct, with a Wilson 95% interval. ``overall`` is the
mean over the six categories (GenEval's overall), with a 95% interval from the normal approximation to that mean
of independent proportions, each Agresti-Coull adjusted (``(k + 2) / (n + 4)``) so that categories at 0% or 100%
still carry uncertainty. Several images of one prompt (seeds) count as separate trials, as GenEval counts them;
the intervals then assume the prompts' difficulties do not vary much, so compare runs on the same prompt list.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from rss_world.compbench.checker import CheckResult, as_rgb, check
from rss_world.compbench.prompts import CATEGORIES, Prompt
from rss_world.io import atomic_write

Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for ``k`` successes in ``n`` trials (``(0, 1)`` when ``n`` is 0)."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def summarize(prompts: Sequence[Prompt], results: Sequence[CheckResult]) -> dict:
    """Scores from verdicts already made, one per prompt.

    Returns:
        ``{category: rate, ..., "overall": mean of the six rates, "interval": {category or "overall": (lo, hi)},
        "n": {category: images}, "confidence": {category or "overall": mean confidence}}``. Categories without
        images are left out; ``overall`` (and its interval) is given only when all six are there.
    """
    if len(prompts) != len(results):
        raise ValueError(f"{len(prompts)} prompts but {len(results)} results")
    rates: dict = {}
    interval, count, confidence = {}, {}, {}
    adjusted = []
    for category in CATEGORIES:
        hits = [r for p, r in zip(prompts, results, strict=True) if p.category == category]
        if not hits:
            continue
        k, n = sum(bool(r.correct) for r in hits), len(hits)
        rates[category], interval[category], count[category] = k / n, wilson(k, n), n
        confidence[category] = float(np.mean([r.confidence for r in hits]))
        adjusted.append(((k + 2) / (n + 4), n + 4))
    if len(adjusted) == len(CATEGORIES):
        rates["overall"] = overall = float(np.mean([rates[c] for c in CATEGORIES]))
        sd = math.sqrt(sum(p * (1 - p) / n for p, n in adjusted)) / len(CATEGORIES)
        interval["overall"] = (max(0.0, overall - Z95 * sd), min(1.0, overall + Z95 * sd))
    if results:
        confidence["overall"] = float(np.mean([r.confidence for r in results]))
    return {**rates, "interval": interval, "n": count, "confidence": confidence}


def score(prompts: Sequence[Prompt], images: Sequence, min_area: int | None = None) -> dict:
    """Check every image against its prompt and summarize (see :func:`summarize` for the result)."""
    if len(prompts) != len(images):
        raise ValueError(f"{len(prompts)} prompts but {len(images)} images")
    return summarize(prompts, [check(p, im, min_area) for p, im in zip(prompts, images, strict=True)])


def write_contact_sheet(path: str | os.PathLike, prompts: Sequence[Prompt], images: Sequence,
                        results: Sequence[CheckResult] | None = None, columns: int = 8, tile: int = 128) -> None:
    """Write a grid of the images, each enlarged (nearest neighbour, a whole factor) to about ``tile`` pixels and
    captioned with its prompt, PASS or FAIL and the confidence, framed green or red. ``results`` default to
    :func:`~rss_world.compbench.checker.check`. The file's format follows the suffix of ``path``; it is written
    atomically (a temporary file, then a rename).
    """
    if len(prompts) != len(images) or (results is not None and len(results) != len(images)):
        raise ValueError(f"{len(prompts)} prompts, {len(images)} images and "
                         f"{'no' if results is None else len(results)} results do not match")
    if not images:
        raise ValueError("no images to draw")
    if results is None:
        results = [check(p, im) for p, im in zip(prompts, images, strict=True)]
    font = ImageFont.load_default()
    pad, line = 4, 12
    chars = max(8, tile // 6)
    captions = [[*textwrap.wrap(p.text, chars), f"{'PASS' if r.correct else 'FAIL'}  conf {r.confidence:.2f}"]
                for p, r in zip(prompts, results, strict=True)]
    cell_w = tile + 2 * pad
    cell_h = tile + 2 * pad + line * max(len(c) for c in captions) + pad
    rows = -(-len(images) // columns)
    sheet = Image.new("RGB", (min(columns, len(images)) * cell_w, rows * cell_h), (40, 40, 40))
    draw = ImageDraw.Draw(sheet)
    for i, (image, caption, result) in enumerate(zip(images, captions, results, strict=True)):
        rgb = as_rgb(image)
        factor = max(1, tile // max(rgb.shape[:2]))
        big = Image.fromarray(rgb).resize((rgb.shape[1] * factor, rgb.shape[0] * factor), Image.NEAREST)
        x, y = (i % columns) * cell_w, (i // columns) * cell_h
        frame = (40, 170, 60) if result.correct else (210, 50, 50)
        draw.rectangle([x + 1, y + 1, x + cell_w - 2, y + tile + 2 * pad - 2], outline=frame, width=3)
        sheet.paste(big, (x + pad + (tile - big.width) // 2, y + pad + (tile - big.height) // 2))
        for j, text in enumerate(caption):
            colour = frame if j == len(caption) - 1 else (230, 230, 230)
            draw.text((x + pad, y + tile + 2 * pad + j * line), text, fill=colour, font=font)
    atomic_write(path, lambda tmp: sheet.save(tmp))

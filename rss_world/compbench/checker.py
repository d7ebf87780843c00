"""The checker: read an image back into objects, judge a prompt by GenEval's rules, and say how sure it is.

Reading (:func:`read_objects`): every pixel takes the nearest palette colour (background included, Euclidean RGB);
pixels of one colour that touch (4-neighbours) form a component; components of at least ``min_area`` pixels are
objects. An object's shape is the one whose :func:`~rss_world.compbench.scenes.raster` mask, drawn in the
component's bounding box, overlaps it best (IoU). Its *fit* is that IoU times the box's aspect ratio (short side
over long side); below :data:`MIN_FIT` the object is unrecognised (``shape`` None) and counts for nothing. On a clean
render every object has fit 1 and the reading is exact.

Judging (:func:`check`), GenEval's rules with the prompt read as "there exist objects such that":
  single_object, two_object: each asked shape is present;
  counting: exactly the asked number of that shape (of any colour), so at least one is present;
  colors, color_attr: for each clause an object of that shape with that colour;
  position: an object of the first shape and one of the second whose boxes stand in the asked relation
  (:func:`~rss_world.compbench.scenes.relations`, GenEval's rule and margin).
Objects the prompt does not mention are allowed, as in GenEval. GenEval judges colour and position on the
detector's most confident object of each class; with no detector confidence this checker asks whether *some*
object fits, which only differs when a shape appears more than once.

Confidence (per checked image, in [0, 1], 1 on a clean render) is the product of three factors:
  colour clarity: the mean over pixels of ``1 - d1 / d2``, with d1, d2 the distances to the nearest and the
      second-nearest palette colour (1 when every pixel is a palette colour, 0 when every pixel is halfway);
  shape fit: the lowest fit among the objects (1 when there is none);
  cleanliness: the share of non-background pixels that belong to objects (specks below ``min_area`` do not).
A low confidence says the verdict rests on a messy reading; it does not say which way the verdict would go.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from PIL import Image

from rss_world.compbench.prompts import BACKGROUND, COLOURS, SHAPES, Prompt
from rss_world.compbench.scenes import raster, relations

MIN_AREA_FRACTION = 0.01  # of the image; 10 px at 32x32, the smallest drawn object has 24
MIN_FIT = 0.5
_NAMES = (None, *COLOURS)
_PALETTE = np.array([BACKGROUND, *COLOURS.values()], dtype=np.float64)  # (K, 3), background first


@dataclass(frozen=True)
class Found:
    """An object read from an image: ``box`` is (x0, y0, x1, y1) in pixels, end exclusive."""

    shape: str | None
    colour: str
    box: tuple[int, int, int, int]
    area: int
    fit: float

    @property
    def centre(self) -> tuple[float, float]:
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2


class CheckResult(NamedTuple):
    """The verdict on one image: unpacks as ``correct, confidence, found, reason``."""

    correct: bool
    confidence: float
    found: tuple[Found, ...]
    reason: str  # why it is wrong; empty when correct


def as_rgb(image) -> np.ndarray:
    """``image`` as an ``(H, W, 3)`` uint8 array: a PIL image, a uint8 array, or a float array in [0, 1].

    Raises:
        ValueError: another shape (channels-first arrays included), dtype or value range.
    """
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {a.shape}"
                         + (" (channels first? transpose to (H, W, 3))" if a.ndim == 3 and a.shape[0] == 3 else ""))
    if a.dtype == np.uint8:
        return a
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all() or a.min() < -1e-3 or a.max() > 1 + 1e-3:
            raise ValueError(f"float images must hold values in [0, 1], got [{a.min()}, {a.max()}]")
        return np.round(np.clip(a, 0, 1) * 255).astype(np.uint8)
    raise ValueError(f"expected a uint8 or float image, got dtype {a.dtype}")


def _components(labels: np.ndarray) -> np.ndarray:
    """Connected components (4-neighbours, same label, label 0 ignored): each pixel gets the smallest flat index
    of its component; background pixels get ``labels.size``."""
    h, w = labels.shape
    fg = labels > 0
    comp = np.where(fg, np.arange(h * w).reshape(h, w), h * w)
    same_x = fg[:, 1:] & (labels[:, 1:] == labels[:, :-1])
    same_y = fg[1:, :] & (labels[1:, :] == labels[:-1, :])
    while True:
        new = comp.copy()
        np.minimum(new[:, :-1], np.where(same_x, comp[:, 1:], h * w), out=new[:, :-1])
        np.minimum(new[:, 1:], np.where(same_x, comp[:, :-1], h * w), out=new[:, 1:])
        np.minimum(new[:-1, :], np.where(same_y, comp[1:, :], h * w), out=new[:-1, :])
        np.minimum(new[1:, :], np.where(same_y, comp[:-1, :], h * w), out=new[1:, :])
        flat = new.ravel()
        flat[fg.ravel()] = flat[flat[fg.ravel()]]  # pointer jumping: a root's own root is smaller or equal
        if np.array_equal(new, comp):
            return comp
        comp = new


def _classify(mask: np.ndarray) -> tuple[str | None, float]:
    h, w = mask.shape
    ious = [np.logical_and(mask, t).sum() / np.logical_or(mask, t).sum() for t in (raster(s, w, h) for s in SHAPES)]
    best = int(np.argmax(ious))
    fit = float(ious[best]) * min(h, w) / max(h, w)
    return (SHAPES[best] if fit >= MIN_FIT else None), fit


def read(image, min_area: int | None = None) -> tuple[list[Found], float]:
    """The objects of ``image`` (raster order of their first pixel) and the confidence of the reading."""
    rgb = as_rgb(image)
    h, w, _ = rgb.shape
    min_area = max(2, round(MIN_AREA_FRACTION * h * w)) if min_area is None else min_area
    dist = np.linalg.norm(rgb.reshape(-1, 1, 3).astype(np.float64) - _PALETTE[None], axis=-1)  # (H*W, K)
    order = np.argsort(dist, axis=1)
    labels = order[:, 0].reshape(h, w)
    d1 = np.take_along_axis(dist, order[:, :1], 1)[:, 0]
    d2 = np.take_along_axis(dist, order[:, 1:2], 1)[:, 0]
    clarity = float(np.mean(1 - d1 / np.maximum(d2, 1e-9)))
    comp = _components(labels)
    roots, areas = np.unique(comp[labels > 0], return_counts=True)
    found = []
    for root, area in zip(roots, areas, strict=True):
        if area < min_area:
            continue
        ys, xs = np.nonzero(comp == root)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        shape, fit = _classify(comp[y0:y1, x0:x1] == root)
        found.append(Found(shape, _NAMES[labels.flat[root]], (int(x0), int(y0), int(x1), int(y1)), int(area), fit))
    foreground = int((labels > 0).sum())
    clean = sum(f.area for f in found) / foreground if foreground else 1.0
    fit = min((f.fit for f in found), default=1.0)
    return found, clarity * fit * clean


def read_objects(image, min_area: int | None = None) -> list[Found]:
    """The objects of ``image`` (see the module docstring). ``min_area`` defaults to 1% of the image."""
    return read(image, min_area)[0]


def judge(prompt: Prompt, found: list[Found] | tuple[Found, ...]) -> tuple[bool, str]:
    """GenEval's verdict on ``found`` for ``prompt``: ``(correct, reason it is wrong or "")``."""
    groups = []
    for want in prompt.wants:
        of_shape = [f for f in found if f.shape == want.shape]
        if prompt.category == "counting" and len(of_shape) != want.count:
            return False, f"expected exactly {want.count} {want.shape}(s), found {len(of_shape)}"
        match = [f for f in of_shape if want.colour is None or f.colour == want.colour]
        if len(match) < want.count:
            seen = ", ".join(f"{f.colour} {f.shape}" for f in of_shape) or "none"
            return False, f"expected {want.text}, found {want.shape}s: {seen}"
        groups.append(match)
    if prompt.relation is not None:
        seen = [relations(a.box, b.box) for a in groups[0] for b in groups[1]]
        if not any(prompt.relation in r for r in seen):
            told = "; ".join(" and ".join(sorted(r)) or "no relation" for r in seen)
            return False, f"expected {prompt.wants[0].shape} {prompt.relation} {prompt.wants[1].shape}, found {told}"
    return True, ""


def check(prompt: Prompt, image, min_area: int | None = None) -> CheckResult:
    """Judge one image for ``prompt``: ``(correct, confidence, found objects, reason)``."""
    found, confidence = read(image, min_area)
    correct, reason = judge(prompt, found)
    return CheckResult(correct, confidence, tuple(found), reason)

"""Scenes: objects on a square pixel grid, the one rasteriser that draws and reads shapes, and a seeded sampler.

A :class:`Scene` lays its objects out on a ``size`` x ``size`` grid: each object fills an integer box (``x``, ``y``,
``size``) with its shape, drawn by :func:`raster` without anti-aliasing. Boxes keep a gap of :data:`GAP` units from
each other and :data:`MARGIN` from the border, so objects never touch and the checker reads them back exactly.
:func:`render` draws at the layout size or any larger one (boxes scale and round; gaps stay at least one pixel).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rss_world.compbench.prompts import BACKGROUND, COLOURS, MAX_OBJECTS, SHAPES, Prompt

GAP, MARGIN = 2, 1
SIZE_RANGE = (0.19, 0.31)  # object side as a fraction of the layout side
MIN_LAYOUT = 24
POSITION_THRESHOLD = 0.1  # GenEval's: centre offsets shrink by this times the summed box sides
_TRIES, _RESTARTS = 50, 500

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 (end exclusive)


@dataclass(frozen=True)
class SceneObject:
    """A shape of one palette colour filling the box with top-left (``x``, ``y``) and side ``size`` (grid units)."""

    shape: str
    colour: str
    x: int
    y: int
    size: int

    def __post_init__(self):
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}, expected one of {SHAPES}")
        if self.colour not in COLOURS:
            raise ValueError(f"unknown colour {self.colour!r}, expected one of {tuple(COLOURS)}")
        if self.size < 1 or self.x < 0 or self.y < 0:
            raise ValueError(f"object box ({self.x}, {self.y}, side {self.size}) is empty or off the grid")

    @property
    def box(self) -> Box:
        return self.x, self.y, self.x + self.size, self.y + self.size

    @property
    def centre(self) -> tuple[float, float]:
        return self.x + self.size / 2, self.y + self.size / 2


@dataclass(frozen=True)
class Scene:
    """Objects on a ``size`` x ``size`` layout grid (the native render size)."""

    objects: tuple[SceneObject, ...]
    size: int = 32

    def __post_init__(self):
        for o in self.objects:
            if o.x + o.size > self.size or o.y + o.size > self.size:
                raise ValueError(f"{o} does not fit the {self.size}x{self.size} grid")

    def replace(self, i: int, **changes) -> Scene:
        """This scene with object ``i`` changed (``shape``, ``colour``, ``x``, ``y`` or ``size``)."""
        objs = list(self.objects)
        objs[i] = SceneObject(**{**objs[i].__dict__, **changes})
        return Scene(tuple(objs), self.size)


def raster(shape: str, width: int, height: int) -> np.ndarray:
    """The ``(height, width)`` boolean mask of ``shape`` filling its box; a pixel is in when its centre is.

    circle: the inscribed ellipse; square: the whole box; triangle: apex up, row ``i`` of ``h`` spans
    ``(i + 1) / h`` of the width, centred. Every shape touches all four sides of its box.
    """
    ys = (np.arange(height) + 0.5)[:, None]
    xs = (np.arange(width) + 0.5)[None, :]
    if shape == "square":
        return np.ones((height, width), dtype=bool)
    if shape == "circle":
        return ((xs - width / 2) / (width / 2)) ** 2 + ((ys - height / 2) / (height / 2)) ** 2 <= 1.0
    if shape == "triangle":
        half = (np.arange(height)[:, None] + 1) / height * width / 2
        return np.abs(xs - width / 2) <= half
    raise ValueError(f"unknown shape {shape!r}, expected one of {SHAPES}")


def relations(a: Box, b: Box, threshold: float = POSITION_THRESHOLD) -> set[str]:
    """Where box ``a`` lies relative to box ``b``, by GenEval's rule (image y grows downwards).

    The centre offset shrinks, per axis, by ``threshold`` times the two boxes' summed sides (never past zero); a
    relation holds when its axis carries more than half of the offset's length (``left of`` when
    ``dx / |offset| < -0.5``, ...). Boxes with (nearly) the same centre have no relation.
    """
    ca = np.array([(a[0] + a[2]) / 2, (a[1] + a[3]) / 2])
    cb = np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2])
    dims = np.array([a[2] - a[0] + b[2] - b[0], a[3] - a[1] + b[3] - b[1]])
    offset = ca - cb
    revised = np.maximum(np.abs(offset) - threshold * dims, 0) * np.sign(offset)
    if np.all(np.abs(revised) < 1e-3):
        return set()
    dx, dy = revised / np.linalg.norm(offset)
    return {r for r, holds in (("left of", dx < -0.5), ("right of", dx > 0.5), ("above", dy < -0.5),
                               ("below", dy > 0.5)) if holds}


def render(scene: Scene, size: int | None = None) -> np.ndarray:
    """Draw ``scene`` as a ``(size, size, 3)`` uint8 RGB image on the plain background.

    Args:
        scene: what to draw.
        size: image side in pixels, at least the layout's (default: the layout's). A box's corner and side each
            scale by ``size / scene.size`` and round (``floor(v + 0.5)``), so boxes stay square and the layout's
            gaps (:data:`GAP` units) and margins stay at least a pixel wide.
    """
    size = scene.size if size is None else int(size)
    if size < scene.size:
        raise ValueError(f"render size {size} is below the scene's layout size {scene.size}; "
                         "sample the scene at the smaller size instead")
    image = np.empty((size, size, 3), dtype=np.uint8)
    image[:] = BACKGROUND
    for o in scene.objects:
        x0, y0, side = (math.floor(v * size / scene.size + 0.5) for v in (o.x, o.y, o.size))
        image[y0:y0 + side, x0:x0 + side][raster(o.shape, side, side)] = COLOURS[o.colour]
    return image


def object_sizes(size: int) -> tuple[int, int]:
    """Smallest and largest object side the sampler uses on a ``size`` grid."""
    return round(SIZE_RANGE[0] * size), round(SIZE_RANGE[1] * size)


def scene_for(prompt: Prompt, rng: np.random.Generator | int, size: int = 32) -> Scene:
    """A random scene that satisfies ``prompt``: exactly its objects, nothing else, on a ``size`` grid.

    Clauses without a colour get a uniformly random palette colour per object. Sides are uniform in
    :func:`object_sizes`, positions uniform where the box keeps its gap and margin. A position prompt's pair is
    redrawn until its relation is the only one that holds (``left of`` and not also ``above``), so the scene shows
    the prompt plainly. ``rng`` is a numpy Generator (advanced in place) or a seed.

    Raises:
        ValueError: ``size`` is below :data:`MIN_LAYOUT`.
        RuntimeError: no layout found (not seen at the supported sizes).
    """
    if size < MIN_LAYOUT:
        raise ValueError(f"layout size {size} is below the minimum {MIN_LAYOUT}")
    items = [(w.shape, w.colour) for w in prompt.wants for _ in range(w.count)]
    if len(items) > MAX_OBJECTS:
        raise ValueError(f"{prompt.text!r} asks for {len(items)} objects, at most {MAX_OBJECTS} fit")
    rng = np.random.default_rng(rng)
    palette = list(COLOURS)
    lo, hi = object_sizes(size)
    for _ in range(_RESTARTS):
        placed: list[SceneObject] = []
        for shape, colour in items:
            colour = colour or palette[rng.integers(len(palette))]
            obj = _place(shape, colour, int(rng.integers(lo, hi + 1)), placed, size, rng)
            if obj is None:
                break
            placed.append(obj)
        else:
            if prompt.relation is None or relations(placed[0].box, placed[1].box) == {prompt.relation}:
                return Scene(tuple(placed), size)
    raise RuntimeError(f"no layout found for {prompt.text!r} on a {size} grid")


def _place(shape: str, colour: str, side: int, placed: list[SceneObject], size: int,
           rng: np.random.Generator) -> SceneObject | None:
    top = size - MARGIN - side
    for _ in range(_TRIES):
        x, y = (int(v) for v in rng.integers(MARGIN, top + 1, size=2))
        if all(x + side + GAP <= o.x or o.x + o.size + GAP <= x or y + side + GAP <= o.y or o.y + o.size + GAP <= y
               for o in placed):
            return SceneObject(shape, colour, x, y, side)
    return None

"""Scenes: the rasteriser, GenEval's relation rule, seeded sampling that satisfies the prompt, exact rendering."""

import numpy as np
import pytest

from rss_world.compbench import COLOURS, Scene, SceneObject, all_prompts, prompt_from_text, relations, render, scene_for
from rss_world.compbench.scenes import GAP, MARGIN, raster


@pytest.mark.parametrize("shape", ["circle", "square", "triangle"])
@pytest.mark.parametrize("w, h", [(5, 5), (6, 6), (10, 10), (7, 12)])
def test_raster_fills_its_box(shape, w, h):
    m = raster(shape, w, h)
    assert m.shape == (h, w) and m[0].any() and m[-1].any() and m[:, 0].any() and m[:, -1].any()


def test_relations_follow_geneval():
    a, b = (0, 10, 6, 16), (20, 10, 26, 16)
    assert relations(a, b) == {"left of"} and relations(b, a) == {"right of"}
    assert relations((10, 0, 16, 6), (10, 20, 16, 26)) == {"above"}
    assert relations((0, 0, 6, 6), (20, 20, 26, 26)) == {"left of", "above"}  # a diagonal holds both
    assert relations(a, (2, 11, 8, 17)) == set()  # within the margin: no relation


def test_scene_for_is_seeded():
    p = prompt_from_text("a red circle and a blue square")
    one = scene_for(p, np.random.default_rng(7))
    assert one == scene_for(p, np.random.default_rng(7))
    assert np.array_equal(render(one), render(scene_for(p, np.random.default_rng(7))))
    assert one != scene_for(p, np.random.default_rng(8))


@pytest.mark.parametrize("size", [24, 32, 64])
def test_scenes_satisfy_their_prompt_with_gaps_and_margins(size):
    rng = np.random.default_rng(0)
    for p in all_prompts()[::3]:
        scene = scene_for(p, rng, size)
        objs = scene.objects
        assert sorted(o.shape for o in objs) == sorted(w.shape for w in p.wants for _ in range(w.count))
        for w in p.wants:
            assert w.colour is None or [o.colour for o in objs if o.shape == w.shape] == [w.colour]
        for i, a in enumerate(objs):
            assert MARGIN <= min(a.x, a.y) and max(a.x, a.y) + a.size <= size - MARGIN
            for b in objs[i + 1:]:
                assert (a.x + a.size + GAP <= b.x or b.x + b.size + GAP <= a.x
                        or a.y + a.size + GAP <= b.y or b.y + b.size + GAP <= a.y)
        if p.relation:
            assert relations(objs[0].box, objs[1].box) == {p.relation}


def test_render_is_exact_and_scales():
    scene = Scene((SceneObject("square", "red", 2, 3, 6), SceneObject("triangle", "blue", 20, 20, 8)), 32)
    img = render(scene)
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8
    assert (img[3:9, 2:8] == COLOURS["red"]).all() and (img[0] == 255).all()
    assert set(map(tuple, img.reshape(-1, 3))) == {(255, 255, 255), COLOURS["red"], COLOURS["blue"]}  # no blending
    big = render(scene, 64)
    assert (big[6:18, 4:16] == COLOURS["red"]).all()
    with pytest.raises(ValueError, match="below the scene's layout size"):
        render(scene, 16)
    with pytest.raises(ValueError, match="does not fit"):
        Scene((SceneObject("square", "red", 30, 0, 6),), 32)
    with pytest.raises(ValueError, match="minimum"):
        scene_for(all_prompts()[0], np.random.default_rng(0), 16)

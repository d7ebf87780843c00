"""The checker: exact on ground-truth renders, wrong on deliberately wrong images in every category, a confidence
that is 1 on clean renders and falls with noise, and clear errors on bad input."""

import time

import numpy as np
import pytest
from PIL import Image

from rss_world.compbench import (
    COLOURS,
    Prompt,
    Scene,
    SceneObject,
    Want,
    all_prompts,
    check,
    prompt_from_text,
    read_objects,
    render,
    sample_prompts,
    scene_for,
)


def test_checker_is_exact_on_1000_ground_truth_renders():
    prompts = sample_prompts(180, seed=0, split="all")  # 1080 images covering all 240 prompts, every scene new
    assert len(prompts) >= 1000 and len(set(prompts)) == 240
    rng = np.random.default_rng(0)
    images = [render(scene_for(p, rng)) for p in prompts]
    start = time.perf_counter()
    results = [check(p, im) for p, im in zip(prompts, images, strict=True)]
    per_image_ms = (time.perf_counter() - start) / len(images) * 1e3
    accuracy = np.mean([r.correct for r in results])
    print(f"checker: {accuracy:.2%} correct on {len(images)} renders of {len(set(prompts))} prompts, "
          f"{per_image_ms:.2f} ms per image")
    assert accuracy >= 0.995
    assert accuracy == 1.0, [(p.text, r.reason) for p, r in zip(prompts, results, strict=True) if not r.correct]
    assert all(r.confidence == 1.0 for r in results)


def test_reading_recovers_the_scene():
    scene = Scene((SceneObject("circle", "green", 2, 2, 8), SceneObject("triangle", "yellow", 20, 4, 7),
                   SceneObject("square", "magenta", 10, 20, 6)), 32)
    found = read_objects(render(scene))
    assert {(f.shape, f.colour, f.box, f.fit) for f in found} == {
        (o.shape, o.colour, o.box, 1.0) for o in scene.objects}
    at64 = read_objects(render(scene, 64))
    assert {(f.shape, f.colour, f.box) for f in at64} == {
        (o.shape, o.colour, tuple(2 * v for v in o.box)) for o in scene.objects}


def _mirror(scene: Scene) -> Scene:
    """Boxes mirrored in both axes (shapes stay upright): every relation turns into its opposite."""
    s = scene.size
    return Scene(tuple(SceneObject(o.shape, o.colour, s - o.x - o.size, s - o.y - o.size, o.size)
                       for o in scene.objects), s)


def _other(options, *taken):
    return next(o for o in options if o not in taken)


def _spoil(prompt: Prompt, scene: Scene, rng) -> list[np.ndarray]:
    """Wrong images for ``prompt``, made from its ground-truth ``scene``."""
    first = scene.objects[0]
    if prompt.category == "single_object":
        return [render(scene.replace(0, shape=_other(("circle", "square", "triangle"), first.shape))),
                render(Scene((), scene.size))]
    if prompt.category == "two_object":
        return [render(Scene(scene.objects[:1], scene.size)), render(Scene(scene.objects[1:], scene.size))]
    if prompt.category == "counting":
        w = prompt.wants[0]
        wrong = [render(scene_for(Prompt("counting", (Want(w.shape, count=n),)), rng))
                 for n in (w.count - 1, w.count + 1) if 2 <= n <= 4]
        return [*wrong, render(Scene(scene.objects[:1], scene.size)),
                render(scene.replace(0, shape=_other(("circle", "square", "triangle"), w.shape)))]
    if prompt.category == "colors":
        return [render(scene.replace(0, colour=_other(COLOURS, first.colour)))]
    if prompt.category == "position":
        mirrored = [np.fliplr(render(scene))] if prompt.relation in ("left of", "right of") else []
        return [*mirrored, render(_mirror(scene)), render(Scene(scene.objects[:1], scene.size))]
    second = scene.objects[1]  # color_attr: swap the colours, or recolour one object
    swapped = scene.replace(0, colour=second.colour).replace(1, colour=first.colour)
    return [render(swapped), render(scene.replace(1, colour=_other(COLOURS, first.colour, second.colour)))]


@pytest.mark.parametrize("category", ["single_object", "two_object", "counting", "colors", "position", "color_attr"])
def test_deliberately_wrong_images_fail(category):
    rng = np.random.default_rng(1)
    prompts = [p for p in all_prompts() if p.category == category][:60]
    n = 0
    for p in prompts:
        scene = scene_for(p, rng)
        assert check(p, render(scene)).correct
        for image in _spoil(p, scene, rng):
            correct, confidence, _, reason = check(p, image)
            assert not correct and reason, p.text
            assert confidence == 1.0  # a clean image: the checker is sure it is wrong
            n += 1
    assert n >= len(prompts)


def test_extra_objects_are_allowed_except_in_counting():
    scene = Scene((SceneObject("circle", "red", 2, 2, 8), SceneObject("square", "blue", 20, 2, 8),
                   SceneObject("circle", "blue", 2, 20, 8)), 32)
    image = render(scene)
    assert check(prompt_from_text("a red circle and a blue square"), image).correct
    assert check(prompt_from_text("a circle left of a square"), image).correct
    assert check(prompt_from_text("two circles"), image).correct
    assert not check(prompt_from_text("three circles"), image).correct


def test_confidence_is_high_on_clean_renders_and_falls_with_noise():
    rng = np.random.default_rng(2)
    prompts = sample_prompts(5, seed=2, split="test")
    images = [render(scene_for(p, rng)) for p in prompts]
    mean = {}
    for sigma in (0, 10, 30, 60):
        noisy = [np.clip(im + rng.normal(0, sigma, im.shape), 0, 255).astype(np.uint8) for im in images]
        mean[sigma] = np.mean([check(p, im).confidence for p, im in zip(prompts, noisy, strict=True)])
    assert mean[0] == 1.0 and mean[0] > mean[10] > mean[30] > mean[60]
    assert mean[10] > 0.9 and mean[60] < 0.5


def test_confidence_sees_specks_and_odd_blobs():
    scene = Scene((SceneObject("square", "red", 4, 4, 8),), 32)
    specks = render(scene)
    specks[[20, 25, 28], [20, 3, 28]] = COLOURS["blue"]  # three single pixels: below min_area, not objects
    correct, confidence, found, _ = check(prompt_from_text("a square"), specks)
    assert correct and len(found) == 1 and 0.9 < confidence < 1.0
    line = render(scene)
    line[24, 2:30] = COLOURS["green"]  # a 1-pixel line: a component, but no shape of the vocabulary
    found = read_objects(line)
    assert sorted((f.shape or "-", f.colour) for f in found) == [("-", "green"), ("square", "red")]
    assert check(prompt_from_text("a square"), line).confidence < 0.1


def test_image_formats_and_bad_input():
    image = render(Scene((SceneObject("circle", "cyan", 10, 10, 9),), 32))
    p = prompt_from_text("a cyan circle")
    assert check(p, Image.fromarray(image)).correct and check(p, image / 255.0).correct
    with pytest.raises(ValueError, match="channels first"):
        check(p, image.transpose(2, 0, 1))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        check(p, image.astype(np.float32))
    with pytest.raises(ValueError, match="dtype"):
        check(p, image.astype(np.int64))

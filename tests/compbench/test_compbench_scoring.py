"""Scores and intervals on a known mix, the contact sheet, and the package's imports (numpy and PIL only)."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from rss_world.compbench import (
    CATEGORIES,
    CheckResult,
    Scene,
    all_prompts,
    render,
    sample_prompts,
    scene_for,
    score,
    summarize,
    wilson,
    write_contact_sheet,
)


def test_wilson_matches_known_values():
    assert wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert wilson(0, 0) == (0.0, 1.0)


def test_summarize_a_known_mix():
    prompts, results = [], []
    for i, category in enumerate(CATEGORIES):  # category i: 10 images, 2 * i of them correct
        p = next(p for p in all_prompts() if p.category == category)
        prompts += [p] * 10
        results += [CheckResult(j < 2 * i, 0.5 if j % 2 else 1.0, (), "") for j in range(10)]
    out = summarize(prompts, results)
    assert [out[c] for c in CATEGORIES] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert out["overall"] == pytest.approx(0.5)
    assert out["n"] == dict.fromkeys(CATEGORIES, 10)
    assert out["interval"]["position"] == pytest.approx(wilson(8, 10))
    lo, hi = out["interval"]["overall"]
    assert lo < 0.5 < hi and hi - lo < out["interval"]["colors"][1] - out["interval"]["colors"][0]
    assert out["confidence"]["overall"] == pytest.approx(0.75)
    partial = summarize(prompts[:20], results[:20])
    assert "overall" not in partial and set(partial["n"]) == {"single_object", "two_object"}


def test_score_checks_images():
    prompts = sample_prompts(4, seed=0, split="test")
    rng = np.random.default_rng(0)
    images = [render(scene_for(p, rng)) for p in prompts]
    blank = render(Scene((), 32))
    images[::2] = [blank] * len(images[::2])  # every other image shows nothing
    out = score(prompts, images)
    assert [out[c] for c in CATEGORIES] == [0.5] * 6 and out["overall"] == 0.5
    with pytest.raises(ValueError, match="prompts but"):
        score(prompts, images[:-1])


def test_contact_sheet(tmp_path):
    prompts = sample_prompts(1, seed=0, split="test")
    rng = np.random.default_rng(0)
    images = [render(scene_for(p, rng)) for p in prompts]
    images[0] = render(Scene((), 32))
    path = tmp_path / "sheet.png"
    write_contact_sheet(path, prompts, images, columns=4, tile=64)
    with Image.open(path) as sheet:
        assert sheet.size[0] == 4 * (64 + 8) and sheet.size[1] > 2 * 64
        top_left = np.asarray(sheet.convert("RGB"))[2, 2]
    assert tuple(top_left) == (210, 50, 50)  # the blank first image failed: a red frame
    assert [p.name for p in tmp_path.iterdir()] == ["sheet.png"]  # no temporary file left behind
    with pytest.raises(ValueError, match="do not match"):
        write_contact_sheet(path, prompts, images[:-1])


def test_package_imports_only_numpy_and_pil():
    code = ("import sys, rss_world.compbench\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'diffusers', 'scipy', 'matplotlib',"
            " 'gymnasium', 'transformers', 'imageio'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"

"""rss_world.video: episode videos (GIF, MP4), the one frame writer, filmstrips and routing figures, by content."""

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

from rss_world.envs.oracle import DOWN, RIGHT
from rss_world.planners import GatePlanner, SearchPlanner, SearchPlannerConfig
from rss_world.protocols import run_planner
from rss_world.video import compose, episode_frames, filmstrip, routing_figures, write_frames, write_video

PANEL, GAP = 128, 4  # the video's panel side and gap


def upscaled(frame: np.ndarray, side: int) -> np.ndarray:
    return np.asarray(Image.fromarray(frame).resize((side, side), Image.NEAREST)).astype(int)


def panels(img: np.ndarray, side: int = PANEL) -> list[np.ndarray]:
    """The real | imagined | difference panels of one video frame."""
    return [img[GAP:GAP + side, GAP + k * (side + GAP):GAP + k * (side + GAP) + side].astype(int) for k in range(3)]


def off(a: np.ndarray, b: np.ndarray) -> float:
    """Share of pixels that differ by more than 40 in some channel."""
    return float((np.abs(a - b).max(-1) > 40).mean())


@pytest.fixture
def traces(tiny_model, maps3, scripted):
    """A tiny-model episode per map, and a scripted walk to the goal of the first (DOWN, RIGHT, DOWN, RIGHT)."""
    walk = run_planner(scripted([DOWN, RIGHT, DOWN, RIGHT]), maps3[:1], "closed")
    return [*run_planner(GatePlanner(tiny_model), maps3, "closed"), *walk]


def test_compose_lays_out_real_imagined_and_difference():
    real = np.zeros((48, 48, 3), np.uint8)
    real[:16, :16] = 200
    imagined = np.full((48, 48, 3), 50, np.uint8)
    img = compose(real, imagined, "caption")
    assert img.shape == (PANEL + 2 * GAP + 24, 3 * PANEL + 4 * GAP, 3) and img.dtype == np.uint8
    r, i, d = panels(img)
    assert np.array_equal(r, upscaled(real, PANEL)) and np.array_equal(i, upscaled(imagined, PANEL))
    assert np.array_equal(d, np.abs(r - i))
    assert img[PANEL + 2 * GAP:].max() > 150  # caption text drawn in white below the panels
    assert not compose(None, imagined, "x")[GAP:GAP + PANEL, GAP:GAP + PANEL].any()  # missing frame: black


def test_gif_holds_every_step_of_every_episode(traces, tmp_path):
    expected = sum(max(len(t.real_frames), len(t.imagined_frames)) for t in traces)
    path = tmp_path / "ep.gif"
    assert write_video(traces, path, fps=4) == expected
    video = iio.imread(path, index=None)
    assert video.shape == (expected, PANEL + 2 * GAP + 24, 3 * PANEL + 4 * GAP, 3)
    start = 0
    for t in traces:  # closed loop: real and imagined frames aligned, one video frame each
        assert len(episode_frames(t)) == len(t.real_frames) == len(t.imagined_frames)
        for k, (real, imagined) in enumerate(zip(t.real_frames, t.imagined_frames)):
            r, i, d = panels(video[start + k])
            assert off(r, upscaled(real, PANEL)) < 0.001, k  # the GIF palette keeps the real frame's colours
            if k and not np.array_equal(real, t.real_frames[k - 1]):
                assert off(r, upscaled(t.real_frames[k - 1], PANEL)) > 0.01, k  # in order
            assert np.abs(i - upscaled(imagined, PANEL)).mean() < 10.0, k  # noisy imagined frames quantize worse
            assert np.abs(d - np.abs(r - i)).mean() < 10.0, k
        start += len(t.real_frames)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ep.gif"]  # no temporary file left behind


def test_mp4_and_bad_paths(traces, tmp_path):
    path = tmp_path / "ep.mp4"
    n = write_video(traces[:1], path, fps=4)
    video = iio.imread(path, index=None)
    assert video.shape == (n, PANEL + 2 * GAP + 24, 3 * PANEL + 4 * GAP, 3)
    r, _, _ = panels(video[0])
    assert np.abs(r - upscaled(traces[0].real_frames[0], PANEL)).mean() < 12  # lossy H.264
    with pytest.raises(ValueError, match=".gif or .mp4"):
        write_video(traces, tmp_path / "ep.avi")
    with pytest.raises(ValueError, match="no frames"):
        write_frames([], tmp_path / "empty.gif")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ep.mp4"]


def test_write_frames_writes_the_frames_given(tmp_path):
    frames = [np.full((32, 48, 3), v, np.uint8) for v in (0, 120, 240)]
    assert write_frames(frames, tmp_path / "sub" / "f.gif", fps=5) == 3
    video = iio.imread(tmp_path / "sub" / "f.gif", index=None)
    assert video.shape == (3, 32, 48, 3) and [int(f.mean()) for f in video] == [0, 120, 240]


def test_filmstrip_shows_each_plan_frame(tiny_model, traces, tmp_path):
    cfg = SearchPlannerConfig(goal_threshold=1.1, hole_threshold=1.1, max_expansions=8)
    plan = SearchPlanner(tiny_model, cfg).plan(traces[0].real_frames[0])
    img = iio.imread(filmstrip(plan.frames, tmp_path / "strip.png", panel=64, actions=plan.actions))
    assert img.shape == (64 + 24, len(plan.frames) * 68 + 4, 3)
    for k, frame in enumerate(plan.frames):
        assert np.array_equal(img[:64, 4 + 68 * k:68 * (k + 1)], upscaled(frame, 64)), k
        assert img[64:, 4 + 68 * k:68 * (k + 1)].max() > 150, k  # the step label
    with pytest.raises(ValueError, match="at least one frame"):
        filmstrip([], tmp_path / "none.png")


def test_routing_figures_draw_expert_use_and_latent_pca(tiny_model, traces, tmp_path):
    starts = np.stack([t.real_frames[0] for t in traces])
    usage, pca = routing_figures(tiny_model, starts, tmp_path, steps=3, prefix="p")
    assert [usage.name, pca.name] == ["p_expert_usage.png", "p_latent_pca.png"]
    bars, lines = iio.imread(usage)[..., :3], iio.imread(pca)[..., :3]
    assert bars.shape == (352, 462, 3) and lines.shape == (484, 572, 3)  # figure size x 110 dpi
    for img in (bars, lines):
        assert len(np.unique(img.reshape(-1, 3), axis=0)) > 20  # drawn, not blank
    # Stacked bars in matplotlib's C0..C3 colours: at least one expert (= action) is picked at some step.
    tab = np.array([[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40]])
    assert any((np.abs(bars - c).sum(-1) < 10).sum() > 200 for c in tab)

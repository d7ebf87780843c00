"""rss_world.video: episode videos (GIF, MP4), the one frame writer, filmstrips and routing figures, by content.

Every video and PNG is read back from disk: panels are checked to be at least 256 pixels high with grid cells at least
16 pixels on screen at any map size, and the difference panel to show where the real and imagined frames differ.
"""

import imageio.v2 as imageio2
import imageio.v3 as iio
import numpy as np
import pytest

from rss_world.envs.oracle import DOWN, RIGHT
from rss_world.envs.render import render_grid
from rss_world.planners import GatePlanner, SearchPlanner, SearchPlannerConfig
from rss_world.protocols import EpisodeTrace, run_planner
from rss_world.video import (
    compose,
    episode_frames,
    filmstrip,
    filmstrip_path,
    heat_map,
    longest_episodes,
    panel_box,
    panel_side,
    routing_figures,
    upscale_factor,
    write_filmstrip,
    write_frames,
    write_video,
)

GAP, LINE, BG = 4, 16, 32  # the filmstrip's margin, text line and background (as drawn by rss_world.video)


def enlarged(frame: np.ndarray, side: int) -> np.ndarray:
    """``frame`` enlarged by the largest whole factor that fits ``side`` and centred, as the panels show it."""
    k = side // len(frame)
    out = np.full((side, side, 3), BG, int)
    o = (side - k * len(frame)) // 2
    out[o:o + k * len(frame), o:o + k * len(frame)] = np.kron(frame, np.ones((k, k, 1), int))
    return out


def panels(img: np.ndarray, side: int) -> list[np.ndarray]:
    """The real | imagined | difference panels of one video frame."""
    return [img[panel_box(k, side)].astype(int) for k in range(3)]


def off(a: np.ndarray, b: np.ndarray) -> float:
    """Share of pixels that differ by more than 40 in some channel."""
    return float((np.abs(a - b).max(-1) > 40).mean())


def walk_trace(desc: tuple[str, ...], cells: list[tuple[int, int]], cell_px: int, imagined_cells=None) -> EpisodeTrace:
    """A rendered episode through ``cells``; the imagined frames show ``imagined_cells`` (default: the same)."""
    real = [render_grid(desc, c, cell_px) for c in cells]
    imagined = [render_grid(desc, c, cell_px) for c in (imagined_cells or cells)]
    n = len(cells) - 1
    return EpisodeTrace("m", len(desc), actions=[DOWN] * n, real_frames=real, imagined_frames=imagined,
                        on_optimal=[True] * n)


MAP3 = ("SFF", "FHF", "FFG")
MAP32 = ("S" + "F" * 31, *["F" * 32] * 30, "F" * 31 + "G")


@pytest.fixture
def traces(tiny_model, maps3, scripted):
    """A tiny-model episode per map, and a scripted walk to the goal of the first (DOWN, RIGHT, DOWN, RIGHT)."""
    walk = run_planner(scripted([DOWN, RIGHT, DOWN, RIGHT]), maps3[:1], "closed")
    return [*run_planner(GatePlanner(tiny_model), maps3, "closed"), *walk]


def test_compose_lays_out_real_imagined_and_difference():
    real = np.zeros((48, 48, 3), np.uint8)
    real[:16, :16] = 200
    imagined = np.full((48, 48, 3), 50, np.uint8)
    img = compose(real, imagined, "caption", size=3)
    side = 48 * upscale_factor(48, 3)
    assert side == 288 and img.dtype == np.uint8 and img.shape[0] % 16 == 0 and img.shape[1] % 16 == 0
    assert img.shape[1] >= 3 * side and img.shape[0] > side + 2 * LINE
    r, i, d = panels(img, side)
    assert np.array_equal(r, enlarged(real, side)) and np.array_equal(i, enlarged(imagined, side))
    assert np.array_equal(d, enlarged(heat_map(real, imagined), side))
    assert img[:panel_box(0, side)[0].start].max() > 150  # panel labels and the colour scale drawn above
    assert img[panel_box(0, side)[0].stop:].max() > 150  # caption text drawn below the panels
    missing = panels(compose(None, imagined, "x", size=3), side)
    assert (missing[0] == BG).all() and (missing[2] == BG).all()  # missing frame: no panel, no difference
    with pytest.raises(ValueError, match="too small"):
        compose(real, imagined, "x", size=3, panel=128)
    with pytest.raises(ValueError, match="differ in shape"):
        compose(real, imagined[:32, :32], "x", size=3)
    with pytest.raises(ValueError, match="whole number of cells"):
        compose(real, imagined, "x", size=5)


@pytest.mark.parametrize(("sizes", "cell_px"), [((3,), 4), ((32,), 4), ((3, 32), 4), ((2, 5), 16)])
def test_on_screen_cell_size_at_any_map_size(sizes, cell_px, tmp_path):
    maps = {3: MAP3, 32: MAP32, 2: ("SF", "FG"), 5: ("SFFFF", "FHFHF", "FFFFF", "HFFFH", "FFFFG")}
    ts = [walk_trace(maps[s], [(0, 0), (1, 0)], cell_px) for s in sizes]
    path = tmp_path / "v.gif"
    assert write_video(ts, path) == 2 * len(ts)
    video = iio.imread(path, index=None)
    side = panel_side(ts)
    assert side >= 256 and len({f.shape for f in video}) == 1
    for j, t in enumerate(ts):
        frame = t.real_frames[0]
        k = side // len(frame)  # the whole factor the frame is enlarged by
        assert len(frame) * k >= 256 and cell_px * k >= 16, (t.size, k)  # panel height and cell on screen
        r, i, _ = panels(video[2 * j], side)
        assert off(r, enlarged(frame, side)) < 0.001 and off(i, enlarged(t.imagined_frames[0], side)) < 0.001
    # the numbers the report quotes: a 3x3 map at 4 px per cell shows 88-pixel cells in 264-pixel panels, a 32x32
    # map at 16 px per cell 16-pixel cells in 512-pixel panels
    assert (12 * upscale_factor(12, 3), 4 * upscale_factor(12, 3)) == (264, 88)
    assert (512 * upscale_factor(512, 32), 16 * upscale_factor(512, 32)) == (512, 16)


def test_difference_panel_shows_where_the_frames_differ(tmp_path):
    same = walk_trace(MAP3, [(0, 0), (1, 0)], 4)
    moved = walk_trace(MAP3, [(0, 0), (1, 0)], 4, imagined_cells=[(0, 0), (2, 0)])
    write_video([same, moved], tmp_path / "d.gif")
    video = iio.imread(tmp_path / "d.gif", index=None).astype(int)
    side = panel_side([same])
    for f in video[:3]:  # equal frames: a uniform, black difference panel
        d = panels(f, side)[2]
        assert d.max() <= 8 and np.ptp(d) <= 8
    d = panels(video[3], side)[2]  # the agent imagined one cell too far down
    k, cell = side // 12, 4 * (side // 12)
    lit = d.max(-1) > 60
    assert 0.01 < lit.mean() < 0.3 and len(np.unique(d.reshape(-1, 3), axis=0)) > 2  # not uniform
    rows = np.flatnonzero(lit.any(1))
    assert rows.min() >= cell - k and rows.max() < 3 * cell + k  # only in the two cells the agent is in
    assert not lit[:, 2 * cell:].any()  # the agent's column only


def test_a_faint_difference_is_visible():
    real = render_grid(MAP3, (0, 0), 4)
    imagined = real.copy()
    imagined[4:8, 4:8] = np.clip(imagined[4:8, 4:8].astype(int) + 4, 0, 255)  # 4 of 255 in one cell: invisible as is
    side = 12 * upscale_factor(12, 3)
    d = panels(compose(real, imagined, "", 3), side)[2]
    lit = d.max(-1) > 60  # shown amplified on the heat map's scale
    k = side // 12
    assert lit[4 * k:8 * k, 4 * k:8 * k].all() and lit.sum() == (4 * k) ** 2


def test_longest_episodes_picks_the_longest_plans():
    def trace(name: str, taken: int, imagined: int) -> EpisodeTrace:
        return EpisodeTrace(name, 3, actions=[0] * taken, imagined_frames=[np.zeros((3, 3, 3), np.uint8)] * imagined)

    ts = [trace("a", 1, 2), trace("b", 4, 5), trace("c", 2, 7), trace("d", 4, 0), trace("e", 0, 0)]
    assert [t.map_id for t in longest_episodes(ts, 3)] == ["c", "b", "d"]  # open-loop plan of 6 beats 4 taken
    assert [t.map_id for t in longest_episodes(ts, 9)] == ["c", "b", "d", "a", "e"]
    assert longest_episodes(ts, 0) == []
    with pytest.raises(ValueError, match=">= 0"):
        longest_episodes(ts, -1)


def test_gif_holds_every_step_of_every_episode(traces, tmp_path):
    expected = sum(max(len(t.real_frames), len(t.imagined_frames)) for t in traces)
    path = tmp_path / "ep.gif"
    assert write_video(traces, path, fps=4) == expected
    video = iio.imread(path, index=None)
    side = panel_side(traces)
    assert side == 288 and video.shape[:2] == (expected, compose(*traces[0].real_frames[:2], "", 3).shape[0])
    start = 0
    for t in traces:  # closed loop: real and imagined frames aligned, one video frame each
        assert len(episode_frames(t)) == len(t.real_frames) == len(t.imagined_frames)
        for k, (real, imagined) in enumerate(zip(t.real_frames, t.imagined_frames)):
            r, i, d = panels(video[start + k], side)
            assert off(r, enlarged(real, side)) < 0.001, k  # the GIF palette keeps the real frame's colours
            if k and not np.array_equal(real, t.real_frames[k - 1]):
                assert off(r, enlarged(t.real_frames[k - 1], side)) > 0.01, k  # in order
            assert np.abs(i - enlarged(imagined, side)).mean() < 10.0, k  # noisy imagined frames quantize worse
            assert np.abs(d - enlarged(heat_map(real, imagined), side)).mean() < 12.0, k
        start += len(t.real_frames)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ep.gif"]  # no temporary file left behind


def test_mp4_and_bad_paths(traces, tmp_path):
    path = tmp_path / "ep.mp4"
    n = write_video(traces[:1], path, fps=4)
    video = iio.imread(path, index=None)
    assert video.shape == (n, *compose(*traces[0].real_frames[:2], "", 3).shape)  # sides multiples of 16: no resize
    r, _, _ = panels(video[0], 288)
    assert np.abs(r - enlarged(traces[0].real_frames[0], 288)).mean() < 12  # lossy H.264
    with pytest.raises(ValueError, match=".gif or .mp4"):
        write_video(traces, tmp_path / "ep.avi")
    with pytest.raises(ValueError, match="no frames"):
        write_frames([], tmp_path / "empty.gif")
    with pytest.raises(ValueError, match="no frames"):
        write_video([], tmp_path / "empty.gif")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ep.mp4"]


def test_write_frames_writes_the_frames_given(tmp_path):
    frames = [np.full((32, 48, 3), v, np.uint8) for v in (0, 120, 240)]
    assert write_frames(frames, tmp_path / "sub" / "f.gif", fps=5) == 3
    video = iio.imread(tmp_path / "sub" / "f.gif", index=None)
    assert video.shape == (3, 32, 48, 3) and [int(f.mean()) for f in video] == [0, 120, 240]


def test_a_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    frames = [np.full((16, 16, 3), v, np.uint8) for v in (0, 240)]
    write_frames(frames, tmp_path / "v.gif")
    before = (tmp_path / "v.gif").read_bytes()

    def crash(path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"GIF89a half")
        raise OSError("disk full")

    monkeypatch.setattr(imageio2, "mimwrite", crash)
    with pytest.raises(OSError, match="disk full"):
        write_frames(frames[::-1], tmp_path / "v.gif")
    with pytest.raises(OSError, match="disk full"):
        write_video([walk_trace(MAP3, [(0, 0)], 4)], tmp_path / "new.gif")
    monkeypatch.setattr("PIL.Image.Image.save", lambda self, path, **kw: crash(path))
    with pytest.raises(OSError, match="disk full"):
        write_filmstrip([walk_trace(MAP3, [(0, 0)], 4)], tmp_path / "new.filmstrip.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.gif"]  # no temporary, no partial file
    assert (tmp_path / "v.gif").read_bytes() == before  # the old video is still whole


def test_filmstrip_shows_each_plan_frame(tiny_model, traces, tmp_path):
    cfg = SearchPlannerConfig(goal_threshold=1.1, hole_threshold=1.1, max_expansions=8)
    plan = SearchPlanner(tiny_model, cfg).plan(traces[0].real_frames[0])
    img = iio.imread(filmstrip(plan.frames, tmp_path / "strip.png", 3, actions=plan.actions))
    n, side = len(plan.frames), 288
    assert img.shape == (GAP + LINE + GAP + side + LINE + GAP, GAP + n * (side + GAP), 3)
    for k, frame in enumerate(plan.frames):
        y, x = 2 * GAP + LINE, GAP + k * (side + GAP)
        assert np.array_equal(img[y:y + side, x:x + side], enlarged(frame, side)), k
        assert img[y + side:y + side + LINE, x:x + side].max() > 150, k  # the step label
    with pytest.raises(ValueError, match="at least one frame"):
        filmstrip([], tmp_path / "none.png", 3)


@pytest.mark.parametrize("per_row", [8, 2])
def test_filmstrip_beside_the_video_has_every_imagined_frame(traces, per_row, tmp_path):
    shown = longest_episodes(traces, 2)
    path = write_filmstrip(shown, filmstrip_path(tmp_path / "plan.gif"), per_row=per_row)
    assert path == tmp_path / "plan.filmstrip.png"
    img = iio.imread(path)
    side, row = 288, 288 + LINE + GAP  # 3x3 maps at 16 px per cell: enlarged 6 times
    rows = [-(-len(t.imagined_frames) // per_row) for t in shown]
    cols = min(per_row, max(len(t.imagined_frames) for t in shown))
    assert img.shape == (GAP + sum(LINE + GAP + r * row for r in rows), GAP + cols * (side + GAP), 3)
    y = GAP
    for t, r in zip(shown, rows):
        for k, frame in enumerate(t.imagined_frames):  # one thumbnail per imagined frame, in order
            top, x = y + LINE + GAP + (k // per_row) * row, GAP + (k % per_row) * (side + GAP)
            assert np.array_equal(img[top:top + side, x:x + side], enlarged(frame, side)), k
        y += LINE + GAP + r * row
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.filmstrip.png"]


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

"""Videos and figures of planning episodes.

* :func:`write_frames`: the project's one video writer (GIF or MP4 via imageio, written atomically).
* :func:`compose` / :func:`episode_frames` / :func:`write_video`: per step, panels real | imagined | difference side
  by side under labelled headers, with a caption (episode, map size, step, action, whether it is on a shortest path).
  Frames are enlarged by a whole nearest-neighbour factor so that a panel is at least :data:`MIN_PANEL` pixels high
  and a grid cell at least :data:`MIN_CELL` pixels on screen, at every map size; the difference panel is a heat map
  of ``max over RGB |real − imagined|`` times :data:`DIFF_GAIN` (its colour bar is drawn in the header).
* :func:`longest_episodes`: the episodes with the longest plans, the ones worth showing.
* :func:`filmstrip` / :func:`write_filmstrip`: PNG thumbnails of imagined plans, one block of rows per episode, next
  to the video at :func:`filmstrip_path`.
* :func:`routing_figures`: expert use per latent step and PCA of the latent trajectories (the paper's
  Figures 3-4) for gate-driven rollouts, drawn with :mod:`rss_world.plots`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from rss_world.envs.oracle import ACTION_NAMES
from rss_world.io import atomic_write

VIDEO_EXTS = (".gif", ".mp4")
MIN_PANEL = 256  # a panel (and a filmstrip thumbnail) is at least this many pixels high ...
MIN_CELL = 16  # ... and a grid cell at least this many pixels on screen
DIFF_GAIN = 4  # the difference heat map multiplies |real − imagined| by this: full colour at 256 / 4 = 64 of 255
_GAP, _LINE, _BG = 4, 16, 32  # margin, text line height, background grey
_TOP = 2 * _GAP + 2 * _LINE  # panels start under a two-line header
# Heat-map colours for 0..255: 0 is black, the smallest difference already dark violet, then red, orange, pale yellow.
_STOPS = (0, 1, 64, 128, 192, 255)
_COLOURS = np.array([(0, 0, 0), (48, 20, 120), (130, 30, 150), (220, 50, 80), (250, 160, 30), (255, 255, 190)])
HEAT = np.stack([np.interp(np.arange(256), _STOPS, _COLOURS[:, c]) for c in range(3)], -1).round().astype(np.uint8)


@lru_cache(maxsize=1)
def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=12)


def _ceil16(n: int) -> int:
    return -(-n // 16) * 16  # H.264 wants both sides a multiple of its 16-pixel macro block


def upscale_factor(frame_px: int, size: int) -> int:
    """The smallest whole nearest-neighbour factor that shows a ``frame_px``-pixel frame of a ``size`` x ``size``
    map at least :data:`MIN_PANEL` pixels high with cells at least :data:`MIN_CELL` pixels.

    Raises:
        ValueError: the frame is not a whole number of pixels per cell.
    """
    if size < 1 or frame_px < size or frame_px % size:
        raise ValueError(f"a {frame_px}-pixel frame is not a whole number of cells of a {size}x{size} map")
    return max(1, -(-MIN_PANEL // frame_px), -(-MIN_CELL // (frame_px // size)))


def _first_frame(trace) -> np.ndarray | None:
    frames = trace.real_frames or trace.imagined_frames
    return frames[0] if len(frames) else None


def panel_side(traces: Sequence) -> int:
    """The panel side (pixels) that shows every episode of ``traces`` by the rules of :func:`upscale_factor`: the
    largest of their smallest enlarged frames (smaller maps are then enlarged further to fill it, or centred).

    Raises:
        ValueError: no trace has a frame.
    """
    sides = [len(f) * upscale_factor(len(f), t.size) for t in traces if (f := _first_frame(t)) is not None]
    if not sides:
        raise ValueError("no frames to write")
    return max(sides)


def panel_box(k: int, panel: int) -> tuple[slice, slice]:
    """Rows and columns of panel ``k`` (0 real, 1 imagined, 2 difference) in a frame of :func:`compose`."""
    x = _GAP + k * (panel + _GAP)
    return slice(_TOP, _TOP + panel), slice(x, x + panel)


def _enlarge(frame: np.ndarray, side: int) -> np.ndarray:
    """``frame`` enlarged by the largest whole factor that fits ``side``, centred on the background."""
    k = side // len(frame)
    big = np.repeat(np.repeat(np.asarray(frame, np.uint8), k, 0), k, 1)
    out = np.full((side, side, 3), _BG, np.uint8)
    o = (side - len(big)) // 2
    out[o:o + len(big), o:o + len(big)] = big
    return out


def heat_map(real: np.ndarray, imagined: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` colours of ``min(255, DIFF_GAIN · max over RGB |real − imagined|)`` on :data:`HEAT`: black
    where the frames agree."""
    d = np.abs(np.asarray(real, np.int16) - np.asarray(imagined, np.int16)).max(-1)
    return HEAT[np.minimum(d * DIFF_GAIN, 255)]


def _check_frame(frame: np.ndarray | None, size: int, shape: tuple | None) -> tuple | None:
    if frame is None:
        return shape
    s = np.shape(frame)
    if len(s) != 3 or s[2] != 3 or s[0] != s[1]:
        raise ValueError(f"frames must be square (H, W, 3) images, got shape {s}")
    if shape is not None and s != shape:
        raise ValueError(f"real and imagined frames differ in shape: {shape} and {s}")
    upscale_factor(s[0], size)
    return s


def compose(real: np.ndarray | None, imagined: np.ndarray | None, caption: str, size: int,
            panel: int | None = None) -> np.ndarray:
    """One video frame: real | imagined | difference heat map, labelled above, with a caption below.

    Args:
        real: ``(H, H, 3)`` uint8 real frame (None: a background panel).
        imagined: the imagined frame, same shape (None: a background panel).
        caption: text drawn under the panels.
        size: the map's side in cells (sets the enlargement, see :func:`upscale_factor`).
        panel: side of each panel in pixels (default: the smallest the rules allow for this map); frames are
            enlarged by the largest whole factor that fits and centred.

    Returns:
        ``(H', W', 3)`` uint8 with both sides multiples of 16; :func:`panel_box` locates the panels.

    Raises:
        ValueError: no frame, frames of different or non-square shapes, or a panel too small for the rules.
    """
    shape = _check_frame(imagined, size, _check_frame(real, size, None))
    if shape is None:
        raise ValueError("compose needs a real or an imagined frame")
    need = shape[0] * upscale_factor(shape[0], size)
    panel = need if panel is None else panel
    if panel < need:
        raise ValueError(f"a {panel}-pixel panel is too small for a {size}x{size} map of {shape[0]} pixels: it needs "
                         f"{need} ({MIN_PANEL}+ pixels high, {MIN_CELL}+ pixels per cell)")
    blank = np.full((panel, panel, 3), _BG, np.uint8)
    both = real is not None and imagined is not None
    tiles = [blank if f is None else _enlarge(f, panel) for f in (real, imagined)]
    tiles.append(_enlarge(heat_map(real, imagined), panel) if both else blank)
    canvas = np.full((_ceil16(_TOP + panel + 2 * _GAP + _LINE), _ceil16(3 * panel + 4 * _GAP), 3), _BG, np.uint8)
    for k, tile in enumerate(tiles):
        canvas[panel_box(k, panel)] = tile
    x2 = panel_box(2, panel)[1].start
    bar0, bar1 = x2 + 14, x2 + panel - 30
    canvas[_GAP + _LINE + 3:_GAP + 2 * _LINE - 3, bar0:bar1] = HEAT[np.linspace(0, 255, bar1 - bar0).astype(int)]
    pil = Image.fromarray(canvas)
    draw, font, white = ImageDraw.Draw(pil), _font(), (255, 255, 255)
    for k, label in enumerate(("real", "imagined", f"|real - imagined| x{DIFF_GAIN}, max over RGB")):
        draw.text((panel_box(k, panel)[1].start, _GAP), label, fill=white, font=font)
    draw.text((x2, _GAP + _LINE), "0", fill=white, font=font)
    draw.text((bar1 + 3, _GAP + _LINE), f"{256 // DIFF_GAIN}+", fill=white, font=font)
    draw.text((_GAP, _TOP + panel + _GAP), caption, fill=white, font=font)
    return np.asarray(pil)


def episode_frames(trace, panel: int | None = None, title: str = "") -> list[np.ndarray]:
    """Video frames of one :class:`~rss_world.protocols.EpisodeTrace` (``max(real, imagined)`` frames).

    Args:
        trace: the episode.
        panel: panel side in pixels (default: the smallest the rules allow for its map).
        title: put before every caption (e.g. ``"episode 2/3"``).
    """
    real, imag = trace.real_frames, trace.imagined_frames
    n = max(len(real), len(imag))
    out = []
    for k in range(n):
        rf = real[min(k, len(real) - 1)] if real else None
        im = imag[min(k, len(imag) - 1)] if imag else None
        if k == 0:
            what = "start"
        elif k <= len(trace.actions):
            what = f"{ACTION_NAMES[trace.actions[k - 1]]} ({'on' if trace.on_optimal[k - 1] else 'OFF'} optimal path)"
        else:
            what = "plan continues (episode over)"
        if k >= len(imag) and imag:
            what += " | plan ended"
        head = f"{title}: " if title else ""
        out.append(compose(rf, im, f"{head}{trace.size}x{trace.size} step {k}: {what}", trace.size, panel))
    return out


def plan_length(trace) -> int:
    """Actions an episode's video shows: those taken, or those planned when the open-loop plan is longer."""
    return max(len(trace.actions), len(trace.imagined_frames) - 1)


def longest_episodes(traces: Sequence, n: int) -> list:
    """The ``n`` episodes with the longest plans (:func:`plan_length`), longest first; ties keep their order.

    Raises:
        ValueError: ``n`` is negative.
    """
    if n < 0:
        raise ValueError(f"the number of episodes to show must be >= 0, got {n}")
    order = sorted(range(len(traces)), key=lambda i: -plan_length(traces[i]))  # sorted() is stable
    return [traces[i] for i in order[:n]]


def _video_ext(path: str | os.PathLike) -> str:
    ext = Path(path).suffix.lower()
    if ext not in VIDEO_EXTS:
        raise ValueError(f"video path must end in .gif or .mp4, got {Path(path).name!r}")
    return ext


def write_frames(frames: Sequence[np.ndarray], path: str | os.PathLike, fps: float = 2.0) -> int:
    """Write ``(H, W, 3)`` uint8 frames as a looping GIF or an H.264 MP4, atomically; return the number of frames.

    Raises:
        ValueError: the extension is not .gif or .mp4, or there are no frames.
    """
    import imageio.v2 as imageio

    ext = _video_ext(path)
    if len(frames) == 0:
        raise ValueError("no frames to write")

    def write(tmp: str) -> None:
        if ext == ".gif":
            imageio.mimwrite(tmp, frames, duration=1000.0 / fps, loop=0)
            return
        with imageio.get_writer(tmp, fps=fps, macro_block_size=16, codec="libx264", quality=8) as w:
            for f in frames:
                w.append_data(f)

    atomic_write(path, write)  # the temporary file keeps the suffix, from which imageio picks the format
    return len(frames)


def write_video(traces: Sequence, path: str | os.PathLike, fps: float = 2.0, panel: int | None = None) -> int:
    """Write the episodes of ``traces`` one after another to a GIF or MP4; return the number of frames.

    Every episode's panels share one side (default :func:`panel_side`), so maps of different sizes compose.

    Raises:
        ValueError: the extension is not .gif or .mp4, there is nothing to write, or ``panel`` is too small.
    """
    _video_ext(path)  # fail before drawing any frame
    panel = panel_side(traces) if panel is None else panel
    frames = [f for i, t in enumerate(traces) for f in episode_frames(t, panel, f"episode {i + 1}/{len(traces)}")]
    return write_frames(frames, path, fps)


def filmstrip_path(video: str | os.PathLike) -> Path:
    """Where the filmstrip of a video goes: ``X.gif`` -> ``X.filmstrip.png`` (same folder, same stem)."""
    return Path(video).with_suffix(".filmstrip.png")


def _strip_image(blocks: Sequence[tuple[str, Sequence[np.ndarray], int, Sequence[int]]], per_row: int) -> np.ndarray:
    """Blocks of (title, frames, map size, actions) as rows of labelled thumbnails, ``per_row`` at most a row."""
    if per_row < 1:
        raise ValueError(f"per_row must be >= 1, got {per_row}")
    blocks = [b for b in blocks if len(b[1])]
    if not blocks:
        raise ValueError("filmstrip needs at least one frame")
    for _, frames, size, _ in blocks:
        for f in frames:
            _check_frame(f, size, np.shape(frames[0]))
    side = max(len(fr[0]) * upscale_factor(len(fr[0]), size) for _, fr, size, _ in blocks)
    cols = min(per_row, max(len(b[1]) for b in blocks))
    row_h = side + _LINE + _GAP
    heights = [_LINE + _GAP + -(-len(b[1]) // per_row) * row_h for b in blocks]
    strip = np.full((_GAP + sum(heights), _GAP + cols * (side + _GAP), 3), _BG, np.uint8)
    texts, y = [], _GAP
    for (title, frames, _, actions), h in zip(blocks, heights, strict=True):
        texts.append(((_GAP, y), title))
        for k, f in enumerate(frames):
            top, x = y + _LINE + _GAP + (k // per_row) * row_h, _GAP + (k % per_row) * (side + _GAP)
            strip[top:top + side, x:x + side] = _enlarge(f, side)
            act = f" {ACTION_NAMES[actions[k - 1]]}" if 0 < k <= len(actions) else ""
            texts.append(((x, top + side), f"t={k}{act}"))
        y += h
    pil = Image.fromarray(strip)
    draw = ImageDraw.Draw(pil)
    for xy, text in texts:
        draw.text(xy, text, fill=(255, 255, 255), font=_font())
    return np.asarray(pil)


def _save_png(img: np.ndarray, path: str | os.PathLike) -> Path:
    return atomic_write(path, lambda tmp: Image.fromarray(img).save(tmp, format="PNG"))


def filmstrip(frames: np.ndarray | Sequence[np.ndarray], path: str | os.PathLike, size: int,
              actions: Sequence[int] | None = None, per_row: int = 8, title: str = "") -> Path:
    """Save an imagined plan ``(T + 1, H, W, 3)`` of a ``size`` x ``size`` map as a PNG of thumbnails labelled
    with the step and the action that led there, ``per_row`` a row, enlarged as :func:`upscale_factor` says.

    Raises:
        ValueError: no frame, or frames that are not whole cells of the map.
    """
    title = title or f"{size}x{size} map, imagined plan of {len(frames) - 1} steps"
    return _save_png(_strip_image([(title, list(frames), size, list(actions or []))], per_row), path)


def _imagined_actions(trace) -> list[int]:
    """The actions behind a trace's imagined frames: the open-loop plan's, else the actions taken."""
    if len(trace.plans) == 1 and len(trace.imagined_frames) == len(trace.plans[0].frames):
        return list(trace.plans[0].actions)
    return list(trace.actions)


def write_filmstrip(traces: Sequence, path: str | os.PathLike, per_row: int = 8) -> Path:
    """PNG of the imagined frames of each episode of ``traces`` (a titled block of thumbnail rows each, thumbnails
    of one side for all), written atomically; return its path (see :func:`filmstrip_path`).

    Raises:
        ValueError: no episode has an imagined frame.
    """
    blocks = [(f"episode {i + 1}/{len(traces)}: {t.size}x{t.size} map, {len(t.imagined_frames) - 1} imagined steps",
               t.imagined_frames, t.size, _imagined_actions(t)) for i, t in enumerate(traces)]
    return _save_png(_strip_image(blocks, per_row), path)


def routing_figures(model, frames: np.ndarray, out_dir: str | os.PathLike, steps: int | None = None,
                    prefix: str = "plan") -> list[Path]:
    """Expert use per latent step and the PCA of latent trajectories for gate-driven rollouts.

    Args:
        model: a :class:`~rss_world.world_model.WorldModel`.
        frames: ``(B, H, W, 3)`` uint8 start frames of one map size.
        out_dir: folder for ``{prefix}_expert_usage.png`` and ``{prefix}_latent_pca.png``.
        steps: latent steps (default: grid size).
        prefix: file name prefix.
    """
    import torch

    from rss_world.plots import plot_expert_usage, plot_latent_pca

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    x = torch.as_tensor(np.asarray(frames))
    with torch.no_grad():
        model.eval()
        size = model.check_frames(x)
        im = model.imagine(model.encode(x), steps=steps or size)
    paths = [out / f"{prefix}_expert_usage.png", out / f"{prefix}_latent_pca.png"]
    plot_expert_usage(im.route, paths[0], num_experts=model.num_experts,
                      title=f"Gate planner: expert (= action) use per latent step, {size}x{size}")
    plot_latent_pca(im.latents[1:], paths[1], start=im.latents[0],
                    labels=[ACTION_NAMES[a] for a in im.actions[:, 0].tolist()],
                    title=f"Latent trajectories of gate rollouts, {size}x{size} (colour: first action)")
    return paths

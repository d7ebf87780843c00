"""Videos and figures of planning episodes.

* :func:`write_frames`: the project's one video writer (GIF or MP4 via imageio, written atomically).
* :func:`episode_frames` / :func:`write_video`: per step, panels real | imagined | |difference| side by side,
  with a caption (map size, step, action, whether it is on a shortest path).
* :func:`filmstrip`: a PNG strip of an imagined plan.
* :func:`routing_figures`: expert use per latent step and PCA of the latent trajectories (the paper's
  Figures 3-4) for gate-driven rollouts, drawn with :mod:`rss_world.plots`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from rss_world.envs.oracle import ACTION_NAMES
from rss_world.io import atomic_write

VIDEO_EXTS = (".gif", ".mp4")
_GAP, _CAPTION = 4, 24


def _panel(frame: np.ndarray | None, side: int) -> np.ndarray:
    if frame is None:
        return np.zeros((side, side, 3), np.uint8)
    return np.asarray(Image.fromarray(np.asarray(frame, np.uint8)).resize((side, side), Image.NEAREST))


def _caption(img: np.ndarray, text: str, y: int) -> np.ndarray:
    pil = Image.fromarray(img)
    ImageDraw.Draw(pil).text((_GAP + 2, y), text, fill=(255, 255, 255))
    return np.asarray(pil)


def compose(real: np.ndarray | None, imagined: np.ndarray | None, caption: str, panel: int = 128) -> np.ndarray:
    """One video frame: real | imagined | |real − imagined| with a caption strip below.

    Args:
        real: ``(H, W, 3)`` uint8 real frame (None: black).
        imagined: ``(H, W, 3)`` uint8 imagined frame (None: black).
        caption: text drawn under the panels.
        panel: side of each panel in pixels (nearest-neighbour scaling).

    Returns:
        ``(panel + 2·gap + caption, 3·panel + 4·gap, 3)`` uint8; both sides are multiples of 16 for panel=128.
    """
    r, i = _panel(real, panel), _panel(imagined, panel)
    diff = np.abs(r.astype(np.int16) - i.astype(np.int16)).astype(np.uint8) if real is not None and \
        imagined is not None else np.zeros_like(r)
    h, w = panel + 2 * _GAP + _CAPTION, 3 * panel + 4 * _GAP
    canvas = np.full((h, w, 3), 32, np.uint8)
    for k, p in enumerate((r, i, diff)):
        x = _GAP + k * (panel + _GAP)
        canvas[_GAP:_GAP + panel, x:x + panel] = p
    return _caption(canvas, caption, panel + 2 * _GAP + 4)


def episode_frames(trace, panel: int = 128) -> list[np.ndarray]:
    """Video frames of one :class:`~rss_world.protocols.EpisodeTrace` (``max(real, imagined)`` frames)."""
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
        out.append(compose(rf, im, f"{trace.size}x{trace.size} step {k}: {what}", panel))
    return out


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


def write_video(traces: Sequence, path: str | os.PathLike, fps: float = 2.0, panel: int = 128) -> int:
    """Write the episodes of ``traces`` one after another to a GIF or MP4; return the number of frames.

    Raises:
        ValueError: the extension is not .gif or .mp4, or there is nothing to write.
    """
    _video_ext(path)  # fail before drawing any frame
    return write_frames([f for t in traces for f in episode_frames(t, panel)], path, fps)


def filmstrip(frames: np.ndarray | Sequence[np.ndarray], path: str | os.PathLike, panel: int = 96,
              actions: Sequence[int] | None = None) -> Path:
    """Save an imagined plan ``(T + 1, H, W, 3)`` as one PNG row, labelled with the step (and action)."""
    frames = list(frames)
    if not frames:
        raise ValueError("filmstrip needs at least one frame")
    h = panel + _CAPTION
    strip = np.full((h, len(frames) * (panel + _GAP) + _GAP, 3), 32, np.uint8)
    for k, f in enumerate(frames):
        x = _GAP + k * (panel + _GAP)
        strip[:panel, x:x + panel] = _panel(f, panel)
        label = f"t={k}" + (f" {ACTION_NAMES[actions[k - 1]]}" if actions is not None and 0 < k <= len(actions) else "")
        pil = Image.fromarray(strip)
        ImageDraw.Draw(pil).text((x + 2, panel + 6), label, fill=(255, 255, 255))
        strip = np.asarray(pil).copy()
    return atomic_write(path, lambda tmp: Image.fromarray(strip).save(tmp))


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

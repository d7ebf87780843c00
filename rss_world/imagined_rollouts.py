"""An actor's episode imagined by the world model next to the same actions in the real env, and its video.

The actor sees only imagined frames (open loop); its actions are replayed in the real env, so each imagined frame
can be checked against the real one (:meth:`ImaginedEpisode.exact`) and drawn beside it (:func:`write_play_video`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from rss_world.envs.frozenlake import VisualFrozenLakeEnv
from rss_world.envs.metrics import run_actions
from rss_world.envs.oracle import ACTION_NAMES, optimal_actions
from rss_world.envs.parser import parse_frame
from rss_world.imagination.env import WorldModelEnv
from rss_world.imagination.slots import REENCODE_EVERY
from rss_world.rl_agents import FrameAgent
from rss_world.video import compose, upscale_factor, write_frames
from rss_world.world_model import WorldModel

PLAY_HORIZON = 16  # steps of an imagined-vs-real episode in play videos (most test maps end sooner)
NO_LIMIT = 10**6  # a step limit no episode here reaches: the horizon ends them


@dataclass
class ImaginedEpisode:
    """An actor's imagined episode and the same actions in the real env.

    Attributes:
        desc: the map.
        actions: actions the actor chose from the imagined frames.
        imagined: imagined frames, start first; ``status``: head probabilities [goal, hole] per imagined frame.
        real: real frames (shorter when the real episode ended first); ``cells``: real agent cells.
    """

    desc: tuple[str, ...]
    actions: list[int] = field(default_factory=list)
    imagined: list[np.ndarray] = field(default_factory=list)
    status: list[tuple[float, float]] = field(default_factory=list)
    real: list[np.ndarray] = field(default_factory=list)
    cells: list[tuple[int, int]] = field(default_factory=list)

    def exact(self, k: int) -> bool | None:
        """Whether imagined frame ``k`` parses to the real grid (None when the real episode ended before ``k``)."""
        if k >= len(self.real) or k >= len(self.imagined):
            return None
        return parse_frame(self.imagined[k], size=len(self.desc)).equals_grid(self.desc, self.cells[k])


def oracle_path(desc: Sequence[str], start: tuple[int, int], horizon: int) -> list[int]:
    """A shortest path of the real map from ``start`` (the lowest optimal action at each cell), at most ``horizon``
    actions."""
    path: list[int] = []
    cell = start
    while desc[cell[0]][cell[1]] != "G" and len(path) < horizon:
        path.append(min(optimal_actions(desc, cell)))
        cell = run_actions(desc, path, NO_LIMIT).cells[-1]
    return path


def imagine_episode(model: WorldModel, desc: Sequence[str], actor: FrameAgent | str, horizon: int = PLAY_HORIZON,
                    stop_on_imagined_end: bool = False, reencode_every: int = REENCODE_EVERY) -> ImaginedEpisode:
    """Run ``actor`` in the world model from the real start of ``desc`` (open loop: it sees only imagined frames)
    and replay its actions in the real env until the real episode ends or ``horizon`` steps.

    Args:
        model: the world model.
        desc: map rows.
        actor: anything with ``act(obs)`` (e.g. a :class:`~rss_world.rl_agents.FrameAgent`), or ``"oracle"`` (a
            shortest path of the real map, fixed in advance).
        horizon: most steps.
        stop_on_imagined_end: also stop when the model's heads end the imagined episode.
        reencode_every: re-encode the decoded frame every this many steps (see
            :class:`~rss_world.imagination.env.WorldModelEnv`; 0: never).
    """
    desc = tuple(desc)
    wm = WorldModelEnv(model, desc=desc, max_steps=NO_LIMIT, reencode_every=reencode_every)
    real = VisualFrozenLakeEnv(desc=desc, cell_px=model.cfg.cell_px, renderer="atlas")
    obs, info = wm.reset()
    robs, rinfo = real.reset(seed=0)
    out = ImaginedEpisode(desc, imagined=[obs], status=[(info["p_goal"], info["p_hole"])], real=[robs],
                          cells=[rinfo["cell"]])
    path = oracle_path(desc, rinfo["cell"], horizon) if actor == "oracle" else None
    for t in range(horizon):
        if path is not None:
            if t >= len(path):
                break
            a = path[t]
        else:
            a = actor.act(obs)
        obs, _, term, _, info = wm.step(a)
        out.actions.append(a)
        out.imagined.append(obs)
        out.status.append((info["p_goal"], info["p_hole"]))
        robs, _, rterm, rtrunc, rinfo = real.step(a)
        out.real.append(robs)
        out.cells.append(rinfo["cell"])
        if rterm or rtrunc or (term and stop_on_imagined_end):
            break
    real.close()
    return out


def write_play_video(episodes: Sequence[ImaginedEpisode], path: str | os.PathLike, fps: float = 2.0) -> int:
    """GIF/MP4 of episodes: real | imagined | difference per step, captioned with the heads' readings; returns the
    number of frames.

    Raises:
        ValueError: no frames, or the extension is not .gif or .mp4.
    """
    # one panel side for all episodes, so maps of different sizes compose (see rss_world.video.panel_side)
    panel = max((len(ep.imagined[0]) * upscale_factor(len(ep.imagined[0]), len(ep.desc)) for ep in episodes),
                default=None)
    frames = []
    for ep in episodes:
        n = len(ep.desc)
        for k in range(len(ep.imagined)):
            real = ep.real[min(k, len(ep.real) - 1)]
            what = "start" if k == 0 else ACTION_NAMES[ep.actions[k - 1]]
            g, h = ep.status[k]
            frames.append(compose(real, ep.imagined[k], f"{n}x{n} t={k} {what} | heads goal {g:.2f} hole {h:.2f}",
                                  n, panel))
    return write_frames(frames, path, fps)

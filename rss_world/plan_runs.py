"""The ``python -m rss_world.plan`` command's library: one planner under one protocol on a few maps in the real
FrozenLake env; a table, the summary JSON (with every episode), and a video of the longest plans.

Every setting has its default in :class:`PlanConfig` (the entry point reads its option defaults from there). Bad
input raises ``ValueError`` before anything is run or written.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from rss_world.benchmark import ENVS, load_checkpoint, parse_sizes
from rss_world.checkpoint import read_config
from rss_world.envs.maps import DEFAULT_SIZES, MapSpec
from rss_world.io import atomic_write_text, check_output
from rss_world.paths import DEFAULT_CHECKPOINT
from rss_world.planners import PLANNERS, make_planner
from rss_world.protocols import PROTOCOLS, load_maps, per_episode, planner_stats, run_planner, select_maps, summarize
from rss_world.reports import format_table
from rss_world.video import VIDEO_EXTS, filmstrip_path, longest_episodes, write_filmstrip, write_video

DEMO_SIZES, DEMO_EPISODES = f"{DEFAULT_SIZES[0]}-{DEFAULT_SIZES[-1]}", 6  # plan without --maps: one map per size


@dataclass
class PlanConfig:
    """Settings of :func:`run_plan` (the ``python -m rss_world.plan`` options).

    Attributes:
        env: environment name (one of :data:`ENVS`).
        maps: JSONL map suite; ``None``: the shipped test suites (``test``: sizes 3-8; ``test_large``: 10, 12, 16,
            24, 32).
        sizes: map sizes to play, e.g. ``"3-8"``, ``"4"`` or ``"3,5,7"`` (see :func:`parse_sizes`); ``None``: every
            size of the map file, or :data:`DEMO_SIZES` of the shipped test split.
        episodes: how many distinct maps to play, spread evenly over the sizes; ``None``: every map of the map
            file, or :data:`DEMO_EPISODES` of the shipped test split. More than there are maps is an error.
        planner: ``"gate"`` (the paper's mechanism, our gate) or ``"search"``, with default settings.
        protocol: ``"closed"`` (MPC: re-encode and re-plan after every action) or ``"open"`` loop.
        checkpoint: checkpoint directory; ``None``: the shipped model.
        seed: map selection and env seed.
        video: GIF or MP4 of the episodes with the longest plans, with a filmstrip PNG of the imagined plans
            beside it; ``None``: no video.
        video_episodes: episodes in the video.
        json: path of the summary JSON; ``None``: not written.
        threads: torch CPU threads.
        progress: show a progress bar.
    """

    env: str = "frozenlake"
    maps: str | None = None
    sizes: str | None = None
    episodes: int | None = None
    planner: str = "gate"
    protocol: str = "closed"
    checkpoint: str | None = None
    seed: int = 0
    video: str | None = "outputs/plan/frozenlake.gif"
    video_episodes: int = 3
    json: str | None = None
    threads: int = 1
    progress: bool = True



def _check_plan(cfg: PlanConfig) -> None:
    if cfg.env not in ENVS:
        raise ValueError(f"unknown env {cfg.env!r}; available: {', '.join(ENVS)}")
    if cfg.planner not in PLANNERS or cfg.protocol not in PROTOCOLS:
        raise ValueError(f"planner must be one of {PLANNERS} and protocol one of {PROTOCOLS}")
    if cfg.episodes is not None and cfg.episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {cfg.episodes}")
    if cfg.threads < 1 or cfg.video_episodes < 0:
        raise ValueError("--threads must be >= 1 and --video-episodes >= 0")
    if cfg.video is not None and Path(cfg.video).suffix.lower() not in VIDEO_EXTS:
        raise ValueError(f"--video must end in .gif or .mp4, got {cfg.video!r}")
    if cfg.maps is not None and not Path(cfg.maps).is_file():
        raise ValueError(f"map file {cfg.maps} does not exist")
    if cfg.json is not None:
        check_output(cfg.json, "--json")
    if cfg.video is not None and cfg.video_episodes > 0:
        check_output(cfg.video, "--video")
        check_output(filmstrip_path(cfg.video), "--video's filmstrip")


def plan_maps(cfg: PlanConfig) -> list[MapSpec]:
    """The maps :func:`run_plan` plays: ``cfg.episodes`` distinct maps of ``cfg.sizes`` from ``cfg.maps`` (every
    map of the file by default), or from the shipped test split (:data:`DEMO_EPISODES` maps of
    :data:`DEMO_SIZES` by default).

    Raises:
        ValueError: bad sizes, an unreadable map file, a size without maps, or more episodes than maps.
    """
    if cfg.maps is None:
        sizes, episodes = parse_sizes(cfg.sizes or DEMO_SIZES), cfg.episodes or DEMO_EPISODES
    else:
        sizes = parse_sizes(cfg.sizes) if cfg.sizes is not None else None
        episodes = cfg.episodes
    try:
        pool = load_maps(cfg.maps, "test") if cfg.maps else [*load_maps(None, "test"), *load_maps(None, "test_large")]
        return select_maps(pool, sizes, episodes, cfg.seed)
    except (OSError, ValueError) as err:
        raise ValueError(f"bad map file: {err}" if cfg.maps else str(err)) from None


def _warn_unseen_sizes(checkpoint: str | None, maps: Sequence[MapSpec]) -> None:
    trained = read_config(Path(checkpoint) if checkpoint else DEFAULT_CHECKPOINT)["meta"].get("train_sizes")
    larger = sorted({m.size for m in maps if trained and m.size > max(trained)})
    if larger:
        print(f"warning: maps of size {larger} are larger than the checkpoint's training sizes "
              f"{min(trained)}-{max(trained)}", file=sys.stderr)


def run_plan(cfg: PlanConfig) -> dict:
    """Plan with ``cfg.planner`` under ``cfg.protocol`` on the maps of :func:`plan_maps`; print a table and the
    planner statistics, write the JSON (the summary plus a ``per_episode`` list) and the video asked for; return
    the summary.

    Raises:
        ValueError: bad settings, an unreadable map file or checkpoint, or an output that cannot be written (all
            checked before anything is run or written).
    """
    _check_plan(cfg)
    model = load_checkpoint(cfg.checkpoint)
    maps = plan_maps(cfg)
    _warn_unseen_sizes(cfg.checkpoint, maps)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    planner = make_planner(cfg.planner, model)
    label = f"{cfg.planner} planner, {cfg.protocol} loop"
    traces = run_planner(planner, maps, cfg.protocol, cell_px=model.cfg.cell_px, seed=cfg.seed,
                         progress=label if cfg.progress else False)
    summary = summarize(traces) | {"per_episode": per_episode(traces)}
    print(format_table(summary, f"FrozenLake, {label}, checkpoint {cfg.checkpoint or DEFAULT_CHECKPOINT}"))
    st = planner_stats(traces)
    print(f"plans: {st['expansions']:.1f} expansions each, {100 * st['halted_early']:.0f}% halted early, "
          f"{st['steps_saved']:.1f} latent steps saved on average")
    if cfg.json:
        atomic_write_text(cfg.json, json.dumps(summary, indent=1))
        print(f"summary: {cfg.json}")
    if cfg.video is not None and cfg.video_episodes > 0:
        shown = longest_episodes(traces, cfg.video_episodes)
        n = write_video(shown, cfg.video)
        strip = write_filmstrip(shown, filmstrip_path(cfg.video))
        print(f"video: {cfg.video} ({n} frames, the {len(shown)} longest episodes: real | imagined | difference); "
              f"imagined plans: {strip}")
    return summary

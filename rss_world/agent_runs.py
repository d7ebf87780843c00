"""Whole agent runs, as ``python -m rss_world.agent`` and the agent experiments do them: train and save, judge a
saved agent, record an imagined episode's video, and train-then-judge one agent of a study (in a worker process
when the study runs several at once)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from rss_world.envs.maps import MapSpec, load_default_suite
from rss_world.imagined_rollouts import PLAY_HORIZON, imagine_episode, write_play_video
from rss_world.rl_agents import (
    PAD_TO,
    FrameAgent,
    eval_maps,
    evaluate_imagined,
    evaluate_real,
    load_agent,
    save_agent,
    train_agent,
)
from rss_world.world_model import WorldModel


def load_world_model(checkpoint: str | os.PathLike | None) -> WorldModel | None:
    """The world model saved in ``checkpoint`` (None: no model)."""
    if checkpoint is None:
        return None
    from rss_world.checkpoint import load_model

    return load_model(checkpoint)


def train_and_save(algo: str, env_kind: str, steps: int, sizes: Sequence[int], out: str | os.PathLike,
                   checkpoint: str | os.PathLike | None = None, n_envs: int = 16, seed: int = 0,
                   max_steps: int | None = None) -> tuple[Path, dict]:
    """Train an agent on the shipped training maps of ``sizes`` (canvas: the largest size) and save it to ``out``.

    Args:
        algo: "ppo" or "dqn".
        env_kind: "wm" (inside the world model of ``checkpoint``) or "real".
        steps: env steps of training.
        sizes: map sizes to train on.
        out: where the agent goes (``.zip``, plus its ``.json`` sidecar).
        checkpoint: world-model checkpoint directory (needed for "wm"; it also sets ``cell_px``).
        n_envs: parallel training episodes.
        seed: agent and env seed.
        max_steps: training episode limit (None: the env's ``4 · size²``).

    Returns:
        ``(saved path, meta)`` (see :func:`~rss_world.rl_agents.train_agent`).
    """
    model = load_world_model(checkpoint)
    agent, meta = train_agent(algo, env_kind, steps, load_default_suite("train", sizes), model, n_envs, max(sizes),
                              seed, max_steps)
    return save_agent(agent, out, meta), meta


def evaluate_saved(path: str | os.PathLike, sizes: Sequence[int], episodes: int, seed: int = 0) -> dict:
    """Metrics of a saved agent in the real env on ``episodes`` test maps spread over ``sizes``."""
    agent, meta = load_agent(path)
    return evaluate_real(agent, meta, eval_maps(sizes, episodes, seed), seed)


def play(checkpoint: str | os.PathLike | None, agent: str, out: str | os.PathLike, sizes: Sequence[int],
         episodes: int, horizon: int = PLAY_HORIZON, seed: int = 0) -> int:
    """Video of an actor in imagination next to the same actions for real, on test maps; returns the frames written.

    Args:
        checkpoint: the world model to imagine with.
        agent: a saved agent ``.zip``, or ``"oracle"`` (shortest paths of the real maps).
        out: GIF or MP4 path.
        sizes: map sizes of the test maps.
        episodes: how many test maps.
        horizon: most steps of each episode.
        seed: test-map selection.
    """
    model = load_world_model(checkpoint)
    if model is None:
        raise ValueError("play needs --checkpoint (the world model to imagine with)")
    actor: FrameAgent | str = "oracle"
    if agent != "oracle":
        sb3_agent, meta = load_agent(agent)
        actor = FrameAgent(sb3_agent, meta["pad_to"], meta["cell_px"])
    return write_play_video([imagine_episode(model, m.desc, actor, horizon)
                             for m in eval_maps(sizes, episodes, seed)], out)


@dataclass(frozen=True)
class AgentJob:
    """One agent of a study: trained, saved, then judged (see :func:`train_and_judge`).

    Attributes:
        algo: "ppo" or "dqn".
        env_kind: "wm" or "real".
        seed: training seed.
        model: the world model (trained in for "wm"; judged in for both).
        train_maps: training maps.
        test_maps: maps it is judged on.
        steps: env steps of training.
        n_envs: parallel training episodes.
        train_max_steps: training episode limit (None: the env's ``4 · size²``).
        reencode_every: the imagined env's re-encoding period (training for "wm", and judging in the world model).
        eval_seed: seed of the judging runs.
        out: where the agent is saved.
        pad_to: canvas side in cells.
    """

    algo: str
    env_kind: str
    seed: int
    model: WorldModel
    train_maps: Sequence[MapSpec]
    test_maps: Sequence[MapSpec]
    steps: int
    n_envs: int
    train_max_steps: int | None
    reencode_every: int
    eval_seed: int
    out: Path
    pad_to: int = PAD_TO


def train_and_judge(job: AgentJob) -> tuple[Path, dict, dict]:
    """Train and save ``job``'s agent on one torch thread, then judge it: greedy and sampled in the real env, greedy
    inside the world model. A top-level function, so worker processes can run it; the caller's thread count is
    restored.

    Returns:
        ``(saved path, meta, summary)``; ``summary`` holds the greedy real-env metrics plus ``"sampled"`` and
        ``"imagined"``.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        wm = job.env_kind == "wm"
        agent, meta = train_agent(job.algo, job.env_kind, job.steps, job.train_maps, job.model if wm else None,
                                  job.n_envs, job.pad_to, job.seed, job.train_max_steps,
                                  job.reencode_every if wm else 0)
        path = save_agent(agent, job.out, meta)
        summary = evaluate_real(agent, meta, job.test_maps, job.eval_seed)
        summary["sampled"] = evaluate_real(agent, meta, job.test_maps, job.eval_seed, deterministic=False)
        summary["imagined"] = evaluate_imagined(agent, meta, job.model, job.test_maps, seed=job.eval_seed,
                                                reencode_every=job.reencode_every)
    finally:
        torch.set_num_threads(threads)
    return path, meta, summary

"""Steps per second of the real env and of the batched imagined env, measured the same way for every study."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch

from rss_world.envs.maps import MapSpec
from rss_world.imagination.slots import REENCODE_EVERY
from rss_world.imagination.vec_env import WorldModelVecEnv
from rss_world.rl_agents import SIZES, PaddedRealEnv
from rss_world.world_model import WorldModel


def real_steps_per_s(maps: Sequence[MapSpec], renderer: str, steps: int, seed: int = 0) -> float:
    """Real env steps/s (random actions, resets included) over maps of sizes 3-6, padded as agents see them.

    Args:
        maps: maps to draw from.
        renderer: "gymnasium" (pygame) or "atlas".
        steps: steps timed, after a warm-up step of every size.
        seed: map draws and actions.
    """
    env = PaddedRealEnv(maps, max(SIZES), renderer=renderer)
    rng = np.random.default_rng(seed)
    for s in SIZES:  # warm-up: pygame sprites / tile atlases of every size
        env.reset(seed=seed, options=None)
        env.envs[s].reset(seed=seed)
        env.envs[s].step(0)
    env.reset(seed=seed)
    t0 = time.perf_counter()
    for _ in range(steps):
        _, _, term, trunc, _ = env.step(int(rng.integers(4)))
        if term or trunc:
            env.reset()
    dt = time.perf_counter() - t0
    env.close()
    return steps / dt


def wm_steps_per_s(model: WorldModel, maps: Sequence[MapSpec], batch: int, steps: int, seed: int = 0,
                   precision: str = "fp32", threads: int = 1, preencode: bool = True, cache: dict | None = None,
                   reencode_every: int = REENCODE_EVERY) -> float:
    """Imagined steps/s of the batched VecEnv (``batch · steps`` env steps after one warm-up step, random actions).

    Args:
        model: the world model.
        maps: maps to draw from (padded to sizes 3-6).
        batch: parallel episodes.
        steps: batched steps timed.
        seed: map draws and actions.
        precision: "fp32" or "bf16".
        threads: torch threads while measuring (the caller's count is restored).
        preencode: start latents encoded when the env is built, as agent training does (the env's construction is
            not timed, like the real env's); without it no start latent is cached, so every reset runs the encoder.
        cache: envs kept across calls, keyed by their settings, so later rounds skip building (and pre-encoding)
            the same env again; each call still starts with a reset.
        reencode_every: the env's setting (see :class:`~rss_world.imagination.slots.LatentSlots`; 0: never).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        key = (batch, precision, preencode, reencode_every)
        env = None if cache is None else cache.get(key)
        if env is None:
            env = WorldModelVecEnv(model, batch, suite=maps, pad_to=max(SIZES), seed=seed, precision=precision,
                                   preencode=preencode, cache_size=None if preencode else 0,
                                   reencode_every=reencode_every)
            if cache is not None:
                cache[key] = env
        rng = np.random.default_rng(seed)
        env.reset()
        env.step(rng.integers(4, size=batch))
        t0 = time.perf_counter()
        for _ in range(steps):
            env.step(rng.integers(4, size=batch))
        return batch * steps / (time.perf_counter() - t0)
    finally:
        torch.set_num_threads(before)

"""Latent-space planners and baselines played in the real FrozenLake env: the ``evaluate`` command's library.

* :func:`run_benchmark` (``experiments/planning_benchmark.py``; :func:`run_evaluate` is ``python -m
  rss_world.evaluate``): every planner under every protocol plus the baselines (random, greedy-Manhattan, oracle,
  PPO) on a map suite.

Every setting has its default here or in the planner configs of :mod:`rss_world.planners`. :class:`EvaluateConfig`
is registered with Hydra's ConfigStore as ``evaluate_schema``, so ``configs/evaluate.yaml`` holds no values and
``key=value`` overrides are checked against the dataclasses. Bad input raises ``ValueError`` before any work starts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from rss_world.checkpoint import load_model
from rss_world.envs.maps import DEFAULT_SIZES, MAX_SIZE, MIN_SIZE, MapSpec, find_cell
from rss_world.envs.render import render_grid
from rss_world.io import atomic_write_text
from rss_world.paths import DEFAULT_CHECKPOINT
from rss_world.planners import PLANNERS, GatePlannerConfig, SearchPlannerConfig, make_planner
from rss_world.protocols import (
    PROTOCOLS,
    load_maps,
    planner_stats,
    run_agent,
    run_map_baseline,
    run_planner,
    select_maps,
    summarize,
)
from rss_world.reports import to_markdown
from rss_world.video import filmstrip_path, longest_episodes, routing_figures, write_filmstrip, write_video
from rss_world.world_model import WorldModel

ENVS = ("frozenlake",)
BASELINES = ("random", "greedy_manhattan", "oracle", "ppo")


@dataclass
class PPOConfig:
    """The PPO baseline (:func:`rss_world.rl_agents.train_real_ppo`, trained in the real env on frames only).

    Attributes:
        steps: the budget of env steps; the method's name in every table states the steps trained (the budget
            rounded up to whole SB3 rollouts).
        split: shipped split of the training maps (only the benchmark's sizes are used).
    """

    steps: int = 200000
    split: str = "train"


@dataclass
class PlannerSettings:
    """Settings of each planner of the benchmark (override e.g. ``planners.search.max_expansions=200``)."""

    gate: GatePlannerConfig = field(default_factory=GatePlannerConfig)
    search: SearchPlannerConfig = field(default_factory=SearchPlannerConfig)


@dataclass
class EvaluateConfig:
    """Settings of :func:`run_benchmark` (``python -m rss_world.evaluate key=value ...``).

    Attributes:
        env: environment name (one of :data:`ENVS`).
        checkpoint: checkpoint directory; ``None``: the shipped model.
        maps: JSONL map suite; ``None``: the shipped split ``split``.
        split: shipped split used when ``maps`` is ``None``.
        sizes: map sizes to play.
        maps_per_size: maps of each size (seeded shuffle); ``None``: every map.
        seed: map shuffle, env and PPO seed.
        threads: torch CPU threads.
        run_planners: planners to run (of ``gate``, ``search``).
        protocols: protocols each planner runs under (of ``open``, ``closed``).
        baselines: baselines to run (of :data:`BASELINES`).
        planners: settings of each planner.
        ppo: the PPO baseline's training.
        out: folder of ``results.json``, ``results.md``, videos and figures.
        video_episodes: more than 0: one GIF per planner and protocol with this many episodes (the longest), and
            a filmstrip PNG of their imagined plans beside it.
        figures: draw routing and latent-PCA figures of gate rollouts per size.
        progress: show progress bars.
    """

    env: str = "frozenlake"
    checkpoint: str | None = None
    maps: str | None = None
    split: str = "test"
    sizes: list[int] = field(default_factory=lambda: list(DEFAULT_SIZES))
    maps_per_size: int | None = 100
    seed: int = 0
    threads: int = 1
    run_planners: list[str] = field(default_factory=lambda: list(PLANNERS))
    protocols: list[str] = field(default_factory=lambda: list(PROTOCOLS))
    baselines: list[str] = field(default_factory=lambda: list(BASELINES))
    planners: PlannerSettings = field(default_factory=PlannerSettings)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    out: str = "outputs/evaluate"
    video_episodes: int = 0
    figures: bool = False
    progress: bool = True


def _register_schema() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="evaluate_schema", node=EvaluateConfig)


_register_schema()


def evaluate_config(overrides: Sequence[str] = ()) -> EvaluateConfig:
    """``configs/evaluate.yaml`` (the :class:`EvaluateConfig` defaults) with Hydra ``key=value`` overrides.

    Raises:
        ValueError: an override names an unknown key or has a bad type (one line).
    """
    from omegaconf import OmegaConf

    from rss_world.config import compose

    return OmegaConf.to_object(compose("evaluate", overrides))


def parse_sizes(text: str) -> list[int]:
    """``"3-8"``, ``"4"`` or ``"3,5,7"`` -> sorted sizes.

    Raises:
        ValueError: the text does not parse, a range is empty, or a size is outside the maps' limits.
    """
    sizes: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        try:
            a, b = int(lo), int(hi or lo)
        except ValueError:
            raise ValueError(f"--sizes must look like 3-8, 5 or 3,5,7; got {text!r}") from None
        if a > b:
            raise ValueError(f"--sizes range {part!r} is empty")
        sizes.update(range(a, b + 1))
    if min(sizes) < MIN_SIZE or max(sizes) > MAX_SIZE:
        raise ValueError(f"--sizes must be within {MIN_SIZE}-{MAX_SIZE}, got {text!r}")
    return sorted(sizes)


def load_checkpoint(checkpoint: str | None) -> WorldModel:
    """The world model at ``checkpoint`` (``None``: the shipped one).

    Raises:
        ValueError: it cannot be loaded (missing folder or files, bad config).
    """
    try:
        return load_model(Path(checkpoint) if checkpoint else DEFAULT_CHECKPOINT)
    except (FileNotFoundError, ValueError) as err:
        hint = "" if checkpoint else " (the shipped model could not be loaded: pass a checkpoint)"
        raise ValueError(f"cannot load checkpoint: {err}{hint}") from None


def benchmark_maps(cfg: EvaluateConfig) -> list[MapSpec]:
    """The benchmark's maps: ``maps_per_size`` per size (seeded shuffle), or all of them."""
    maps = select_maps(load_maps(cfg.maps, cfg.split), cfg.sizes, None, cfg.seed)
    if cfg.maps_per_size is None:
        return maps
    return [m for s in cfg.sizes for m in [m for m in maps if m.size == s][: cfg.maps_per_size]]


def _check_benchmark(cfg: EvaluateConfig) -> None:
    if cfg.env not in ENVS:
        raise ValueError(f"unknown env {cfg.env!r}; available: {', '.join(ENVS)}")
    for names, allowed, what in ((cfg.run_planners, PLANNERS, "planner"), (cfg.protocols, PROTOCOLS, "protocol"),
                                 (cfg.baselines, BASELINES, "baseline")):
        bad = [x for x in names if x not in allowed]
        if bad:
            raise ValueError(f"unknown {what}(s) {bad}; expected some of {list(allowed)}")
    if (cfg.maps_per_size is not None and cfg.maps_per_size < 1) or cfg.threads < 1 or cfg.video_episodes < 0:
        raise ValueError("maps_per_size (or null) and threads must be >= 1, video_episodes >= 0")
    if "ppo" in cfg.baselines and cfg.ppo.steps < 1:
        raise ValueError(f"ppo.steps must be >= 1 env steps, got {cfg.ppo.steps}")


def _ppo_train_maps(cfg: EvaluateConfig) -> list[MapSpec]:
    maps = [m for m in load_maps(None, cfg.ppo.split) if m.size in set(cfg.sizes)]
    if not maps:
        raise ValueError(f"the {cfg.ppo.split} split has no map of sizes {list(cfg.sizes)} to train PPO on")
    return maps


def _run_planners(cfg: EvaluateConfig, model: WorldModel, maps: Sequence[MapSpec]) -> dict[str, dict]:
    methods = {}
    for pname in cfg.run_planners:
        planner = make_planner(pname, model, **asdict(getattr(cfg.planners, pname)))
        for protocol in cfg.protocols:
            torch.manual_seed(cfg.seed)
            t0 = time.perf_counter()
            label = f"{pname} / {protocol} loop"
            traces = run_planner(planner, maps, protocol, model.cfg.cell_px, cfg.seed,
                                 progress=label if cfg.progress else False)
            methods[label] = {"summary": summarize(traces), "seconds": time.perf_counter() - t0,
                              "planner_stats": planner_stats(traces)}
            if cfg.video_episodes:
                shown = longest_episodes(traces, cfg.video_episodes)
                write_video(shown, Path(cfg.out) / f"{pname}_{protocol}.gif")
                write_filmstrip(shown, filmstrip_path(Path(cfg.out) / f"{pname}_{protocol}.gif"))
    return methods


def _run_baselines(cfg: EvaluateConfig, maps: Sequence[MapSpec], cell_px: int,
                   ppo_maps: Sequence[MapSpec]) -> dict[str, dict]:
    methods = {}
    for bname in cfg.baselines:
        t0 = time.perf_counter()
        if bname == "ppo":
            from rss_world.rl_agents import train_real_ppo  # stable-baselines3: imported only when PPO runs

            agent, meta = train_real_ppo(ppo_maps, cfg.ppo.steps, cfg.seed, pad_to=max(cfg.sizes))
            train_s = time.perf_counter() - t0
            # The agent plays at the resolution it was trained on; the label states the env steps it trained for
            # (the budget, rounded up by SB3 to whole rollouts).
            traces = run_agent(agent, maps, meta["cell_px"], cfg.seed, progress="ppo" if cfg.progress else False)
            methods[f"ppo ({meta['steps']} env steps)"] = {
                "summary": summarize(traces), "seconds": time.perf_counter() - t0, "train_seconds": train_s,
                "env_steps": meta["steps"]}
        else:
            traces = run_map_baseline(bname, maps, cell_px, cfg.seed, progress=bname if cfg.progress else False)
            methods[bname] = {"summary": summarize(traces), "seconds": time.perf_counter() - t0}
    return methods


def _figures(model: WorldModel, maps: Sequence[MapSpec], out: Path) -> None:
    cell_px = model.cfg.cell_px
    for s in sorted({m.size for m in maps}):
        starts = [render_grid(m.desc, find_cell(m.desc, "S"), cell_px) for m in maps if m.size == s][:64]
        routing_figures(model, np.stack(starts), out, prefix=f"gate_{s}x{s}")


def run_benchmark(cfg: EvaluateConfig) -> dict:
    """Run the benchmark described by ``cfg``; return ``{"methods": {name: {...}}, "settings": {...}}``.

    Each method entry holds ``summary`` (the ``--json`` schema of ``rss_world.plan``), ``seconds`` (CPU wall time
    of the whole suite) and, for planners, ``planner_stats``; for PPO, ``train_seconds``. Videos and figures asked
    for are written under ``cfg.out``.

    Raises:
        ValueError: bad settings, an unreadable map suite or checkpoint (before anything is run or written).
    """
    _check_benchmark(cfg)
    model = load_checkpoint(cfg.checkpoint)
    try:
        maps = benchmark_maps(cfg)
        ppo_maps = _ppo_train_maps(cfg) if "ppo" in cfg.baselines else []
    except OSError as err:
        raise ValueError(str(err)) from None
    torch.set_num_threads(cfg.threads)
    methods = _run_planners(cfg, model, maps) | _run_baselines(cfg, maps, model.cfg.cell_px, ppo_maps)
    if cfg.figures:
        _figures(model, maps, Path(cfg.out))
    return {"methods": methods, "settings": asdict(cfg) | {"episodes": len(maps)}}


def run_evaluate(overrides: Sequence[str] = ()) -> dict:
    """The ``evaluate`` command: run the benchmark of :func:`evaluate_config` ``(overrides)``, write ``results.json``
    and ``results.md`` under its ``out`` folder, print the markdown; return the results.

    Raises:
        ValueError: a bad override or setting, an unreadable map suite or checkpoint (before anything is run).
    """
    cfg = evaluate_config(overrides)
    results = run_benchmark(cfg)
    out, md = Path(cfg.out), to_markdown(results)
    atomic_write_text(out / "results.json", json.dumps(results, indent=1))
    atomic_write_text(out / "results.md", md)
    print(md)
    print(f"written: {out / 'results.json'}, {out / 'results.md'}")
    return results

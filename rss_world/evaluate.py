"""``python -m rss_world.evaluate [key=value ...]``: the full planning benchmark from ``configs/evaluate.yaml``.

Runs every planner (gate, search) under every protocol (open, closed loop) on the chosen split, plus the
baselines (random, greedy-Manhattan, oracle, PPO), and writes ``results.json`` and ``results.md`` under
``out``. Hydra overrides work, e.g.::

    python -m rss_world.evaluate maps_per_size=20 baselines=[oracle] planners.search.max_expansions=200
    python -m rss_world.evaluate checkpoint=outputs/train/frozenlake/best ppo.steps=100000 video_episodes=2
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rss_world.plan import COLUMNS, DEFAULT_CHECKPOINT, UsageError, _fmt

ENVS = ("frozenlake",)


def compose(overrides: Sequence[str] = ()):
    """Compose ``evaluate.yaml`` from the installed ``rss_world.configs`` package (no working-dir change)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    with initialize_config_module(config_module="rss_world.configs", version_base=None):
        return hydra_compose(config_name="evaluate", overrides=list(overrides))


def subset(summary: dict, sizes: Sequence[int], key: str) -> float | None:
    """Episode-weighted mean of ``key`` over the given sizes of a summary (None when no episode counts)."""
    num = den = 0.0
    for s in sizes:
        m = summary["per_size"].get(str(s))
        if m is not None and m[key] is not None:
            num += m[key] * m["episodes"]
            den += m["episodes"]
    return num / den if den else None


def benchmark_maps(cfg) -> list:
    """The benchmark's maps: ``maps_per_size`` per size (seeded shuffle), or all of them."""
    from rss_world.evaluation import load_maps, select_maps

    maps = select_maps(load_maps(cfg.maps, cfg.split), list(cfg.sizes), None, int(cfg.seed))
    if cfg.maps_per_size is None:
        return maps
    return [m for s in cfg.sizes for m in [m for m in maps if m.size == s][: int(cfg.maps_per_size)]]


def run_benchmark(cfg) -> dict:
    """Run the benchmark described by ``cfg``; return ``{"methods": {name: {...}}, "settings": ...}``.

    Each method entry holds ``summary`` (the ``--json`` schema of ``rss_world.plan``), ``seconds`` (CPU
    wall time of the whole suite) and, for planners, ``planner_stats``.
    """
    import torch
    from omegaconf import OmegaConf

    from rss_world.checkpoint import load_model
    from rss_world.evaluation import (
        BASELINES,
        PROTOCOLS,
        load_maps,
        planner_stats,
        run_agent,
        run_map_baseline,
        run_planner,
        summarize,
        train_ppo,
    )
    from rss_world.planning import PLANNERS, make_planner

    if cfg.env not in ENVS:
        raise UsageError(f"unknown env {cfg.env!r}; available: {', '.join(ENVS)}")
    for name, allowed, what in ((cfg.run_planners, PLANNERS, "planner"), (cfg.protocols, PROTOCOLS, "protocol"),
                                (cfg.baselines, BASELINES, "baseline")):
        bad = [x for x in name if x not in allowed]
        if bad:
            raise UsageError(f"unknown {what}(s) {bad}; expected some of {list(allowed)}")
    torch.set_num_threads(int(cfg.threads))
    try:
        model = load_model(cfg.checkpoint or DEFAULT_CHECKPOINT)
        maps = benchmark_maps(cfg)
    except (OSError, ValueError) as err:
        raise UsageError(str(err)) from err
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    cell_px, seed, progress = model.cfg.cell_px, int(cfg.seed), bool(cfg.progress)
    methods: dict[str, dict] = {}
    for pname in cfg.run_planners:
        planner = make_planner(pname, model, **OmegaConf.to_container(cfg.planners[pname]))
        for protocol in cfg.protocols:
            torch.manual_seed(seed)
            t0 = time.perf_counter()
            label = f"{pname} / {protocol} loop"
            traces = run_planner(planner, maps, protocol, cell_px, seed, progress=label if progress else False)
            methods[label] = {"summary": summarize(traces), "seconds": time.perf_counter() - t0,
                              "planner_stats": planner_stats(traces)}
            if cfg.video_episodes:
                from rss_world.video import write_video

                write_video(traces[: int(cfg.video_episodes)], out / f"{pname}_{protocol}.gif")
    for bname in cfg.baselines:
        t0 = time.perf_counter()
        if bname == "ppo":
            train_maps = load_maps(None, cfg.ppo.split)
            agent = train_ppo([m for m in train_maps if m.size in set(cfg.sizes)], int(cfg.ppo.steps), seed,
                              cell_px, int(cfg.ppo.px), int(cfg.ppo.max_size))
            train_s = time.perf_counter() - t0
            traces = run_agent(agent, maps, cell_px, seed, progress="ppo" if progress else False)
            label = f"ppo ({int(cfg.ppo.steps)} env steps)"
            methods[label] = {"summary": summarize(traces), "seconds": time.perf_counter() - t0,
                              "train_seconds": train_s}
        else:
            traces = run_map_baseline(bname, maps, cell_px, seed, progress=bname if progress else False)
            methods[bname] = {"summary": summarize(traces), "seconds": time.perf_counter() - t0}
    if cfg.figures:
        import numpy as np

        from rss_world.envs.maps import find_cell
        from rss_world.envs.render import render_grid
        from rss_world.video import routing_figures

        for s in sorted({m.size for m in maps}):
            starts = [render_grid(m.desc, find_cell(m.desc, "S"), cell_px) for m in maps if m.size == s][:64]
            routing_figures(model, np.stack(starts), out, prefix=f"gate_{s}x{s}")
    settings = OmegaConf.to_container(cfg) | {"episodes": len(maps)}
    return {"methods": methods, "settings": settings}


def to_markdown(results: dict) -> str:
    """Overall table (one row per method) and per-size tables."""
    head = "| method | episodes | " + " | ".join(n for _, n in COLUMNS) + " | suite s (CPU) |"
    sep = "|" + "---|" * (len(COLUMNS) + 3)
    lines = ["## Overall", "", head, sep]
    for name, r in results["methods"].items():
        s = r["summary"]
        lines.append(f"| {name} | {s['episodes']} | " + " | ".join(_fmt(k, s[k]) for k, _ in COLUMNS)
                     + f" | {r['seconds']:.1f} |")
    for name, r in results["methods"].items():
        lines += ["", f"### {name}: per size", "", head.replace("method", "size").replace(" suite s (CPU) |", ""),
                  sep[:-4]]
        for size, m in r["summary"]["per_size"].items():
            lines.append(f"| {size} | {m['episodes']} | " + " | ".join(_fmt(k, m[k]) for k, _ in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 on bad input)."""
    import argparse

    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    ap = argparse.ArgumentParser(prog="python -m rss_world.evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. maps_per_size=10 baselines=[oracle]")
    args = ap.parse_args(argv)
    try:
        cfg = compose(args.overrides)
        results = run_benchmark(cfg)
    except (UsageError, HydraException, OmegaConfBaseException) as err:
        print(f"{ap.prog}: error: {err}".splitlines()[0], file=sys.stderr)
        return 2
    out = Path(cfg.out)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    md = to_markdown(results)
    (out / "results.md").write_text(md)
    print(md)
    print(f"written: {out / 'results.json'}, {out / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

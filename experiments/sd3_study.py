"""The compositional SD3 study in one command: RSR vs matched LoRA vs continued training, from the shipped base.

    python experiments/sd3_study.py                       # the committed table (2 worker processes)
    python experiments/sd3_study.py --base DIR --work W   # from another base checkpoint

Rows, learning-rate search (val), seeds, paired bootstrap: :mod:`rss_world.t2i.study`. Writes
``experiments/results/sd3_study.md`` (``--out``) with the command, the machine and the timings, and the raw
verdicts to ``<work>/verdicts.npz``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from rss_world.compbench import CATEGORIES
from rss_world.io import atomic_write_text
from rss_world.t2i import shipped_base_path
from rss_world.t2i.finetune import FinetuneConfig
from rss_world.t2i.study import BASE, StudySettings, bootstrap_rates, rates, run_study

LABELS = ("single obj.", "two obj.", "counting", "colours", "position", "colour attr.", "overall")
RESULTS = Path(__file__).resolve().parent / "results"
QUICK = StudySettings(rank=2, middle=(0,), several=(0,), grid=((2, 2), (5, 5)), matched_experts=(5,),
                      second_reading=None, lrs=(1e-3,), lrs_full=(1e-4,), seeds=(0, 1), n_val=1, n_test=2,
                      latency_images=2, n_boot=20, sample_steps=2, finetune=FinetuneConfig(steps=2, batch_size=2,
                                                                                           data_size=4))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", default=str(shipped_base_path()), help="base checkpoint folder (default: shipped)")
    p.add_argument("--work", default="outputs/sd3_study", help="fine-tuning logs and raw verdicts")
    p.add_argument("--out", default=str(RESULTS / "sd3_study.md"))
    p.add_argument("--workers", type=int, default=2, help="fine-tuning processes (one torch thread each)")
    p.add_argument("--quick", action="store_true", help="a few-second smoke run (tiny settings; not a result)")
    args = p.parse_args(argv)
    if args.workers < 1:
        p.error(f"--workers must be >= 1, got {args.workers}")
    return args


def ci(point: float, reps: np.ndarray, signed: bool = False) -> str:
    lo, hi = np.percentile(reps, [2.5, 97.5])
    f = "+.3f" if signed else ".3f"
    return f"{point:{f}} [{lo:{f}}, {hi:{f}}]"


def report(res: dict, s: StudySettings, args: argparse.Namespace, load0: str) -> str:
    verdicts, category = res["verdicts"], res["category"]
    reps = bootstrap_rates(verdicts, category, s.n_boot)
    point = {k: rates(v, category) for k, v in verdicts.items()}
    order = [v.name for v in res["rows"]] + ([res["matched"]["name"]] if res["matched"] else [])
    match = {v.name: v.match for v in res["rows"]}
    if res["matched"]:
        match[res["matched"]["name"]] = None
    keys = (*CATEGORIES, "overall")
    head = "| row | trainable params | lr | " + " | ".join(LABELS) + " | ms / image |"
    lines = [head, "|" + "---|" * (len(LABELS) + 4)]
    for name in order:
        cells = [ci(point[name][k], reps[name][:, i]) for i, k in enumerate(keys)]
        lr = res["lr"].get(name)
        lr = f"{lr:g}" if lr is not None else ("as its source" if name not in res["lr"] and name != BASE else "–")
        lines.append(f"| {name} | {res['params'][name]:,} | {lr} | " + " | ".join(cells)
                     + f" | {res['latency'][name] * 1000:.1f} |")
    delta = ["| row − its match | " + " | ".join(LABELS) + " |", "|" + "---|" * (len(LABELS) + 1)]
    for name in order:
        m = match.get(name)
        if not m:
            continue
        d = reps[name] - reps[m]
        cells = [ci(point[name][k] - point[m][k], d[:, i], signed=True) for i, k in enumerate(keys)]
        delta.append(f"| {name} − {m} | " + " | ".join(cells) + " |")
    ref = [f"| {name} | " + " | ".join(f"{res['search'][name][lr]:.3f} (lr {lr:g})"
                                        for lr in sorted(res["search"][name])) + " |" for name in res["search"]]
    n_seeds, m_imgs = category.shape
    per_cat = m_imgs // len(CATEGORIES)
    train = {k: np.mean(v) for k, v in res["train_s"].items()}
    text = [
        "# The compositional SD3 study (issue 17, build point 3)", "",
        f"Command: `python experiments/{Path(__file__).name} {' '.join(sys.argv[1:])}`".rstrip(),
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, {args.workers} worker process(es) with 1 torch "
        f"thread each, torch {torch.__version__}; load average {load0} at the start, {load()} at the end",
        f"Wall time: {res['seconds'] / 60:.1f} min for the whole study (latency, search, final rows)",
        f"Base: `{args.base}`; sampler {res['steps']} Euler steps, guidance {res['guidance']:g} (the base's, chosen "
        "on val when it was trained)",
        f"Fine-tuning (every row): {s.finetune.steps} steps of batch {s.finetune.batch_size} from a fixed set of "
        f"{s.finetune.data_size} train-split renders, AdamW, warm-up {s.finetune.warmup} then cosine; balance loss "
        f"{s.finetune.balance_weight} only for E > 3; RSR and LoRA rank {s.rank}, single-layer rows on block(s) "
        f"{list(s.middle)} of the base's transformer",
        f"Test: {n_seeds} seeds ({list(s.seeds)}) x {per_cat} images per category = {n_seeds * per_cat} images per "
        f"category per row ({n_seeds * m_imgs} per row); seed s fine-tunes with seed s and samples test prompts "
        "and noise with seed s, the same for every row. Intervals: 95% paired two-level bootstrap "
        f"({s.n_boot} replicates: seeds, then images within each category).", "",
        "## Per-category scores (share of test images the exact checker passes)", "", *lines, "",
        "LoRA rows are the RSR core at E = 1, T = 1 (no gate is built: plain LoRA on the vision q/k/v). ms / image: "
        f"sampling one batch of {s.latency_images} images, measured one row after another in the main process "
        "before the fine-tunes started (untrained adapters: the cost does not depend on their values).", "",
        "## Differences, paired (same seeds, prompts and noise)", "", *delta, "",
        "## Learning-rate search (val overall, seed "
        f"{s.search_seed}, {s.n_val} images per category)", "",
        "| row | " + " | ".join(f"candidate {i + 1}" for i in range(max(len(s.lrs), len(s.lrs_full)))) + " |",
        "|---|" + "---|" * max(len(s.lrs), len(s.lrs_full)), *ref, "",
        "Mean fine-tuning time per seed (s, scoring not included): "
        + ", ".join(f"{k} {v:.0f}" for k, v in train.items() if k != BASE), "",
    ]
    return "\n".join(text)


def load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def main(argv: list[str] | None = None) -> None:
    torch.set_num_threads(1)
    args = parse(argv)
    s = QUICK if args.quick else StudySettings()
    load0 = load()
    t0 = time.time()
    try:
        res = run_study(s, args.base, args.work, workers=args.workers)
    except ValueError as err:  # a bad base checkpoint or settings: say what, change nothing
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    work = Path(args.work)
    np.savez(work / "verdicts.npz", category=res["category"], **{k: v for k, v in res["verdicts"].items()})
    text = report(res, s, args, load0)
    print(text)
    atomic_write_text(Path(args.out), text)
    print(f"wrote {args.out} ({(time.time() - t0) / 60:.1f} min)")


if __name__ == "__main__":
    main()

"""The compositional SD3 study: RSR against matched LoRA and a continued-training control, from one base.

:func:`run_study` builds the rows (:func:`build_rows`), measures every row's sampling latency, searches the learning
rate of every trained row on the **val** split (one seed kept apart from the final ones), then fine-tunes every
row with each final seed and scores it on the **test** split. Every row sees the same fine-tuning set, steps and
sampling noise (the test prompts and noise of seed ``s`` are the same for every row), so rows are compared paired:
:func:`bootstrap_rates` resamples seeds, then images within each category, with the same draw for every row.

Jobs run in ``workers`` processes (spawned, one torch thread each); ``workers=1`` runs them here, in order.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rss_world.compbench import CATEGORIES, sample_prompts
from rss_world.t2i.bench import evaluate
from rss_world.t2i.checkpoint import load_base
from rss_world.t2i.finetune import FinetuneConfig, Variant, count_trainable, finetune, trainable
from rss_world.t2i.model import TextToImage
from rss_world.variants.study import matched_rank

BASE, FULL = "base", "continued training (all transformer weights)"


@dataclass(frozen=True)
class StudySettings:
    """Everything the study varies or fixes (the defaults are what the committed table used).

    Attributes:
        rank: LoRA rank of every RSR expert and of the rank-matched LoRA.
        middle: the block(s) of the single-layer rows (the paper: block 12 of 24; here 2 of 4).
        several: the blocks of the several-layer rows (the paper: 4, 8, 12 of 24, all in the first half).
        grid: RSR ``(E, T)`` rows on ``middle``.
        matched_experts: a LoRA row parameter-matched to RSR with this many experts (on ``middle``), each.
        second_reading: ``(E, T)`` of the row run with the other reading of the intermediate states
            (``state_update="attention"``).
        several_rsr: ``(E, T)`` of the RSR row on ``several`` (beside a rank-matched LoRA on ``several``).
        latency_of: ``(E, T)`` of the RSR row whose sampling time the latency-matched row gets as sampler steps.
        lrs: learning-rate candidates of the adapter rows; ``lrs_full``: of continued training.
        search_seed: the fine-tuning seed of the learning-rate search (apart from ``seeds``).
        seeds: fine-tuning seeds of the final rows (seed ``s`` also seeds the test prompts and noise).
        n_val, n_test: images per category in the search and in the final scoring (per seed).
        sample_steps, guidance: the sampler (``None``: the base's own, chosen on val when it was trained).
        latency_images: images per row in the latency measurement.
        n_boot: bootstrap replicates of the intervals.
    """

    rank: int = 8
    middle: tuple[int, ...] = (2,)
    several: tuple[int, ...] = (0, 1, 2)
    grid: tuple[tuple[int, int], ...] = ((5, 1), (1, 5), (2, 2), (2, 5), (5, 2), (5, 5))
    matched_experts: tuple[int, ...] = (2, 5)
    second_reading: tuple[int, int] | None = (5, 5)
    several_rsr: tuple[int, int] | None = (5, 5)
    latency_of: tuple[int, int] | None = (5, 5)
    lrs: tuple[float, ...] = (5e-4, 2e-3)
    lrs_full: tuple[float, ...] = (1e-4, 4e-4)
    search_seed: int = 100
    seeds: tuple[int, ...] = (0, 1, 2)
    n_val: int = 12
    n_test: int = 32
    sample_steps: int | None = None
    guidance: float | None = None
    latency_images: int = 32
    n_boot: int = 2000
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)

    def validate(self) -> None:
        if self.rank < 1 or not self.grid or any(e < 1 or t < 1 for e, t in self.grid):
            raise ValueError(f"need rank >= 1 and a non-empty grid of (E, T) >= 1, got {self.rank}, {self.grid}")
        if not self.seeds or self.search_seed in self.seeds:
            raise ValueError(f"need final seeds and a search seed apart from them, got {self.seeds}, "
                             f"{self.search_seed}")
        if not self.lrs or not self.lrs_full or min(*self.lrs, *self.lrs_full) <= 0:
            raise ValueError("learning-rate candidates must be positive and non-empty")
        if min(self.n_val, self.n_test, self.latency_images, self.n_boot) < 1:
            raise ValueError("n_val, n_test, latency_images and n_boot must be >= 1")
        self.finetune.validate()


def rsr_name(e: int, t: int, suffix: str = "") -> str:
    """A grid row's label: ``RSR E=e T=t``, the ablation it is (one expert or one step), then ``suffix``."""
    note = " (no modulation)" if e == 1 else " (no recursion)" if t == 1 else ""
    return f"RSR E={e} T={t}{note}{suffix}"


def build_rows(s: StudySettings, transformer: nn.Module) -> tuple[list[Variant], dict[str, int]]:
    """The study's rows and their trainable-parameter counts on ``transformer`` (any diffusers
    ``SD3Transformer2DModel``: the base's, or a real SD3 loaded from a local path).

    LoRA is the RSR core at ``E = T = 1`` (no gate: plain LoRA); a parameter-matched LoRA gets the rank whose
    count is nearest RSR's with that many experts (gate included).
    """
    s.validate()
    mid, sev = tuple(s.middle), tuple(s.several)
    where = f" on blocks {','.join(map(str, sev))}"
    lora = Variant(f"LoRA r={s.rank} (rank-matched)", "rsr", rank=s.rank, layers=mid)
    rows = [Variant(BASE, "base"), Variant(FULL, "full"), lora]
    per_rank = count_trainable(transformer, replace(lora, rank=1))
    by_experts = {1: lora.name}
    for e in s.matched_experts:
        target = count_trainable(transformer, Variant("", "rsr", e, 1, s.rank, mid))
        r = matched_rank(target, per_rank)
        rows.append(Variant(f"LoRA r={r} (params of RSR E={e})", "rsr", rank=r, layers=mid, match=lora.name))
        by_experts[e] = rows[-1].name
    for e, t in s.grid:
        rows.append(Variant(rsr_name(e, t), "rsr", e, t, s.rank, mid, match=by_experts.get(e)))
    if s.second_reading is not None:
        e, t = s.second_reading
        rows.append(Variant(rsr_name(e, t, ", states carry attention"), "rsr", e, t, s.rank, mid,
                            state_update="attention", match=rsr_name(e, t)))
    if s.several_rsr is not None:
        lora_sev = Variant(f"LoRA r={s.rank}{where}", "rsr", rank=s.rank, layers=sev)
        e, t = s.several_rsr
        rows += [lora_sev, Variant(rsr_name(e, t, where), "rsr", e, t, s.rank, sev, match=lora_sev.name)]
    names = [v.name for v in rows]
    if len(set(names)) != len(names):
        raise ValueError(f"two rows share a name: {names}")
    return rows, {v.name: count_trainable(transformer, v) for v in rows}


@dataclass(frozen=True)
class Job:
    """One fine-tune (or none, for the base) and its scoring at one or more sampler step counts."""

    variant: Variant
    lr: float | None
    seed: int
    split: str
    n: int
    eval_seed: int
    sample_steps: tuple[int, ...]
    guidance: float
    base: str
    finetune: FinetuneConfig
    out: str


def _init_worker() -> None:
    torch.set_num_threads(1)  # one thread per process: the workers share the machine's cores


def run_job(job: Job) -> dict[str, Any]:
    """Fine-tune and score one job; returns per-image verdicts (``correct``, ``category``) per step count."""
    model = load_base(job.base)
    t0 = time.time()
    res = {"losses": [], "params": 0}
    if job.variant.kind != "base":
        res = finetune(model, job.variant, job.finetune, job.lr, job.seed, job.out)
    train_s = time.time() - t0
    evals, category = {}, None
    for steps in job.sample_steps:
        scored = evaluate(model, job.n, split=job.split, seed=job.eval_seed, steps=steps, guidance=job.guidance)
        evals[steps] = {"correct": np.array([r.correct for r in scored["results"]])}
        category = np.array([p.category for p in scored["prompts"]])  # the same prompts at every step count
    losses = res["losses"]
    return {"name": job.variant.name, "lr": job.lr, "seed": job.seed, "split": job.split, "category": category,
            "evals": evals, "train_s": train_s, "loss": float(np.mean(losses[-20:])) if losses else None}


def run_jobs(jobs: list[Job], workers: int, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Run ``jobs`` in ``workers`` spawned processes (or here, in order, for 1); results in job order."""
    def collect(results: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for i, r in enumerate(results):
            acc = {k: float(v["correct"].mean()) for k, v in r["evals"].items()}
            log(f"[{i + 1}/{len(jobs)}] {r['name']} lr {r['lr']} seed {r['seed']} {r['split']}: mean correct "
                + ", ".join(f"{a:.3f} at {k} steps" for k, a in acc.items()) + f" (train {r['train_s']:.0f} s)")
            out.append(r)
        return out

    if workers <= 1:
        return collect(map(run_job, jobs))
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker) as pool:
        return collect(pool.map(run_job, jobs))  # results in job order, each as soon as it and those before are done


def rates(correct: np.ndarray, category: np.ndarray) -> dict[str, float]:
    """Per-category share correct and ``overall`` (mean of the six), pooling every seed's images."""
    r = {c: float(correct[category == c].mean()) for c in CATEGORIES}
    r["overall"] = float(np.mean([r[c] for c in CATEGORIES]))
    return r


def bootstrap_rates(rows: dict[str, np.ndarray], category: np.ndarray, n_boot: int,
                    seed: int = 0) -> dict[str, np.ndarray]:
    """Paired two-level bootstrap of every row's per-category rates and overall score.

    Args:
        rows: name -> verdicts ``(S, M)`` (seed, image); image ``j`` of seed ``s`` is the same prompt and noise in
            every row.
        category: ``(S, M)`` the category of each image.

    Returns:
        name -> ``(n_boot, 7)`` replicates: the six categories in :data:`CATEGORIES` order, then overall. Each
        replicate draws the seeds with replacement, then each drawn seed's images with replacement within each
        category; the same draw serves every row, so differences between rows are paired.
    """
    shapes = {v.shape for v in rows.values()}
    if len(shapes) != 1 or shapes != {category.shape} or category.ndim != 2:
        raise ValueError(f"every row needs verdicts shaped like the categories {category.shape}, got {shapes}")
    rng = np.random.default_rng(seed)
    s_count, m = category.shape
    weights = np.zeros((n_boot, s_count, m))
    for b in range(n_boot):
        for s in rng.integers(s_count, size=s_count):
            for c in CATEGORIES:
                idx = np.flatnonzero(category[s] == c)
                np.add.at(weights[b, s], rng.choice(idx, size=len(idx)), 1.0)
    masks = np.stack([(category == c) for c in CATEGORIES]).astype(float)  # (6, S, M)
    denom = np.einsum("bsm,csm->bc", weights, masks)  # (B, 6)
    out = {}
    for name, v in rows.items():
        cat = np.einsum("bsm,csm,sm->bc", weights, masks, v.astype(float)) / denom  # (B, 6)
        out[name] = np.concatenate([cat, cat.mean(1, keepdims=True)], axis=1)
    return out


def sampler(s: StudySettings, model: TextToImage, meta: dict[str, Any]) -> tuple[int, float]:
    """The sampler's steps and guidance: the settings', else the base's own (chosen on val when it was trained)."""
    chosen = meta.get("sampling", {})
    steps = s.sample_steps if s.sample_steps is not None else chosen.get("steps")
    guidance = s.guidance if s.guidance is not None else chosen.get("guidance")
    if steps is None or guidance is None:
        raise ValueError("the base records no sampler (meta.sampling); give sample_steps and guidance")
    return int(steps), float(guidance)


def measure_latency(base: str, rows: list[Variant], images: int, steps: int, guidance: float) -> dict[str, float]:
    """Seconds per image of every row's sampler (this process, batch ``images``, one warm-up image first).

    Adapters are attached fresh: sampling time does not depend on their values. ``full`` has the base's cost.
    """
    texts = [p.text for p in sample_prompts(images, seed=0, split="val")][:images]
    out: dict[str, float] = {}
    for v in rows:
        if v.kind == "full":
            continue
        model = load_base(base)
        trainable(model, v)
        model.eval()
        model.generate(texts[:1], steps=steps, guidance=guidance, seed=0)
        t0 = time.perf_counter()
        model.generate(texts, steps=steps, guidance=guidance, seed=0)
        out[v.name] = (time.perf_counter() - t0) / len(texts)
    for v in rows:
        if v.kind == "full":
            out[v.name] = out[BASE]
    return out


def run_study(s: StudySettings, base: str | Path, work: str | Path, workers: int = 1,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """The whole study (latency, learning-rate search on val, final rows on test); see the module docstring.

    Returns:
        ``rows``, ``params``, ``latency`` (s / image), ``lr`` (chosen per row), ``search`` (val overall per row and
        lr), ``steps``/``guidance`` (the sampler), ``matched`` (the latency-matched row: name, source, steps),
        ``verdicts`` (name -> ``(S, M)``), ``category`` ``(S, M)``, ``train_s``, ``loss`` and ``seconds``.
    """
    from rss_world.t2i.checkpoint import read_base_config

    t_start = time.time()
    base, work = str(base), Path(work)
    model = load_base(base)
    steps, guidance = sampler(s, model, read_base_config(base)["meta"])
    rows, params = build_rows(s, model.transformer)
    log(f"{len(rows)} rows; sampler {steps} steps, guidance {guidance:g}; measuring latency")
    latency = measure_latency(base, rows, s.latency_images, steps, guidance)
    matched = None
    if s.latency_of is not None:
        target = rsr_name(*s.latency_of)
        source = next((v.match for v in rows if v.name == target), None)  # its parameter-matched LoRA
        if source is None:
            raise ValueError(f"latency_of {s.latency_of}: needs the grid row {target} and a LoRA matched to it")
        more = max(steps, round(steps * latency[target] / latency[source]))
        matched = {"name": f"{source}, {more} sampler steps (latency of {target})", "source": source, "steps": more}
    trained = [v for v in rows if v.kind != "base"]
    search = [Job(v, lr, s.search_seed, "val", s.n_val, 1000 + s.search_seed, (steps,), guidance, base, s.finetune,
                  str(work / "search" / f"{i}_{lr:g}"))
              for i, v in enumerate(trained) for lr in (s.lrs_full if v.kind == "full" else s.lrs)]
    log(f"learning-rate search: {len(search)} fine-tunes on val")
    found = run_jobs(search, workers, log)
    scores: dict[str, dict[float, float]] = {}
    for r in found:
        scores.setdefault(r["name"], {})[r["lr"]] = rates(r["evals"][steps]["correct"], r["category"])["overall"]
    chosen = {name: max(sorted(by_lr), key=lambda lr: by_lr[lr]) for name, by_lr in scores.items()}
    final = []
    for i, v in enumerate(rows):
        for seed in s.seeds:
            extra = (matched["steps"],) if matched and v.name == matched["source"] else ()
            final.append(Job(v, chosen.get(v.name), seed, "test", s.n_test, seed, (steps, *extra), guidance, base,
                             s.finetune, str(work / "final" / f"{i}_{seed}")))
    log(f"final rows: {len(final)} jobs on test")
    done = run_jobs(final, workers, log)
    verdicts: dict[str, list] = {}
    train_s: dict[str, list] = {}
    loss: dict[str, list] = {}
    for r in done:
        verdicts.setdefault(r["name"], []).append(r["evals"][steps]["correct"])
        train_s.setdefault(r["name"], []).append(r["train_s"])
        loss.setdefault(r["name"], []).append(r["loss"])
        if matched and r["name"] == matched["source"]:
            verdicts.setdefault(matched["name"], []).append(r["evals"][matched["steps"]]["correct"])
    by_seed = [r["category"] for r in done if r["name"] == BASE]
    if matched:
        latency[matched["name"]] = latency[matched["source"]] * matched["steps"] / steps
        params[matched["name"]] = params[matched["source"]]
    return {"rows": rows, "params": params, "latency": latency, "lr": chosen, "search": scores, "steps": steps,
            "guidance": guidance, "matched": matched, "verdicts": {k: np.stack(v) for k, v in verdicts.items()},
            "category": np.stack(by_seed), "train_s": train_s, "loss": loss, "seconds": time.time() - t_start}

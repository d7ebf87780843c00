"""What a fair adapter study needs: parameter-matched LoRA ranks, the Fréchet distance, and bootstrap intervals.

Used by ``experiments/replicate_dit.py``; nothing here is DiT-specific except that the counts attach RSR to a
fresh copy of a diffusers DiT or SD3 transformer built from the given model's config.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from rss_world.nn import RSRConfig

from . import attach_rsr


def matched_rank(target_params: int, params_per_rank: int) -> int:
    """The LoRA rank whose trainable-parameter count is nearest ``target_params`` (LoRA is linear in the rank).

    Raises:
        ValueError: a count below 1.
    """
    if target_params < 1 or params_per_rank < 1:
        raise ValueError(f"parameter counts must be >= 1, got target {target_params}, per rank {params_per_rank}")
    return max(1, round(target_params / params_per_rank))


def adapter_params(model: nn.Module, layers: list[int], cfg: RSRConfig) -> int:
    """Trainable parameters RSR with ``cfg`` adds on ``layers`` of a transformer like ``model`` (counted on a fresh
    copy built from ``model.config``, so ``model`` is untouched)."""
    fresh = type(model).from_config(model.config)
    return sum(p.numel() for p in attach_rsr(fresh, list(layers), cfg).parameters())


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature sets ``a (M, F)`` and ``b (K, F)``.

    ``tr sqrt(S1 S2)`` is the sum of the square roots of the eigenvalues of ``S1 S2`` (real and >= 0 for PSD
    ``S1``, ``S2``; tiny negative round-off is clipped).

    Raises:
        ValueError: not two 2-D sets of equal width with at least two rows each.
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"need two (M>=2, F) feature sets of equal width, got {a.shape} and {b.shape}")
    s1, s2 = np.cov(a, rowvar=False, dtype=np.float64), np.cov(b, rowvar=False, dtype=np.float64)
    root = np.sqrt(np.clip(np.linalg.eigvals(s1 @ s2).real, 0, None)).sum()
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * root)


def stratified_resample(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices of a resample with replacement that keeps every class's count (resampled within each class)."""
    return np.concatenate([rng.choice(np.flatnonzero(labels == c), int((labels == c).sum()))
                           for c in np.unique(labels)])


def bootstrap(sets: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]], ref: np.ndarray, n_boot: int,
              seed: int = 0, ref_labels: np.ndarray | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Two-level bootstrap replicates of each row's seed-mean Fréchet distance and accuracy.

    Each replicate draws the seeds with replacement (the same draw for every row: rows are paired by seed), then
    resamples each drawn seed's samples with replacement *within each class*, so every resample keeps the class
    balance of the set. (A plain resample lets the class mix drift; with classifier features that alone inflates
    the spread of a Fréchet distance about threefold over the spread of fresh real sets.) The reference stays fixed
    (all rows are measured against the same one) unless ``ref_labels`` is given: then it is resampled the same way,
    once per replicate, shared by all rows.

    Args:
        sets: row -> one ``(features (M, F), correct (M,), labels (M,))`` per seed; every row has as many seeds.
        ref: reference features ``(K, F)``.
        n_boot: replicates (>= 2).
        ref_labels: the reference's classes ``(K,)``, to resample the reference too.

    Returns:
        row -> ``{"fd": (n_boot,), "acc": (n_boot,)}``.
    """
    if n_boot < 2:
        raise ValueError(f"n_boot must be >= 2, got {n_boot}")
    seeds = {len(per_seed) for per_seed in sets.values()}
    if not sets or len(seeds) != 1 or 0 in seeds:
        raise ValueError(f"every row needs the same number (>= 1) of seeds, got {sorted(seeds)}")
    n_seeds = seeds.pop()
    rng = np.random.default_rng(seed)
    out = {k: {"fd": np.empty(n_boot), "acc": np.empty(n_boot)} for k in sets}
    for b in range(n_boot):
        r = ref if ref_labels is None else ref[stratified_resample(ref_labels, rng)]
        draw = rng.integers(0, n_seeds, n_seeds)
        for k, per_seed in sets.items():
            fds, accs = [], []
            for j in draw:
                f, correct, labels = per_seed[j]
                i = stratified_resample(labels, rng)
                fds.append(frechet(f[i], r))
                accs.append(correct[i].mean())
            out[k]["fd"][b], out[k]["acc"][b] = np.mean(fds), np.mean(accs)
    return out


def interval(point: float, replicates: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Bootstrap percentile interval shifted by the bootstrap's bias (``mean(replicates) - point``).

    Resampling with replacement duplicates samples, which raises a Fréchet distance; the shift keeps the interval
    around the statistic measured on the real sets (it is the plain percentile interval when the bias is zero).
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(replicates, [tail, 100 - tail]) - (replicates.mean() - point)
    return float(lo), float(hi)


def balanced_subset(labels: np.ndarray, per_class: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``per_class`` random examples of every class ``0..num_classes-1`` (without replacement).

    Raises:
        ValueError: a class with fewer than ``per_class`` examples.
    """
    idx = []
    for c in range(num_classes):
        pool = np.flatnonzero(labels == c)
        if len(pool) < per_class:
            raise ValueError(f"class {c} has {len(pool)} examples, fewer than the {per_class} asked for")
        idx.append(rng.choice(pool, per_class, replace=False))
    return np.concatenate(idx)

"""The fair DiT study: matched-parameter arithmetic, Fréchet distance, bootstrap, the balance-loss rule, and the
``--quick`` run of ``experiments/replicate_dit.py``."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from diffusers import DiTTransformer2DModel

from rss_world.nn import RSRConfig
from rss_world.variants.losses import BALANCE_MIN_EXPERTS, balance_weight
from rss_world.variants.study import (
    adapter_params,
    balanced_subset,
    bootstrap,
    frechet,
    interval,
    matched_rank,
    stratified_resample,
)

ROOT = Path(__file__).resolve().parents[2]


def _study_dit() -> DiTTransformer2DModel:
    """The study's base architecture (64 wide, 4 blocks)."""
    return DiTTransformer2DModel(num_attention_heads=4, attention_head_dim=16, in_channels=1, out_channels=1,
                                 num_layers=4, sample_size=16, patch_size=2, num_embeds_ada_norm=10)


def test_lora_params_are_linear_in_rank_and_e1_builds_no_gate():
    model = _study_dit()
    per_rank = adapter_params(model, [2], RSRConfig(num_experts=1, steps=1, rank=1))
    assert per_rank == 3 * (64 + 64)  # A (r, 64) + B (64, r) on q, k and v
    for t in (1, 2, 5):  # recursion adds no parameter, and E = 1 has no gate
        assert adapter_params(model, [2], RSRConfig(num_experts=1, steps=t, rank=8)) == 8 * per_rank
    gate = 2 * 64 + 2 * (64 * 64 + 64)  # LayerNorm, token and condition layers (hidden = D = 64)
    for e in (2, 5):
        want = e * 8 * per_rank + gate + 64 * e + e
        assert adapter_params(model, [2], RSRConfig(num_experts=e, steps=2, rank=8)) == want
    assert adapter_params(model, [1, 2], RSRConfig(num_experts=1, steps=1, rank=8)) == 16 * per_rank


def test_matched_rank_is_the_nearest_rank():
    assert matched_rank(14_722, 384) == 38  # RSR E=2, rank 8 on the study's DiT
    assert matched_rank(24_133, 384) == 63  # RSR E=5
    assert matched_rank(3_072, 384) == 8
    assert matched_rank(10, 384) == 1  # never below rank 1
    for bad in ((0, 384), (100, 0), (-5, 10)):
        with pytest.raises(ValueError, match="parameter counts must be >= 1"):
            matched_rank(*bad)


def test_frechet_distance_known_values():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    assert frechet(a, a) == pytest.approx(0.0, abs=1e-8)
    shift = np.array([1.0, -2.0, 0.5])
    assert frechet(a, a + shift) == pytest.approx((shift**2).sum(), abs=1e-8)  # same covariance
    assert frechet(a * 2, a) == pytest.approx(frechet(a, a * 2))
    # isotropic Gaussians N(0, I) and N(0, 4I) in 3-D: 3 * (1 + 4 - 2 * 2) = 3
    assert frechet(a, rng.normal(size=(4000, 3)) * 2) == pytest.approx(3.0, rel=0.1)
    with pytest.raises(ValueError, match="feature sets of equal width"):
        frechet(a, a[:, :2])
    with pytest.raises(ValueError, match="feature sets of equal width"):
        frechet(a[:1], a)


def test_bootstrap_is_paired_and_interval_is_centred():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(200, 4))
    labels = np.repeat(np.arange(3), 50)
    gen = [(rng.normal(size=(150, 4)) + 0.3, rng.random(150) < 0.8, labels) for _ in range(2)]
    boot = bootstrap({"a": gen, "b": gen}, ref, n_boot=20)
    assert boot["a"]["fd"].shape == (20,) and boot["a"]["acc"].shape == (20,)
    assert np.all(boot["a"]["acc"] >= 0) and np.all(boot["a"]["acc"] <= 1)
    # the same sets differ only through their own resampling within each class
    assert not np.array_equal(boot["a"]["fd"], boot["b"]["fd"])
    point = float(np.mean([frechet(f, ref) for f, _, _ in gen]))
    lo, hi = interval(point, boot["a"]["fd"])
    assert lo < point < hi
    with_ref = bootstrap({"a": gen}, ref, n_boot=20, ref_labels=np.repeat(np.arange(4), 50))["a"]["fd"]
    assert not np.array_equal(with_ref, boot["a"]["fd"])
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap({"a": gen}, ref, n_boot=1)
    with pytest.raises(ValueError, match="same number"):
        bootstrap({"a": gen, "b": gen[:1]}, ref, n_boot=5)
    with pytest.raises(ValueError, match="level"):
        interval(point, boot["a"]["fd"], level=1.5)


def test_stratified_resample_keeps_class_counts():
    labels = np.repeat([0, 1, 2], [3, 5, 9])
    for seed in range(5):
        idx = stratified_resample(labels, np.random.default_rng(seed))
        assert np.bincount(labels[idx]).tolist() == [3, 5, 9]


def test_balanced_subset_takes_equal_counts():
    labels = np.repeat(np.arange(3), [5, 6, 7])
    idx = balanced_subset(labels, 4, 3, np.random.default_rng(0))
    assert np.bincount(labels[idx]).tolist() == [4, 4, 4] and len(set(idx.tolist())) == 12
    with pytest.raises(ValueError, match="class 0 has 5 examples"):
        balanced_subset(labels, 6, 3, np.random.default_rng(0))


def test_balance_loss_only_above_three_experts():
    assert BALANCE_MIN_EXPERTS == 4
    assert [balance_weight(0.01, e) for e in (1, 2, 3, 4, 5)] == [0.0, 0.0, 0.0, 0.01, 0.01]
    with pytest.raises(ValueError, match="balance weight"):
        balance_weight(-0.1, 5)
    with pytest.raises(ValueError, match="num_experts"):
        balance_weight(0.01, 0)


@pytest.mark.slow
def test_quick_study_writes_every_row(tmp_path):
    out = tmp_path / "dit.md"
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "replicate_dit.py"), "--quick", "--out",
                           str(out), "--work", str(tmp_path / "work")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    assert "--quick smoke run, NOT a result" in text
    for row in ("noise floor: real train images", "| base |", "continue pre-training (all weights) | 392,900",
                "LoRA r=8 (rank-matched) | 3,072", "LoRA r=38 (params of RSR E=2) | 14,592",
                "LoRA r=63 (params of RSR E=5) | 24,192", "RSR E=1 T=5 (no modulation) | 3,072",
                "RSR E=5 T=1 (no recursion) | 24,133", "RSR E=2 T=2 | 14,722", "RSR E=5 T=5 | 24,133"):
        assert row in text, row
    assert (tmp_path / "dit_usage_per_latent_step.png").exists()  # plots go next to the report
    assert (tmp_path / "work" / "rows.json").exists() and (tmp_path / "work" / "features.npz").exists()
    again = subprocess.run([sys.executable, str(ROOT / "experiments" / "replicate_dit.py"), "--quick", "--reuse-base",
                            "--out", str(out), "--work", str(tmp_path / "other")], capture_output=True, text=True,
                           timeout=300)
    assert again.returncode != 0 and "--reuse-base" in again.stderr  # no base recorded there: a clear error

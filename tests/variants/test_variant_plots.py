"""rss_world.plots: routing and latent-trajectory figures from routing records and state tensors."""

import pytest
import torch

from rss_world import plots
from rss_world.nn import RecursiveSparseAttention, RSRConfig


def _record():
    torch.manual_seed(0)
    lin = [torch.nn.Linear(8, 8) for _ in range(4)]
    rsr = RecursiveSparseAttention(RSRConfig(num_experts=3, steps=4, rank=2, cond_dim=2), *lin, heads=2)
    x = torch.randn(5, 6, 8)
    return x, rsr(x, torch.randn(5, 2))


def test_plots_write_pngs(tmp_path):
    x, res = _record()
    plots.plot_expert_usage(res.route, tmp_path / "a.png")
    plots.plot_expert_usage({"layer 1": res.route.usage(3), "layer 2": res.route}, tmp_path / "b.png")
    plots.plot_usage_over_time(torch.stack([res.route.usage(3)] * 7), tmp_path / "c.png", x_values=range(700, 0, -100))
    plots.plot_latent_pca(res.states, tmp_path / "d.png", labels=[0, 1, 0, 1, 2], start=x)
    plots.plot_latent_pca([s.mean(1) for s in res.states], tmp_path / "e.png")
    assert all((tmp_path / f"{n}.png").stat().st_size > 1000 for n in "abcde")


def test_plots_reject_bad_shapes(tmp_path):
    x, res = _record()
    with pytest.raises(ValueError, match=r"\(T, E\)"):
        plots.plot_expert_usage(torch.rand(3), tmp_path / "a.png")
    with pytest.raises(ValueError, match=r"\(S, T, E\)"):
        plots.plot_usage_over_time(torch.rand(3, 2), tmp_path / "b.png")
    with pytest.raises(ValueError, match="one per sample"):
        plots.plot_latent_pca(res.states, tmp_path / "c.png", labels=[0, 1])
    with pytest.raises(ValueError, match="same shape"):
        plots.plot_latent_pca([res.states[0], res.states[1][:2]], tmp_path / "d.png")

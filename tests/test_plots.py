"""rss_world.plots: routing and latent-trajectory figures of routing records and states, read back as images."""

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from rss_world import plots
from rss_world.nn import RecursiveSparseAttention, RSRConfig

TAB = np.array([[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40]])  # matplotlib's C0..C3


def _record():
    torch.manual_seed(0)
    lin = [torch.nn.Linear(8, 8) for _ in range(4)]
    rsr = RecursiveSparseAttention(RSRConfig(num_experts=3, steps=4, rank=2, cond_dim=2), *lin, heads=2)
    x = torch.randn(5, 6, 8)
    return x, rsr(x, torch.randn(5, 2))


def colour_pixels(path, parts: int = 1) -> np.ndarray:
    """``(parts, 4)``: pixels of colour C0..C3 in each of ``parts`` equal vertical strips of the image."""
    img = iio.imread(path)[..., :3].astype(int)
    w = img.shape[1]
    return np.array([[(np.abs(img[:, w * q // parts:w * (q + 1) // parts] - c).sum(-1) < 10).sum() for c in TAB]
                     for q in range(parts)])


def test_plots_draw_what_they_are_given(tmp_path):
    x, res = _record()
    paths = {n: tmp_path / f"{n}.png" for n in "abcde"}
    plots.plot_expert_usage(res.route, paths["a"])
    plots.plot_expert_usage({"layer 1": res.route.usage(3), "layer 2": res.route}, paths["b"])
    plots.plot_usage_over_time(torch.stack([res.route.usage(3)] * 7), paths["c"], x_values=range(700, 0, -100))
    plots.plot_latent_pca(res.states, paths["d"], labels=[0, 1, 0, 1, 2], start=x)
    plots.plot_latent_pca([s.mean(1) for s in res.states], paths["e"])
    shapes = {n: iio.imread(p).shape[:2] for n, p in paths.items()}  # figure size (inches) x 110 dpi
    assert shapes == {"a": (352, 462), "b": (352, 814), "c": (330, 1496), "d": (484, 572), "e": (484, 572)}
    # Expert use: bars of the three experts (C0-C2, no C3) in the one panel, in both halves for two panels, and
    # in each of the four latent-step panels of the usage over time.
    for name, parts in (("a", 1), ("b", 2), ("c", 4)):
        px = colour_pixels(paths[name], parts)
        assert (px[:, :3] > 1000).all() and (px[:, 3] == 0).all(), (name, px)
    # PCA: one colour per label (0, 1, 2), and a single colour without labels.
    labelled, plain = colour_pixels(paths["d"])[0], colour_pixels(paths["e"])[0]
    assert (labelled[:3] >= 10).all() and labelled[3] == 0, labelled
    assert plain[0] >= 10 and (plain[1:] == 0).all(), plain
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{n}.png" for n in "abcde"]  # no temporary files left


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

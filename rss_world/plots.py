"""Routing and latent-trajectory plots (matplotlib, Agg backend), generic over any RSR use.

* :func:`plot_expert_usage`: share of routed units per expert at each latent step (a ``(T, E)`` table, a
  :class:`~rss_world.nn.RoutingRecord`, or a dict of such tables side by side).
* :func:`plot_usage_over_time`: expert share along an outer axis (diffusion timestep, environment step), one
  panel per latent step (the paper's Figure 4 style).
* :func:`plot_latent_pca`: PCA of the latent states over the latent steps, one trajectory per sample (Figure 3).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from rss_world.io import atomic_write  # noqa: E402
from rss_world.nn import RoutingRecord  # noqa: E402

UsageLike = Tensor | np.ndarray | RoutingRecord


def _save(fig: plt.Figure, path: str | os.PathLike) -> None:
    """Lay out, write atomically (the format follows the suffix of ``path``) and free the figure."""
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110))
    plt.close(fig)


def _usage_table(usage: UsageLike, num_experts: int | None) -> np.ndarray:
    if isinstance(usage, RoutingRecord):
        if num_experts is None:
            num_experts = int(usage.steps[0].probs.shape[-1])
        usage = usage.usage(num_experts)
    arr = usage.detach().cpu().numpy() if isinstance(usage, Tensor) else np.asarray(usage)
    if arr.ndim != 2:
        raise ValueError(f"expert usage must be a (T, E) table, got shape {arr.shape}")
    return arr


def plot_expert_usage(
    usage: UsageLike | Mapping[str, UsageLike],
    path: str | os.PathLike,
    num_experts: int | None = None,
    title: str = "Expert use per latent step",
) -> None:
    """Stacked bars of expert shares per latent step.

    Args:
        usage: a ``(T, E)`` table (rows sum to 1), a ``RoutingRecord``, or ``{name: either}`` for several panels.
        path: output image path (PNG).
        num_experts: ``E`` when a ``RoutingRecord`` is given (default: read from its probabilities).
        title: figure title.
    """
    panels = dict(usage) if isinstance(usage, Mapping) else {"": usage}
    tables = {k: _usage_table(v, num_experts) for k, v in panels.items()}
    fig, axes = plt.subplots(1, len(tables), figsize=(3.2 * len(tables) + 1, 3.2), squeeze=False)
    for ax, (name, tab) in zip(axes[0], tables.items()):
        t_steps, e = tab.shape
        bottom = np.zeros(t_steps)
        for j in range(e):
            ax.bar(np.arange(1, t_steps + 1), tab[:, j], bottom=bottom, label=f"expert {j}", color=f"C{j}")
            bottom += tab[:, j]
        ax.set_xlabel("latent step t")
        ax.set_ylabel("share of routed tokens")
        ax.set_xticks(np.arange(1, t_steps + 1))
        ax.set_ylim(0, 1)
        ax.set_title(name)
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(title)
    _save(fig, path)


def plot_usage_over_time(
    usage: Tensor | np.ndarray,
    path: str | os.PathLike,
    x_values: Sequence[float] | None = None,
    x_label: str = "diffusion timestep",
    title: str = "Expert use over diffusion time",
) -> None:
    """Expert shares along an outer axis, one panel per latent step.

    Args:
        usage: ``(S, T, E)``: for each of ``S`` outer steps (e.g. diffusion timesteps), a ``(T, E)`` usage table.
        path: output image path (PNG).
        x_values: the outer-axis value of each of the ``S`` rows (default ``0..S-1``).
        x_label: name of the outer axis.
        title: figure title.
    """
    arr = usage.detach().cpu().numpy() if isinstance(usage, Tensor) else np.asarray(usage)
    if arr.ndim != 3:
        raise ValueError(f"usage over time must be (S, T, E), got shape {arr.shape}")
    s, t_steps, e = arr.shape
    xs = np.arange(s) if x_values is None else np.asarray(list(x_values), dtype=float)
    if xs.shape != (s,):
        raise ValueError(f"x_values has {xs.shape[0]} entries, expected {s}")
    fig, axes = plt.subplots(1, t_steps, figsize=(3.4 * t_steps, 3.0), squeeze=False, sharey=True)
    for t, ax in enumerate(axes[0]):
        ax.stackplot(xs, arr[:, t, :].T, labels=[f"expert {j}" for j in range(e)],
                     colors=[f"C{j}" for j in range(e)])
        ax.set_title(f"latent step {t + 1}")
        ax.set_xlabel(x_label)
        ax.set_ylim(0, 1)
        if xs[0] > xs[-1]:
            ax.invert_xaxis()  # diffusion runs from high noise to low noise
    axes[0][0].set_ylabel("share of routed tokens")
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(title)
    _save(fig, path)


def pca_project(points: Tensor | np.ndarray, k: int = 2) -> np.ndarray:
    """Project ``(M, D)`` points on their first ``k`` principal components: ``(M, k)``."""
    x = points.detach().cpu().double().numpy() if isinstance(points, Tensor) else np.asarray(points, float)
    x = x - x.mean(0, keepdims=True)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return x @ vt[:k].T


def plot_latent_pca(
    states: Sequence[Tensor],
    path: str | os.PathLike,
    labels: Sequence | Tensor | np.ndarray | None = None,
    start: Tensor | None = None,
    title: str = "Latent trajectories (PCA)",
) -> None:
    """Trajectories of the latent state over latent steps, projected on two principal components.

    Args:
        states: one tensor per latent step, each ``(B, N, D)`` (tokens are averaged) or ``(B, D)``.
        path: output image path (PNG).
        labels: one label per sample (``B``), used for colour (e.g. the class or the diffusion timestep).
        start: optional ``s_0`` (the layer input), same shape as one state; drawn as the trajectory's origin.
        title: figure title.
    """
    seq = ([start] if start is not None else []) + list(states)
    if not seq:
        raise ValueError("plot_latent_pca needs at least one state tensor")
    flat = [s.float().mean(1) if s.dim() == 3 else s.float() for s in seq]  # each (B, D)
    b = flat[0].shape[0]
    if any(f.shape != flat[0].shape for f in flat):
        raise ValueError(f"all states must have the same shape, got {[tuple(f.shape) for f in flat]}")
    proj = pca_project(torch.cat(flat)).reshape(len(flat), b, 2)  # (T, B, 2)
    lab = np.zeros(b) if labels is None else np.asarray(
        labels.detach().cpu() if isinstance(labels, Tensor) else labels)
    if lab.shape[0] != b:
        raise ValueError(f"labels has {lab.shape[0]} entries, expected one per sample ({b})")
    uniq = list(dict.fromkeys(lab.tolist()))
    cmap = plt.get_cmap("viridis" if len(uniq) > 10 else "tab10")
    colour = {u: cmap(i / max(len(uniq) - 1, 1) if len(uniq) > 10 else i) for i, u in enumerate(uniq)}
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    for j in range(b):
        c = colour[lab[j].item() if hasattr(lab[j], "item") else lab[j]]
        ax.plot(proj[:, j, 0], proj[:, j, 1], "-", color=c, alpha=0.5, lw=0.8)
        ax.plot(proj[-1, j, 0], proj[-1, j, 1], "o", color=c, ms=3)
        ax.plot(proj[0, j, 0], proj[0, j, 1], "x", color=c, ms=3, alpha=0.6)
    if labels is not None and len(uniq) <= 12:
        for u in uniq:
            ax.plot([], [], "-", color=colour[u], label=str(u))
        ax.legend(fontsize=7, loc="best")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(f"{title}\n(x: first latent step, o: last)", fontsize=10)
    _save(fig, path)

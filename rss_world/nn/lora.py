"""Stacked LoRA experts for one Linear layer.

``E`` low-rank updates ``ΔW_e = (alpha / r) · B_e A_e`` share one input and one output size. They are stored as
two stacked tensors, ``A (E, r, in)`` and ``B (E, out, r)``, so that choosing experts is indexing, not a Python
loop over tokens. ``B`` starts at zero, so every expert starts as the identity update (the frozen layer is
unchanged until training moves it, as in LoRA and DiT's adaLN-Zero).

:func:`grouped_update` applies several such stacks at once (RSR's q, k and v experts: ``A`` concatenated to
``(E, 3r, in)``, ``B`` stacked to ``(E, 3, out, r)``), one dispatch per expert present instead of one per projection,
with the routed units (samples or tokens) grouped by expert by one sort.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn


class StackedLoRA(nn.Module):
    """``E`` LoRA experts of rank ``r`` for a Linear ``in_features -> out_features``.

    The module returns only the update ``ΔW_e x``; the caller adds it to the frozen projection.

    Args:
        in_features: input width of the wrapped Linear.
        out_features: output width of the wrapped Linear.
        num_experts: number of experts ``E`` (>= 1).
        rank: LoRA rank ``r`` (>= 1).
        alpha: LoRA alpha; the update is scaled by ``alpha / rank``. Defaults to ``rank`` (scale 1).
    """

    def __init__(
        self, in_features: int, out_features: int, num_experts: int, rank: int, alpha: float | None = None
    ) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if num_experts < 1:
            raise ValueError(f"num_experts must be >= 1, got {num_experts}")
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        alpha = float(rank if alpha is None else alpha)
        if not math.isfinite(alpha) or alpha <= 0:
            raise ValueError(f"LoRA alpha must be a finite number > 0, got {alpha}")
        self.in_features, self.out_features = in_features, out_features
        self.num_experts, self.rank, self.alpha = num_experts, rank, alpha
        self.scaling = alpha / rank
        self.A = nn.Parameter(torch.empty(num_experts, rank, in_features))  # (E, r, in)
        self.B = nn.Parameter(torch.zeros(num_experts, out_features, rank))  # (E, out, r), zero: identity start
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-uniform ``A`` per expert (as nn.Linear and peft do) and zero ``B``."""
        for e in range(self.num_experts):
            nn.init.kaiming_uniform_(self.A.data[e], a=math.sqrt(5))
        nn.init.zeros_(self.B)

    def extra_repr(self) -> str:
        return (
            f"in={self.in_features}, out={self.out_features}, experts={self.num_experts}, "
            f"rank={self.rank}, alpha={self.alpha}"
        )

    def forward(self, x: Tensor, index: Tensor | None = None, weights: Tensor | None = None) -> Tensor:
        """Return the LoRA update for ``x`` of shape ``(B, N, in)``.

        Exactly one of ``index`` and ``weights`` must be given:

        * ``index`` of shape ``(B,)`` picks one expert per sample; of shape ``(B, N)``, one per token.
        * ``weights`` of shape ``(B, E)`` or ``(B, N, E)`` mixes all experts linearly.

        Returns:
            The update ``(B, N, out)``.
        """
        if (index is None) == (weights is None):
            raise ValueError("give exactly one of `index` or `weights`")
        if x.dim() != 3 or x.shape[-1] != self.in_features:
            raise ValueError(f"x must be (B, N, {self.in_features}), got {tuple(x.shape)}")
        if index is not None:
            return self._by_index(x, index)
        return self._by_weights(x, weights)

    def _by_index(self, x: Tensor, index: Tensor) -> Tensor:
        return grouped_update(x, index, self.A.unbind(0), self.B[:, None].unbind(0), self.scaling)[0]  # (B, N, out)

    def _by_weights(self, x: Tensor, weights: Tensor) -> Tensor:
        b, n, _ = x.shape
        e = self.num_experts
        if weights.shape not in ((b, e), (b, n, e)):
            raise ValueError(f"expert weights must be (B, E)=({b}, {e}) or (B, N, E), got {tuple(weights.shape)}")
        h = torch.einsum("bni,eri->bner", x, self.A)  # (B, N, E, r)
        w = weights[:, None, :] if weights.dim() == 2 else weights  # (B, 1|N, E)
        h = h * w[..., None]  # (B, N, E, r)
        return torch.einsum("bner,eor->bno", h, self.B) * self.scaling  # (B, N, out)


def _check_index(index: Tensor, units: tuple[tuple[int, ...], ...]) -> None:
    if index.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"expert index must be an integer tensor, got {index.dtype}")
    if tuple(index.shape) not in units:
        want = " or ".join(str(u) for u in units)
        raise ValueError(f"expert index must have shape {want} ((B,) or (B, N)), got {tuple(index.shape)}")


def _scaled(h: Tensor, factor: Tensor | None, scaling: float, length: int) -> Tensor:
    """``h (U*L, P*r)`` times the per-unit coefficient (repeated over the ``L`` rows of a unit) and ``scaling``."""
    if factor is None:
        return h if scaling == 1.0 else h * scaling
    factor = factor if scaling == 1.0 else factor * scaling
    return (h.view(factor.shape[0], length, -1) * factor[:, None, None]).view(h.shape)


def _one_expert(rows: Tensor, a: Tensor, b: Tensor, factor: Tensor | None, scaling: float, length: int) -> Tensor:
    """All ``rows (U*L, in)`` through one expert (``a (P*r, in)``, ``b (P, out, r)``): ``(P, U*L, out)``."""
    p, _, r = b.shape
    h = _scaled(rows @ a.t(), factor, scaling, length)  # (UL, P*r): one matmul for the P projections
    return torch.bmm(h.view(-1, p, r).transpose(0, 1), b.transpose(1, 2))  # (P, UL, out): one batched matmul


def grouped_update(
    x: Tensor, index: Tensor | None, a: Tensor | Sequence[Tensor], b: Tensor | Sequence[Tensor], scaling: float,
    coef: Tensor | None = None,
) -> Tensor:
    """LoRA updates of ``P`` projections that share their input and their routing, in one dispatch.

    The routed units (samples for an index ``(B,)``, tokens for ``(B, N)``) are sorted by expert once; each expert
    present then runs one matmul with its concatenated ``A`` rows and one batched matmul over its ``P`` blocks of
    ``B``, and the results are put back in the units' order. With a single expert (or ``index`` None, meaning
    expert 0 everywhere) nothing is sorted or gathered.

    Args:
        x: input ``(B, N, in)``.
        index: chosen expert ``(B,)`` or ``(B, N)``, or ``None`` for expert 0 everywhere.
        a: ``(E, P*r, in)``, the ``A`` of the ``P`` projections concatenated along the rank axis, or the ``E``
            tensors ``(P*r, in)`` of ``a.unbind(0)``. Pass the unbound tuple when the experts are reused in a graph:
            the backward of ``a[e]`` on a stacked tensor allocates and zero-fills all of ``a`` for each use.
        b: ``(E, P, out, r)``, their ``B`` stacked, or its ``unbind(0)``.
        scaling: ``alpha / r``.
        coef: optional per-unit coefficient, shaped like ``index`` (the gate's straight-through weight).

    Returns:
        The ``P`` updates ``(P, B, N, out)``; ``[p]`` equals ``(alpha/r) · coef · B_p[e] A_p[e] x``.
    """
    bsz, n, d_in = x.shape
    num_experts = len(b)
    p, d_out, _ = b[0].shape
    if index is None:
        index = x.new_zeros(bsz, dtype=torch.long)
    _check_index(index, ((bsz,), (bsz, n)))
    units, length = (bsz, n) if index.dim() == 1 else (bsz * n, 1)
    flat_i = index.reshape(units)
    factor = None if coef is None else coef.reshape(units).to(x.dtype)
    lo, hi = (int(v) for v in flat_i.aminmax())
    if lo < 0 or hi >= num_experts:
        raise ValueError(f"expert index must be in [0, {num_experts}), got values in [{lo}, {hi}]")
    counts = [units] if num_experts == 1 else torch.bincount(flat_i, minlength=num_experts).tolist()
    present = [e for e, c in enumerate(counts) if c]
    if len(present) == 1:  # one expert for every unit: no sort, no gather
        e = present[0]
        out = _one_expert(x.reshape(bsz * n, d_in), a[e], b[e], factor, scaling, length)
        return out.view(p, bsz, n, d_out)
    order = torch.argsort(flat_i, stable=True)  # the one sort of this step: units grouped by expert
    xs = x.reshape(units, length, d_in).index_select(0, order)  # (U, L, in)
    fs = None if factor is None else factor.index_select(0, order)
    pieces, start = [], 0
    for e in present:
        stop = start + counts[e]
        rows = xs[start:stop].reshape(-1, d_in)  # (n_e*L, in)
        f = None if fs is None else fs[start:stop]
        pieces.append(_one_expert(rows, a[e], b[e], f, scaling, length).view(p, stop - start, length, d_out))
        start = stop
    if torch.is_grad_enabled() and any(t.requires_grad for t in pieces):
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(units, device=order.device)
        out = torch.cat(pieces, 1).index_select(1, inverse)  # (P, U, L, out) back in the units' order
    else:  # inference: write each expert's rows straight to their places (one copy)
        out = pieces[0].new_empty(p, units, length, d_out)  # the pieces' dtype: bf16 under CPU/GPU autocast
        start = 0
        for piece in pieces:
            stop = start + piece.shape[1]
            out.index_copy_(1, order[start:stop], piece)
            start = stop
    return out.view(p, bsz, n, d_out)

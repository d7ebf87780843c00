"""Stacked LoRA experts for one Linear layer.

``E`` low-rank updates ``ΔW_e = (alpha / r) · B_e A_e`` share one input and one output size. They are stored as
two stacked tensors, ``A (E, r, in)`` and ``B (E, out, r)``, so that choosing experts is indexing, not a Python
loop over tokens. ``B`` starts at zero, so every expert starts as the identity update (the frozen layer is
unchanged until training moves it, as in LoRA and DiT's adaLN-Zero).
"""

from __future__ import annotations

import math

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
        b, n, _ = x.shape
        if index.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"expert index must be an integer tensor, got {index.dtype}")
        if index.shape == (b,):
            a_sel, b_sel = self.A[index], self.B[index]  # (B, r, in), (B, out, r)
            h = torch.bmm(x, a_sel.transpose(1, 2))  # (B, N, r)
            return torch.bmm(h, b_sel.transpose(1, 2)) * self.scaling  # (B, N, out)
        if index.shape == (b, n):
            # Per-token routing: dispatch tokens to their expert (a loop over the E experts, not over tokens).
            flat_x = x.reshape(b * n, -1)  # (BN, in)
            flat_i = index.reshape(b * n)
            out = x.new_zeros(b * n, self.out_features)
            for e in range(self.num_experts):
                rows = (flat_i == e).nonzero(as_tuple=True)[0]
                if rows.numel() == 0:
                    continue
                h = flat_x.index_select(0, rows) @ self.A[e].t()  # (n_e, r)
                out = out.index_add(0, rows, (h @ self.B[e].t()) * self.scaling)  # (BN, out)
            return out.view(b, n, self.out_features)
        raise ValueError(f"expert index must be (B,)=({b},) or (B, N)=({b}, {n}), got {tuple(index.shape)}")

    def _by_weights(self, x: Tensor, weights: Tensor) -> Tensor:
        b, n, _ = x.shape
        e = self.num_experts
        if weights.shape not in ((b, e), (b, n, e)):
            raise ValueError(f"expert weights must be (B, E)=({b}, {e}) or (B, N, E), got {tuple(weights.shape)}")
        h = torch.einsum("bni,eri->bner", x, self.A)  # (B, N, E, r)
        w = weights[:, None, :] if weights.dim() == 2 else weights  # (B, 1|N, E)
        h = h * w[..., None]  # (B, N, E, r)
        return torch.einsum("bner,eor->bno", h, self.B) * self.scaling  # (B, N, out)

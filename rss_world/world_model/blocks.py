"""Small transformer building blocks over a token grid: neighbourhood attention, pre-LN blocks, patch (un)embedding."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

CELL_TOLERANCE = 16.0  # a decoded cell shows the real one when its pixels are off by at most this on average (of 255)
DENSE_TOKENS = 256  # up to this many tokens LocalAttention runs dense masked attention (faster on small grids)


class LocalAttention(nn.Module):
    """Attention of every grid token over its ``window x window`` neighbourhood, any grid size.

    Translation-equivariant and free of absolute positions, so a model trained on small grids runs on larger
    ones unchanged: each head has a learned bias per relative offset in the window (plus an optional extra bias
    per sample, e.g. the chosen expert's), and keys/values outside the grid are a learned "outside" vector per
    head, so a token at the edge sees the edge. Cost is ``O(N * window²)``, not ``O(N²)``.

    Args:
        heads: attention heads ``H``.
        head_dim: width ``d`` of each head.
        window: odd neighbourhood side (3: the 8 neighbours and the token itself).
    """

    def __init__(self, heads: int, head_dim: int, window: int) -> None:
        super().__init__()
        if window < 1 or window % 2 == 0:
            raise ValueError(f"window must be odd and >= 1, got {window}")
        self.heads, self.head_dim, self.window = heads, head_dim, window
        self.rel = nn.Parameter(torch.zeros(heads, window * window))
        self.outside_k = nn.Parameter(torch.randn(heads, head_dim) * 0.02)
        self.outside_v = nn.Parameter(torch.randn(heads, head_dim) * 0.02)
        self._index: dict[tuple[int, str], Tensor] = {}  # window offsets of the padded grid, per grid size

    def window_index(self, size: int, device) -> Tensor:
        """``(N, M)``: for query token i and key j of the grid padded by the window's half-width on every side
        (``M = (size + window - 1)²``), the window offset of j as seen from i, or -1 when j is outside i's window
        (cached per size)."""
        key = (size, str(device))
        if key not in self._index:
            h, w = self.window // 2, self.window
            side = size + 2 * h
            r = torch.arange(size, device=device)
            qr, qc = (t.reshape(-1) for t in torch.meshgrid(r, r, indexing="ij"))
            pr = torch.arange(side, device=device)
            kr, kc = (t.reshape(-1) for t in torch.meshgrid(pr, pr, indexing="ij"))
            dr, dc = kr[None] - qr[:, None], kc[None] - qc[:, None]  # window offset + h: in 0..window-1 inside it
            ok = (dr >= 0) & (dr < w) & (dc >= 0) & (dc < w)
            self._index[key] = torch.where(ok, dr * w + dc, torch.full_like(dr, -1))
        return self._index[key]

    def padded(self, t: Tensor, size: int, outside: Tensor) -> Tensor:
        """``(B, H, N, d)`` -> ``(B, H, M, d)``: the grid padded with ``outside`` by the window's half-width."""
        b, h, n, d = t.shape
        p = self.window // 2
        grid = t.view(b, h, size, size, d)
        full = outside.view(1, h, 1, 1, d).to(t.dtype).expand(b, h, size + 2 * p, size + 2 * p, d).clone()
        full[:, :, p:p + size, p:p + size] = grid
        return full.view(b, h, -1, d)

    def forward(self, q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None = None) -> Tensor:
        """``q, k, v`` ``(B, H, N, d)`` on a square grid; ``bias`` ``(H, K)`` or ``(B, H, K)`` over the window's
        ``K = window²`` offsets (row-major, centre in the middle), added to the learned one. Returns
        ``(B, H, N, d)``.

        Small grids (up to :data:`DENSE_TOKENS` tokens) run dense attention over the padded grid with every key
        outside the window masked, which is fastest there; larger ones sum over the window's shifted copies of the
        padded grid, whose cost grows with ``N`` only. Both compute the same function (a test checks it)."""
        n = q.shape[2]
        size = math.isqrt(n)
        if size * size != n:
            raise ValueError(f"{n} tokens are not a square grid")
        rel = self.rel if bias is None else self.rel + bias
        rel = rel[None] if rel.dim() == 2 else rel  # (1|B, H, K)
        if n <= DENSE_TOKENS:
            idx = self.window_index(size, q.device)  # (N, M)
            mask = rel[..., idx.clamp_min(0)].masked_fill(idx < 0, float("-inf")).to(q.dtype)  # (1|B, H, N, M)
            kp, vp = self.padded(k, size, self.outside_k), self.padded(v, size, self.outside_v)
            return F.scaled_dot_product_attention(q, kp, vp, attn_mask=mask)
        b, h, _, d = q.shape
        kp = self.padded(k, size, self.outside_k).view(b, h, size + self.window - 1, -1, d)
        vp = self.padded(v, size, self.outside_v).view(b, h, size + self.window - 1, -1, d)
        qg = q.view(b, h, size, size, d) / math.sqrt(d)
        offsets = [(i, j) for i in range(self.window) for j in range(self.window)]
        scores = torch.stack([(qg * kp[:, :, i:i + size, j:j + size]).sum(-1) for i, j in offsets], -1)  # (B,H,s,s,K)
        attn = (scores + rel[:, :, None, None, :]).softmax(-1)
        out = sum(attn[..., k, None] * vp[:, :, i:i + size, j:j + size] for k, (i, j) in enumerate(offsets))
        return out.reshape(b, h, n, d)  # (B, H, N, d)


class LocalBlock(nn.Module):
    """Pre-LN transformer block over a token grid with :class:`LocalAttention`: ``x + Attn(LN x)``, then
    ``x + MLP(LN x)``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, window: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by heads={heads}")
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.attn = LocalAttention(heads, dim // heads, window)
        self.proj = nn.Linear(dim, dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)  # (B, H, N, d)
        x = x + self.proj(self.attn(q, k, v).transpose(1, 2).reshape(b, n, d))
        return x + self.mlp(self.norm2(x))  # (B, N, D)


def patchify(frames: Tensor, cell_px: int) -> Tensor:
    """(..., H, W, 3) -> (..., N, cell_px*cell_px*3), one patch per grid cell, row-major."""
    *lead, h, w, c = frames.shape
    s = h // cell_px
    x = frames.reshape(-1, s, cell_px, s, cell_px, c).permute(0, 1, 3, 2, 4, 5)  # (B, s, s, p, p, 3)
    return x.reshape(*lead, s * s, cell_px * cell_px * c)


def cell_errors(a: Tensor, b: Tensor, cell_px: int) -> Tensor:
    """Mean absolute pixel difference of every grid cell, ``(..., H, W, 3)`` twice -> ``(..., N)`` (pixel units)."""
    return (patchify(a.float(), cell_px) - patchify(b.float(), cell_px)).abs().mean(-1)


def unpatchify(patches: Tensor, cell_px: int) -> Tensor:
    """(B, N, cell_px*cell_px*3) -> (B, H, W, 3)."""
    b, n, _ = patches.shape
    s = int(round(n**0.5))
    x = patches.reshape(b, s, s, cell_px, cell_px, 3).permute(0, 1, 3, 2, 4, 5)  # (B, s, p, s, p, 3)
    return x.reshape(b, s * cell_px, s * cell_px, 3)

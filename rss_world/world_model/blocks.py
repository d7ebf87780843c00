"""Small transformer building blocks: grid patch embedding, 2D positions, pre-LN blocks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Block(nn.Module):
    """Pre-LN transformer block: ``x + Attn(LN x)``, then ``x + MLP(LN x)``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by heads={heads}")
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)  # (B, H, N, d)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)  # (B, N, D)
        x = x + self.proj(a)
        return x + self.mlp(self.norm2(x))  # (B, N, D)


class GridPositions(nn.Module):
    """Learned row and column embeddings for grids up to ``max_size`` × ``max_size`` (row-major tokens)."""

    def __init__(self, dim: int, max_size: int) -> None:
        super().__init__()
        self.max_size = max_size
        self.row = nn.Parameter(torch.randn(max_size, dim) * 0.02)
        self.col = nn.Parameter(torch.randn(max_size, dim) * 0.02)

    def forward(self, size: int) -> Tensor:
        if not 1 <= size <= self.max_size:
            raise ValueError(f"grid size {size} is outside 1..{self.max_size}")
        return (self.row[:size, None, :] + self.col[None, :size, :]).reshape(size * size, -1)  # (N, D)


def patchify(frames: Tensor, cell_px: int) -> Tensor:
    """(B, H, W, 3) -> (B, N, cell_px*cell_px*3), one patch per grid cell, row-major."""
    b, h, w, c = frames.shape
    s = h // cell_px
    x = frames.reshape(b, s, cell_px, s, cell_px, c).permute(0, 1, 3, 2, 4, 5)  # (B, s, s, p, p, 3)
    return x.reshape(b, s * s, cell_px * cell_px * c)


def unpatchify(patches: Tensor, cell_px: int) -> Tensor:
    """(B, N, cell_px*cell_px*3) -> (B, H, W, 3)."""
    b, n, _ = patches.shape
    s = int(round(n**0.5))
    x = patches.reshape(b, s, s, cell_px, cell_px, 3).permute(0, 1, 3, 2, 4, 5)  # (B, s, p, s, p, 3)
    return x.reshape(b, s * cell_px, s * cell_px, 3)

"""Neighbourhood attention: the dense-masked path (small grids) and the shifted-sum path (large grids) compute the
same function, a token sees only its window, and the edge sees the learned outside key/value."""

import pytest
import torch

from rss_world.world_model import blocks
from rss_world.world_model.blocks import LocalAttention


@pytest.mark.parametrize("size", [2, 3, 5, 8])
def test_dense_and_shifted_paths_agree(size, monkeypatch):
    torch.manual_seed(size)
    attn = LocalAttention(2, 8, 3)
    with torch.no_grad():
        attn.rel.normal_()
    q, k, v = (torch.randn(3, 2, size * size, 8) for _ in range(3))
    expert_bias = torch.randn(3, 2, 9)
    monkeypatch.setattr(blocks, "DENSE_TOKENS", 10**6)
    dense = attn(q, k, v, expert_bias)
    monkeypatch.setattr(blocks, "DENSE_TOKENS", 0)
    shifted = attn(q, k, v, expert_bias)
    torch.testing.assert_close(dense, shifted, atol=1e-5, rtol=1e-5)


def test_a_token_sees_only_its_window():
    torch.manual_seed(0)
    attn = LocalAttention(1, 4, 3)
    q, k, v = (torch.randn(1, 1, 25, 4) for _ in range(3))
    out = attn(q, k, v)
    far = v.clone()
    far[0, 0, 24] += 100.0  # the bottom-right cell: outside the window of the top-left one
    again = attn(q, k, far)
    torch.testing.assert_close(out[0, 0, 0], again[0, 0, 0])
    assert not torch.allclose(out[0, 0, 18], again[0, 0, 18])  # (3, 3) is its neighbour


def test_odd_window_only():
    with pytest.raises(ValueError, match="window must be odd"):
        LocalAttention(1, 4, 2)

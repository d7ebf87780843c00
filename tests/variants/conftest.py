"""What the DiT and SD3 tests share."""

import pytest
import torch


def randomize_adapters(handle, std: float = 0.3) -> None:
    """Fill every adapter and gate tensor of an attached RSR ``handle`` with seeded noise (B != 0: the experts act)."""
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in handle.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)


@pytest.fixture(scope="session")
def randomize():
    """The :func:`randomize_adapters` helper."""
    return randomize_adapters

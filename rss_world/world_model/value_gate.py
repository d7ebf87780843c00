"""A planning gate that runs differentiable value iteration over a grid of latent tokens.

The gate has to pick the action whose expert moves the agent one step closer to the goal. That is a shortest-path
problem on the grid. A transformer gate of fixed depth has to learn a graph search from cross-entropy alone. This
gate has the search built into its structure instead, in the style of Value Iteration Networks (Tamar et al., 2016):

1. Per-token heads (:meth:`ValueIterationGate.token_logits`) read the latent tokens and give three logits: "goal is
   here", "this cell can be walked on" and "the agent is here". Everything is learned from the latents; the gate
   never sees the symbolic map.
2. Value iteration on the ``s x s`` token grid: ``V_0 = R`` and ``V_{k+1} = max(R, P * max_a (K_a * V_k))``, where
   ``R = sigmoid(goal)``, ``P = sigmoid(walkable)`` and ``K_a`` is a learned 3x3 transition kernel per action. Each
   kernel is ``gamma * softmax`` over its 9 offsets, so values stay in [0, 1]. After enough sweeps a walkable cell
   at path distance ``d`` from the goal holds about ``gamma^d``.
3. The action logits are ``beta * log Q_a`` at the agent: ``Q_a = K_a * V`` is pooled over tokens with the softmax
   of the agent logits, and ``beta`` is learned.

The gate costs a few small convolutions per sweep, so dozens of sweeps are cheap. Torch only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

EPS = 1e-6


class ValueIterationGate(nn.Module):
    """Latent tokens ``(B, s*s, D)`` -> action logits ``(B, A)``.

    Args:
        dim: token width.
        num_actions: actions, one transition kernel each.
        sweeps: value-iteration sweeps; they must reach the longest shortest path the maps can have.
        gamma: discount per step, in (0, 1).
        hidden: width of the per-token heads.
    """

    def __init__(self, dim: int, num_actions: int, sweeps: int, gamma: float = 0.9, hidden: int = 64):
        super().__init__()
        if sweeps < 0 or not 0 < gamma < 1 or dim < 1 or num_actions < 1:
            raise ValueError(f"bad ValueIterationGate settings: dim={dim}, actions={num_actions}, sweeps={sweeps}, "
                             f"gamma={gamma}")
        self.sweeps, self.gamma = sweeps, gamma
        self.heads = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, 3))
        self.kernel = nn.Parameter(torch.empty(num_actions, 9))  # transition logits over the 3x3 offsets
        self.log_beta = nn.Parameter(torch.empty(()))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in self.heads:
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
        with torch.no_grad():
            self.kernel.normal_(0.0, 0.1)
            self.log_beta.fill_(math.log(10.0))

    def token_logits(self, z: Tensor) -> Tensor:
        """Per-token logits ``(B, N, 3)``: goal here, walkable here, agent here."""
        return self.heads(z)

    def kernels(self) -> Tensor:
        """Transition kernels ``(A, 1, 3, 3)``, each ``gamma`` times a distribution over the 9 offsets."""
        return (self.gamma * torch.softmax(self.kernel, -1)).view(-1, 1, 3, 3)

    def values(self, token_logits: Tensor) -> Tensor:
        """Value map ``(B, 1, s, s)`` after ``sweeps`` sweeps of value iteration."""
        b, n, _ = token_logits.shape
        s = math.isqrt(n)
        grid = token_logits.float().transpose(1, 2).reshape(b, 3, s, s)
        reward, walk = torch.sigmoid(grid[:, :1]), torch.sigmoid(grid[:, 1:2])
        k = self.kernels()
        v = reward
        for _ in range(self.sweeps):
            v = torch.maximum(reward, walk * F.conv2d(v, k, padding=1).amax(1, keepdim=True))
        return v

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Returns ``(action logits (B, A), agent weights (B, N))``."""
        tl = self.token_logits(z)  # (B, N, 3)
        q = F.conv2d(self.values(tl), self.kernels(), padding=1).flatten(2)  # (B, A, N)
        where = torch.softmax(tl[..., 2].float(), -1)  # (B, N)
        q_agent = (q * where[:, None]).sum(-1)  # (B, A)
        return self.log_beta.exp() * torch.log(q_agent + EPS), where

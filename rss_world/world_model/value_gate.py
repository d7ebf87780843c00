"""A planning gate that runs value iteration over the grid of latent tokens, at any grid size.

The gate has to pick the action whose expert moves the agent one step closer to the goal: a shortest-path problem
on the grid. A transformer gate of fixed depth has to learn a graph search from cross-entropy alone; this gate has
the search built into its structure instead, in the style of Value Iteration Networks (Tamar et al., 2016):

1. Per-token heads (:meth:`ValueIterationGate.token_logits`) read the latent tokens and give three logits: "the
   goal is here", "a hole is here" and "the agent is here". The trainer teaches them from what an environment
   gives, never from the map: a reward marks the goal, a termination without reward a hole, and the cells whose
   pixels change when an action is taken mark the agent (``rss_world.training.signals``).
2. Value iteration on the ``s x s`` token grid: ``V_0 = R`` and ``V_{k+1} = max(R, P * max_a (K_a * V_k))``, where
   ``R`` is P(goal), ``P`` = 1 - P(hole) and ``K_a`` a learned 3x3 transition kernel per action, ``gamma`` times a
   softmax over its 9 offsets (taught by the demonstrated actions and by where the agent moves). Off the grid the
   value is 0. Sweeps run until the values stop changing (at most ``max_sweeps``, default ``N`` = ``s²``), so the
   search reaches every path length at every grid size; a walkable cell at path distance ``d`` from the goal
   holds about ``gamma^d``.
3. The action logits are ``beta * log Q_a`` at the agent: ``Q_a = K_a * V`` read at the agent's token.

In training the heads and kernels are soft (probabilities, softmax kernels, the agent a softmax over tokens). In
eval mode they are hard: a cell is the goal or a hole when its logit is above 0, each kernel is its most likely
offset and the agent its most likely token, so the values are exact discounted shortest-path lengths. The gate
costs a few small convolutions per sweep. Torch only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

EPS = 1e-30  # gamma**d stays far above this for every path on a 32x32 grid (0.97**1024 is 3e-14)


class ValueIterationGate(nn.Module):
    """Latent tokens ``(B, s*s, D)`` -> action logits ``(B, A)``.

    Args:
        dim: token width.
        num_actions: actions, one transition kernel each.
        max_sweeps: most value-iteration sweeps; ``None``: the number of tokens (enough for any path).
        gamma: discount per step, in (0, 1).
        hidden: width of the per-token heads.
    """

    def __init__(self, dim: int, num_actions: int, max_sweeps: int | None = None, gamma: float = 0.97,
                 hidden: int = 64):
        super().__init__()
        if (max_sweeps is not None and max_sweeps < 1) or not 0 < gamma < 1 or dim < 1 or num_actions < 1:
            raise ValueError(f"bad ValueIterationGate settings: dim={dim}, actions={num_actions}, "
                             f"max_sweeps={max_sweeps}, gamma={gamma}")
        self.max_sweeps, self.gamma = max_sweeps, gamma
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
        """Per-token logits ``(B, N, 3)``: goal here, hole here, agent here."""
        return self.heads(z)

    def kernels(self, hard: bool = False) -> Tensor:
        """Transition kernels ``(A, 1, 3, 3)``: ``gamma`` times a distribution over the 9 offsets (one-hot at the
        most likely offset when ``hard``)."""
        p = torch.softmax(self.kernel.float(), -1)
        if hard:
            p = F.one_hot(p.argmax(-1), 9).to(p.dtype)
        return (self.gamma * p).view(-1, 1, 3, 3)

    def values(self, token_logits: Tensor, hard: bool = False) -> Tensor:
        """Value map ``(B, 1, s, s)``: value iteration until the values stop changing."""
        b, n, _ = token_logits.shape
        s = math.isqrt(n)
        grid = token_logits.float().transpose(1, 2).reshape(b, 3, s, s)
        if hard:
            reward, walk = (grid[:, :1] > 0).float(), (grid[:, 1:2] <= 0).float()
        else:
            reward, walk = torch.sigmoid(grid[:, :1]), torch.sigmoid(-grid[:, 1:2])
        k = self.kernels(hard)
        v = reward
        for _ in range(self.max_sweeps or n):
            nxt = torch.maximum(reward, walk * F.conv2d(v, k, padding=1).amax(1, keepdim=True))
            change = (nxt - v).abs().max()
            done = bool(change == 0) if hard else bool(change <= 1e-7 * nxt.abs().max().clamp_min(EPS))
            v = nxt
            if done:
                break
        return v

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Returns ``(action logits (B, A), agent weights (B, N))``; hard in eval mode (see the module doc)."""
        hard = not self.training
        tl = self.token_logits(z)  # (B, N, 3)
        q = F.conv2d(self.values(tl, hard), self.kernels(hard), padding=1).flatten(2)  # (B, A, N)
        agent = tl[..., 2].float()
        where = F.one_hot(agent.argmax(-1), agent.shape[-1]).float() if hard else torch.softmax(agent, -1)
        q_agent = (q * where[:, None]).sum(-1)  # (B, A)
        return self.log_beta.exp() * torch.log(q_agent + EPS), where

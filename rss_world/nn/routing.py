"""The gating network: which expert refines the tokens at each latent step.

The gate reads the current vision tokens and a condition embedding (timestep plus class, text or action) and
emits logits per token ``(B, N, E)`` or per sample ``(B, E)``. Selection is a hard Gumbel-softmax: the forward
pass uses exactly one expert, and the straight-through estimator sends the gradient of the chosen expert's
coefficient back into all logits through the soft probabilities (winner-takes-all gradient allocation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class Selection:
    """One routing decision.

    Attributes:
        index: chosen expert, ``(B,)`` per sample or ``(B, N)`` per token (int64).
        coef: straight-through coefficient of the chosen expert, same shape as ``index``. Its forward value is
            exactly 1.0; its gradient is that of the chosen soft probability.
        probs: soft selection probabilities ``softmax(logits / tau)`` (fp32), ``(B, E)`` or ``(B, N, E)``.
        logits: the gate's raw logits.
        forced: whether the index was imposed from outside (e.g. the action).
    """

    index: Tensor
    coef: Tensor
    probs: Tensor
    logits: Tensor
    forced: bool = False


@dataclass
class RoutingRecord:
    """Chosen experts and probabilities for every latent step, for plots and metrics."""

    steps: list[Selection] = field(default_factory=list)

    def append(self, sel: Selection) -> None:
        self.steps.append(sel)

    def __len__(self) -> int:
        return len(self.steps)

    def indices(self) -> Tensor:
        """Chosen experts stacked over steps: ``(T, B)`` or ``(T, B, N)``."""
        return torch.stack([s.index for s in self.steps])

    def probs(self) -> Tensor:
        """Soft probabilities stacked over steps: ``(T, B, E)`` or ``(T, B, N, E)``."""
        return torch.stack([s.probs for s in self.steps])

    def usage(self, num_experts: int) -> Tensor:
        """Share of routed units (samples or tokens) given to each expert at each step: ``(T, E)``."""
        idx = self.indices().detach()
        flat = idx.reshape(idx.shape[0], -1)
        counts = F.one_hot(flat, num_experts).sum(1).float()  # (T, E)
        return counts / flat.shape[1]


def balance_loss(probs: Tensor, index: Tensor) -> Tensor:
    """Switch-Transformer load-balancing loss ``E · Σ_i f_i · p_i``.

    ``f_i`` is the share of routed units sent to expert ``i`` (not differentiable) and ``p_i`` the mean soft
    probability of expert ``i`` (differentiable). Its minimum, 1.0, is reached at uniform use; a collapsed
    router scores up to ``E``.

    Args:
        probs: ``(..., E)`` soft probabilities.
        index: ``(...)`` chosen experts, matching ``probs`` without the last axis.
    """
    e = probs.shape[-1]
    p = probs.reshape(-1, e)
    f = F.one_hot(index.reshape(-1), e).to(p.dtype).mean(0)  # (E,)
    return e * (f * p.mean(0)).sum()


def gumbel_select(logits: Tensor, temperature: float, hard_sample: bool) -> Selection:
    """Hard Gumbel-softmax selection with a straight-through coefficient.

    Sampling happens in fp32 whatever the logits' dtype. With ``hard_sample`` False (eval), the choice is the
    deterministic argmax of the logits and no noise is drawn.
    """
    lf = logits.float()
    if hard_sample:
        u = torch.rand_like(lf).clamp_(1e-10, 1.0 - 1e-7)
        noisy = lf - torch.log(-torch.log(u))
    else:
        noisy = lf
    probs = F.softmax(noisy / temperature, dim=-1)
    index = noisy.argmax(dim=-1)
    chosen = probs.gather(-1, index[..., None]).squeeze(-1)
    coef = 1.0 + (chosen - chosen.detach())  # forward value exactly 1.0, gradient of the chosen probability
    return Selection(index=index, coef=coef, probs=F.softmax(lf / temperature, dim=-1), logits=logits)


class GatingNetwork(nn.Module):
    """Gate over ``E`` experts, conditioned on tokens and a condition embedding.

    Args:
        dim: token width ``D``.
        cond_dim: condition width ``C`` (0 for no condition).
        num_experts: ``E`` (>= 1).
        per_token: route every token on its own (``(B, N, E)`` logits) or one choice per sample (``(B, E)``).
        temperature: Gumbel-softmax temperature (> 0); the paper uses 5.0.
        hidden: width of the gate's hidden layer (default ``min(D, 256)``).
    """

    def __init__(
        self,
        dim: int,
        cond_dim: int,
        num_experts: int,
        per_token: bool = True,
        *,
        temperature: float,
        hidden: int | None = None,
    ) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"gate token width must be >= 1, got {dim}")
        if cond_dim < 0:
            raise ValueError(f"gate condition width must be >= 0, got {cond_dim}")
        if num_experts < 1:
            raise ValueError(f"num_experts must be >= 1, got {num_experts}")
        if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"Gumbel-softmax temperature must be > 0, got {temperature}")
        hidden = hidden or min(dim, 256)
        self.dim, self.cond_dim, self.num_experts = dim, cond_dim, num_experts
        self.per_token, self.temperature = per_token, float(temperature)
        self.norm = nn.LayerNorm(dim)
        self.tok = nn.Linear(dim, hidden)
        self.cond = nn.Linear(cond_dim, hidden) if cond_dim > 0 else None
        self.out = nn.Linear(hidden, num_experts)

    def logits(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """Gate logits: ``(B, N, E)`` per token or ``(B, E)`` per sample."""
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"gate tokens must be (B, N, {self.dim}), got {tuple(x.shape)}")
        h = self.norm(x)  # (B, N, D)
        if not self.per_token:
            h = h.mean(1, keepdim=True)  # (B, 1, D)
        h = self.tok(h)  # (B, N|1, hidden)
        if self.cond is not None:
            if cond is None or cond.shape != (x.shape[0], self.cond_dim):
                got = None if cond is None else tuple(cond.shape)
                raise ValueError(f"gate condition must be (B, C)=({x.shape[0]}, {self.cond_dim}), got {got}")
            h = h + self.cond(cond)[:, None, :]  # (B, N|1, hidden)
        logits = self.out(F.silu(h))  # (B, N|1, E)
        return logits if self.per_token else logits[:, 0]

    def forward(self, x: Tensor, cond: Tensor | None = None, forced: Tensor | None = None) -> Selection:
        """Route: logits, then hard Gumbel (train) or argmax (eval); ``forced`` overrides the choice."""
        logits = self.logits(x, cond)
        if forced is None:
            return gumbel_select(logits, self.temperature, hard_sample=self.training)
        unit_shape = logits.shape[:-1]
        forced = torch.as_tensor(forced, device=logits.device)
        if forced.dim() == 1 and len(unit_shape) == 2:
            forced = forced[:, None].expand(unit_shape)
        if forced.shape != unit_shape:
            raise ValueError(f"forced expert index must have shape {tuple(unit_shape)}, got {tuple(forced.shape)}")
        if forced.dtype not in (torch.int64, torch.int32) or forced.min() < 0 or forced.max() >= self.num_experts:
            raise ValueError(f"forced expert index must be integers in [0, {self.num_experts}), got {forced}")
        probs = F.softmax(logits.float() / self.temperature, dim=-1)
        coef = torch.ones(unit_shape, dtype=probs.dtype, device=logits.device)
        return Selection(index=forced.long(), coef=coef, probs=probs, logits=logits, forced=True)


class SingleExpert(nn.Module):
    """The route of a layer with one expert (``E = 1``): expert 0 everywhere, with nothing learned or computed.

    It stands where a :class:`GatingNetwork` would and answers the same calls, but it has no parameters and runs
    no network: a softmax over one expert is 1 whatever the logits, so a gate there would get exactly zero gradient
    and change nothing. Its selection has ``index`` 0, ``coef`` 1, ``probs`` 1 and ``logits`` 0.

    Args:
        dim: token width ``D`` (checked, as the gate would).
        cond_dim: condition width ``C`` (checked, as the gate would; 0 for no condition).
        per_token: routing units are tokens ``(B, N)`` or samples ``(B,)``.
    """

    num_experts = 1

    def __init__(self, dim: int, cond_dim: int, per_token: bool = True) -> None:
        super().__init__()
        self.dim, self.cond_dim, self.per_token = dim, cond_dim, per_token

    def forward(self, x: Tensor, cond: Tensor | None = None, forced: Tensor | None = None) -> Selection:
        """The constant selection for ``x (B, N, D)``; ``forced`` may only name expert 0."""
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"gate tokens must be (B, N, {self.dim}), got {tuple(x.shape)}")
        if self.cond_dim > 0 and (cond is None or cond.shape != (x.shape[0], self.cond_dim)):
            got = None if cond is None else tuple(cond.shape)
            raise ValueError(f"gate condition must be (B, C)=({x.shape[0]}, {self.cond_dim}), got {got}")
        unit_shape = tuple(x.shape[:2]) if self.per_token else tuple(x.shape[:1])
        index = torch.zeros(unit_shape, dtype=torch.long, device=x.device)
        if forced is not None:
            forced = torch.as_tensor(forced, device=x.device)
            if forced.dim() == 1 and len(unit_shape) == 2:
                forced = forced[:, None].expand(unit_shape)
            if tuple(forced.shape) != unit_shape:
                raise ValueError(f"forced expert index must have shape {unit_shape}, got {tuple(forced.shape)}")
            if forced.dtype not in (torch.int64, torch.int32) or bool((forced != 0).any()):
                raise ValueError(f"forced expert index must be integers in [0, 1), got {forced}")
        ones = torch.ones((*unit_shape, 1), device=x.device)
        return Selection(index=index, coef=ones[..., 0], probs=ones, logits=x.new_zeros((*unit_shape, 1)),
                         forced=forced is not None)

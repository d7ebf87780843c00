"""Ablations of the world model, each a small subclass that the ablation study builds by name.

The shipped :class:`~rss_world.world_model.WorldModel` reads straight through; each row of the ablation table
changes one idea here:

* :class:`TrunkGateWorldModel`: the gate closest to the paper's, a weight-tied transformer block (neighbourhood
  attention, like every block of the model) iterated over the tokens, then the core's per-token
  ``GatingNetwork``, pooled into one decision per sample by learned attention.
* :class:`SharedExpertWorldModel`: no routing: one expert for every action, which enters as an embedding.
* :class:`MultiExpertWorldModel`: ``k`` experts per action; the gate also picks which of the action's experts runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rss_world.nn.routing import GatingNetwork, gumbel_select

from .blocks import LocalBlock
from .config import NUM_ACTIONS, WorldModelConfig
from .model import WorldModel
from .value_gate import ValueIterationGate


@dataclass
class TrunkGateConfig(WorldModelConfig):
    trunk_iters: int = 8  # iterations of the weight-tied gate block

    def checks(self) -> dict[str, bool]:
        return {**super().checks(), "trunk_iters": self.trunk_iters >= 0}


class TrunkGate(nn.Module):
    """Transformer-trunk gate: ``iters`` passes of one neighbourhood block over ``z`` (``z`` re-injected every
    pass), per-token expert logits from ``GatingNetwork``, pooled by a learned softmax over tokens."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, window: int, num_experts: int, iters: int,
                 temperature: float) -> None:
        super().__init__()
        self.iters = iters
        self.block = LocalBlock(dim, heads, mlp_ratio, window)
        self.norm = nn.LayerNorm(dim)
        self.route = GatingNetwork(dim, 0, num_experts, per_token=True, temperature=temperature)
        self.pool = nn.Linear(dim, 1)

    def forward(self, z: Tensor) -> Tensor:
        h = z
        for _ in range(self.iters):
            h = self.block(h + z)  # (B, N, D)
        h = self.norm(h)
        w = torch.softmax(self.pool(h).squeeze(-1), dim=1)  # (B, N)
        return (w[..., None] * self.route.logits(h)).sum(1)  # (B, E)


class TrunkGateWorldModel(WorldModel):
    """The shipped model with the paper-like transformer gate instead of value iteration."""

    arch = "trunk_gate"
    config_class = TrunkGateConfig

    def build_gate(self) -> nn.Module:
        c = self.cfg
        return TrunkGate(c.dim, c.heads, c.mlp_ratio, c.window, self.num_experts, c.trunk_iters, c.temperature)

    def gate_logits(self, z: Tensor) -> Tensor:
        return self.gate(z)

    def gate_token_logits(self, z: Tensor) -> Tensor | None:
        return None

    def gate_kernels(self) -> Tensor | None:
        return None


class SharedExpertWorldModel(WorldModel):
    """No routing: one LoRA expert serves every action; the action is added to the tokens as an embedding."""

    arch = "shared_expert"

    def __init__(self, cfg: WorldModelConfig | None = None) -> None:
        super().__init__(cfg)
        self.action_embed = nn.Embedding(NUM_ACTIONS, self.cfg.dim)

    @property
    def num_experts(self) -> int:
        return 1

    def expert_index(self, action: Tensor, gate_logits: Tensor | None) -> Tensor:
        return torch.zeros_like(action)

    def step_input(self, x: Tensor, action: Tensor) -> Tensor:
        return x + self.action_embed(action)[:, None, :]  # (B, N, D)


@dataclass
class MultiExpertConfig(WorldModelConfig):
    experts_per_action: int = 2

    def checks(self) -> dict[str, bool]:
        return {**super().checks(), "experts_per_action": self.experts_per_action >= 1}


class MultiExpertWorldModel(WorldModel):
    """``k`` experts per action (E = 4k); a linear head read at the agent picks among an action's experts."""

    arch = "multi_expert"
    config_class = MultiExpertConfig

    @property
    def experts_per_action(self) -> int:  # type: ignore[override]
        return self.cfg.experts_per_action

    def build_gate(self) -> nn.Module:
        return nn.ModuleDict({"value": ValueIterationGate(self.cfg.dim, NUM_ACTIONS),
                              "sub": nn.Linear(self.cfg.dim, self.num_experts)})

    def gate_logits(self, z: Tensor) -> Tensor:
        logits, where = self.gate["value"](z)  # (B, 4), (B, N)
        k = self.experts_per_action
        sub = self.gate["sub"]((where[..., None] * z).sum(1)).view(-1, NUM_ACTIONS, k).log_softmax(-1)
        return (logits[..., None] + sub).reshape(-1, NUM_ACTIONS * k)  # (B, 4k)

    def gate_token_logits(self, z: Tensor) -> Tensor | None:
        return self.gate["value"].token_logits(z)

    def gate_kernels(self) -> Tensor | None:
        return self.gate["value"].kernels()

    def action_probs(self, gate_logits: Tensor) -> Tensor:
        return F.softmax(gate_logits.float(), -1).view(-1, NUM_ACTIONS, self.experts_per_action).sum(-1)

    def pick_action(self, gate_logits: Tensor) -> Tensor:
        return super().pick_action(gate_logits) // self.experts_per_action

    def expert_index(self, action: Tensor, gate_logits: Tensor | None) -> Tensor:
        k = self.experts_per_action
        group = gate_logits.view(-1, NUM_ACTIONS, k)[torch.arange(len(action)), action]  # (B, k)
        return action * k + gumbel_select(group, self.cfg.temperature, hard_sample=self.training).index

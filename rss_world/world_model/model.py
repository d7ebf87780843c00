"""The visual world model: encode / step / decode / status / policy.

* ``encode`` turns a frame into one latent token per grid cell (patch embedding + transformer blocks whose
  attention covers each token's 3x3 neighbourhood, :class:`~rss_world.world_model.blocks.LocalAttention`). Nothing
  depends on absolute positions, so one model serves every grid size, also sizes it never saw.
* ``step`` is one latent step of recursive sparse attention (``rss_world.nn.recursive``): the action selects its
  LoRA expert, which refines the tokens inside neighbourhood attention (with a per-expert relative-position bias
  over the window), followed by a zero-initialised MLP. Without an action the planning gate picks it.
* The planning gate is ours, not the paper's MLP gate: differentiable value iteration over the latent token grid
  (``value_gate.py``), read at the agent's token. The paper-like gate is an ablation (``ablations.py``).
* ``decode`` is a transformer frame decoder (the same neighbourhood blocks): tokens -> RGB patches in [0, 1].
* Status head: per-token logits (agent on goal here, agent in a hole here), pooled by max over tokens.

Only this API is meant for planners and environments.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rss_world.nn.recursive import RecursiveSparseAttention, RSRConfig
from rss_world.nn.routing import RoutingRecord, Selection, gumbel_select

from .blocks import LocalAttention, LocalBlock, patchify, unpatchify
from .config import NUM_ACTIONS, WorldModelConfig
from .value_gate import ValueIterationGate

REL_SCALE = 30.0  # relative-position biases are stored /30 so that Adam moves them 30x faster


@dataclass
class StepSelection(Selection):
    """The routing of one world-model step plus the action it stands for (``(B,)`` int64)."""

    action: Tensor | None = None


@dataclass
class Imagination:
    """A rollout in latent space.

    Attributes:
        latents: ``T + 1`` tensors ``(B, N, D)``: the start and every step.
        frames: ``(B, T + 1, H, W, 3)`` decoded frames in [0, 1].
        actions: ``(B, T)`` actions taken.
        policy: ``(B, T, 4)`` the gate's action probabilities at each step's input state.
        status: ``(B, T + 1, 2)`` P(agent on goal), P(agent in hole) for every latent.
        route: the routing record of the ``T`` steps.
    """

    latents: list[Tensor]
    frames: Tensor
    actions: Tensor
    policy: Tensor
    status: Tensor
    route: RoutingRecord = field(default_factory=RoutingRecord)


class WorldModel(nn.Module):
    """Action-indexed recursive sparse world model over grid frames: one LoRA expert per action."""

    arch = "rsr"  # the name a checkpoint records to rebuild this class (see ``rss_world.world_model.ARCHS``)
    config_class = WorldModelConfig
    experts_per_action = 1

    def __init__(self, cfg: WorldModelConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or self.config_class()
        if not isinstance(cfg, self.config_class):
            raise ValueError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(cfg).__name__}")
        cfg.validate()
        self.cfg = cfg
        d, p = cfg.dim, cfg.cell_px
        self.patch = nn.Linear(3 * p * p, d)
        self.enc = nn.ModuleList(LocalBlock(d, cfg.heads, cfg.mlp_ratio, cfg.window) for _ in range(cfg.enc_layers))
        self.enc_norm = nn.LayerNorm(d)
        # Dynamics: one recursive sparse attention layer. There is no pretrained base here, so its base
        # projections train with the model. The output projection has no bias: a step adds only W_o (a_t - a0).
        self.dyn_norm = nn.LayerNorm(d)
        # Relative-position bias over the attention window: the attention's own (shared by the base attention and
        # every expert) plus one per expert, so an action's expert can attend to "the neighbour on my left"
        # directly. Zero-init: no bias at the start.
        self.rel_expert = nn.Parameter(torch.zeros(self.num_experts, cfg.heads, cfg.window ** 2))
        proj = [nn.Linear(d, d) for _ in range(3)] + [nn.Linear(d, d, bias=False)]
        rsr_cfg = RSRConfig(num_experts=self.num_experts, steps=1, rank=cfg.rank, cond_dim=0, per_token=False,
                            temperature=cfg.temperature)
        self.rsr = RecursiveSparseAttention(rsr_cfg, *proj, heads=cfg.heads, external_routing=True,
                                            attention=LocalAttention(cfg.heads, d // cfg.heads, cfg.window))
        self.rsr.base.requires_grad_(True)
        self.dyn_mlp_norm = nn.LayerNorm(d)
        hidden = int(d * cfg.mlp_ratio)
        self.dyn_mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d))
        # Zero-init the MLP's output (adaLN-Zero style): with the experts' B = 0 as well, a fresh step is the
        # identity, so decode(step(z)) starts equal to decode(z) and training only has to learn the change.
        nn.init.zeros_(self.dyn_mlp[-1].weight)
        nn.init.zeros_(self.dyn_mlp[-1].bias)
        self.gate = self.build_gate()
        self.dec = nn.ModuleList(LocalBlock(d, cfg.heads, cfg.mlp_ratio, cfg.window) for _ in range(cfg.dec_layers))
        self.dec_norm = nn.LayerNorm(d)
        self.dec_out = nn.Linear(d, 3 * p * p)
        self.status_head = nn.Linear(d, 2)

    # ------------------------------------------------------------------ what ablations override
    @property
    def num_experts(self) -> int:
        return NUM_ACTIONS * self.experts_per_action

    def build_gate(self) -> nn.Module:
        """The planning gate: value iteration over the latent grid, ``z -> (action logits, agent weights)``."""
        return ValueIterationGate(self.cfg.dim, NUM_ACTIONS)

    def gate_logits(self, z: Tensor) -> Tensor:
        """The planning gate's logits ``(B, E)`` over experts at latent ``z`` (here one expert per action)."""
        return self.gate(z)[0]

    def gate_token_logits(self, z: Tensor) -> Tensor | None:
        """The value-iteration gate's per-token logits ``(B, N, 3)``: goal here, hole here, agent here (``None`` for a
        gate without them)."""
        return self.gate.token_logits(z)

    def gate_kernels(self) -> Tensor | None:
        """The value-iteration gate's transition kernels ``(A, 1, 3, 3)`` (``None`` for a gate without them)."""
        return self.gate.kernels()

    def action_probs(self, gate_logits: Tensor) -> Tensor:
        """Gate logits -> action distribution ``(B, 4)``."""
        return F.softmax(gate_logits.float(), -1)

    def pick_action(self, gate_logits: Tensor) -> Tensor:
        """The gate's action: a hard Gumbel sample in training, the argmax in eval, ``(B,)``."""
        return gumbel_select(gate_logits, self.cfg.temperature, self.training).index

    def expert_index(self, action: Tensor, gate_logits: Tensor | None) -> Tensor:
        """The expert that runs an action (here: the action itself)."""
        return action

    def step_input(self, x: Tensor, action: Tensor) -> Tensor:
        """What the dynamics layer attends over, given the action (the action enters only through routing)."""
        return x

    # ------------------------------------------------------------------ encode / decode
    def check_frames(self, frames: Tensor) -> int:
        """Validate ``(B, H, W, 3)`` uint8 frames; return the grid size (any size from 2 up)."""
        p = self.cfg.cell_px
        if frames.dim() != 4 or frames.shape[-1] != 3 or frames.shape[1] != frames.shape[2]:
            raise ValueError(f"frames must be (B, H, W, 3) with H == W, got {tuple(frames.shape)}")
        if frames.shape[1] % p:
            raise ValueError(f"frame side {frames.shape[1]} is not a multiple of cell_px={p}")
        size = frames.shape[1] // p
        if size < 2:
            raise ValueError(f"grid size {size} is below 2")
        if frames.dtype != torch.uint8:
            raise ValueError(f"frames must be uint8 RGB, got {frames.dtype}")
        return size

    def encode(self, frames: Tensor | np.ndarray) -> Tensor:
        """Frames ``(B, H, W, 3)`` uint8 (tensor or array) -> latent tokens ``(B, N, D)``, one per grid cell."""
        frames = torch.as_tensor(frames, device=self.patch.weight.device)
        self.check_frames(frames)
        x = patchify(frames.float() / 255.0, self.cfg.cell_px)  # (B, N, 3p²)
        z = self.patch(x)  # (B, N, D)
        for blk in self.enc:
            z = blk(z)
        return self.enc_norm(z)

    def decode(self, z: Tensor) -> Tensor:
        """Latent tokens ``(B, N, D)`` -> frames ``(B, H, W, 3)``, float in [0, 1]."""
        return torch.sigmoid(self.decode_logits(z))

    def decode_logits(self, z: Tensor) -> Tensor:
        """Pre-sigmoid pixels ``(B, H, W, 3)`` (the training loss uses these)."""
        self._grid_side(z)
        h = z
        for blk in self.dec:
            h = blk(h)
        return unpatchify(self.dec_out(self.dec_norm(h)), self.cfg.cell_px)

    @staticmethod
    def to_uint8(frames: Tensor) -> Tensor:
        """Decoded frames in [0, 1] -> uint8."""
        return frames.clamp(0, 1).mul_(255.0).round_().to(torch.uint8)  # one temporary, rounded in place

    def reencode(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Decode ``z`` to uint8 frames and encode them again: ``(fresh latent (B, N, D), frames (B, H, W, 3))``.
        The planners and training's ``reencode`` use it to keep rollouts on the latents the encoder makes."""
        frames = self.to_uint8(self.decode(z))
        return self.encode(frames), frames

    @staticmethod
    def _grid_side(z: Tensor) -> int:
        n = z.shape[1]
        size = math.isqrt(n)
        if size * size != n:
            raise ValueError(f"latent has {n} tokens, not a square grid")
        return size

    # ------------------------------------------------------------------ heads
    def gate_parameters(self) -> list[nn.Parameter]:
        """The planning gate's parameters (what the gate training stage updates)."""
        return list(self.gate.parameters())

    def policy(self, z: Tensor) -> Tensor:
        """The gate's action distribution ``(B, 4)``."""
        return self.action_probs(self.gate_logits(z))

    def status_logits(self, z: Tensor) -> Tensor:
        """Per-token logits ``(B, N, 2)``: agent on goal here, agent in a hole here."""
        return self.status_head(z)

    def status(self, z: Tensor) -> Tensor:
        """Per-sample ``(B, 2)``: P(agent on goal), P(agent in hole) (max over tokens)."""
        return torch.sigmoid(self.status_logits(z)).amax(1)

    # ------------------------------------------------------------------ dynamics
    def dyn_input(self, z: Tensor) -> Tensor:
        """What the dynamics layer reads: the normalised tokens (the attention knows relative positions)."""
        return self.dyn_norm(z)

    def _check_action(self, action: Tensor | np.ndarray, batch: int, device) -> Tensor:
        action = torch.as_tensor(action, device=device)
        if action.shape != (batch,) or action.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"action must be an int tensor of shape ({batch},), got {action.dtype} "
                             f"{tuple(action.shape)}")
        if action.min() < 0 or action.max() >= NUM_ACTIONS:
            raise ValueError(f"actions must be in 0..{NUM_ACTIONS - 1}, got {action.tolist()}")
        return action.long()

    def step(
        self, z: Tensor, action: Tensor | None = None, with_logits: bool = True
    ) -> tuple[Tensor, Tensor | None, StepSelection]:
        """One latent step.

        Args:
            z: latent ``(B, N, D)``.
            action: ``(B,)`` int actions in 0..3, or None to let the gate choose.
            with_logits: compute the gate's logits. With a given action the dynamics do not need them; ``False``
                skips the gate (environments use this) and returns ``None`` logits and NaN probabilities.

        Returns:
            ``(z_next, gate_logits (B, E) or None, selection)``; ``selection.action`` is the action taken.
        """
        if z.dim() != 3 or z.shape[-1] != self.cfg.dim:
            raise ValueError(f"latent must be (B, N, {self.cfg.dim}), got {tuple(z.shape)}")
        needed = with_logits or action is None or self.experts_per_action > 1
        logits = self.gate_logits(z) if needed else None
        action = self.pick_action(logits) if action is None else action
        action = self._check_action(action, z.shape[0], z.device)
        self._grid_side(z)
        x = self.step_input(self.dyn_input(z), action)
        cache = self.rsr.prepare(x, with_out=False)  # the step needs a0, not W_o a0

        def expert_bias(index: Tensor) -> Tensor:
            return REL_SCALE * self.rel_expert[index]  # (B, H, window²)

        index = self.expert_index(action, logits)
        if logits is None:
            logits = z.new_zeros(z.shape[0], self.num_experts)
            probs = torch.full_like(logits, float("nan"), dtype=torch.float32)  # not computed, never uniform
        else:
            probs = F.softmax(logits.float() / self.cfg.temperature, dim=-1)
        sel = StepSelection(index=index, coef=torch.ones(len(index), device=z.device), probs=probs, logits=logits,
                            forced=True, action=action)
        s, _, _ = self.rsr.step(x, cache, attn_bias=expert_bias, selection=sel)
        z = z + (s - x)  # (B, N, D) the expert's contribution
        z = z + self.dyn_mlp(self.dyn_mlp_norm(z))
        return z, (logits if needed else None), sel

    def imagine(
        self,
        z0: Tensor,
        actions: Tensor | None = None,
        policy: Callable[[Tensor], Tensor] | None = None,
        steps: int | None = None,
    ) -> Imagination:
        """Roll out ``steps`` latent steps from ``z0``.

        Args:
            z0: start latent ``(B, N, D)``.
            actions: ``(B, T)`` forced actions; or
            policy: a callable ``z -> (B,)`` actions; or neither: the gate picks (the paper's planner).
            steps: ``T`` (default: ``actions.shape[1]``).
        """
        if actions is not None and policy is not None:
            raise ValueError("give `actions` or `policy`, not both")
        if actions is not None:
            if actions.dim() != 2 or actions.shape[0] != z0.shape[0]:
                raise ValueError(f"actions must be (B, T) with B={z0.shape[0]}, got {tuple(actions.shape)}")
            steps = actions.shape[1] if steps is None else steps
            if steps > actions.shape[1]:
                raise ValueError(f"{steps} steps requested but only {actions.shape[1]} actions given")
        if steps is None or steps < 0:
            raise ValueError("imagine needs `steps` >= 0 when no action sequence is given")
        z, latents, taken, pol, route = z0, [z0], [], [], RoutingRecord()
        for t in range(steps):
            a = actions[:, t] if actions is not None else (policy(z) if policy is not None else None)
            z, logits, sel = self.step(z, a)
            pol.append(self.action_probs(logits))
            taken.append(sel.action)
            route.append(sel)
            latents.append(z)
        frames = torch.stack([self.decode(h) for h in latents], 1)  # (B, T+1, H, W, 3)
        status = torch.stack([self.status(h) for h in latents], 1)  # (B, T+1, 2)
        b = z0.shape[0]
        return Imagination(
            latents=latents,
            frames=frames,
            actions=torch.stack(taken, 1) if taken else torch.zeros(b, 0, dtype=torch.long),
            policy=torch.stack(pol, 1) if pol else torch.zeros(b, 0, NUM_ACTIONS),
            status=status,
            route=route,
        )

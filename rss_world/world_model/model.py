"""The FrozenLake visual world model: encode / step / decode / imagine.

* ``encode`` turns a frame into one latent token per grid cell (patch embedding + 2D row/column positions +
  transformer blocks), so grids of different sizes share one model.
* ``step`` is one latent step of recursive sparse attention (``rss_world.nn.recursive``) with per-sample
  routing: the expert is the action when it is given, else the gate picks it. The default gate
  (``gate="value"``) runs ``gate_iters`` sweeps of differentiable value iteration over the latent token grid
  (``rss_world.world_model.value_gate``); ``gate="trunk"`` is a weight-tied transformer block iterated ``gate_iters``
  times, feeding the core's per-token ``GatingNetwork``.
* ``decode`` is a transformer frame decoder: tokens -> RGB patches in [0, 1].
* Heads: the gate's action distribution (the policy) and per-token status logits (agent on goal, agent in
  hole), pooled by max over tokens into per-sample probabilities.

Only this API is meant for planners and environments.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rss_world.nn.recursive import RecursiveSparseAttention, RSRConfig
from rss_world.nn.routing import GatingNetwork, RoutingRecord, Selection, gumbel_select

from .blocks import Block, GridPositions, patchify, unpatchify
from .value_gate import ValueIterationGate

NUM_ACTIONS = 4
REL_SCALE = 30.0  # relative-position biases are stored /30 so that Adam moves them 30x faster


@dataclass
class WorldModelConfig:
    """Sizes of a :class:`WorldModel` (named presets live in ``configs/model/``)."""

    cell_px: int = 16
    dim: int = 128
    heads: int = 4
    enc_layers: int = 2
    dec_layers: int = 2
    gate: str = "value"  # planning gate: "value" (value iteration over the token grid) or "trunk" (transformer)
    gate_iters: int = 4  # value-iteration sweeps ("value") or weight-tied trunk iterations ("trunk")
    rank: int = 16
    experts_per_action: int = 1
    shared_expert: bool = False  # ablation: one expert for all actions plus an action embedding
    temperature: float = 5.0
    max_size: int = 16
    mlp_ratio: float = 2.0

    @property
    def num_experts(self) -> int:
        return 1 if self.shared_expert else NUM_ACTIONS * self.experts_per_action

    def validate(self) -> None:
        checks = {
            "cell_px": self.cell_px >= 1,
            "dim": self.dim >= 1,
            "heads": self.heads >= 1 and self.dim % max(self.heads, 1) == 0,
            "enc_layers": self.enc_layers >= 0,
            "dec_layers": self.dec_layers >= 0,
            "gate": self.gate in ("value", "trunk"),
            "gate_iters": self.gate_iters >= 0,
            "rank": self.rank >= 1,
            "experts_per_action": self.experts_per_action >= 1,
            "temperature": self.temperature > 0,
            "max_size": 2 <= self.max_size <= 16,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid WorldModelConfig fields {bad}: {self}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> WorldModelConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown WorldModelConfig keys {sorted(unknown)}")
        return cls(**d)


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
    """Action-indexed recursive sparse world model over FrozenLake frames."""

    def __init__(self, cfg: WorldModelConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or WorldModelConfig()
        cfg.validate()
        self.cfg = cfg
        d, p = cfg.dim, cfg.cell_px
        self.patch = nn.Linear(3 * p * p, d)
        self.pos = GridPositions(d, cfg.max_size)
        self.enc = nn.ModuleList(Block(d, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.enc_layers))
        self.enc_norm = nn.LayerNorm(d)
        # Dynamics: one recursive sparse attention layer. Its "base" projections are trained with the model
        # (there is no pretrained base here), so they are unfrozen after construction.
        self.dyn_norm = nn.LayerNorm(d)
        self.dyn_pos = GridPositions(d, cfg.max_size)  # positions re-injected at every step
        # 2D relative-position attention bias: a shared one for the base attention and one per expert, so an
        # action's expert can attend to "the neighbour on my left" directly. Zero-init: no bias at the start.
        span = (2 * cfg.max_size - 1) ** 2
        self.rel_base = nn.Parameter(torch.zeros(cfg.heads, span))
        self.rel_expert = nn.Parameter(torch.zeros(cfg.num_experts, cfg.heads, span))
        proj = [nn.Linear(d, d) for _ in range(4)]
        rsr_cfg = RSRConfig(num_experts=cfg.num_experts, steps=1, rank=cfg.rank, cond_dim=0, per_token=False,
                            temperature=cfg.temperature)
        self.rsr = RecursiveSparseAttention(rsr_cfg, *proj, heads=cfg.heads)
        self.rsr.base.requires_grad_(True)
        self.action_embed = nn.Embedding(NUM_ACTIONS, d) if cfg.shared_expert else None
        self.dyn_mlp_norm = nn.LayerNorm(d)
        hidden = int(d * cfg.mlp_ratio)
        self.dyn_mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d))
        # Zero-init the MLP's output (adaLN-Zero style): with the experts' B = 0 as well, a fresh step is the
        # identity, so decode(step(z)) starts equal to decode(z) and training only has to learn the change.
        nn.init.zeros_(self.dyn_mlp[-1].weight)
        nn.init.zeros_(self.dyn_mlp[-1].bias)
        # The planning gate. "value": value iteration over the token grid, action logits read at the agent (the
        # default, see value_gate.py). "trunk": a weight-tied block iterated gate_iters times over the tokens
        # (positions re-injected every iteration), then the core's GatingNetwork gives per-token expert logits,
        # pooled into one decision per sample by a learned attention over tokens. Either way the dynamics layer's
        # own per-sample gate is bypassed: this gate's Selection is passed in.
        self.value_gate = self.sub_gate = self.trunk = self.trunk_norm = self.gate = self.gate_pool = None
        self.policy_head = None
        if cfg.gate == "value":
            self.value_gate = ValueIterationGate(d, NUM_ACTIONS, sweeps=cfg.gate_iters)
            if cfg.experts_per_action > 1 and not cfg.shared_expert:
                self.sub_gate = nn.Linear(d, cfg.num_experts)  # which of an action's experts, read at the agent
        else:
            self.trunk = Block(d, cfg.heads, cfg.mlp_ratio)
            self.trunk_norm = nn.LayerNorm(d)
            self.gate = GatingNetwork(d, 0, cfg.num_experts, per_token=True, temperature=cfg.temperature)
            self.gate_pool = nn.Linear(d, 1)
            self.policy_head = nn.Linear(d, NUM_ACTIONS) if cfg.shared_expert else None
        self.dec = nn.ModuleList(Block(d, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.dec_layers))
        self.dec_norm = nn.LayerNorm(d)
        self.dec_out = nn.Linear(d, 3 * p * p)
        self.status_head = nn.Linear(d, 2)
        self._rel_cache: dict[tuple[int, str], Tensor] = {}  # relative-offset indices per grid size (no params)

    # ------------------------------------------------------------------ encode / decode
    def check_frames(self, frames: Tensor) -> int:
        """Validate ``(B, H, W, 3)`` frames; return the grid size."""
        p = self.cfg.cell_px
        if frames.dim() != 4 or frames.shape[-1] != 3 or frames.shape[1] != frames.shape[2]:
            raise ValueError(f"frames must be (B, H, W, 3) with H == W, got {tuple(frames.shape)}")
        if frames.shape[1] % p:
            raise ValueError(f"frame side {frames.shape[1]} is not a multiple of cell_px={p}")
        size = frames.shape[1] // p
        if not 2 <= size <= self.cfg.max_size:
            raise ValueError(f"grid size {size} is outside 2..{self.cfg.max_size}")
        if frames.dtype != torch.uint8:
            raise ValueError(f"frames must be uint8 RGB, got {frames.dtype}")
        return size

    def encode(self, frames: Tensor) -> Tensor:
        """Frames ``(B, H, W, 3)`` uint8 -> latent tokens ``(B, N, D)``, one per grid cell."""
        size = self.check_frames(frames)
        x = patchify(frames.float() / 255.0, self.cfg.cell_px)  # (B, N, 3p²)
        z = self.patch(x) + self.pos(size)  # (B, N, D)
        for blk in self.enc:
            z = blk(z)
        return self.enc_norm(z)

    def decode(self, z: Tensor) -> Tensor:
        """Latent tokens ``(B, N, D)`` -> frames ``(B, H, W, 3)``, float in [0, 1]."""
        return torch.sigmoid(self.decode_logits(z))

    def decode_logits(self, z: Tensor) -> Tensor:
        """Pre-sigmoid pixels ``(B, H, W, 3)`` (the training loss uses these)."""
        n = z.shape[1]
        size = math.isqrt(n)
        if size * size != n:
            raise ValueError(f"latent has {n} tokens, not a square grid")
        h = z + self.pos(size)
        for blk in self.dec:
            h = blk(h)
        return unpatchify(self.dec_out(self.dec_norm(h)), self.cfg.cell_px)

    @staticmethod
    def to_uint8(frames: Tensor) -> Tensor:
        """Decoded frames in [0, 1] -> uint8."""
        return frames.clamp(0, 1).mul_(255.0).round_().to(torch.uint8)  # one temporary, rounded in place

    # ------------------------------------------------------------------ heads
    def gate_modules(self) -> list[nn.Module]:
        """The planning gate's modules (what stage-2 training updates)."""
        mods = [self.value_gate, self.sub_gate, self.trunk, self.trunk_norm, self.gate, self.gate_pool,
                self.policy_head]
        return [m for m in mods if m is not None]

    def gate_tokens(self, z: Tensor) -> Tensor:
        """The trunk gate's tokens: a weight-tied block iterated ``gate_iters`` times, ``(B, N, D)``."""
        if self.trunk is None:
            raise ValueError("gate_tokens needs gate='trunk'")
        pos = self.dyn_pos(math.isqrt(z.shape[1]))
        h = z
        for _ in range(self.cfg.gate_iters):
            h = self.trunk(h + z + pos)
        return self.trunk_norm(h)

    def gate_maps(self, z: Tensor) -> Tensor:
        """The value gate's per-token logits ``(B, N, 3)``: goal here, walkable here, agent here."""
        if self.value_gate is None:
            raise ValueError("gate_maps needs gate='value'")
        return self.value_gate.maps(z)

    def gate_logits(self, z: Tensor) -> Tensor:
        """Expert logits ``(B, E)`` at latent ``z`` (``(B, 4)`` action logits for the shared-expert ablation)."""
        if self.value_gate is not None:
            logits, where = self.value_gate(z)  # (B, 4)
            if self.sub_gate is None:
                return logits
            k = self.cfg.experts_per_action
            sub = self.sub_gate((where[..., None] * z).sum(1)).view(-1, NUM_ACTIONS, k).log_softmax(-1)
            return (logits[..., None] + sub).reshape(-1, NUM_ACTIONS * k)
        h = self.gate_tokens(z)
        w = torch.softmax(self.gate_pool(h).squeeze(-1), dim=1)  # (B, N)
        if self.policy_head is not None:
            return (w[..., None] * self.policy_head(h)).sum(1)  # no-routing ablation: a separate policy head
        return (w[..., None] * self.gate.logits(h)).sum(1)  # (B, E)

    def policy(self, z: Tensor) -> Tensor:
        """The gate's action distribution ``(B, 4)`` (experts of one action summed)."""
        return self.action_probs(self.gate_logits(z))

    def action_probs(self, gate_logits: Tensor) -> Tensor:
        probs = F.softmax(gate_logits.float(), -1)
        if self.cfg.shared_expert:
            return probs
        return probs.view(-1, NUM_ACTIONS, self.cfg.experts_per_action).sum(-1)

    def status_logits(self, z: Tensor) -> Tensor:
        """Per-token logits ``(B, N, 2)``: agent on goal here, agent in a hole here."""
        return self.status_head(z)

    def status(self, z: Tensor) -> Tensor:
        """Per-sample ``(B, 2)``: P(agent on goal), P(agent in hole) (max over tokens)."""
        return torch.sigmoid(self.status_logits(z)).amax(1)

    # ------------------------------------------------------------------ dynamics
    def _expert_for(self, action: Tensor, logits: Tensor) -> Tensor:
        """Expert index for a given action: the gate chooses among that action's experts."""
        k = self.cfg.experts_per_action
        if self.cfg.shared_expert:
            return torch.zeros_like(action)
        if k == 1:
            return action
        group = logits.view(-1, NUM_ACTIONS, k)[torch.arange(len(action)), action]  # (B, k)
        sub = gumbel_select(group, self.cfg.temperature, hard_sample=self.training).index
        return action * k + sub

    def dyn_input(self, z: Tensor) -> Tensor:
        """What the dynamics layer and the gate read: normalised tokens plus 2D positions."""
        return self.dyn_norm(z) + self.dyn_pos(math.isqrt(z.shape[1]))

    def _rel_index(self, size: int, device) -> Tensor:
        """``(N, N)`` indices into the flattened ``(2·max_size − 1)²`` relative offsets (cached per size)."""
        key = (size, str(device))
        if key not in self._rel_cache:
            self._rel_cache[key] = self._make_rel_index(size, device)
        return self._rel_cache[key]

    def _make_rel_index(self, size: int, device) -> Tensor:
        r = torch.arange(size, device=device)
        rr, cc = torch.meshgrid(r, r, indexing="ij")
        rr, cc = rr.reshape(-1), cc.reshape(-1)  # (N,)
        m = self.cfg.max_size
        return (rr[:, None] - rr[None] + m - 1) * (2 * m - 1) + (cc[:, None] - cc[None] + m - 1)  # (N, N)

    def step(
        self, z: Tensor, action: Tensor | None = None, with_logits: bool = True
    ) -> tuple[Tensor, Tensor | None, Selection]:
        """One latent step.

        Args:
            z: latent ``(B, N, D)``.
            action: ``(B,)`` int actions in 0..3, or None to let the gate choose.
            with_logits: compute the gate's logits. With a given action and one expert per action the dynamics
                do not need them; ``False`` then skips the gate trunk (environments use this) and returns
                ``None`` logits and a selection without probabilities.

        Returns:
            ``(z_next, gate_logits (B, E), selection)``; ``selection.index // experts_per_action`` is the action.
        """
        if z.dim() != 3 or z.shape[-1] != self.cfg.dim:
            raise ValueError(f"latent must be (B, N, {self.cfg.dim}), got {tuple(z.shape)}")
        x = self.dyn_input(z)
        needed = with_logits or action is None or self.cfg.experts_per_action > 1
        logits = self.gate_logits(z) if needed else None
        if action is None:
            picked = gumbel_select(logits, self.cfg.temperature, self.training).index
            action = picked if self.cfg.shared_expert else picked // self.cfg.experts_per_action
        action = torch.as_tensor(action, device=z.device)
        if action.shape != (z.shape[0],) or action.dtype not in (torch.int64, torch.int32):
            raise ValueError(
                f"action must be an int tensor of shape ({z.shape[0]},), got {action.dtype} {tuple(action.shape)}"
            )
        if action.min() < 0 or action.max() >= NUM_ACTIONS:
            raise ValueError(f"actions must be in 0..{NUM_ACTIONS - 1}, got {action.tolist()}")
        action = action.long()
        if self.action_embed is not None:
            x = x + self.action_embed(action)[:, None, :]  # no-routing ablation: the action enters as an embedding
        rel = self._rel_index(math.isqrt(z.shape[1]), z.device)
        base_bias = REL_SCALE * self.rel_base[:, rel]  # (H, N, N)
        cache = self.rsr.prepare(x, attn_bias=base_bias, with_out=False)  # the step needs a0, not W_o a0
        expert_table = REL_SCALE * self.rel_expert[:, :, rel]  # (E, H, N, N), gathered once per step

        def expert_bias(index: Tensor) -> Tensor:
            return base_bias + expert_table[index]  # (B, H, N, N)

        index = self._expert_for(action, logits)
        if logits is None:
            logits = z.new_zeros(z.shape[0], self.cfg.num_experts)
            probs = torch.full_like(logits, float("nan"), dtype=torch.float32)  # not computed, never uniform
        else:
            probs = F.softmax(logits.float() / self.cfg.temperature, dim=-1)
        sel = Selection(index=index, coef=torch.ones(len(index), device=z.device), probs=probs, logits=logits,
                        forced=True)
        s, _, sel = self.rsr.step(x, cache, attn_bias=expert_bias, selection=sel)
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
            z_next, logits, sel = self.step(z, a)
            pol.append(self.action_probs(logits))
            taken.append(sel.index // self.cfg.experts_per_action if a is None else torch.as_tensor(a).long())
            route.append(sel)
            z = z_next
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

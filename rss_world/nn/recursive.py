"""Recursive sparse attention: T latent steps of expert-refined attention around a frozen base layer.

Our reading of the paper's Eqs. 8-10 (see ``docs/method.md``):

* The frozen base projections ``Q0 = W_q x``, ``K0``, ``V0`` and the base attention ``a0 = Attn(Q0, K0, V0)``
  are computed once. Extra context tokens (SD3's text stream) are projected once too and rejoin the joint
  attention at every step unchanged.
* State ``s_0 = x``. At step ``t`` the gate picks expert ``e_t`` from ``(s_{t-1}, cond)``, the expert's LoRA
  maps the *current* state to updates ``ΔQ, ΔK, ΔV`` of the vision projections, and
  ``a_t = Attn(Q0 + ΔQ, [K0 + ΔK; Kc], [V0 + ΔV; Vc])``.
* Intermediate steps integrate only the adapter's contribution ``u_t = W_o (a_t - a0)`` (no bias):
  ``s_t = s_{t-1} + u_t``. The frozen base output enters once, at the end:
  ``out = W_o a0 + b + Σ_t u_t = base_out + (s_T - x)``.
  (``RSRConfig.state_update="attention"`` is the other reading: ``s_t = x + W_o a_t + b``, ``out = W_o a_T + b``.)

Hence: with ``B = 0`` every ``u_t`` is exactly zero and the output is the base output bit for bit; with
``E = 1, T = 1`` the output is ``W_o Attn((W + ΔW) x) + b``, i.e. plain LoRA on q, k and v.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .lora import StackedLoRA, grouped_update
from .routing import GatingNetwork, RoutingRecord, Selection, SingleExpert

STATE_UPDATES = ("delta", "attention")


@dataclass
class RSRConfig:
    """Hyper-parameters of one recursive sparse attention layer.

    Attributes:
        num_experts: ``E``, LoRA experts shared by all steps.
        steps: ``T``, latent steps per forward.
        rank: LoRA rank ``r``.
        alpha: LoRA alpha (scale ``alpha / r``); ``None`` means ``rank``.
        cond_dim: width of the gate's condition embedding (0: tokens only).
        per_token: route each token separately (paper, image generation) or one expert per sample.
        temperature: Gumbel-softmax temperature (paper: 5.0).
        gate_hidden: hidden width of the gate MLP (``None``: ``min(D, 256)``).
        state_update: what an intermediate step passes on (the paper's lost Eq. 10 allows both readings):
            ``"delta"``, only the adapters' change ``s_t = s_{t-1} + W_o (a_t - a_0)``, so the base attention, and
            with it the text values the vision rows attend to, cancels out of the states; or ``"attention"``, the
            step's whole joint-attention result ``s_t = x + W_o a_t + b``, so the states carry those values.
    """

    num_experts: int = 2
    steps: int = 2
    rank: int = 8
    alpha: float | None = None
    cond_dim: int = 0
    per_token: bool = True
    temperature: float = 5.0
    gate_hidden: int | None = None
    state_update: str = "delta"

    def validate(self) -> None:
        if self.num_experts < 1:
            raise ValueError(f"num_experts (E) must be >= 1, got {self.num_experts}")
        if self.steps < 1:
            raise ValueError(f"steps (T) must be >= 1, got {self.steps}")
        if self.rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {self.rank}")
        if not self.temperature > 0:
            raise ValueError(f"Gumbel-softmax temperature must be > 0, got {self.temperature}")
        if self.cond_dim < 0:
            raise ValueError(f"cond_dim must be >= 0, got {self.cond_dim}")
        if self.state_update not in STATE_UPDATES:
            raise ValueError(f"state_update must be one of {STATE_UPDATES}, got {self.state_update!r}")


@dataclass
class BaseCache:
    """What the frozen base computes once per forward (heads layout ``(B, H, N, d)``)."""

    x: Tensor  # (B, N, D) vision tokens entering the layer
    q0: Tensor  # (B, H, N, d) frozen query projections, before any q-norm
    k0: Tensor
    v0: Tensor
    ctx: tuple[Tensor, Tensor, Tensor] | None  # context q, k, v (B, H, M, d), already normed
    a0: Tensor | None  # (B, N, H*d) base attention output for vision rows, before W_o (None: not computed)
    ctx_a0: Tensor | None  # (B, M, H*d) base attention output for context rows
    base_out: Tensor | None  # (B, N, D) W_o a0 + b (None when prepare(with_out=False))


@dataclass
class RSROutput:
    """Result of a recursive sparse attention forward.

    Attributes:
        out: ``(B, N, D)`` layer output (``base_out + s_T - x``).
        context: ``(B, M, H*d)`` attention output of the context rows at the final step, before the
            context's own output projection; ``None`` without context.
        states: the vision state after every latent step, ``T`` tensors ``(B, N, D)``. The output does not need
            the last one, so it is computed on first access (one more output projection, and at ``T = 1`` the base
            attention); read it before the layer's weights change.
        route: the routing record of the ``T`` steps.
    """

    out: Tensor
    context: Tensor | None
    _states: list[Tensor] = field(repr=False)
    route: RoutingRecord
    _last_state: Callable[[], Tensor] | None = field(default=None, repr=False)

    @property
    def states(self) -> list[Tensor]:
        if self._last_state is not None:
            self._states.append(self._last_state())
            self._last_state = None
        return self._states


Norm = Callable[[Tensor], Tensor] | None


class RecursiveSparseAttention(nn.Module):
    """Wrap frozen attention projections with ``E`` LoRA experts run over ``T`` gated latent steps.

    The base projections are used, not copied: the same ``nn.Linear`` objects stay owned by their model (the
    diffusers variants pass ``attn.to_q`` etc.), and their parameters are frozen here.

    Args:
        cfg: the layer's :class:`RSRConfig`.
        to_q, to_k, to_v: frozen Linear projections ``D -> H*d``.
        to_out: frozen Linear ``H*d -> D``.
        heads: number of attention heads ``H``.
        norm_q, norm_k: optional per-head norms applied to q and k (``(B, H, N, d)``), as in SD3's qk-norm.
        external_routing: the caller routes with a gate of its own and passes a ``Selection`` to every
            :meth:`step` (the world model's planning gate); the layer then builds no gating network.
        attention: optional attention function ``(q, k, v, bias) -> (B, H, N, d)`` used instead of dense scaled
            dot-product attention when there is no context (e.g. the world model's neighbourhood attention, whose
            ``bias`` is its own relative-position bias); the routing and the experts are the same either way.
    """

    def __init__(
        self,
        cfg: RSRConfig,
        to_q: nn.Linear,
        to_k: nn.Linear,
        to_v: nn.Linear,
        to_out: nn.Linear,
        heads: int,
        norm_q: nn.Module | None = None,
        norm_k: nn.Module | None = None,
        external_routing: bool = False,
        attention: Callable[[Tensor, Tensor, Tensor, Tensor | None], Tensor] | None = None,
    ) -> None:
        super().__init__()
        cfg.validate()
        dim, inner = to_q.in_features, to_q.out_features
        for name, lin in (("to_k", to_k), ("to_v", to_v)):
            if (lin.in_features, lin.out_features) != (dim, inner):
                raise ValueError(
                    f"{name} is {lin.in_features}->{lin.out_features}, expected {dim}->{inner} like to_q"
                )
        if (to_out.in_features, to_out.out_features) != (inner, dim):
            raise ValueError(
                f"to_out is {to_out.in_features}->{to_out.out_features}, expected {inner}->{dim}: the "
                "recursion feeds the output back as the next step's input"
            )
        if heads < 1 or inner % heads:
            raise ValueError(f"inner width {inner} is not divisible by heads={heads}")
        self.cfg, self.dim, self.inner, self.heads = cfg, dim, inner, heads
        self.base = nn.ModuleDict({"to_q": to_q, "to_k": to_k, "to_v": to_v, "to_out": to_out})
        self.base.requires_grad_(False)
        self.norm_q, self.norm_k = norm_q, norm_k
        self.attention = attention
        for norm in (norm_q, norm_k):  # the base's q/k norms are part of the frozen base too
            if isinstance(norm, nn.Module):
                norm.requires_grad_(False)
        e, r, a = cfg.num_experts, cfg.rank, cfg.alpha
        self.lora_q = StackedLoRA(dim, inner, e, r, a)
        self.lora_k = StackedLoRA(dim, inner, e, r, a)
        self.lora_v = StackedLoRA(dim, inner, e, r, a)
        # One expert needs no choice: a parameter-free stand-in answers the gate's calls (no MLP is built or run).
        if external_routing:
            self.gate = None
        elif e == 1:
            self.gate = SingleExpert(dim, cfg.cond_dim, cfg.per_token)
        else:
            self.gate = GatingNetwork(
                dim, cfg.cond_dim, e, cfg.per_token, temperature=cfg.temperature, hidden=cfg.gate_hidden)

    def adapter_parameters(self) -> list[nn.Parameter]:
        """The trainable parameters: LoRA experts and gate (never the frozen base)."""
        gate = [] if self.gate is None else [*self.gate.parameters()]
        return [*self.lora_q.parameters(), *self.lora_k.parameters(), *self.lora_v.parameters(), *gate]

    def _heads(self, t: Tensor) -> Tensor:
        b, n, _ = t.shape
        return t.view(b, n, self.heads, -1).transpose(1, 2)  # (B, H, N, d)

    def _merge(self, t: Tensor) -> Tensor:
        b, h, n, d = t.shape
        return t.transpose(1, 2).reshape(b, n, h * d)  # (B, N, H*d)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, ctx: tuple[Tensor, Tensor, Tensor] | None,
                bias: Tensor | None = None):
        """Joint attention of vision rows (first) and context rows (after); returns the merged outputs.

        ``bias`` is an optional additive attention bias broadcastable to ``(B, H, N+M, N+M)`` (e.g. a 2D
        relative-position bias)."""
        if self.norm_q is not None:
            q = self.norm_q(q)
        if self.norm_k is not None:
            k = self.norm_k(k)
        n = q.shape[2]
        if ctx is not None:
            if self.attention is not None:
                raise ValueError("a custom attention function takes no context tokens")
            q, k, v = (torch.cat([a, c], dim=2) for a, c in zip((q, k, v), ctx))
        attend = self.attention or (lambda q, k, v, b: F.scaled_dot_product_attention(q, k, v, attn_mask=b))
        a = attend(q, k, v, bias)  # (B, H, N+M, d)
        a = self._merge(a)  # (B, N+M, H*d)
        return a[:, :n], (a[:, n:] if ctx is not None else None)

    def prepare(
        self, x: Tensor, context_qkv: tuple[Tensor, Tensor, Tensor] | None = None, attn_bias: Tensor | None = None,
        with_out: bool = True,
    ) -> BaseCache:
        """Run the frozen base once: projections, base attention and base output.

        Args:
            x: vision tokens ``(B, N, D)``.
            context_qkv: optional context ``(q, k, v)``, each ``(B, H, M, d)``, already projected and normed.
            attn_bias: optional additive bias of the base attention, broadcastable to ``(B, H, N+M, N+M)``.
            with_out: also compute ``base_out = W_o a0 + b``. A caller that only needs the steps' updates
                (``step`` reads ``a0``, never ``base_out``) passes ``False`` and saves one projection.
        """
        cache = self._project(x, context_qkv, base_attention=True, attn_bias=attn_bias)
        if with_out:
            cache.base_out = self.base["to_out"](cache.a0)  # (B, N, D)
        return cache

    def _project(self, x: Tensor, context_qkv: tuple[Tensor, Tensor, Tensor] | None, base_attention: bool,
                 attn_bias: Tensor | None = None) -> BaseCache:
        """The frozen q/k/v projections, and the base attention if ``base_attention``."""
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"vision tokens must be (B, N, {self.dim}), got {tuple(x.shape)}")
        if context_qkv is not None:
            shapes = {tuple(c.shape) for c in context_qkv}
            ok = len(shapes) == 1 and all(
                c.dim() == 4 and c.shape[0] == x.shape[0] and c.shape[1] == self.heads
                and c.shape[3] == self.inner // self.heads for c in context_qkv
            )
            if not ok:
                raise ValueError(
                    f"context q/k/v must each be (B, H, M, d)=({x.shape[0]}, {self.heads}, M, "
                    f"{self.inner // self.heads}), got {sorted(shapes)}"
                )
        q0 = self._heads(self.base["to_q"](x))  # (B, H, N, d)
        k0 = self._heads(self.base["to_k"](x))
        v0 = self._heads(self.base["to_v"](x))
        a0, ctx_a0 = self._attend(q0, k0, v0, context_qkv, attn_bias) if base_attention else (None, None)
        return BaseCache(x, q0, k0, v0, context_qkv, a0, ctx_a0, None)

    def experts(self) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        """The q, k and v experts stacked, one entry per expert: ``E`` tensors ``A (3r, in)`` and ``E`` tensors
        ``B (3, out, r)``. They are built from the three :class:`StackedLoRA` parameters, which stay the
        state-dict entries; gradients flow back to them (unbound once, so reusing an expert costs no full-size
        zero-filled gradient per use)."""
        loras = (self.lora_q, self.lora_k, self.lora_v)
        a = torch.cat([m.A for m in loras], dim=1)  # (E, 3r, in)
        b = torch.stack([m.B for m in loras], dim=1)  # (E, 3, out, r)
        return a.unbind(0), b.unbind(0)

    def _route(self, state: Tensor, cond: Tensor | None, forced: Tensor | None,
               selection: Selection | None) -> tuple[Selection, Tensor | None]:
        """The step's selection and the coefficient to apply (``None`` when it is exactly 1 with no gradient)."""
        if selection is None:
            if self.gate is None:
                raise ValueError("this layer routes externally: step() needs a selection")
            sel = self.gate(state, cond, forced)
        else:
            want = state.shape[:1] if not self.cfg.per_token else state.shape[:2]
            if tuple(selection.index.shape) != tuple(want):
                raise ValueError(f"selection index must have shape {tuple(want)}, got {tuple(selection.index.shape)}")
            sel = selection
        coef = sel.coef
        if not (torch.is_grad_enabled() and coef.requires_grad) and bool((coef == 1).all()):
            coef = None  # multiplying by exactly 1 with no gradient to carry changes nothing
        return sel, coef

    def _refined(self, state: Tensor, cache: BaseCache, sel: Selection, coef: Tensor | None,
                 attn_bias: Tensor | Callable[[Tensor], Tensor] | None,
                 experts: tuple[tuple[Tensor, ...], tuple[Tensor, ...]] | None) -> tuple[Tensor, Tensor | None]:
        """Attention with the chosen experts' q/k/v updates: ``(a (B, N, H*d), context rows or None)``."""
        a_qkv, b_qkv = self.experts() if experts is None else experts
        index = None if self.cfg.num_experts == 1 else sel.index
        dq, dk, dv = grouped_update(state, index, a_qkv, b_qkv, self.lora_q.scaling, coef)  # 3 x (B, N, H*d)
        bias = attn_bias(sel.index) if callable(attn_bias) else attn_bias
        return self._attend(
            cache.q0 + self._heads(dq), cache.k0 + self._heads(dk), cache.v0 + self._heads(dv), cache.ctx, bias
        )

    def step(
        self,
        state: Tensor,
        cache: BaseCache,
        cond: Tensor | None = None,
        forced: Tensor | None = None,
        attn_bias: Tensor | Callable[[Tensor], Tensor] | None = None,
        selection: Selection | None = None,
        experts: tuple[tuple[Tensor, ...], tuple[Tensor, ...]] | None = None,
    ) -> tuple[Tensor, Tensor | None, Selection]:
        """One latent step: route on ``state``, apply the chosen expert to q/k/v, attend, update the state.

        ``attn_bias`` is an additive attention bias for this step, or a callable mapping the chosen expert
        index to one (per-expert position biases, as the world model uses). ``selection`` lets a caller that
        routes with its own gating network (the world model's planning gate) pass the decision in; the layer's
        gate is then not called. ``experts`` is :meth:`experts`, when the caller already built it this forward.

        Returns:
            ``(next_state (B, N, D), context attention rows (B, M, H*d) or None, selection)``.
        """
        sel, coef = self._route(state, cond, forced, selection)
        a, ctx_a = self._refined(state, cache, sel, coef, attn_bias, experts)
        if self.cfg.state_update == "attention":
            return cache.x + self.base["to_out"](a), ctx_a, sel  # the step's whole attention result
        u = F.linear(a - cache.a0, self.base["to_out"].weight)  # (B, N, D) adapter contribution, no bias
        return state + u, ctx_a, sel

    def forward(
        self,
        x: Tensor,
        cond: Tensor | None = None,
        context_qkv: tuple[Tensor, Tensor, Tensor] | None = None,
        forced: Tensor | None = None,
        steps: int | None = None,
    ) -> RSROutput:
        """Run ``T`` latent steps.

        The last step's attention ``a_T`` gives the output directly, ``out = W_o a_T + b + (s_{T-1} - x)`` (equal
        to ``base_out + s_T - x``), so neither ``base_out`` nor, at ``T = 1``, the base attention is computed: at
        ``E = 1, T = 1`` the layer does what plain LoRA does.

        Args:
            x: vision tokens ``(B, N, D)`` (positions already added, whatever the 2D scheme).
            cond: gate condition ``(B, C)``.
            context_qkv: optional context ``(q, k, v)`` for joint attention, ``(B, H, M, d)`` each.
            forced: expert indices imposed on the gate, ``(T, B)`` or ``(T, B, N)``; ``None`` lets it choose.
            steps: override ``cfg.steps`` for this call.
        """
        t_steps = self.cfg.steps if steps is None else steps
        if t_steps < 1:
            raise ValueError(f"steps must be >= 1, got {t_steps}")
        if forced is not None and forced.shape[0] != t_steps:
            raise ValueError(f"forced indices cover {forced.shape[0]} steps, expected {t_steps}")
        delta = self.cfg.state_update == "delta"
        cache = self._project(x, context_qkv, base_attention=delta and t_steps > 1)
        experts = self.experts()  # once per forward, shared by the T steps
        state, route, states = x, RoutingRecord(), []
        for t in range(t_steps - 1):
            state, _, sel = self.step(state, cache, cond, None if forced is None else forced[t], experts=experts)
            route.append(sel)
            states.append(state)
        sel, coef = self._route(state, cond, None if forced is None else forced[-1], None)
        route.append(sel)
        a, ctx_a = self._refined(state, cache, sel, coef, None, experts)  # (B, N, H*d)
        out = self.base["to_out"](a)  # (B, N, D) the frozen bias and W_o enter once, at the end
        if delta and t_steps > 1:
            out = out + (state - x)  # the earlier steps' updates (at T = 1 state is x: nothing to add)
        w_o, version, prev, grad = self.base["to_out"].weight, self.base["to_out"].weight._version, state, \
            torch.is_grad_enabled()

        def last_state() -> Tensor:
            if w_o._version != version:
                raise RuntimeError("RSROutput.states: the output projection changed since the forward; read states "
                                   "before updating the weights")
            with torch.set_grad_enabled(grad):
                if not delta:
                    return x + out  # (B, N, D) out is this step's W_o a_T + b
                a0 = cache.a0 if cache.a0 is not None else self._attend(cache.q0, cache.k0, cache.v0, cache.ctx)[0]
                return prev + F.linear(a - a0, w_o)  # (B, N, D)

        return RSROutput(out=out, context=ctx_a, _states=states, route=route, _last_state=last_state)

"""The lean core computes what the straightforward one did (issue 17, point 5).

``reference`` below is the layer as it was written before: one LoRA dispatch per projection (a ``nonzero`` /
``index_add`` per expert for per-token routing), the base attention and ``base_out`` always computed, and
``out = base_out + (s_T - x)``. The lean layer fuses the q/k/v updates, groups tokens by expert with one sort,
builds no gate at ``E = 1``, and takes the output from the last step's attention. In float64 the two agree to
rounding; in float32 to the usual tolerance.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rss_world.nn import RecursiveSparseAttention, RSRConfig, SingleExpert, StackedLoRA, grouped_update

D, H = 32, 4


def old_lora(lora: StackedLoRA, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """StackedLoRA's index path as it was: bmm per sample, or a loop over experts with nonzero/index_add."""
    b, n, _ = x.shape
    if index.shape == (b,):
        h = torch.bmm(x, lora.A[index].transpose(1, 2))
        return torch.bmm(h, lora.B[index].transpose(1, 2)) * lora.scaling
    flat_x, flat_i = x.reshape(b * n, -1), index.reshape(b * n)
    out = x.new_zeros(b * n, lora.out_features)
    for e in range(lora.num_experts):
        rows = (flat_i == e).nonzero(as_tuple=True)[0]
        if rows.numel():
            h = flat_x.index_select(0, rows) @ lora.A[e].t()
            out = out.index_add(0, rows, (h @ lora.B[e].t()) * lora.scaling)
    return out.view(b, n, lora.out_features)


def reference(rsr: RecursiveSparseAttention, x, cond=None, ctx=None, forced=None):
    """The layer's forward as it was written before the lean core (same parameters, same gate)."""
    cache = rsr.prepare(x, ctx)
    state, states, indices, ctx_a = x, [], [], cache.ctx_a0
    for t in range(rsr.cfg.steps):
        if rsr.cfg.num_experts == 1:
            shape = state.shape[:2] if rsr.cfg.per_token else state.shape[:1]
            index, coef = torch.zeros(shape, dtype=torch.long), torch.ones(shape, dtype=state.dtype)
        else:
            sel = rsr.gate(state, cond, None if forced is None else forced[t])
            index, coef = sel.index, sel.coef.to(state.dtype)
        c = coef[:, None, None] if coef.dim() == 1 else coef[..., None]
        dq, dk, dv = (old_lora(m, state, index) * c for m in (rsr.lora_q, rsr.lora_k, rsr.lora_v))
        a, ctx_a = rsr._attend(cache.q0 + rsr._heads(dq), cache.k0 + rsr._heads(dk), cache.v0 + rsr._heads(dv),
                               cache.ctx)
        state = state + F.linear(a - cache.a0, rsr.base["to_out"].weight)
        states.append(state)
        indices.append(index)
    return cache.base_out + (state - x), ctx_a, states, torch.stack(indices)


def make(e, t, per_token=True, cond_dim=8, rank=4, alpha=None, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    lins = [nn.Linear(D, D) for _ in range(4)]
    rsr = RecursiveSparseAttention(RSRConfig(num_experts=e, steps=t, rank=rank, alpha=alpha, cond_dim=cond_dim,
                                             per_token=per_token), *lins, heads=H).to(dtype)
    with torch.no_grad():
        for m in (rsr.lora_q, rsr.lora_k, rsr.lora_v):
            m.B.normal_(0, 0.3)
    return rsr


CASES = [(e, t, pt) for e in (1, 2, 5) for t in (1, 2, 3) for pt in (True, False)]


@pytest.mark.parametrize("e, t, per_token", CASES)
@pytest.mark.parametrize("with_ctx", [False, True])
def test_forward_and_gradients_match_the_reference(e, t, per_token, with_ctx):
    rsr = make(e, t, per_token, alpha=8.0 if e == 2 else None)
    rsr.eval()  # argmax gate: both runs route the same way (the coefficient still carries the gate's gradient)
    x0, cond = torch.randn(3, 10, D, dtype=torch.float64), torch.randn(3, 8, dtype=torch.float64)
    ctx = tuple(torch.randn(3, H, 4, D // H, dtype=torch.float64) for _ in range(3)) if with_ctx else None
    params = [p for p in rsr.parameters() if p.requires_grad]
    grads, outs = [], []
    for run in ("lean", "reference"):
        x = x0.clone().requires_grad_(True)
        if run == "lean":
            res = rsr(x, cond, ctx)
            got = (res.out, res.context, res.states, res.route.indices())
        else:
            got = reference(rsr, x, cond, ctx)
        loss = got[0].square().sum() + sum(s.sin().sum() for s in got[2])
        if got[1] is not None:
            loss = loss + got[1].cos().sum()
        grads.append(torch.autograd.grad(loss, [x, *params], allow_unused=True))
        outs.append(got)
    (out, ctx_a, states, idx), (r_out, r_ctx, r_states, r_idx) = outs
    assert torch.equal(idx, r_idx)
    torch.testing.assert_close(out, r_out, atol=1e-12, rtol=1e-12)
    assert len(states) == len(r_states) == t
    for s, r in zip(states, r_states):
        torch.testing.assert_close(s, r, atol=1e-12, rtol=1e-12)
    if with_ctx:
        torch.testing.assert_close(ctx_a, r_ctx, atol=1e-12, rtol=1e-12)
    for g, r in zip(*grads):
        if r is None:  # the reference never reaches it: nor may the lean layer
            assert g is None or not g.any()
        else:
            torch.testing.assert_close(g, r, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("e, per_token", [(3, True), (3, False), (1, True)])
def test_training_mode_float32_matches_the_reference(e, per_token):
    """Gumbel noise drawn in the same order by both runs; float32 as in use."""
    rsr = make(e, 3, per_token, dtype=torch.float32)
    rsr.train()
    x, cond = torch.randn(2, 9, D), torch.randn(2, 8)
    torch.manual_seed(5)
    res = rsr(x, cond)
    torch.manual_seed(5)
    r_out, _, r_states, r_idx = reference(rsr, x, cond)
    assert torch.equal(res.route.indices(), r_idx)
    torch.testing.assert_close(res.out, r_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(res.states[-1], r_states[-1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shape", [(3,), (3, 7)])
@pytest.mark.parametrize("experts", [1, 4])
def test_grouped_update_equals_one_lora_per_projection(shape, experts):
    torch.manual_seed(0)
    loras = [StackedLoRA(6, 5, experts, rank=3, alpha=6.0).double() for _ in range(3)]
    for m in loras:
        nn.init.normal_(m.B)
    x = torch.randn(3, 7, 6, dtype=torch.float64, requires_grad=True)
    index = torch.randint(0, experts, shape)
    if experts > 1:
        index[index == 2] = 3  # one expert unused
    coef = torch.rand(shape, dtype=torch.float64, requires_grad=True)
    a, b = torch.cat([m.A for m in loras], 1), torch.stack([m.B for m in loras], 1)
    got = grouped_update(x, index, a, b, loras[0].scaling, coef)
    c = coef[:, None, None] if coef.dim() == 1 else coef[..., None]
    want = torch.stack([old_lora(m, x, index) * c for m in loras])
    torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-12)
    leaves = [x, coef, *(p for m in loras for p in m.parameters())]
    g1 = torch.autograd.grad(got.sin().sum(), leaves)
    g2 = torch.autograd.grad(want.sin().sum(), leaves)
    for u, v in zip(g1, g2):
        torch.testing.assert_close(u, v, atol=1e-12, rtol=1e-12)
    with torch.no_grad():  # the inference path writes rows in place; same values
        torch.testing.assert_close(grouped_update(x, index, a, b, loras[0].scaling, coef), want.detach())
    for m in loras:  # StackedLoRA's own index path is the same grouped dispatch
        torch.testing.assert_close(m(x, index=index), old_lora(m, x, index), atol=1e-12, rtol=1e-12)
    with pytest.raises(ValueError, match="expert index must be in"):
        grouped_update(x, torch.full(shape, experts), a, b, 1.0)


def test_e1_builds_and_runs_no_gate():
    rsr = make(1, 2, cond_dim=8)
    assert isinstance(rsr.gate, SingleExpert)
    assert not any(n.startswith("gate.") for n in rsr.state_dict())
    assert sum(p.numel() for p in rsr.adapter_parameters()) == 3 * (4 * D + D * 4)  # LoRA only
    x, cond = torch.randn(2, 5, D, dtype=torch.float64), torch.randn(2, 8, dtype=torch.float64)
    res = rsr(x, cond)
    assert torch.equal(res.route.indices(), torch.zeros(2, 2, 5, dtype=torch.long))
    assert torch.equal(res.route.probs(), torch.ones(2, 2, 5, 1))
    forced = torch.zeros(2, 2, dtype=torch.long)
    assert torch.equal(rsr(x, cond, forced=forced).out, res.out)
    with pytest.raises(ValueError, match="forced expert index"):
        rsr(x, cond, forced=torch.ones(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="condition"):
        rsr(x, torch.randn(2, 3, dtype=torch.float64))
    external = RecursiveSparseAttention(RSRConfig(num_experts=1, steps=1), *(nn.Linear(D, D) for _ in range(4)),
                                        heads=H, external_routing=True)
    assert external.gate is None


def test_state_dict_keys_unchanged_for_e_above_one():
    """The world model (E=4, external routing) and DiT/SD3 adapters for E>1 keep their keys: old files load."""
    rsr = make(2, 2)
    lora = {f"lora_{p}.{w}" for p in "qkv" for w in "AB"}
    gate = {f"gate.{m}.{w}" for m in ("norm", "tok", "cond", "out") for w in ("weight", "bias")}
    base = {f"base.{m}.{w}" for m in ("to_q", "to_k", "to_v", "to_out") for w in ("weight", "bias")}
    assert set(rsr.state_dict()) == lora | gate | base


def test_t1_runs_one_attention_and_one_output_projection():
    """E=1, T=1 does what plain LoRA does: no base attention, no separate base output."""
    calls = []

    def attention(q, k, v, bias):
        calls.append("attn")
        return F.scaled_dot_product_attention(q, k, v)

    for t, want in ((1, 1), (3, 4)):
        torch.manual_seed(0)
        lins = [nn.Linear(D, D) for _ in range(4)]
        rsr = RecursiveSparseAttention(RSRConfig(num_experts=1, steps=t), *lins, heads=H, attention=attention)
        lins[3].register_forward_hook(lambda *_: calls.append("to_out"))
        calls.clear()
        res = rsr(torch.randn(2, 5, D))
        assert calls.count("attn") == want and calls.count("to_out") == 1
        _ = res.states  # the last state is computed when asked for
        assert calls.count("attn") == want + (t == 1)


def test_last_state_refuses_changed_weights():
    rsr = make(2, 2, dtype=torch.float32)
    res = rsr(torch.randn(2, 5, D), torch.randn(2, 8))
    with torch.no_grad():
        rsr.base["to_out"].weight.add_(1.0)
    with pytest.raises(RuntimeError, match="changed since the forward"):
        _ = res.states


def test_grouped_inference_under_bf16_autocast_matches_float32():
    """Under CPU autocast the experts' pieces come out in bf16; the inference path writes them into a buffer of
    their own dtype (it once allocated float32 and failed in ``index_copy_``, crashing the bf16 imagined env)."""
    torch.manual_seed(0)
    lora = StackedLoRA(D, D, num_experts=3, rank=4)
    nn.init.normal_(lora.B, std=0.1)
    x = torch.randn(2, 5, D)
    index = torch.tensor([[0, 1, 2, 1, 0], [2, 2, 1, 0, 1]])
    with torch.no_grad():
        want = lora(x, index=index)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = lora(x, index=index)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want, atol=0.05, rtol=0.05)

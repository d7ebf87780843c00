"""Invariants of the Recursive Sparse Reasoning core (rss_world.nn)."""

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rss_world.nn import GatingNetwork, RecursiveSparseAttention, RSRConfig, StackedLoRA, balance_loss

D, H = 32, 4


class TinyAttention(nn.Module):
    """A plain attention layer with the projections RSR wraps."""

    def __init__(self, dim: int = D, heads: int = H) -> None:
        super().__init__()
        self.heads = heads
        self.to_q, self.to_k, self.to_v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape

        def heads(t):
            return t.view(b, n, self.heads, -1).transpose(1, 2)

        a = F.scaled_dot_product_attention(heads(self.to_q(x)), heads(self.to_k(x)), heads(self.to_v(x)))
        return self.to_out(a.transpose(1, 2).reshape(b, n, d))


def make_rsr(e: int, t: int, per_token: bool = True, cond_dim: int = 8, seed: int = 0, rank: int = 4):
    torch.manual_seed(seed)
    base = TinyAttention()
    cfg = RSRConfig(num_experts=e, steps=t, rank=rank, cond_dim=cond_dim, per_token=per_token)
    return base, RecursiveSparseAttention(cfg, base.to_q, base.to_k, base.to_v, base.to_out, heads=H)


@pytest.mark.parametrize("e", [1, 2, 5])
@pytest.mark.parametrize("t", [1, 2, 5])
@pytest.mark.parametrize("per_token", [True, False])
def test_zero_b_equals_frozen_base(e, t, per_token):
    base, rsr = make_rsr(e, t, per_token)
    x, cond = torch.randn(3, 10, D), torch.randn(3, 8)
    rsr.train()  # Gumbel noise active: still exact, whatever the gate picks
    res = rsr(x, cond)
    assert torch.equal(res.out, base(x)) or torch.allclose(res.out, base(x), atol=1e-6, rtol=0)
    assert len(res.states) == t and len(res.route) == t
    for s in res.states:
        assert torch.equal(s, x)  # B = 0: the adapter contributes exactly nothing


def test_e1_t1_equals_peft_lora():
    peft = pytest.importorskip("peft")
    base, rsr = make_rsr(1, 1, rank=4)
    with torch.no_grad():
        for lora in (rsr.lora_q, rsr.lora_k, rsr.lora_v):
            lora.B.normal_(0, 0.3)
    cfg = peft.LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v"], lora_dropout=0.0)
    plain = TinyAttention()
    plain.load_state_dict(base.state_dict())
    ref = peft.get_peft_model(plain, cfg)
    for name in ("to_q", "to_k", "to_v"):
        layer = getattr(ref.base_model.model, name)
        ours = getattr(rsr, f"lora_{name[-1]}")
        with torch.no_grad():
            layer.lora_A["default"].weight.copy_(ours.A[0])
            layer.lora_B["default"].weight.copy_(ours.B[0])
    x = torch.randn(2, 12, D)
    rsr.eval()
    got = rsr(x, torch.randn(2, 8)).out
    want = ref(x)
    assert not torch.allclose(want, base(x), atol=1e-3)  # the LoRA really changes the layer
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_selection_is_one_hot_and_gradients_reach_gate():
    _, rsr = make_rsr(4, 3)
    with torch.no_grad():
        for lora in (rsr.lora_q, rsr.lora_k, rsr.lora_v):
            lora.B.normal_(0, 0.2)
    rsr.train()
    res = rsr(torch.randn(2, 6, D), torch.randn(2, 8))
    for sel in res.route.steps:
        assert torch.all(sel.coef == 1.0)  # forward coefficient is exactly one expert at weight 1
        assert sel.index.shape == (2, 6) and sel.index.dtype == torch.int64
    res.out.square().mean().backward()
    grads = [p.grad for p in rsr.gate.parameters()]
    assert all(g is not None for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0
    for p in rsr.base.parameters():
        assert p.grad is None  # the base is frozen


def test_forced_index_is_obeyed():
    _, rsr = make_rsr(5, 3, per_token=False)
    forced = torch.tensor([[4, 0], [2, 2], [1, 3]])
    rsr.train()
    res = rsr(torch.randn(2, 6, D), torch.randn(2, 8), forced=forced)
    assert torch.equal(res.route.indices(), forced)
    rsr.eval()
    with pytest.raises(ValueError, match="forced expert index"):
        rsr(torch.randn(2, 6, D), torch.randn(2, 8), forced=torch.full((3, 2), 5))


def test_balance_loss_lowest_at_uniform():
    e = 4
    uniform = balance_loss(torch.full((8, e), 1 / e), torch.arange(8) % e)
    skewed_p = torch.tensor([[0.7, 0.1, 0.1, 0.1]]).repeat(8, 1)
    collapsed = balance_loss(skewed_p, torch.zeros(8, dtype=torch.long))
    half = balance_loss(torch.tensor([[0.5, 0.5, 0.0, 0.0]]).repeat(8, 1), torch.arange(8) % 2)
    assert uniform.item() == pytest.approx(1.0)
    assert collapsed > half > uniform
    torch.manual_seed(0)
    for _ in range(20):  # any random routing scores at least the uniform value
        p = torch.softmax(torch.randn(16, e), -1)
        f = F.one_hot(p.argmax(-1), e).float().mean(0)
        assert balance_loss(f.expand(16, e), p.argmax(-1)) >= uniform - 1e-6


@pytest.mark.parametrize("e", [1, 2, 5])
@pytest.mark.parametrize("t", [1, 2, 5])
def test_shapes_per_token_and_per_sample(e, t):
    for per_token in (True, False):
        _, rsr = make_rsr(e, t, per_token)
        res = rsr(torch.randn(3, 7, D), torch.randn(3, 8))
        assert res.out.shape == (3, 7, D)
        assert [s.shape for s in res.states] == [(3, 7, D)] * t
        assert res.route.indices().shape == ((t, 3, 7) if per_token else (t, 3))
        assert res.route.probs().shape == ((t, 3, 7, e) if per_token else (t, 3, e))
        assert res.route.usage(e).shape == (t, e)


def test_context_tokens_rejoin_and_stay_unchanged():
    _, rsr = make_rsr(2, 3)
    rsr.eval()
    x = torch.randn(2, 5, D)
    ctx = tuple(torch.randn(2, H, 4, D // H) for _ in range(3))
    kept = tuple(c.clone() for c in ctx)
    cond = torch.randn(2, 8)
    res = rsr(x, cond, context_qkv=ctx)
    assert res.context.shape == (2, 4, D)
    cache = rsr.prepare(x, ctx)
    torch.testing.assert_close(res.context, cache.ctx_a0)  # B = 0: the text rows see the base attention
    with torch.no_grad():
        for lora in (rsr.lora_q, rsr.lora_k, rsr.lora_v):
            lora.B.normal_()
    res = rsr(x, cond, context_qkv=ctx)
    assert all(torch.equal(a, b) for a, b in zip(ctx, kept))  # the text stream itself is never modified
    assert (res.context - cache.ctx_a0).abs().max() > 1e-3  # but it attends to the refined vision tokens
    with pytest.raises(ValueError, match="context q/k/v"):
        rsr(x, cond, context_qkv=(ctx[0], ctx[1], ctx[2][:, :, :3]))


def test_external_routing_builds_no_gate_and_needs_a_selection():
    base = TinyAttention()
    rsr = RecursiveSparseAttention(RSRConfig(num_experts=3, steps=1, cond_dim=0, per_token=False), base.to_q,
                                   base.to_k, base.to_v, base.to_out, heads=H, external_routing=True)
    assert rsr.gate is None and not any(n.startswith("gate.") for n, _ in rsr.named_parameters())
    x = torch.randn(2, 5, D)
    with pytest.raises(ValueError, match="needs a selection"):
        rsr.step(x, rsr.prepare(x))


def test_same_seed_same_output():
    outs = []
    for _ in range(2):
        _, rsr = make_rsr(3, 3, seed=7)
        with torch.no_grad():
            rsr.lora_v.B.normal_()
        rsr.train()
        torch.manual_seed(123)
        outs.append(rsr(torch.randn(2, 6, D), torch.randn(2, 8)).out)
    assert torch.equal(outs[0], outs[1])


def test_lora_index_and_weights_agree():
    torch.manual_seed(0)
    lora = StackedLoRA(6, 5, num_experts=3, rank=2, alpha=4)
    with torch.no_grad():
        lora.B.normal_()
    x = torch.randn(2, 4, 6)
    per_sample = torch.tensor([2, 0])
    per_token = torch.tensor([[0, 1, 2, 1], [2, 2, 0, 1]])
    torch.testing.assert_close(lora(x, index=per_sample), lora(x, weights=F.one_hot(per_sample, 3).float()))
    torch.testing.assert_close(lora(x, index=per_token), lora(x, weights=F.one_hot(per_token, 3).float()))
    want = (x[1, 2] @ lora.A[0].t() @ lora.B[0].t()) * 2.0
    torch.testing.assert_close(lora(x, index=per_token)[1, 2], want)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"rank": 0}, "rank"),
        ({"num_experts": 0}, "num_experts"),
        ({"steps": 0}, "steps"),
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
    ],
)
def test_bad_config_raises(kwargs, match):
    base = TinyAttention()
    with pytest.raises(ValueError, match=match):
        RecursiveSparseAttention(RSRConfig(**kwargs), base.to_q, base.to_k, base.to_v, base.to_out, heads=H)


def test_mismatched_dims_raise():
    base = TinyAttention()
    with pytest.raises(ValueError, match="to_k"):
        RecursiveSparseAttention(RSRConfig(), base.to_q, nn.Linear(D, D + 4), base.to_v, base.to_out, heads=H)
    with pytest.raises(ValueError, match="to_out"):
        RecursiveSparseAttention(RSRConfig(), base.to_q, base.to_k, base.to_v, nn.Linear(D, D + 1), heads=H)
    with pytest.raises(ValueError, match="heads"):
        RecursiveSparseAttention(RSRConfig(), base.to_q, base.to_k, base.to_v, base.to_out, heads=5)
    _, rsr = make_rsr(2, 2)
    with pytest.raises(ValueError, match="vision tokens"):
        rsr(torch.randn(2, 5, D + 1), torch.randn(2, 8))
    with pytest.raises(ValueError, match="condition"):
        rsr(torch.randn(2, 5, D), torch.randn(2, 3))
    with pytest.raises(ValueError, match="temperature"):
        GatingNetwork(D, 0, 2, temperature=0)


def test_gate_learns_toy_task():
    """Four fixed linear maps are the experts; the condition names the map; the gate must learn which."""
    torch.manual_seed(0)
    e, dim = 4, 8
    lora = StackedLoRA(dim, dim, num_experts=e, rank=dim)
    with torch.no_grad():
        lora.A.copy_(torch.eye(dim).expand(e, dim, dim))
        lora.B.copy_(torch.randn(e, dim, dim))
    lora.requires_grad_(False)
    perm = torch.tensor([2, 0, 3, 1])  # condition c asks for expert perm[c]
    gate = GatingNetwork(dim, e, e, per_token=False, temperature=5.0)
    opt = torch.optim.Adam(gate.parameters(), lr=3e-2)
    gate.train()
    for _ in range(300):
        c = torch.randint(0, e, (64,))
        cond, x = F.one_hot(c, e).float(), torch.randn(64, 4, dim)
        target = lora(x, index=perm[c])
        sel = gate(x, cond)
        pred = lora(x, index=sel.index) * sel.coef[:, None, None]
        loss = (pred - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    gate.eval()
    c = torch.randint(0, e, (512,))
    with torch.no_grad():
        acc = (gate(torch.randn(512, 4, dim), F.one_hot(c, e).float()).index == perm[c]).float().mean()
    assert acc >= 0.95


def test_core_imports_torch_only():
    code = (
        "import sys, rss_world.nn; "
        "bad = [m for m in ('gymnasium', 'hydra', 'diffusers', 'peft', 'stable_baselines3') if m in sys.modules]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def make_reading(state_update: str, e: int = 2, t: int = 3, seed: int = 0):
    torch.manual_seed(seed)
    base = TinyAttention()
    cfg = RSRConfig(num_experts=e, steps=t, rank=4, cond_dim=8, state_update=state_update)
    return base, RecursiveSparseAttention(cfg, base.to_q, base.to_k, base.to_v, base.to_out, heads=H)


def test_attention_reading_keeps_the_invariants_and_differs_once_trained():
    """state_update="attention" (the states carry the whole joint-attention result, text values included): B = 0
    still gives the base output bit for bit, with non-trivial states x + base_out; E = T = 1 is the same layer
    in both readings; with B != 0 and T > 1 the two readings differ, and each state is what `step` computes."""
    x, cond = torch.randn(2, 10, D), torch.randn(2, 8)
    ctx = tuple(torch.randn(2, H, 4, D // H) for _ in range(3))
    base, rsr = make_reading("attention")
    rsr.eval()
    res = rsr(x, cond, context_qkv=ctx)
    cache = rsr.prepare(x, ctx)
    torch.testing.assert_close(res.out, cache.base_out, atol=1e-6, rtol=0)
    for s in res.states:
        torch.testing.assert_close(s, x + cache.base_out, atol=1e-6, rtol=0)  # the states carry a0's values
    outs = {}
    for reading in ("delta", "attention"):
        _, layer = make_reading(reading)
        _, single = make_reading(reading, e=1, t=1)
        with torch.no_grad():
            for lora in (layer.lora_q, layer.lora_k, layer.lora_v, single.lora_q, single.lora_k, single.lora_v):
                lora.B.normal_(0, 0.3)
        layer.eval()
        got = layer(x, cond, context_qkv=ctx)
        state, c = x, layer.prepare(x, ctx)
        for t in range(3):  # the recorded states are the steps' own results
            state, _, _ = layer.step(state, c, cond)
            torch.testing.assert_close(got.states[t], state, atol=1e-5, rtol=0)
        outs[reading] = (got.out, single(x, cond, context_qkv=ctx).out)
    assert (outs["delta"][0] - outs["attention"][0]).abs().max() > 1e-3
    torch.testing.assert_close(outs["delta"][1], outs["attention"][1])
    with pytest.raises(ValueError, match="state_update"):
        RSRConfig(state_update="text").validate()

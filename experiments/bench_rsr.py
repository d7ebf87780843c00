"""Time one attention layer: RSR (E, T) vs plain LoRA vs the monolithic loop, against a FLOP model of each.

Every variant of a width runs on the same inputs in the same process, interleaved round by round, so the ratios
are measured side by side. Widths: a small layer (D=256, 4 heads, rank 32; N = 64 and 1024), DiT-XL/2's attention
(D=1152, 16 heads, 256 tokens, rank 128) and SD3-medium's joint attention (D=1536, 24 heads, 256 image tokens and
333 text tokens, rank 128). Then the end-to-end latency of a full-size DiT-XL/2 forward (random weights, built from
its config) with RSR (E=5, T=5, rank 128) on one middle block and on three blocks, installed with the library's
``rss_world.variants.dit.attach_rsr``. Writes ``experiments/results/bench_rsr.md``.

    python experiments/bench_rsr.py            # full table (about 20 minutes on one thread)
    python experiments/bench_rsr.py --quick    # smoke run (tiny sizes)

The FLOP model counts the matmul FLOPs of each layer (projections, attention's two products, LoRA, gate, output
projections; 2 FLOPs per multiply-add), forward only for inference and forward + backward for training (a matmul
whose weight is frozen costs one more pass for the input's gradient, one whose weight trains two more; attention
two more). The base layer's measured time per FLOP converts a count into a predicted time, so
``overhead = (t_variant / t_base) / (F_variant / F_base)``: 1.0 means the variant runs as efficiently as the base.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from rss_world.nn import RecursiveSparseAttention, RSRConfig, StackedLoRA

FULL_GRID = [(e, t) for e in (1, 2, 5) for t in (1, 2, 5)]
WIDE_GRID = [(1, 1), (1, 5), (2, 2), (5, 1), (5, 5)]


@dataclass
class Width:
    name: str
    dim: int
    heads: int
    rank: int
    tokens: list[int]
    ctx: int  # text tokens of joint attention (0: self-attention)
    batch: int
    grid: list[tuple[int, int]]
    loops: tuple[int, ...]


WIDTHS = [
    Width("small", 256, 4, 32, [64, 1024], 0, 4, FULL_GRID, (2, 5)),
    Width("DiT-XL/2", 1152, 16, 128, [256], 0, 2, WIDE_GRID, (5,)),
    Width("SD3-medium", 1536, 24, 128, [256], 333, 1, WIDE_GRID, ()),
]
QUICK = [Width("quick", 64, 4, 8, [16, 64], 0, 2, [(1, 1), (2, 2)], (2,)),
         Width("quick joint", 64, 4, 8, [16], 8, 2, [(1, 1), (2, 2)], ())]


class BaseAttention(nn.Module):
    """The frozen layer: q, k, v, out projections (and SD3's context projections), dense attention."""

    def __init__(self, dim: int, heads: int, ctx: bool) -> None:
        super().__init__()
        self.heads = heads
        self.to_q, self.to_k, self.to_v, self.to_out = (nn.Linear(dim, dim) for _ in range(4))
        self.ctx = nn.ModuleList(nn.Linear(dim, dim) for _ in range(4)) if ctx else None

    def split(self, t: torch.Tensor) -> torch.Tensor:
        b, n, _ = t.shape
        return t.view(b, n, self.heads, -1).transpose(1, 2)  # (B, H, N, d)

    def context_qkv(self, c: torch.Tensor | None):
        return None if self.ctx is None else tuple(self.split(p(c)) for p in self.ctx[:3])

    def context_out(self, a: torch.Tensor | None) -> torch.Tensor:
        return 0.0 if a is None else self.ctx[3](a).sum()

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None, lora: tuple[StackedLoRA, ...] | None = None):
        b, n, d = x.shape
        q, k, v = self.to_q(x), self.to_k(x), self.to_v(x)
        if lora is not None:
            idx = torch.zeros(b, dtype=torch.long)
            q, k, v = q + lora[0](x, index=idx), k + lora[1](x, index=idx), v + lora[2](x, index=idx)
        q, k, v = (self.split(t) for t in (q, k, v))
        ctx = self.context_qkv(c)
        if ctx is not None:
            q, k, v = (torch.cat([a, b_], 2) for a, b_ in zip((q, k, v), ctx))
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, -1, d)  # (B, N+M, D)
        return self.to_out(a[:, :n]).sum() + self.context_out(a[:, n:] if ctx is not None else None)


def flops(kind: str, w: Width, n: int, e: int = 1, t: int = 1) -> tuple[float, float]:
    """(inference, training) matmul FLOPs of one layer call on a batch (see the module docstring)."""
    d, m, r = w.dim, w.ctx, w.rank
    p, pc = 2 * n * d * d, 2 * m * d * d  # one D x D projection over the vision / context tokens
    att = 4 * (n + m) ** 2 * d  # QK^T and PV over the joint sequence
    lora = 12 * n * d * r  # q, k and v: N x D x r down and N x r x D up, three times
    hid = min(d, 256)
    gate = 2 * n * d * hid + 2 * n * hid * e if e > 1 else 0
    ctx_inf, ctx_train = 4 * pc, 3 * pc + 2 * pc  # context q/k/v need no gradient; its W_o passes one back
    if kind == "base":
        inf, train = 4 * p + att, 8 * p + 3 * att
    elif kind == "lora":
        inf, train = 4 * p + att + lora, 8 * p + 3 * att + 3 * lora
    elif kind == "loop":
        return w.batch * t * (4 * p + att), w.batch * t * 3 * (4 * p + att)  # self-attention only
    else:  # RSR: frozen q/k/v once, base attention if T > 1, then per step gate + LoRA + attention + W_o
        inf = 3 * p + (att if t > 1 else 0) + t * (gate + lora + att + p)
        train = 6 * p + (3 * att if t > 1 else 0) + t * (3 * gate + 3 * lora + 3 * att + 2 * p)
    return w.batch * (inf + ctx_inf), w.batch * (train + ctx_train)


def build(w: Width):
    torch.manual_seed(0)
    base = BaseAttention(w.dim, w.heads, w.ctx > 0)
    base.requires_grad_(False)
    variants = {"base": (lambda x, c: base(x, c[0]), base, ("base", 1, 1))}
    lora = tuple(StackedLoRA(w.dim, w.dim, 1, w.rank) for _ in range(3))
    for m in lora:
        nn.init.normal_(m.B, std=0.02)
    variants["plain LoRA"] = (lambda x, c: base(x, c[0], lora), nn.ModuleList(lora), ("lora", 1, 1))
    for e, t in w.grid:
        rsr = RecursiveSparseAttention(
            RSRConfig(num_experts=e, steps=t, rank=w.rank, cond_dim=w.dim, per_token=True),
            base.to_q, base.to_k, base.to_v, base.to_out, w.heads,
        )
        for m in (rsr.lora_q, rsr.lora_k, rsr.lora_v):
            nn.init.normal_(m.B, std=0.02)
        if w.ctx:
            assert not w.loops, "the monolithic loop is self-attention only"

        def run(x, c, r=rsr):
            res = r(x, c[1], base.context_qkv(c[0]) if c[0] is not None else None)
            return res.out.sum() + base.context_out(res.context)

        variants[f"RSR E={e} T={t}"] = (run, rsr, ("rsr", e, t))
    for t in w.loops:  # the whole layer (projections + attention + out) applied T times, residually
        mono = BaseAttention(w.dim, w.heads, w.ctx > 0)

        def mono_run(x, c, m=mono, t=t):
            for _ in range(t):
                x = x + _layer(m, x)
            return x.sum()

        variants[f"monolithic loop T={t}"] = (mono_run, mono, ("loop", 1, t))
    return variants


def _layer(m: BaseAttention, x: torch.Tensor) -> torch.Tensor:
    """One full self-attention layer pass returning (B, N, D) (the monolithic loop feeds it back)."""
    b, n, d = x.shape
    q, k, v = (m.split(p(x)) for p in (m.to_q, m.to_k, m.to_v))
    return m.to_out(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))


def time_it(fn, module, x, c, train: bool, reps: int) -> float:
    module.train(train)
    samples = []
    for _ in range(reps):
        x_in = x.detach().requires_grad_(train)
        t0 = time.perf_counter()
        if train:
            fn(x_in, c).backward()
        else:
            with torch.no_grad():
                fn(x_in, c)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def bench_width(w: Width, reps: int, rounds: int) -> list[str]:
    variants = build(w)
    lines = [f"### {w.name}: D={w.dim}, {w.heads} heads, rank {w.rank}, batch {w.batch}"
             + (f", {w.ctx} text tokens in joint attention" if w.ctx else ""), ""]
    head = "| variant | " + " | ".join(
        f"N={n} train: time × · FLOPs × · overhead | N={n} infer: time × · FLOPs × · overhead" for n in w.tokens)
    lines += [head + " |", "|---|" + "---|---|" * len(w.tokens)]
    cells: dict[str, list[str]] = {name: [] for name in variants}
    for n in w.tokens:
        torch.manual_seed(1)
        x = torch.randn(w.batch, n, w.dim)
        c = (torch.randn(w.batch, w.ctx, w.dim) if w.ctx else None, torch.randn(w.batch, w.dim))
        times = {name: ([], []) for name in variants}
        for fn, mod, _ in variants.values():  # warm-up
            time_it(fn, mod, x, c, True, 1)
            time_it(fn, mod, x, c, False, 1)
        for _ in range(rounds):  # interleave variants round by round
            for name, (fn, mod, _) in variants.items():
                times[name][0].append(time_it(fn, mod, x, c, True, reps))
                times[name][1].append(time_it(fn, mod, x, c, False, reps))
        t_train0, t_inf0 = (statistics.median(v) for v in times["base"])
        f_inf0, f_train0 = flops("base", w, n)
        for name, (_, _, (kind, e, t)) in variants.items():
            t_train, t_inf = (statistics.median(v) for v in times[name])
            f_inf, f_train = flops(kind, w, n, e, t)
            if name == "base":
                cells[name] += [f"{t_train * 1e3:.1f} ms ({f_train0 / t_train / 1e9:.0f} GFLOP/s)",
                                f"{t_inf * 1e3:.1f} ms ({f_inf0 / t_inf / 1e9:.0f} GFLOP/s)"]
                continue
            for tm, tm0, fl, fl0 in ((t_train, t_train0, f_train, f_train0), (t_inf, t_inf0, f_inf, f_inf0)):
                rt, rf = tm / tm0, fl / fl0
                cells[name].append(f"{rt:.2f}× · {rf:.2f}× · **{rt / rf:.2f}**")
        print(f"  {w.name} N={n} done", flush=True)
    lines += [f"| {name} | " + " | ".join(cs) + " |" for name, cs in cells.items()]
    return lines + [""]


def dit_end_to_end(quick: bool, reps: int, rounds: int) -> list[str]:
    """Latency of a DiT-XL/2 forward (random weights) without RSR, with RSR on one middle block, on three."""
    from diffusers import DiTTransformer2DModel

    from rss_world.variants.dit import attach_rsr, detach_rsr

    torch.manual_seed(0)
    if quick:
        cfg = dict(num_attention_heads=2, attention_head_dim=32, num_layers=4, sample_size=8)
        one, three, rank, e, t = [2], [1, 2, 3], 8, 5, 5
    else:  # DiT-XL/2 at 256 px: 28 blocks, 16 heads x 72 = 1152 wide, 32x32 latents, patch 2 -> 256 tokens
        cfg = dict(num_attention_heads=16, attention_head_dim=72, num_layers=28, sample_size=32)
        one, three, rank, e, t = [14], [7, 14, 21], 128, 5, 5
    model = DiTTransformer2DModel(in_channels=4, out_channels=8, patch_size=2, num_embeds_ada_norm=1000, **cfg)
    model.eval().requires_grad_(False)
    batch = 2  # one image with classifier-free guidance
    side = cfg["sample_size"]
    x = torch.randn(batch, 4, side, side)
    ts, labels = torch.tensor([500] * batch), torch.tensor([207, 1000])
    configs = {"DiT-XL/2 (no RSR)": None, f"RSR on block {one}": one, f"RSR on blocks {three}": three}

    def forward():
        with torch.no_grad():
            model(x, timestep=ts, class_labels=labels)

    def timed(layers):
        if layers is not None:
            handle = attach_rsr(model, layers, RSRConfig(num_experts=e, steps=t, rank=rank, per_token=True))
            for i in layers:  # non-zero B, so the experts compute something real
                rsr = handle.processors[i].rsr
                for m in (rsr.lora_q, rsr.lora_k, rsr.lora_v):
                    nn.init.normal_(m.B, std=0.02)
        forward()  # warm-up
        out = []
        for _ in range(reps):
            t0 = time.perf_counter()
            forward()
            out.append(time.perf_counter() - t0)
        if layers is not None:
            detach_rsr(model)
        return statistics.median(out)

    times = {k: [] for k in configs}
    for _ in range(rounds):
        for name, layers in configs.items():
            times[name].append(timed(layers))
    n, d = (side // 2) ** 2, cfg["num_attention_heads"] * cfg["attention_head_dim"]
    w = Width("dit", d, cfg["num_attention_heads"], rank, [n], 0, batch, [], ())
    proj = 2 * n * d * d
    block = 4 * proj + 4 * n * n * d + 8 * proj + 2 * d * 6 * d  # attention + MLP (4x) + adaLN per sample
    total = batch * cfg["num_layers"] * block
    extra = flops("rsr", w, n, e, t)[0] - flops("base", w, n)[0]
    base_t = statistics.median(times["DiT-XL/2 (no RSR)"])
    lines = [f"### End to end: DiT-XL/2 forward{' (quick: a 4-block toy)' if quick else ''}, batch {batch} "
             f"(one image with guidance), {n} tokens, RSR E={e} T={t} rank {rank}, per-token gate, eval", "",
             "| model | latency | overhead (measured) | overhead (FLOP model) |", "|---|---|---|---|"]
    for name, layers in configs.items():
        tm = statistics.median(times[name])
        k = 0 if layers is None else len(layers)
        lines.append(f"| {name} | {tm * 1e3:.0f} ms | {100 * (tm / base_t - 1):+.1f}% | "
                     f"{100 * k * extra / total:+.1f}% |")
    print("  end to end done", flush=True)
    return lines + [""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke run")
    ap.add_argument("--skip-e2e", action="store_true", help="layer tables only")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_rsr.md")
    args = ap.parse_args()
    if args.quick:
        args.reps, args.rounds = 2, 1
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    body = []
    for w in QUICK if args.quick else WIDTHS:
        body += bench_width(w, args.reps, args.rounds)
    if not args.skip_e2e:
        body += dit_end_to_end(args.quick, args.reps, args.rounds)
    cmd = "python experiments/bench_rsr.py" + (" --quick" if args.quick else "") + (
        " --skip-e2e" if args.skip_e2e else "")
    lines = [
        "# RSR attention layer: measured time against a FLOP model",
        "",
        f"Command: `{cmd}` · machine: {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} torch thread(s) (`torch.set_num_threads({args.threads})`), torch "
        f"{torch.__version__} · per-token routing · median of {args.rounds} rounds × {args.reps} reps, variants "
        f"interleaved round by round in one run · total {(time.perf_counter() - t_start) / 60:.1f} min.",
        "",
        "Each cell: measured time relative to the frozen base layer · FLOPs relative to the base by the FLOP model · "
        "**overhead** = their quotient (1.00: as efficient per FLOP as the base layer). Train = forward + backward "
        "(gradients to the input and the adapters/gate; to all weights for the monolithic loop), infer = forward "
        "under no_grad (gate in eval mode). The `base` row gives absolute time and the base's achieved rate.",
        "",
    ]
    text = "\n".join(lines + body)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Time one attention layer: RSR (E, T) vs the monolithic loop vs plain LoRA, relative to the base layer.

Every variant runs on the same inputs in the same process, interleaved round by round, so the ratios are
measured side by side. Writes ``experiments/results/bench_rsr.md``.

    python experiments/bench_rsr.py            # full table (D=256, 4 heads, rank 32; N = 64 and 1024)
    python experiments/bench_rsr.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from rss_world.nn import RecursiveSparseAttention, RSRConfig, StackedLoRA


class BaseAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.to_q, self.to_k, self.to_v, self.to_out = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x: torch.Tensor, lora: tuple[StackedLoRA, ...] | None = None) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.to_q(x), self.to_k(x), self.to_v(x)
        if lora is not None:
            idx = torch.zeros(b, dtype=torch.long)
            q, k, v = q + lora[0](x, index=idx), k + lora[1](x, index=idx), v + lora[2](x, index=idx)
        heads = [t.view(b, n, self.heads, -1).transpose(1, 2) for t in (q, k, v)]
        a = F.scaled_dot_product_attention(*heads)  # (B, H, N, d)
        return self.to_out(a.transpose(1, 2).reshape(b, n, d))


def build(dim: int, heads: int, rank: int, cond_dim: int):
    torch.manual_seed(0)
    base = BaseAttention(dim, heads)
    base.requires_grad_(False)
    variants: dict[str, callable] = {}
    variants["base"] = base
    lora = tuple(StackedLoRA(dim, dim, 1, rank) for _ in range(3))
    for m in lora:
        nn.init.normal_(m.B, std=0.02)
    variants["plain LoRA"] = lambda x, c: base(x, lora)
    params = {"plain LoRA": [p for m in lora for p in m.parameters()]}
    for e in (1, 2, 5):
        for t in (1, 2, 5):
            rsr = RecursiveSparseAttention(
                RSRConfig(num_experts=e, steps=t, rank=rank, cond_dim=cond_dim, per_token=True),
                base.to_q, base.to_k, base.to_v, base.to_out, heads,
            )
            for m in (rsr.lora_q, rsr.lora_k, rsr.lora_v):
                nn.init.normal_(m.B, std=0.02)
            rsr.train()
            variants[f"RSR E={e} T={t}"] = lambda x, c, r=rsr: r(x, c).out
            params[f"RSR E={e} T={t}"] = rsr.adapter_parameters()
    for t in (2, 5):
        # Monolithic loop: the whole layer (projections + attention + out) applied T times, residually.
        mono = BaseAttention(dim, heads)

        def run(x, c, m=mono, t=t):
            for _ in range(t):
                x = x + m(x)
            return x

        variants[f"monolithic loop T={t}"] = run
        params[f"monolithic loop T={t}"] = list(mono.parameters())
    return variants, params


def time_it(fn, x, c, backward: bool, reps: int) -> float:
    samples = []
    for _ in range(reps):
        x_in = x.detach().requires_grad_(backward)
        t0 = time.perf_counter()
        if backward:
            fn(x_in, c).sum().backward()
        else:
            with torch.no_grad():
                fn(x_in, c)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--tokens", type=int, nargs="+", default=[64, 1024])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke run")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_rsr.md")
    args = ap.parse_args()
    if args.quick:
        args.dim, args.tokens, args.reps, args.rounds = 64, [16, 64], 2, 1
    torch.set_num_threads(args.threads)
    cond_dim = 32
    variants, params = build(args.dim, args.heads, args.rank, cond_dim)
    rows: dict[int, dict[str, tuple[float, float]]] = {}
    for n in args.tokens:
        x = torch.randn(args.batch, n, args.dim)
        c = torch.randn(args.batch, cond_dim)
        times = {name: ([], []) for name in variants}
        for name, fn in variants.items():  # warm-up
            time_it(fn if name != "base" else (lambda x, c, f=fn: f(x)), x, c, True, 1)
        for _ in range(args.rounds):  # interleave variants round by round
            for name, fn in variants.items():
                f = fn if name != "base" else (lambda x, c, f=fn: f(x))
                times[name][0].append(time_it(f, x, c, True, args.reps))
                times[name][1].append(time_it(f, x, c, False, args.reps))
        fb0, f0 = (statistics.median(v) for v in times["base"])
        rows[n] = {k: (statistics.median(v[0]) / fb0, statistics.median(v[1]) / f0) for k, v in times.items()}
        rows[n]["base"] = (fb0 * 1e3, f0 * 1e3)  # absolute ms for the base row
    lines = [
        "# RSR attention-layer timing (relative to the frozen base layer)",
        "",
        f"Command: `python experiments/bench_rsr.py{' --quick' if args.quick else ''}` · machine: "
        f"{platform.processor() or platform.machine()}, {args.threads} torch threads, torch {torch.__version__} · "
        f"D={args.dim}, heads={args.heads}, LoRA rank={args.rank}, batch={args.batch}, per-token routing. "
        f"Median of {args.rounds} rounds × {args.reps} reps, variants interleaved in one run.",
        "",
        "Train = forward+backward (gradients to adapters/gate; to all weights for the monolithic loop), "
        "infer = forward only under no_grad. The `base` row gives absolute milliseconds.",
        "",
    ]
    head = "| variant | " + " | ".join(f"N={n} train | N={n} infer" for n in args.tokens) + " |"
    lines += [head, "|---|" + "---|---|" * len(args.tokens)]
    for name in variants:
        cells = []
        for n in args.tokens:
            a, b = rows[n][name]
            unit = " ms" if name == "base" else "×"
            cells += [f"{a:.2f}{unit}", f"{b:.2f}{unit}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

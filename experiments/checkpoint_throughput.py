"""Batched imagined-env throughput of two or more world-model checkpoints, side by side in one run.

    mkdir -p /tmp/old && git show 8ffa6d0:rss_world/checkpoints/frozenlake/config.json > /tmp/old/config.json
    git show 8ffa6d0:rss_world/checkpoints/frozenlake/model.safetensors > /tmp/old/model.safetensors
    git checkout 5afe878  # the comparison below is of world-model v1 checkpoints, which v2 no longer reads
    python -c "from rss_world.checkpoint import convert_legacy; convert_legacy('/tmp/old', '/tmp/dec2')"
    python experiments/checkpoint_throughput.py /tmp/dec2 rss_world/checkpoints/frozenlake  # 2 decoder blocks vs 1
    python experiments/checkpoint_throughput.py rss_world/checkpoints/frozenlake --reencode-every 0 4 1 \
        --out experiments/results/reencode_throughput.md      # what re-encoding the decoded frame costs

Each round measures the real env (gymnasium render) once, then every checkpoint at batch 64 and 256 with start latents
pre-encoded (as agent training uses the env), at every ``--reencode-every`` setting; ratios are taken within a round.
Envs are built once and kept across rounds. Writes
``experiments/results/checkpoint_throughput.md``.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch

from rss_world.checkpoint import load_model
from rss_world.envs.maps import load_default_suite
from rss_world.io import atomic_write_text
from rss_world.rl_agents import SIZES
from rss_world.throughput import real_steps_per_s, wm_steps_per_s


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", nargs="+", help="checkpoint directories; the first is the reference")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=30, help="batched steps per measurement")
    p.add_argument("--threads", type=int, nargs="+", default=None, help="torch threads (default: 1 and every core)")
    p.add_argument("--reencode-every", type=int, nargs="+", default=[0],
                   help="env settings to measure each checkpoint with (0: latent recursion only, the method)")
    p.add_argument("--out", default="experiments/results/checkpoint_throughput.md")
    args = p.parse_args(argv)
    if len(args.checkpoints) * len(args.reencode_every) < 2:
        p.error("give at least two checkpoints, or two --reencode-every settings, to compare")
    if min(args.reencode_every) < 0:
        p.error("--reencode-every takes values >= 0")
    if args.rounds < 1 or args.steps < 1:
        p.error("--rounds and --steps must be >= 1")
    torch.set_num_threads(1)
    models = {c: load_model(c).eval() for c in args.checkpoints}
    maps = load_default_suite("train", SIZES)
    threads = args.threads or sorted({1, os.cpu_count() or 1})
    keys = [(c, k, b, t) for t in threads for b in (64, 256) for c in args.checkpoints for k in args.reencode_every]
    speed: dict = {key: [] for key in keys}
    real: list[float] = []
    envs: dict = {}
    for _ in range(args.rounds):
        real.append(real_steps_per_s(maps, "gymnasium", 500))
        for c, k, b, t in keys:
            speed[c, k, b, t].append(wm_steps_per_s(models[c], maps, b, args.steps, threads=t, reencode_every=k,
                                                    cache=envs.setdefault(c, {})))
    ref = args.checkpoints[0], args.reencode_every[0]
    L = ["# Imagined-env throughput by checkpoint", "",
         f"Command: `python experiments/checkpoint_throughput.py {' '.join(sys.argv[1:] if argv is None else argv)}`",
         "", f"{args.rounds} rounds; real env (gymnasium render): {np.median(real):,.0f} steps/s (median).", "",
         "| checkpoint | decoder blocks | re-encode every | batch | threads | steps/s (median) | ÷ real "
         "| ÷ first row of its batch and threads (range) |",
         "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for c, k, b, t in keys:
        v = np.array(speed[c, k, b, t])
        vs = v / np.array(speed[(*ref, b, t)])
        L.append(f"| `{c}` | {models[c].cfg.dec_layers} | {k or 'never'} | {b} | {t} | {np.median(v):,.0f} | "
                 f"{np.median(v / np.array(real)):.1f}× | {np.median(vs):.2f}× ({vs.min():.2f}–{vs.max():.2f}) |")
    atomic_write_text(args.out, "\n".join(L) + "\n")
    print("\n".join(L))
    return 0


if __name__ == "__main__":
    sys.exit(main())

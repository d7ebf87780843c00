"""Measure the world model: decoded-frame exact-grid accuracy per latent step and gate top-1 accuracy on
validation maps it never saw, plus ablations trained at equal steps. Writes
``experiments/results/world_model.md``.

    python experiments/world_model_eval.py                          # shipped model + ablations (300 steps each)
    python experiments/world_model_eval.py --ablation-steps 0       # shipped model only
    python experiments/world_model_eval.py --quick                  # smoke run (tiny, few steps)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from rss_world.checkpoint import load_model
from rss_world.data import load_shards
from rss_world.io import atomic_write_text
from rss_world.rollouts import ensure_recipe_data
from rss_world.training.config import TrainRecipe, compose_recipe
from rss_world.training.recipe import frame_check
from rss_world.training.world_model import train, validate
from rss_world.world_model import build_world_model

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "rss_world" / "checkpoints" / "frozenlake"
# name -> (world-model architecture in rss_world.world_model.ARCHS, training-setting changes)
ABLATIONS = {
    "RSR, E=4 (default)": ("rsr", {}),
    "no recursion (T=1, re-encode the decoded frame each step)": ("rsr", {"reencode": True}),
    "no routing (one shared expert + action embedding)": ("shared_expert", {}),
    "E=8 (2 experts per action)": ("multi_expert", {}),
    "paper-like transformer-trunk gate (4 iterations) instead of value iteration": ("trunk_gate", {}),
}


def row(name: str, steps: int, minutes: float, m: dict, horizon: int) -> str:
    cells = [f"{100 * m.get(f'frame_acc_step{t}', float('nan')):.1f}" for t in (0, 1, 2, 4, horizon)]
    n = m.get(f"frame_n_step{horizon}", 0)
    return (f"| {name} | {steps} | {minutes:.1f} | " + " | ".join(cells)
            + f" | {n} | {100 * m['gate_top1']:.1f} | {m['gate_n']} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, default=SHIPPED)
    ap.add_argument("--windows", type=int, default=64, help="validation windows per map size")
    ap.add_argument("--ablation-steps", type=int, default=200)
    ap.add_argument("--ablation-gate-steps", type=int, default=200)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "experiments" / "results" / "world_model.md")
    args = ap.parse_args()
    torch.set_num_threads(1)
    recipe: TrainRecipe = OmegaConf.to_object(compose_recipe(["model=tiny"] if args.quick else []))
    sizes = list(recipe.data.sizes)
    ensure_recipe_data(recipe.data)
    val = load_shards(recipe.data.val_dir, sizes)
    check = frame_check()
    tcfg = dataclasses.replace(recipe.train, val_windows=4 if args.quick else args.windows)
    horizon = tcfg.horizon
    lines = [
        "# FrozenLake world model: measured accuracy",
        "",
        f"Machine: {platform.machine()} CPU, 1 torch thread (2-core box shared with other jobs). Validation maps: "
        f"the `val` split (never trained on), sizes {sizes[0]}-{sizes[-1]}, {tcfg.val_windows} teacher-forced "
        f"windows of {horizon} steps per size, each starting where its episode still has {horizon} steps left "
        "(at the episode start when it is shorter; sizes 3-4 rarely reach step 8). A decoded frame counts as right "
        "when the FrozenLake parser reads exactly the true grid (tiles and agent cell). Gate top-1: at every "
        "state of those windows (the encoded start frame, then the imagined latents after 1..8 teacher-forced "
        "steps), the gate's argmax action is one of the oracle's shortest-path actions.",
        "",
        f"Command: `{' '.join(['python experiments/world_model_eval.py', *sys.argv[1:]])}`",
        "",
    ]
    header = [
        f"| model | train steps | train min | step 0 (autoenc.) % | step 1 % | step 2 % | step 4 % | step {horizon} % "
        f"| frames at step {horizon} | gate top-1 % | gate states |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    abl_lines: list[str] = []
    if args.ablation_steps > 0 or args.quick:
        steps = 3 if args.quick else args.ablation_steps
        train_data = load_shards(recipe.data.train_dir, sizes)
        abl_lines = ["", f"Ablations at equal training steps ({steps} world-model steps + "
                     f"{args.ablation_gate_steps} gate steps each, same data, seed and optimiser; far shorter "
                     "than the shipped recipe):", "", *header]
        for name, (arch, tkw) in ABLATIONS.items():
            torch.manual_seed(0)
            model = build_world_model(arch, **dataclasses.asdict(recipe.model))
            gate_steps = 2 if args.quick else args.ablation_gate_steps
            tc = dataclasses.replace(tcfg, **tkw, steps=steps, gate_steps=gate_steps, val_every=10**9,
                                     ckpt_every=10**9)
            t0 = time.time()
            train(model, train_data, None, tc, ROOT / "outputs" / "ablations" / name.split(" ")[0], progress=False)
            minutes = (time.time() - t0) / 60
            abl_lines.append(row(name, steps, minutes, validate(model, val, tc, check), horizon))
            print(abl_lines[-1], flush=True)
    if not args.quick:
        lines += header
        model = load_model(args.checkpoint)
        meta = json.loads((args.checkpoint / "config.json").read_text())["meta"]
        log = args.checkpoint / "metrics.jsonl"
        minutes = float("nan")
        if log.exists():  # stage 1 and stage 2 each log their own elapsed time; the total is the sum of the two
            recs = [json.loads(line) for line in log.read_text().splitlines()]
            stages = {r.get("stage") for r in recs}
            minutes = sum(max(r["time_s"] for r in recs if r.get("stage") == st) for st in stages) / 60
        m = validate(model, val, tcfg, check)
        steps = f"{meta.get('step', 0)} + {meta.get('gate_steps', 0)} gate"
        lines.append(row(f"shipped ({args.checkpoint.relative_to(ROOT)})", steps, minutes, m, horizon))
        print(lines[-1], flush=True)
    lines += abl_lines
    text = "\n".join(lines) + "\n"
    atomic_write_text(args.out, text)
    print(text)


if __name__ == "__main__":
    main()

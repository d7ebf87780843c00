"""The PPO recipe, checked on the validation split: the shipped recipe against the settings it replaced.

    python experiments/ppo_recipe_val.py                 # 200k real env steps per candidate, seed 0
    python experiments/ppo_recipe_val.py --steps 4096    # smoke run

Each candidate trains in the real env on the train split (sizes 3-6, frames only) and is scored with greedy actions
on the val split's maps of those sizes, never on test maps. Writes ``experiments/results/ppo_recipe_val.md``.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import torch

from rss_world.envs.maps import load_default_suite
from rss_world.io import atomic_write_text
from rss_world.protocols import select_maps
from rss_world.rl_agents import PPO_RECIPE, SIZES, evaluate_real, train_agent

ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = {
    "shipped recipe (PPO_RECIPE)": PPO_RECIPE,
    "replaced settings (4 epochs, minibatch 256, lr 3e-4)": {**PPO_RECIPE, "batch_size": 256, "n_epochs": 4,
                                                              "learning_rate": 3e-4},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=200_000, help="real env steps per candidate")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "experiments" / "results" / "ppo_recipe_val.md")
    args = ap.parse_args()
    torch.set_num_threads(1)
    train = [m for m in load_default_suite("train") if m.size in SIZES]
    val = select_maps(load_default_suite("val"), SIZES, None, args.seed)
    rows = []
    for name, recipe in CANDIDATES.items():
        agent, meta = train_agent("ppo", "real", args.steps, train, seed=args.seed, recipe=recipe)
        s = evaluate_real(agent, meta, val, seed=args.seed)
        rows.append(f"| {name} | {meta['steps']} | {100 * s['success_rate']:.1f}% | {meta['train_seconds']:.0f} |")
        print(rows[-1], flush=True)
    text = "\n".join([
        "# PPO recipe on the validation split",
        "",
        f"Command: `{' '.join(['python experiments/ppo_recipe_val.py', *sys.argv[1:]])}`  ",
        f"Machine: {platform.machine()} CPU, 1 torch thread. Training: real env, train split sizes {list(SIZES)}, "
        f"frames only, seed {args.seed}. Scored: greedy actions on all {len(val)} val-split maps of those sizes "
        "(one episode each); test maps are not used.",
        "",
        "| candidate | env steps | val success | train s |",
        "|---|---|---|---|",
        *rows,
        "",
    ])
    atomic_write_text(args.out, text)
    print(text)


if __name__ == "__main__":
    main()

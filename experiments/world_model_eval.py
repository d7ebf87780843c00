"""Measure the world model: decoded-frame exact-grid accuracy per latent step and gate top-1 accuracy on
validation maps it never saw, plus ablations trained at equal steps. Writes ``experiments/results/world_model.md``.

The rollout shards hold no labels (the rollout contract, :mod:`rss_world.data`). The labels are made here, at
evaluation time, from the recorded real frames: the environment's parser reads the true grid and agent cell of
each window's first frame, the recorded actions replay the cells (every real frame is checked against them), and the
oracle gives the shortest-path actions of each state. Evaluation may read the map; training may not. Windows are
drawn without replacement, so every counted window is distinct, and the report gives how many windows and episodes
stand behind each step of each size.

Of the model it calls ``encode``, ``step`` (a given action, no gate logits), ``decode`` and ``policy``.

    python experiments/world_model_eval.py                          # shipped model + ablations (200 steps each)
    python experiments/world_model_eval.py --ablation-steps 0       # shipped model only
    python experiments/world_model_eval.py --quick                  # smoke run (tiny, few steps)
    python experiments/world_model_eval.py --ablation-steps 0 data.val_dir=/tmp/fl_val  # recipe overrides last
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from rss_world.checkpoint import load_model
from rss_world.data import Episodes, count_windows, load_shards, sample_windows
from rss_world.envs.oracle import move, optimal_action_mask
from rss_world.envs.parser import parse_frame
from rss_world.io import atomic_write_text
from rss_world.rollouts import collect
from rss_world.training.config import TrainRecipe, compose_recipe
from rss_world.world_model import WorldModel, build_world_model

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "rss_world" / "checkpoints" / "frozenlake"
SEED = 12345  # the validation windows' draw
# name -> (world-model architecture in rss_world.world_model.ARCHS, training-setting changes)
ABLATIONS = {
    "RSR, E=4 (default)": ("rsr", {}),
    "no recursion (T=1, re-encode the decoded frame each step)": ("rsr", {"reencode": True}),
    "no routing (one shared expert + action embedding)": ("shared_expert", {}),
    "E=8 (2 experts per action)": ("multi_expert", {}),
    "paper-like transformer-trunk gate (4 iterations) instead of value iteration": ("trunk_gate", {}),
}


def true_states(frames: np.ndarray, actions: np.ndarray, valid: np.ndarray,
                size: int) -> tuple[tuple[str, ...], list]:
    """The map and the agent cell of every real state of one window, read from its recorded frames.

    Args:
        frames: ``(T+1, H, W, 3)`` the window's real frames; actions, valid: ``(T,)``.
        size: the grid side.

    Returns:
        ``(desc, cells)``: the map rows the parser reads in the first frame, and the agent cell at steps
        ``0..k`` (``k`` the window's real steps), replayed from the recorded actions.

    Raises:
        ValueError: the first frame shows no agent, or a real frame is not the replayed state.
    """
    first = parse_frame(frames[0], size=size)
    if first.agent is None:
        raise ValueError("a window starts at a frame with no visible agent (not a live state)")
    desc = first.to_desc()
    cells = [first.agent]
    for t in np.flatnonzero(valid):
        cell, _ = move(desc, cells[-1], int(actions[t]))
        if not parse_frame(frames[t + 1], size=size).equals_grid(desc, cell):
            raise ValueError(f"real frame {t + 1} of a window is not the state its recorded actions reach")
        cells.append(cell)
    return desc, cells


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """Decoded frames in [0, 1] -> uint8 pixels, as a real frame would hold them."""
    return frames.float().clamp(0, 1).mul(255.0).round().to(torch.uint8).cpu().numpy()


@torch.no_grad()
def measure(model: WorldModel, val: dict[int, Episodes], horizon: int, windows: int, reencode: bool = False,
            chunk: int = 64) -> dict:
    """Exact-grid accuracy of decoded frames and gate top-1 accuracy, per size and latent step.

    Per size, ``min(windows, all)`` distinct windows of ``horizon`` teacher-forced steps (long starts: each where
    its episode still has ``horizon`` steps left, at the episode start when it is shorter). At step ``t`` a window
    counts while its real episode lasts; its decoded frame is right when the parser reads the true grid and agent
    cell, its gate is right when the argmax action is a shortest-path action (states with one only).

    Returns:
        ``{size: {"windows", "episodes", "available", "steps": [{"n", "episodes", "correct", "gate_n", "gate_ok"}]}}``.
    """
    was_training = model.training
    model.eval()
    rng = np.random.default_rng(SEED)
    out = {}
    for size, ep in sorted(val.items()):
        available = count_windows(ep, horizon, long=True)
        batch = sample_windows(ep, min(windows, available), horizon, rng, long=True, replace=False)
        steps = [{"n": 0, "episodes": set(), "correct": 0, "gate_n": 0, "gate_ok": 0} for _ in range(horizon + 1)]
        for lo in range(0, len(batch["episode"]), chunk):
            part = {k: v[lo:lo + chunk] for k, v in batch.items()}
            frames, actions, valid = (part[k].numpy() for k in ("frames", "actions", "valid"))
            truth = [true_states(frames[i], actions[i], valid[i], size) for i in range(len(frames))]
            z = model.encode(part["frames"][:, 0])
            alive = np.ones(len(frames), dtype=bool)
            for t in range(horizon + 1):
                decoded, probs = to_uint8(model.decode(z)), model.policy(z).float().cpu().numpy()
                for i in np.flatnonzero(alive):
                    desc, cells = truth[i]
                    s = steps[t]
                    s["n"] += 1
                    s["episodes"].add(int(part["episode"][i]))
                    s["correct"] += parse_frame(decoded[i], size=size).equals_grid(desc, cells[t])
                    best = optimal_action_mask(desc, cells[t])
                    if best.any():
                        s["gate_n"] += 1
                        s["gate_ok"] += bool(best[int(probs[i].argmax())])
                if t == horizon:
                    break
                z = model.step(z, part["actions"][:, t], with_logits=False)[0]
                if reencode:
                    z = model.encode(to_uint8(model.decode(z)))
                alive &= valid[:, t]
        for s in steps:
            s["episodes"] = len(s["episodes"])
        out[size] = {"windows": len(batch["episode"]), "episodes": len(set(batch["episode"].tolist())),
                     "available": available, "steps": steps}
    model.train(was_training)
    return out


def summary(m: dict, horizon: int) -> dict:
    """All sizes together: accuracy, windows and episodes per step; gate accuracy over every state."""
    out = {}
    for t in range(horizon + 1):
        n = sum(r["steps"][t]["n"] for r in m.values())
        out[f"frame_acc_step{t}"] = sum(r["steps"][t]["correct"] for r in m.values()) / n if n else float("nan")
        out[f"frame_n_step{t}"] = n
        out[f"frame_episodes_step{t}"] = sum(r["steps"][t]["episodes"] for r in m.values())
    g_n = sum(s["gate_n"] for r in m.values() for s in r["steps"])
    out["gate_top1"] = sum(s["gate_ok"] for r in m.values() for s in r["steps"]) / max(g_n, 1)
    out["gate_n"] = g_n
    return out


def row(name: str, steps: object, minutes: float, m: dict, horizon: int) -> str:
    s = summary(m, horizon)
    cells = [f"{100 * s[f'frame_acc_step{t}']:.1f}" for t in sorted({0, 1, 2, min(4, horizon), horizon})]
    return (f"| {name} | {steps} | {minutes:.1f} | " + " | ".join(cells)
            + f" | {s[f'frame_n_step{horizon}']} / {s[f'frame_episodes_step{horizon}']} | {100 * s['gate_top1']:.1f}"
            + f" | {s['gate_n']} |")


def header(horizon: int) -> list[str]:
    steps = sorted({0, 1, 2, min(4, horizon), horizon})
    cols = " | ".join(f"step {t}{' (autoenc.)' if t == 0 else ''} %" for t in steps)
    return [f"| model | train steps | train min | {cols} | windows / episodes at step {horizon} | gate top-1 % "
            "| gate states |", "|---" * (6 + len(steps)) + "|"]


def per_size(name: str, m: dict, horizon: int) -> list[str]:
    """One table per model: per size and step, accuracy % and the distinct windows / episodes behind it."""
    lines = ["", f"Per size, {name}: decoded-frame accuracy % at each latent step (distinct windows / episodes "
             "counted there); gate top-1 % over every state of the size.", "",
             "| size | windows (of all) | " + " | ".join(f"step {t}" for t in range(horizon + 1)) + " | gate % |",
             "|---" * (horizon + 4) + "|"]
    for size, r in sorted(m.items()):
        cells = [f"{100 * s['correct'] / s['n']:.1f} ({s['n']} / {s['episodes']})" if s["n"] else "-"
                 for s in r["steps"]]
        g_n = sum(s["gate_n"] for s in r["steps"])
        gate = f"{100 * sum(s['gate_ok'] for s in r['steps']) / g_n:.1f}" if g_n else "-"
        lines.append(f"| {size} | {r['windows']} ({r['available']}) | " + " | ".join(cells) + f" | {gate} |")
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, default=SHIPPED)
    ap.add_argument("--windows", type=int, default=64, help="distinct validation windows per map size (at most all)")
    ap.add_argument("--ablation-steps", type=int, default=200)
    ap.add_argument("--ablation-gate-steps", type=int, default=200)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "experiments" / "results" / "world_model.md")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides of the training recipe, e.g. data.val_dir=DIR")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    recipe: TrainRecipe = OmegaConf.to_object(compose_recipe([*(["model=tiny"] if args.quick else []),
                                                              *args.overrides]))
    sizes = list(recipe.data.sizes)
    splits = recipe.data.splits()
    ablate = args.ablation_steps > 0 or args.quick
    for split in ("val", "train") if ablate else ("val",):  # collected when missing
        collect(*splits[split], resume=True)
    val = load_shards(splits["val"][0], sizes)
    windows = 4 if args.quick else args.windows
    horizon = recipe.train.horizon
    lines = [
        "# FrozenLake world model: measured accuracy",
        "",
        f"Machine: {platform.machine()} CPU, 1 torch thread (2-core box shared with other jobs). Validation maps: "
        f"the `val` split (never trained on), sizes {sizes[0]}-{sizes[-1]}, up to {windows} distinct "
        f"teacher-forced windows of {horizon} steps per size (drawn without replacement), each starting where its "
        f"episode still has {horizon} steps left (at the episode start when it is shorter; sizes 3-4 rarely reach "
        f"step {horizon}). A decoded frame counts as right when the FrozenLake parser reads exactly the true grid "
        "(tiles and agent cell). Gate top-1: at every state of those windows (the encoded start frame, then the "
        f"imagined latents after 1..{horizon} teacher-forced steps), the gate's argmax action is one of the "
        "oracle's shortest-path actions. The true grid, cells and shortest-path actions are read from the recorded "
        "real frames at evaluation time (the shards hold no labels).",
        "",
        f"Command: `{' '.join(['python experiments/world_model_eval.py', *(argv or sys.argv[1:])])}`",
        "",
    ]
    details: list[str] = []
    abl_lines: list[str] = []
    if ablate:
        from rss_world.training.world_model import train  # the trainer's API; only the ablations need it

        steps = 3 if args.quick else args.ablation_steps
        train_data = load_shards(splits["train"][0], sizes)
        gate_steps = 2 if args.quick else args.ablation_gate_steps
        abl_lines = ["", f"Ablations at equal training steps ({steps} world-model steps + {gate_steps} gate steps "
                     "each, same data, seed and optimiser; far shorter than the shipped recipe):", "",
                     *header(horizon)]
        for name, (arch, tkw) in ABLATIONS.items():
            torch.manual_seed(0)
            model = build_world_model(arch, **dataclasses.asdict(recipe.model))
            tc = dataclasses.replace(recipe.train, **tkw, steps=steps, gate_steps=gate_steps, val_every=10**9,
                                     ckpt_every=10**9)
            t0 = time.time()
            train(model, train_data, None, tc, ROOT / "outputs" / "ablations" / name.split(" ")[0], progress=False)
            minutes = (time.time() - t0) / 60
            m = measure(model, val, horizon, windows, reencode=tc.reencode)
            abl_lines.append(row(name, steps, minutes, m, horizon))
            details += per_size(name, m, horizon)
            print(abl_lines[-1], flush=True)
    if not args.quick:
        lines += header(horizon)
        model = load_model(args.checkpoint)
        meta = json.loads((args.checkpoint / "config.json").read_text())["meta"]
        log = args.checkpoint / "metrics.jsonl"
        minutes = float("nan")
        if log.exists():  # stage 1 and stage 2 each log their own elapsed time; the total is the sum of the two
            recs = [json.loads(line) for line in log.read_text().splitlines()]
            stages = {r.get("stage") for r in recs}
            minutes = sum(max(r["time_s"] for r in recs if r.get("stage") == st) for st in stages) / 60
        m = measure(model, val, horizon, windows, reencode=bool(meta.get("train", {}).get("reencode", False)))
        where = args.checkpoint.resolve()
        name = f"shipped ({where.relative_to(ROOT) if where.is_relative_to(ROOT) else where})"
        lines.append(row(name, f"{meta.get('step', 0)} + {meta.get('gate_steps', 0)} gate", minutes, m, horizon))
        details = per_size(name, m, horizon) + details
        print(lines[-1], flush=True)
    text = "\n".join(lines + abl_lines + details) + "\n"
    atomic_write_text(args.out, text)
    print(text)


if __name__ == "__main__":
    main()

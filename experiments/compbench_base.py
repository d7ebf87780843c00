"""Train the compbench base model (text encoder + pixel-space SD3 transformer, flow matching) and score it.

    python experiments/compbench_base.py                      # train (3000 steps: ~33 min, loaded 2-core CPU), score
    python experiments/compbench_base.py --ship               # ... and copy the base into rss_world/checkpoints
    python experiments/compbench_base.py --checkpoint DIR     # score an existing base checkpoint only (--ship too)
    python experiments/compbench_base.py --resume ...         # continue an interrupted run (same settings)

The guidance scale is chosen on the *val* split (the candidates of ``--guidance``, by overall score), then the base
is scored once on the *test* split with it. Writes ``<out>/summary.json``, ``<out>/report.md`` (the table, with its
command) and ``<out>/test_sheet.png`` (the first images of every category, with verdicts).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import torch

from rss_world.compbench import CATEGORIES, write_contact_sheet
from rss_world.io import atomic_write_text
from rss_world.t2i import BaseTrainConfig, T2IConfig, evaluate, load_base, shipped_base_path, train_base
from rss_world.t2i.checkpoint import read_base_config

LABELS = {"single_object": "single obj.", "two_object": "two obj.", "counting": "counting", "colors": "colours",
          "position": "position", "color_attr": "colour attr.", "overall": "overall"}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    d, m = BaseTrainConfig(), T2IConfig()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="outputs/compbench_base")
    p.add_argument("--checkpoint", default=None, help="score this base checkpoint instead of training one")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--ema", type=float, default=d.ema, help="decay of the weights' average (0: none)")
    p.add_argument("--shift", type=float, default=m.shift, help="timestep shift of the flow scheduler")
    p.add_argument("--prediction", choices=("velocity", "sample"), default=m.prediction)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--sample-steps", type=int, default=20, help="Euler steps of the sampler")
    p.add_argument("--guidance", type=float, nargs="+", default=[1.0, 2.0, 3.0],
                   help="candidate guidance scales, chosen on the val split")
    p.add_argument("--val-n", type=int, default=32, help="val images per category (guidance choice)")
    p.add_argument("--test-n", type=int, default=100, help="test images per category")
    p.add_argument("--ship", action="store_true", help="copy the trained base to rss_world/checkpoints")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    return p.parse_args(argv)


def row(label: str, s: dict) -> str:
    cells = [f"{s[c]:.3f} [{s['interval'][c][0]:.2f}, {s['interval'][c][1]:.2f}]" for c in (*CATEGORIES, "overall")]
    return f"| {label} | " + " | ".join(cells) + f" | {s['seconds_per_image'] * 1000:.1f} |"


def report(args: argparse.Namespace, info: dict, val: list[dict], test: dict) -> str:
    head = "| run | " + " | ".join(LABELS[c] for c in (*CATEGORIES, "overall")) + " | ms / image |"
    sep = "|" + "---|" * (len(CATEGORIES) + 3)
    lines = [f"Command: `python experiments/{Path(__file__).name} {' '.join(sys.argv[1:])}`".rstrip(),
             f"Machine: {platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch thread(s), "
             f"torch {torch.__version__}; load average {info['load_start']} at the start, {load()} at the end",
             f"Base: {info['path']} ({info['params']:,} parameters; text encoder {info['text_params']:,}, frozen)",
             f"Training: {info.get('train', 'not trained in this run')}", "",
             f"Guidance chosen on val ({args.val_n} images per category, seed {args.seed + 1}):", "", head, sep,
             *[row(f"val, guidance {v['guidance']:g}", v) for v in val], "",
             f"Test ({args.test_n} images per category, seed {args.seed}, {args.sample_steps} Euler steps, guidance "
             f"{test['guidance']:g}); 95% Wilson intervals per category, normal for overall:", "", head, sep,
             row("base", test), "",
             "Distinct test prompts per category: " + ", ".join(f"{LABELS[c]} {test['distinct_prompts'][c]}"
                                                                for c in CATEGORIES),
             "Checker confidence (mean): " + ", ".join(f"{LABELS[c]} {test['confidence'][c]:.2f}"
                                                       for c in CATEGORIES)]
    return "\n".join(lines) + "\n"


def load() -> str:
    """The 1-minute load average of the machine (other jobs share its cores)."""
    return f"{os.getloadavg()[0]:.1f}"


def main(argv: list[str] | None = None) -> None:
    torch.set_num_threads(1)  # the machine has 2 shared cores; tiny models gain nothing from more
    args = parse(argv)
    out = Path(args.out)
    info: dict = {"load_start": load()}
    if args.checkpoint:
        model = load_base(args.checkpoint)
        info["path"] = args.checkpoint
    else:
        cfg = BaseTrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed, ema=args.ema)
        model_cfg = T2IConfig(shift=args.shift, prediction=args.prediction)
        res = train_base(model_cfg, cfg, out, resume=args.resume)
        model, info["path"] = res["model"], res["path"]
        losses = res["losses"]
        tail = sum(losses[-100:]) / len(losses[-100:])
        info["train"] = (f"{cfg.steps} steps of {cfg.batch_size} fresh train-split renders, lr {cfg.lr}, weights' "
                         f"average {cfg.ema}, {model_cfg.prediction} prediction, shift {model_cfg.shift:g}; "
                         f"{res['seconds'] / 60:.1f} min (load average {load()} at its end); mean loss of the last "
                         f"100 steps {tail:.4f}")
    info["params"] = sum(p.numel() for p in model.parameters())
    info["text_params"] = sum(p.numel() for p in model.text.parameters())
    val = []
    for g in args.guidance:
        t0 = time.time()
        v = evaluate(model, args.val_n, split="val", seed=args.seed + 1, steps=args.sample_steps, guidance=g)
        print(f"val guidance {g:g}: overall {v['overall']:.3f} "
              + " ".join(f"{c} {v[c]:.2f}" for c in CATEGORIES) + f" ({time.time() - t0:.0f} s)", flush=True)
        val.append(v)
    best = max(val, key=lambda v: v["overall"])["guidance"]
    test = evaluate(model, args.test_n, split="test", seed=args.seed, steps=args.sample_steps, guidance=best)
    text = report(args, info, val, test)
    print(text)
    atomic_write_text(out / "report.md", text)
    keep = ("overall", *CATEGORIES, "interval", "n", "confidence", "distinct_prompts", "images",
            "seconds_per_image", "steps", "guidance", "split", "seed")
    summary = {"info": info, "val": [{k: v[k] for k in keep} for v in val], "test": {k: test[k] for k in keep}}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    firsts = [i for c in CATEGORIES for i in [j for j, p in enumerate(test["prompts"]) if p.category == c][:8]]
    write_contact_sheet(out / "test_sheet.png", [test["prompts"][i] for i in firsts],
                        [test["images_array"][i] for i in firsts], [test["results"][i] for i in firsts])
    if args.ship:
        ship(info["path"], args.sample_steps, best, test)


def ship(path: str, sample_steps: int, guidance: float, test: dict) -> None:
    """Copy the base in ``path`` to ``rss_world/checkpoints``, recording the sampler chosen on val and its test
    scores; the copy is loaded back as a check."""
    dest = shipped_base_path()
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(path) / "model.safetensors", dest / "model.safetensors")
    config = read_base_config(path)
    config["meta"]["sampling"] = {"steps": sample_steps, "guidance": guidance}  # chosen on val
    config["meta"]["test"] = {k: test[k] for k in ("overall", *CATEGORIES)}
    atomic_write_text(dest / "config.json", json.dumps(config, indent=1) + "\n")
    load_base(dest)  # the shipped copy checks out
    print(f"shipped the base to {dest}")


if __name__ == "__main__":
    main()

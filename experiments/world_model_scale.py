"""Decoded frames at sizes the model never saw: teacher-forced imagination on 10x10 to 32x32 test maps.

For each size, ``--maps`` test maps (``test`` at 3-8, ``test_large`` above) and one episode each: the agent starts
on S and takes ``size`` actions, the oracle's shortest path followed by random moves once the path ends short of
that (so every episode has ``size`` steps unless it falls in a hole or reaches the goal first). The model encodes the
start frame once and imagines every step with the recorded action (teacher forcing), once in pure latent recursion
and once re-encoding each decoded frame before the next step (what the planners and the imagined env do by
default); each decoded frame is read back by the environment's parser and must equal the real state exactly (every
tile and the agent cell). Reported: exact share at step 1 and at step = size (or the episode's last step), with the
number of distinct episodes behind each (the same episodes for both readings). Writes
``experiments/results/world_model_scale.md``.

    python experiments/world_model_scale.py                    # 50 maps per size
    python experiments/world_model_scale.py --maps 10 --sizes 16 32
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

from rss_world.benchmark import load_checkpoint
from rss_world.envs.maps import find_cell, load_default_suite
from rss_world.envs.oracle import move, optimal_actions
from rss_world.envs.parser import parse_frame
from rss_world.envs.render import render_grid
from rss_world.io import atomic_write_text
from rss_world.protocols import select_maps

OUT = Path(__file__).resolve().parent / "results" / "world_model_scale.md"


def episode(desc: tuple[str, ...], steps: int, rng: np.random.Generator) -> tuple[list[int], list[tuple[int, int]]]:
    """Shortest-path actions, then random moves, for ``steps`` steps or until a hole or the goal."""
    cell, actions, cells = find_cell(desc, "S"), [], [find_cell(desc, "S")]
    for _ in range(steps):
        opt = sorted(optimal_actions(desc, cell))
        a = int(opt[0]) if opt else int(rng.integers(4))
        cell, _ = move(desc, cell, a)
        actions.append(a)
        cells.append(cell)
        if desc[cell[0]][cell[1]] in "HG":
            break
    return actions, cells


@torch.no_grad()
def measure(model, maps, episodes, reencode: bool) -> tuple[int, int, int, int]:
    """``(exact at step 1, episodes, exact at the last step, episodes)`` for the given ``(actions, cells)``."""
    first = last = n = 0
    for spec, (actions, cells) in zip(maps, episodes, strict=True):
        z = model.encode(render_grid(spec.desc, cells[0], model.cfg.cell_px)[None])
        ok = []
        for a, cell in zip(actions, cells[1:]):
            z, _, _ = model.step(z, torch.tensor([a]), with_logits=False)
            frame = model.to_uint8(model.decode(z))
            ok.append(parse_frame(frame[0].numpy()).equals_grid(spec.desc, cell))
            if reencode:
                z = model.encode(frame)
        first += ok[0]
        last += ok[-1]
        n += 1
    return first, n, last, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--maps", type=int, default=50)
    ap.add_argument("--sizes", type=int, nargs="+", default=[8, 10, 12, 16, 24, 32])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = load_checkpoint(args.checkpoint)
    rng = np.random.default_rng(args.seed)
    lines = ["# Decoded frames at every size, teacher-forced", "",
             f"Command: `python experiments/{Path(__file__).name} {shlex.join(sys.argv[1:])}`  ",
             f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, 1 thread; "
             f"checkpoint `{args.checkpoint or 'the shipped model'}` (trained on sizes 3-8).  ",
             "One episode per distinct test map; the decoded frame counts as exact when the parser reads the true "
             "grid and agent cell.", "",
             "| size | maps (episodes) | exact at step 1 % | exact at step = size (or the episode's end) % | "
             "re-encoding: exact at step 1 % | re-encoding: exact at step = size % |", "|---|---|---|---|---|---|"]
    for size in args.sizes:
        suite = "test" if size <= 8 else "test_large"
        maps = select_maps(load_default_suite(suite, [size]), [size], args.maps, args.seed)
        episodes = [episode(spec.desc, spec.size, rng) for spec in maps]
        f, n, last, _ = measure(model, maps, episodes, reencode=False)
        rf, _, rlast, _ = measure(model, maps, episodes, reencode=True)
        lines.append(f"| {size} | {n} | {100 * f / n:.1f} | {100 * last / n:.1f} | {100 * rf / n:.1f} | "
                     f"{100 * rlast / n:.1f} |")
        print(lines[-1], flush=True)
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

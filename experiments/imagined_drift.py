"""Open-loop drift of imagined rollouts under scripted actors, for one or more world-model checkpoints side by side.

    mkdir -p /tmp/old && git show fb03032:rss_world/checkpoints/frozenlake/config.json > /tmp/old/config.json
    git show fb03032:rss_world/checkpoints/frozenlake/model.safetensors > /tmp/old/model.safetensors
    git checkout 5afe878  # the comparison below is of world-model v1 checkpoints, which v2 no longer reads
    python -c "from rss_world.checkpoint import convert_legacy; convert_legacy('/tmp/old', '/tmp/nobump')"
    python experiments/imagined_drift.py rss_world/checkpoints/frozenlake /tmp/nobump

(``fb03032`` holds the model shipped before training data had bump episodes, in checkpoint format 1.)

Agents trained in imagination press against the grid's edge for many steps in a row. This measures how long the
imagined frames stay exact under such actions, with scripted actors that need no trained agent (so the numbers do
not move with an agent's training seed):

- ``random``: a uniformly random action every step;
- ``sticky``: a random action repeated for 1-12 steps, then another (long runs of presses against an edge);
- ``edge``: walk (shortest, around holes) to a random border cell, then press against the edge for the rest of the
  episode.

Each actor runs open loop in the world model from the real start frame; its actions are replayed in the real env
(:func:`rss_world.imagined_rollouts.imagine_episode`). A frame counts as exact when the parser reads the true grid
and agent cell. Also reported: of the episodes whose imagined frames went wrong, how many went wrong right
after 3 or more presses against the edge in a row, and the mean absolute pixel error: a frame the parser reads
right may still have drifted in its pixels, which an agent looking at pixels can notice. ``--reencode-every k``
adds rows where the env re-encodes the decoded frame every ``k`` steps (``WorldModelEnv(reencode_every=k)``).
Writes ``experiments/results/imagined_drift.md``.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from rss_world.checkpoint import load_model
from rss_world.envs.maps import find_cell
from rss_world.envs.oracle import move, off_grid_actions
from rss_world.imagined_rollouts import imagine_episode
from rss_world.io import atomic_write_text
from rss_world.rl_agents import SIZES, eval_maps

HORIZONS = (1, 4, 8, 12, 16, 24)


class ScriptedActor:
    """A scripted actor with its own RNG; ``plan`` fixes its actions for one map before the episode starts."""

    def __init__(self, kind: str, seed: int) -> None:
        if kind not in ("random", "sticky", "edge"):
            raise ValueError(f"unknown actor {kind!r}")
        self.kind, self.rng = kind, np.random.default_rng(seed)
        self.actions: list[int] = []

    def plan(self, desc, horizon: int) -> None:
        n, rng = len(desc), self.rng
        if self.kind == "random":
            self.actions = [int(a) for a in rng.integers(4, size=horizon)]
        elif self.kind == "sticky":
            self.actions = []
            while len(self.actions) < horizon:
                self.actions += [int(rng.integers(4))] * int(rng.integers(1, 13))
        else:  # edge: a shortest hole-free walk to a random reachable border cell, then presses against the edge
            path = walk_to_border(desc, rng)
            edge = off_grid_actions(n, path[1]) if path[1] is not None else []
            presses = [edge[int(rng.integers(len(edge)))] for _ in range(horizon)] if edge else []
            self.actions = (path[0] + presses)[:horizon]
            self.actions += [int(a) for a in rng.integers(4, size=horizon - len(self.actions))]
        self._t = 0

    def act(self, obs, info=None) -> int:
        a = self.actions[self._t]
        self._t += 1
        return a


def walk_to_border(desc, rng: np.random.Generator) -> tuple[list[int], tuple[int, int] | None]:
    """Actions of a shortest walk over non-hole cells from the start to a random reachable border cell, and that
    cell (``([], None)`` when none is reachable)."""
    n = len(desc)
    start = find_cell(desc, "S")
    parent: dict[tuple[int, int], tuple[tuple[int, int], int] | None] = {start: None}
    queue = [start]
    for cell in queue:  # breadth first; the goal ends an episode, so walks do not pass through it
        if desc[cell[0]][cell[1]] == "G":
            continue
        for a in range(4):
            nxt, off = move(desc, cell, a)
            if not off and nxt not in parent and desc[nxt[0]][nxt[1]] != "H":
                parent[nxt] = (cell, a)
                queue.append(nxt)
    border = [c for c in parent if (c[0] in (0, n - 1) or c[1] in (0, n - 1)) and desc[c[0]][c[1]] != "G"]
    if not border:
        return [], None
    target = border[int(rng.integers(len(border)))]
    actions, cell = [], target
    while parent[cell] is not None:
        cell, a = parent[cell]
        actions.append(a)
    return actions[::-1], target


def presses_before(desc, cells, actions, k: int) -> int:
    """Presses against the edge in a row ending with action ``k - 1`` (the one that led to frame ``k``)."""
    run = 0
    for t in range(k - 1, -1, -1):
        if not move(desc, cells[t], actions[t])[1]:
            break
        run += 1
    return run


def drift(model, maps, actor: ScriptedActor, horizon: int, reencode_every: int = 0
          ) -> tuple[dict[int, tuple[float, int]], dict[int, float], int, int]:
    """Exact share and mean absolute pixel error (0-255) per horizon, episodes with a wrong frame, and how many of
    those went wrong right after 3 or more edge presses."""
    hits: dict[int, list[bool]] = {k: [] for k in HORIZONS}
    err: dict[int, list[float]] = {k: [] for k in HORIZONS}
    wrong = after_presses = 0
    for m in maps:
        actor.plan(m.desc, horizon)
        rp = imagine_episode(model, m.desc, actor, horizon, reencode_every=reencode_every)
        exact = [rp.exact(k) for k in range(len(rp.real))]  # parse every frame once; None past the real episode
        for k in HORIZONS:
            if k < len(exact):
                hits[k].append(exact[k])
                err[k].append(float(np.abs(rp.imagined[k].astype(np.int16) - rp.real[k].astype(np.int16)).mean()))
        first = next((k for k in range(1, len(exact)) if not exact[k]), None)
        if first is not None:
            wrong += 1
            after_presses += presses_before(m.desc, rp.cells, rp.actions, first) >= 3
    return ({k: (float(np.mean(v)) if v else float("nan"), len(v)) for k, v in hits.items()},
            {k: float(np.mean(v)) if v else float("nan") for k, v in err.items()}, wrong, after_presses)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", nargs="+", help="world-model checkpoint directories")
    p.add_argument("--maps", type=int, default=200, help="test maps, spread over sizes 3-6")
    p.add_argument("--actors", nargs="+", default=["random", "sticky", "edge"])
    p.add_argument("--reencode-every", type=int, nargs="+", default=[0],
                   help="also measure with the decoded frame re-encoded every k steps (0: never, the method)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="experiments/results/imagined_drift.md")
    args = p.parse_args(argv)
    if args.maps < 1:
        p.error("--maps must be >= 1")
    if min(args.reencode_every) < 0:
        p.error("--reencode-every takes values >= 0")
    torch.set_num_threads(1)
    maps = eval_maps(SIZES, args.maps, args.seed)
    horizon = max(HORIZONS)
    lines = ["# Imagined drift under scripted actors", "",
             f"Command: `python experiments/imagined_drift.py {' '.join(sys.argv[1:] if argv is None else argv)}`",
             "", f"{len(maps)} test maps (sizes 3-6), open loop, {horizon} steps at most (the real episode may end "
             "first: a hole or the goal). Exact: the parser reads the true grid and agent cell from the imagined "
             "frame; n: episodes whose real run lasted at least k steps. Every checkpoint sees the same actions "
             "(each actor's RNG restarts per checkpoint).", "",
             "| checkpoint | actor | " + " | ".join(f"k={k} (n)" for k in HORIZONS)
             + " | episodes with a wrong frame | of them, first wrong right after ≥3 edge presses |",
             "|---|---|" + "---:|" * (len(HORIZONS) + 2)]
    pix = ["", "Mean absolute pixel error (0-255 scale) of the imagined frame against the real one, same episodes:",
           "", "| checkpoint | actor | " + " | ".join(f"k={k}" for k in HORIZONS) + " |",
           "|---|---|" + "---:|" * len(HORIZONS)]
    for ck in args.checkpoints:
        try:
            model = load_model(ck)
        except (FileNotFoundError, ValueError) as e:
            print(f"error: checkpoint {ck}: {e}", file=sys.stderr)
            return 2
        model.eval()
        for every in args.reencode_every:
            name = f"`{ck}`" + (f", re-encoded every {every}" if every else "")
            for kind in args.actors:
                acc, err, wrong, after = drift(model, maps, ScriptedActor(kind, args.seed), horizon, every)
                cells = " | ".join(f"{a:.3f} ({n})" if n else "– (0)" for a, n in acc.values())
                lines.append(f"| {name} | {kind} | {cells} | {wrong} | {after} |")
                pix.append(f"| {name} | {kind} | "
                           + " | ".join("–" if np.isnan(e) else f"{e:.2f}" for e in err.values()) + " |")
                print(lines[-1], pix[-1], sep="\n", flush=True)
    lines += pix
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

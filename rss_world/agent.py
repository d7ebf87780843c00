"""Agents in the loop: train stable-baselines3 agents inside the world model or in the real env, judge them in
the real env, and record what they imagined against what really happened.

Commands::

    python -m rss_world.agent train --env wm --checkpoint rss_world/checkpoints/frozenlake --steps 50000 \\
        --out outputs/agents/ppo_wm.zip
    python -m rss_world.agent train --env real --steps 50000 --out outputs/agents/ppo_real.zip
    python -m rss_world.agent eval --agent outputs/agents/ppo_wm.zip --episodes 200
    python -m rss_world.agent play --agent outputs/agents/ppo_wm.zip --checkpoint rss_world/checkpoints/frozenlake \\
        --out outputs/agents/play.gif

The recipe lives in :mod:`rss_world.rl_agents`, the runs in :mod:`rss_world.agent_runs`. Bad input (a missing
agent or checkpoint, a bad setting) prints one line on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import torch

from rss_world.agent_runs import evaluate_saved, play, train_and_save
from rss_world.cli import ArgumentParser, run_command
from rss_world.imagined_rollouts import PLAY_HORIZON
from rss_world.rl_agents import ALGOS, ENVS, SIZES, TRAIN_MAX_STEPS


def build_parser() -> argparse.ArgumentParser:
    """The ``train``, ``eval`` and ``play`` subcommands and their options."""
    p = ArgumentParser(prog="python -m rss_world.agent", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train an agent in the world model or the real env")
    t.add_argument("--env", choices=ENVS, required=True)
    t.add_argument("--algo", choices=ALGOS, default="ppo")
    t.add_argument("--steps", type=int, default=50_000)
    t.add_argument("--n-envs", type=int, default=16)
    t.add_argument("--train-max-steps", type=int, default=TRAIN_MAX_STEPS,
                   help="training episode limit in either env (0: the env's 4*size^2)")
    t.add_argument("--out", required=True)
    e = sub.add_parser("eval", help="evaluate a saved agent in the real env on test maps")
    e.add_argument("--agent", required=True)
    e.add_argument("--episodes", type=int, default=200)
    pl = sub.add_parser("play", help="video: the agent (or oracle) in imagination vs the same actions for real")
    pl.add_argument("--agent", default="oracle", help="a saved agent .zip, or 'oracle'")
    pl.add_argument("--out", default="outputs/agents/play.gif")
    pl.add_argument("--episodes", type=int, default=3)
    pl.add_argument("--horizon", type=int, default=PLAY_HORIZON, help="most steps of each episode")
    for s in (t, e, pl):
        s.add_argument("--checkpoint", default=None, help="world-model checkpoint directory")
        s.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
        s.add_argument("--seed", type=int, default=0)
        s.add_argument("--threads", type=int, default=1)
    return p


def _run(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    if args.cmd == "train":
        path, meta = train_and_save(args.algo, args.env, args.steps, args.sizes, args.out, args.checkpoint,
                                    args.n_envs, args.seed, args.train_max_steps or None)
        print(f"saved {path}: {json.dumps(meta)}")
    elif args.cmd == "eval":
        print(json.dumps(evaluate_saved(args.agent, args.sizes, args.episodes, args.seed), indent=1))
    else:
        n = play(args.checkpoint, args.agent, args.out, args.sizes, args.episodes, args.horizon, args.seed)
        print(f"wrote {n} frames to {args.out}")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``train``, ``eval`` and ``play`` (see the module docstring); returns the exit status."""
    return run_command(build_parser(), argv, _run)


if __name__ == "__main__":
    sys.exit(main())

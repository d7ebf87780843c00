"""One PPO agent trained only inside the world model, judged in the real env: the world-model half of
``experiments/agent_in_the_loop.py`` (same maps, budget, envs and judging), without its throughput phase or its
real-env agents, for a quick check of one imagined-env setting.

    python experiments/agent_wm_only.py --reencode-every 1 --seed 0
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rss_world.agent_runs import AgentJob, train_and_judge
from rss_world.checkpoint import load_model
from rss_world.envs.maps import load_default_suite
from rss_world.imagination.slots import REENCODE_EVERY
from rss_world.rl_agents import SIZES, TRAIN_MAX_STEPS, eval_maps


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="rss_world/checkpoints/frozenlake")
    p.add_argument("--reencode-every", type=int, default=REENCODE_EVERY,
                   help="the imagined env's re-encoding period (0: never; default: every step)")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--steps", type=int, default=200_000)
    p.add_argument("--episodes", type=int, default=200, help="real-env test episodes (sizes 3-6, evenly)")
    args = p.parse_args(argv)
    if args.reencode_every < 0:
        p.error(f"--reencode-every must be >= 0, got {args.reencode_every}")
    model = load_model(args.checkpoint).eval()
    train_maps, test_maps = load_default_suite("train", SIZES), eval_maps(SIZES, args.episodes, 0)
    job = AgentJob("ppo", "wm", args.seed, model, train_maps, test_maps, args.steps, 32, TRAIN_MAX_STEPS,
                   args.reencode_every, 0,
                   Path("outputs/agents") / f"ppo_wm_s{args.seed}_re{args.reencode_every}_only.zip", max(SIZES))
    t0 = time.time()
    _, meta, summary = train_and_judge(job)
    print(f"{time.time() - t0:.0f} s; trained {meta['steps']} steps in {meta['train_seconds']:.0f} s")
    print(f"real env, greedy: success {summary['success_rate']:.3f}, exact match {summary['exact_match']:.3f}, "
          f"invalid actions {summary['invalid_action_rate']:.3f}, holes {summary['hole_rate']:.3f}")
    print(f"real env, sampled: success {summary['sampled']['success_rate']:.3f}; in the world model (greedy): "
          f"{summary['imagined']}")


if __name__ == "__main__":
    main()

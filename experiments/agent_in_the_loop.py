"""Agent in the loop: throughput of imagination, agents trained in imagination vs in the real env, head/parser
agreement, and open-loop compounding error. Writes ``experiments/results/agent_in_the_loop.md``.

    python experiments/agent_in_the_loop.py --checkpoint rss_world/checkpoints/frozenlake
    python experiments/agent_in_the_loop.py --quick          # smoke run: tiny untrained model, seconds

Throughput is measured in one run on this CPU: imagined steps/s of the batched ``WorldModelVecEnv`` (batch 64 and
256, random actions, auto-reset; one torch thread and every core; fp32 and bf16) against real
``VisualFrozenLakeEnv`` steps/s with gymnasium's pygame rendering, each imagined row paired with a real measurement
taken right before it (and the fast pixel-identical atlas renderer, for reference). Agents are trained with
several seeds (``--agent-seeds``), since PPO on frames varies a lot from seed to seed, and each is judged in the real
env with greedy and with sampled actions, and inside the world model on the same test maps.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
import torch

from rss_world.agent_runs import AgentJob, train_and_judge
from rss_world.envs.maps import load_default_suite
from rss_world.imagination.slots import REENCODE_EVERY
from rss_world.imagination.vec_env import measure_head_agreement
from rss_world.imagined_rollouts import imagine_episode, write_play_video
from rss_world.io import atomic_write_text
from rss_world.rl_agents import ALGOS, ENVS, SIZES, TRAIN_MAX_STEPS, FrameAgent, eval_maps, load_agent
from rss_world.throughput import real_steps_per_s, wm_steps_per_s

HORIZONS = (1, 4, 8, 16)
METRICS = ("success_rate", "exact_match", "progress_rate", "invalid_action_rate", "hole_rate", "steps_over_optimal")


REAL_REF = "real (gymnasium render)"


def throughput(model, maps, rounds: int, t_real: int, t_wm: int, seed: int = 0, reencode_every: int = REENCODE_EVERY
               ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Steps/s of the real env and of the batched imagined env, and their ratios, in ``rounds`` rounds.

    Each round measures every row once, and every row right after its own measurement of the real env with
    gymnasium rendering: a ratio is one such side-by-side pair, so a slow spell of a shared CPU hits both of its
    terms alike. The rows that do not name a re-encoding period keep their episodes in latent space; with
    ``reencode_every > 0`` the fp32 rows are measured a second time with the env re-encoding its decoded frame every
    that many steps. Returns ``(steps/s per row, ratios to the paired real figure per row)``.
    """
    cores = os.cpu_count() or 1
    envs: dict = {}  # one env per (batch, precision, pre-encoding), built in the first round
    rows = {"real (atlas render)": lambda: real_steps_per_s(maps, "atlas", t_real, seed)}
    for prec in ("fp32", "bf16"):
        for b in (64, 256):
            rows[f"imagined, batch {b}, {prec}"] = \
                lambda b=b, prec=prec: wm_steps_per_s(model, maps, b, t_wm, seed, prec, cache=envs, reencode_every=0)
    for b in (64, 256):
        rows[f"imagined, batch {b}, fp32, encoder on every reset"] = \
            lambda b=b: wm_steps_per_s(model, maps, b, t_wm, seed, preencode=False, cache=envs,
                                       reencode_every=0)
    if reencode_every:
        for b in (64, 256):
            rows[f"imagined, batch {b}, fp32, re-encode every {reencode_every}"] = \
                lambda b=b: wm_steps_per_s(model, maps, b, t_wm, seed, cache=envs, reencode_every=reencode_every)
    if cores > 1:  # the batched env can use every core; the real env is one sequential Python loop
        for prec in ("fp32", "bf16"):
            for b in (64, 256):
                rows[f"imagined, batch {b}, {prec}, {cores} threads"] = \
                    lambda b=b, prec=prec: wm_steps_per_s(model, maps, b, t_wm, seed, prec, threads=cores,
                                                          cache=envs, reencode_every=0)
    speed: dict[str, list[float]] = {REAL_REF: [], **{k: [] for k in rows}}
    ratio: dict[str, list[float]] = {k: [] for k in rows}
    for _ in range(rounds):
        for name, measure in rows.items():
            real = real_steps_per_s(maps, "gymnasium", t_real // 4, seed)
            speed[REAL_REF].append(real)
            speed[name].append(measure())
            ratio[name].append(speed[name][-1] / real)
    return speed, ratio


def compounding(model, actor, maps, reencode_every: int = REENCODE_EVERY) -> dict[int, tuple[float, int]]:
    """Exact-grid accuracy of imagined vs real frames after k steps of the actor's own (open-loop) actions, in the
    imagined env with the given ``reencode_every``."""
    hits: dict[int, list[bool]] = {k: [] for k in HORIZONS}
    for m in maps:
        rp = imagine_episode(model, m.desc, actor, max(HORIZONS), reencode_every=reencode_every)
        for k in HORIZONS:
            e = rp.exact(k)
            if e is not None:
                hits[k].append(e)
    return {k: (float(np.mean(v)) if v else float("nan"), len(v)) for k, v in hits.items()}


def train_and_report(job: AgentJob) -> tuple[Path, dict, dict]:
    """:func:`~rss_world.agent_runs.train_and_judge` plus one progress line. A top-level function, so ``--jobs`` can
    run it in worker processes (one torch thread each)."""
    path, meta, summary = train_and_judge(job)
    print(job.algo, job.env_kind, job.seed, meta, {k: summary[k] for k in METRICS}, "sampled",
          summary["sampled"]["success_rate"], "imagined", summary["imagined"], flush=True)
    return path, meta, summary


def data_transitions(data_dir: str | None) -> int | None:
    """Real transitions in the world model's training data (sum of episode lengths of the shards)."""
    if not data_dir or not Path(data_dir).is_dir():
        return None
    return int(sum(np.load(f)["lengths"].sum() for f in sorted(Path(data_dir).glob("*.npz"))))


def fmt(x) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "–"
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default="rss_world/checkpoints/frozenlake")
    p.add_argument("--quick", action="store_true", help="tiny untrained model, tiny budgets (smoke run)")
    p.add_argument("--steps", type=int, default=200_000, help="training budget of each agent (env steps)")
    p.add_argument("--train-max-steps", type=int, default=TRAIN_MAX_STEPS,
                   help="training episode limit in both envs (0: the env's 4*size^2); evaluation keeps 4*size^2")
    p.add_argument("--algos", nargs="+", default=["ppo"], choices=ALGOS)
    p.add_argument("--n-envs", type=int, default=32)
    p.add_argument("--episodes", type=int, default=200, help="real-env test episodes (sizes 3-6, evenly)")
    p.add_argument("--replays", type=int, default=100, help="test maps for the compounding error")
    p.add_argument("--wm-data", default="outputs/data/fl_train", help="world-model training data (counted)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved throughput rounds (medians are reported)")
    p.add_argument("--out", default=None)
    p.add_argument("--video", default="outputs/agents/agent_in_the_loop.gif")
    p.add_argument("--reencode-every", type=int, default=REENCODE_EVERY,
                   help="agents in imagination: the env re-encodes its decoded frame every k steps (0: never)")
    p.add_argument("--jobs", type=int, default=1,
                   help="agents trained at once, in worker processes of one torch thread each (results do not "
                        "depend on it; throughput is measured before, alone)")
    p.add_argument("--seed", type=int, default=0, help="maps, throughput and evaluation")
    p.add_argument("--agent-seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="training seeds of every agent (PPO on frames varies a lot from seed to seed)")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error(f"--rounds must be >= 1, got {args.rounds}")
    if args.jobs < 1:
        p.error(f"--jobs must be >= 1, got {args.jobs}")
    if args.reencode_every < 0:
        p.error(f"--reencode-every must be >= 0, got {args.reencode_every}")
    torch.set_num_threads(1)
    if args.quick:
        from rss_world.world_model import WorldModel, WorldModelConfig

        torch.manual_seed(0)
        model = WorldModel(WorldModelConfig(dim=32, heads=2, enc_layers=1, dec_layers=1, rank=4))
        args.steps, args.episodes, args.replays = min(args.steps, 512), min(args.episodes, 8), min(args.replays, 8)
        t_real, t_wm, out = 100, 5, args.out or "outputs/agent_in_the_loop_quick.md"
        args.rounds = min(args.rounds, 2)
    else:
        from rss_world.checkpoint import load_model

        model = load_model(args.checkpoint)
        t_real, t_wm, out = 2000, 30, args.out or "experiments/results/agent_in_the_loop.md"
    model.eval()
    train_maps = load_default_suite("train", SIZES)
    test = eval_maps(SIZES, args.episodes, args.seed)

    # 1. throughput, one run, interleaved rounds
    thr, thr_ratio = throughput(model, train_maps, args.rounds, t_real, t_wm, args.seed, args.reencode_every)
    print(json.dumps({k: [round(x, 1) for x in v] for k, v in thr_ratio.items()}, indent=1), flush=True)

    # 2. agents: same budget in imagination and for real, for every training seed, judged in the real env
    keys = [(algo, seed, kind) for algo in args.algos for seed in args.agent_seeds for kind in ENVS]
    suffix = (f"_re{args.reencode_every}" if args.reencode_every else "") + ("_quick" if args.quick else "")
    work = [AgentJob(algo, kind, seed, model, train_maps, test, args.steps, args.n_envs, args.train_max_steps or None,
                     args.reencode_every, args.seed, Path("outputs/agents") / f"{algo}_{kind}_s{seed}{suffix}.zip",
                     max(SIZES)) for algo, seed, kind in keys]
    if args.jobs > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
            done = list(pool.map(train_and_report, work))
    else:
        done = [train_and_report(w) for w in work]
    rows, agents = [], {}
    for (algo, seed, kind), (path, meta, summary) in zip(keys, done, strict=True):
        if (algo, kind) not in agents:  # the first seed's agents feed sections 3-5
            agents[algo, kind] = load_agent(path)
        rows.append((algo, kind, seed, meta, summary))

    # 3. heads vs parser, 4. compounding error, 5. video
    wm_agent, wm_meta = agents[(args.algos[0], "wm")]
    actor = FrameAgent(wm_agent, wm_meta["pad_to"], wm_meta["cell_px"])
    agree_rand = measure_head_agreement(model, train_maps, steps=16, num_envs=64, pad_to=max(SIZES), seed=args.seed)
    agree_agent = measure_head_agreement(model, train_maps, steps=16, num_envs=64, pad_to=max(SIZES), seed=args.seed,
                                         policy=lambda obs: wm_agent.predict(obs, deterministic=False)[0])
    rmaps = eval_maps(SIZES, args.replays, args.seed + 1)
    comp = {f"{a} trained in {k} (seed {args.agent_seeds[0]})":
            compounding(model, FrameAgent(agents[(a, k)][0], max(SIZES)), rmaps, args.reencode_every)
            for a, k in agents}
    comp["oracle (shortest path)"] = compounding(model, "oracle", rmaps, args.reencode_every)
    reps = [imagine_episode(model, m.desc, actor, 16, reencode_every=args.reencode_every)
            for m in rmaps[:: max(1, len(rmaps) // 4)][:4]]
    nvid = write_play_video(reps, args.video)

    # report
    wm_data = data_transitions(args.wm_data)
    cmd = "python experiments/agent_in_the_loop.py " + " ".join(argv if argv is not None else sys.argv[1:])
    wm_name = "tiny untrained (--quick)" if args.quick else args.checkpoint
    regrounding = (f"the imagined env re-encodes its decoded frame every {args.reencode_every} steps (agent "
                   "training, judging in the world model, compounding error, video, and the throughput rows that "
                   "say so); "
                   if args.reencode_every else "")
    L = ["# Agent in the loop", "", f"Command: `{cmd.strip()}`  ", f"World model: `{wm_name}`; {regrounding}"
         f"CPU: {platform.processor() or platform.machine()}, torch threads 1; seed {args.seed}.", "",
         f"## Throughput (one run, {args.rounds} rounds of side-by-side pairs)", "",
         "| env | steps/s (median) | ÷ real (gymnasium render), median of pairs | range of pairs |",
         "|---|---:|---:|---:|", f"| {REAL_REF} | {np.median(thr[REAL_REF]):,.0f} | 1.0× | |"]
    for k, r in thr_ratio.items():
        L.append(f"| {k} | {np.median(thr[k]):,.0f} | {np.median(r):.1f}× | {min(r):.1f}–{max(r):.1f}× |")
    L += ["", "Target: imagined (batch 64 and 256) ÷ real with rendering ≥ 10×. Every row is measured right after "
          "its own measurement of the real env (gymnasium render), and the ratio is taken within that pair; each "
          "round measures every row once. Imagined rows use start latents encoded when the env is built, as agent "
          "training does, except the rows 'encoder on every reset'. bf16: CPU autocast (precision='bf16'). Rows "
          "without a thread count use 1 torch thread, like the real env's single Python loop; the multi-thread "
          "rows use every core of this CPU for the batched env only.",
          "", f"## Agents: {rows[0][3]['steps']:,} env steps each (budget {args.steps:,}, whole rollouts; training "
          f"episodes truncated at {args.train_max_steps or '4·size²'} steps in both envs), training seeds "
          f"{', '.join(map(str, args.agent_seeds))}, judged in the real env on {len(test)} test maps (sizes 3–6)", "",
          "| algo | trained in | seed | real env steps used | train s | " + " | ".join(METRICS) + " |",
          "|---|---|---|---:|---:|" + "---:|" * len(METRICS)]
    for algo, kind, seed, meta, s in rows:
        used = f"{meta['real_env_steps']:,}" if kind == "real" else \
            f"0 (+ {wm_data:,} in the world model's data)" if wm_data is not None else "0 (+ the world model's data)"
        L.append(f"| {algo} | {'world model' if kind == 'wm' else 'real env'} | {seed} | {used} | "
                 f"{meta['train_seconds']:.0f} | " + " | ".join(fmt(s[k]) for k in METRICS) + " |")
    L += ["", "Success over training seeds (mean ± std of the seeds):", "",
          "| algo | trained in | success per seed | mean | std |", "|---|---|---|---:|---:|"]
    ratios = []
    for algo in args.algos:
        for mode, get in (("greedy", lambda r: r[4]["success_rate"]),
                          ("sampled", lambda r: r[4]["sampled"]["success_rate"])):
            means = {}
            for kind in ENVS:
                succ = np.array([get(r) for r in rows if r[:2] == (algo, kind)])
                means[kind] = succ.mean()
                L.append(f"| {algo}, {mode} actions | {'world model' if kind == 'wm' else 'real env'} | "
                         f"{', '.join(f'{x:.3f}' for x in succ)} | {succ.mean():.3f} | {succ.std():.3f} |")
            ratio = means["wm"] / means["real"] if means["real"] else float("nan")
            succ_of = {(r[1], r[2]): get(r) for r in rows if r[0] == algo}
            per_seed = [fmt(succ_of["wm", sd] / succ_of["real", sd]) if succ_of["real", sd] else "–"
                        for sd in args.agent_seeds]
            ratios.append(f"{algo}, {mode} actions: mean success of imagination-trained ÷ real-trained = "
                          f"{fmt(float(ratio))} over {len(args.agent_seeds)} seeds (target ≥ 0.9); per seed "
                          f"{', '.join(per_seed)}.")
    L += ["", *ratios, "", "Greedy: the policy's most likely action (the table above). Sampled: actions drawn from "
          "the policy, torch RNG seeded with the run's seed. A greedy policy in this deterministic env never leaves "
          "a state where its top action presses against a wall; a sampled one does.",
          "", "### The same agents judged inside the world model", "",
          "Each agent, greedy, on the same test maps in the world model (one imagined episode per map from its real "
          "start frame, step limit 4·size², goal and hole from the status heads) next to its real-env run. "
          "Timeouts: the step limit ended the episode.", "",
          "| algo | trained in | seed | real: success | real: timeouts | world model: success "
          "| world model: timeouts |", "|---|---|---|---:|---:|---:|---:|"]
    for algo, kind, seed, _meta, s in rows:
        real_to = 1.0 - s["success_rate"] - s["hole_rate"]
        L.append(f"| {algo} | {'world model' if kind == 'wm' else 'real env'} | {seed} | {fmt(s['success_rate'])} | "
                 f"{fmt(real_to)} | {fmt(s['imagined']['success_rate'])} | {fmt(s['imagined']['timeout_rate'])} |")
    L += ["", "Per size (success rate, mean over seeds):", "",
          "| algo | trained in | " + " | ".join(str(s) for s in SIZES) + " |", "|---|---|" + "---:|" * len(SIZES)]
    for algo in args.algos:
        for kind in ENVS:
            per = [np.mean([r[4]["per_size"].get(str(z), {}).get("success_rate", np.nan) for r in rows
                            if r[:2] == (algo, kind)]) for z in SIZES]
            L.append(f"| {algo} | {kind} | " + " | ".join(fmt(float(x)) for x in per) + " |")
    L += ["", "## Status heads vs the frame parser on decoded frames", "",
          "Reward/termination come from the model's status head; the parser only measures it.", "",
          "| actions | frames | agreement (both) | goal | hole | heads goal rate | parser goal rate | heads hole rate "
          "| parser hole rate |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, a in (("random", agree_rand), (f"{args.algos[0]} (world-model agent)", agree_agent)):
        L.append(f"| {name} | {a['frames']:.0f} | " + " | ".join(fmt(a[k]) for k in (
            "agreement", "goal_agreement", "hole_agreement", "heads_goal_rate", "parser_goal_rate", "heads_hole_rate",
            "parser_hole_rate")) + " |")
    L += ["", f"## Open-loop compounding error ({len(rmaps)} test maps, sizes 3–6)", "",
          "The actor sees only imagined frames; its actions are replayed in the real env. Exact-grid accuracy of the "
          "decoded frame (parsed) against the real grid after k imagined steps, over episodes whose real run lasted "
          "≥ k steps (n).", "", "| actor | " + " | ".join(f"k={k} (n)" for k in HORIZONS) + " |",
          "|---|" + "---:|" * len(HORIZONS)]
    L += [f"| {name} | " + " | ".join(f"{fmt(c[k][0])} ({c[k][1]})" for k in HORIZONS) + " |"
          for name, c in comp.items()]
    L += ["", f"Video (real | imagined | difference, {nvid} frames): `{args.video}`", ""]
    atomic_write_text(out, "\n".join(L))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

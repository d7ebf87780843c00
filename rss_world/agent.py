"""Agents in the loop: train stable-baselines3 agents inside the world model or in the real env, judge them in
the real env, and record what they imagined against what really happened.

Commands::

    python -m rss_world.agent train --env wm --checkpoint rss_world/checkpoints/frozenlake --steps 50000 \\
        --out outputs/agents/ppo_wm.zip
    python -m rss_world.agent train --env real --steps 50000 --out outputs/agents/ppo_real.zip
    python -m rss_world.agent eval --agent outputs/agents/ppo_wm.zip --episodes 200
    python -m rss_world.agent play --agent outputs/agents/ppo_wm.zip --checkpoint rss_world/checkpoints/frozenlake \\
        --out outputs/agents/play.gif

Agents see frames only: zero-padded to ``pad_to`` cells (one observation space for sizes 3-6), read by
:class:`CellCNN` (average-pooled to 4 px per cell, one convolution per cell, two 3x3 convolutions over the grid).
Each saved agent ``X.zip`` (SB3's own format) has a sidecar ``X.json`` with its algorithm and settings.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from rss_world.envs.frozenlake import VisualFrozenLakeEnv
from rss_world.envs.maps import MapSpec, load_default_suite
from rss_world.envs.metrics import run_actions
from rss_world.envs.oracle import optimal_actions
from rss_world.envs.parser import parse_frame
from rss_world.envs.world_model_env import WorldModelEnv, pad_frame

ALGOS = ("ppo", "dqn")
ENVS = ("wm", "real")
ACTION_NAMES = ("LEFT", "DOWN", "RIGHT", "UP")
TRAIN_MAX_STEPS = 24  # training episode limit in both envs (the imagination horizon)
# PPO settings besides n_steps (2048 / n_envs per rollout), chosen by training in the real env only (seeds 0 and 1,
# 200k steps; docs/agent_in_the_loop.md): 10 epochs of minibatch 128 at lr 1e-3 reach 89-90.5% real test success
# greedy, where the earlier 4 epochs of minibatch 256 at lr 3e-4 (about 3,100 gradient steps in 200k) reached 21%.
PPO_RECIPE = {"batch_size": 128, "n_epochs": 10, "learning_rate": 1e-3, "gamma": 0.95, "ent_coef": 0.01}


class CellCNN(BaseFeaturesExtractor):
    """Frame features for FrozenLake: pool to ``px`` pixels per cell, embed each cell, mix neighbours.

    Args:
        observation_space: channel-first image space ``(3, H, W)`` (SB3 transposes the env's HWC frames).
        features_dim: output width.
        cell_px: pixels per cell in the frames.
        px: pixels per cell after average pooling.
    """

    def __init__(self, observation_space: gym.spaces.Box, features_dim: int = 128, cell_px: int = 16,
                 px: int = 4) -> None:
        super().__init__(observation_space, features_dim)
        if cell_px % px:
            raise ValueError(f"cell_px={cell_px} is not a multiple of px={px}")
        cells = observation_space.shape[1] // cell_px
        self.net = nn.Sequential(
            nn.AvgPool2d(cell_px // px),  # (B, 3, cells·px, cells·px)
            nn.Conv2d(3, 32, px, stride=px), nn.ReLU(),  # (B, 32, cells, cells): one embedding per cell
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(32 * cells * cells, features_dim), nn.ReLU())

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)


class PaddedRealEnv(gym.Env):
    """The real visual FrozenLake over maps of several sizes, frames zero-padded to ``pad_to`` cells.

    Args:
        maps: maps to draw from (uniformly, with the env's RNG).
        pad_to: canvas side in cells.
        cell_px: pixels per cell.
        renderer: "atlas" (fast, pixel-identical) or "gymnasium" (pygame).
        max_steps: episode step limit (default ``4 · size²``).
    """

    metadata = {"render_modes": []}

    def __init__(self, maps: Sequence[MapSpec], pad_to: int = 6, cell_px: int = 16, renderer: str = "atlas",
                 max_steps: int | None = None) -> None:
        self.maps = [m for m in maps if m.size <= pad_to]
        if not self.maps:
            raise ValueError(f"no map of size <= {pad_to}")
        self.side = pad_to * cell_px
        self.envs = {s: VisualFrozenLakeEnv(suite=[m for m in self.maps if m.size == s], cell_px=cell_px,
                                            renderer=renderer, max_steps=max_steps)
                     for s in sorted({m.size for m in self.maps})}
        self.observation_space = gym.spaces.Box(0, 255, (self.side, self.side, 3), np.uint8)
        self.action_space = gym.spaces.Discrete(4)
        self.env = next(iter(self.envs.values()))

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        spec = self.maps[int(self.np_random.integers(len(self.maps)))]
        self.env = self.envs[spec.size]
        obs, info = self.env.reset(seed=int(self.np_random.integers(2**31)), options={"desc": spec.desc})
        return pad_frame(obs, self.side), info

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        obs, r, term, trunc, info = self.env.step(action)
        return pad_frame(obs, self.side), r, term, trunc, info

    def close(self) -> None:
        for env in self.envs.values():
            env.close()


def make_vec_env(kind: str, maps: Sequence[MapSpec], n_envs: int = 16, pad_to: int = 6, model=None,
                 seed: int = 0, device: str | None = None, max_steps: int | None = None, reencode_every: int = 0):
    """A VecEnv for training: ``"wm"`` (batched imagination, needs ``model``) or ``"real"`` (DummyVecEnv).

    ``max_steps`` truncates episodes (default: the env's ``4 · size²``). ``reencode_every``: the imagined env
    re-encodes its decoded frame every this many steps (0: never; see ``LatentSlots``); the real env has no latent,
    so a nonzero value there is an error."""
    if kind == "wm":
        from rss_world.envs.world_model_vec_env import WorldModelVecEnv

        if model is None:
            raise ValueError("the world-model env needs a model (--checkpoint)")
        # Every start latent is encoded once, up front, and kept: resets then never run the encoder.
        return WorldModelVecEnv(model, n_envs, suite=maps, pad_to=pad_to, seed=seed, device=device,
                                max_steps=max_steps, preencode=True, reencode_every=reencode_every)
    if kind == "real":
        if reencode_every:
            raise ValueError(f"reencode_every={reencode_every} applies to the world-model env only")
        from stable_baselines3.common.vec_env import DummyVecEnv

        env = DummyVecEnv([lambda: PaddedRealEnv(maps, pad_to, max_steps=max_steps) for _ in range(n_envs)])
        env.seed(seed)
        return env
    raise ValueError(f"unknown env kind {kind!r}, expected one of {ENVS}")


def build_agent(algo: str, env, seed: int = 0, cell_px: int = 16):
    """A fresh SB3 agent (PPO or DQN) with the :class:`CellCNN` extractor, on the CPU."""
    from stable_baselines3 import DQN, PPO

    kw = {"features_extractor_class": CellCNN, "features_extractor_kwargs": {"cell_px": cell_px},
          "net_arch": [64]}
    if algo == "ppo":
        n_steps = max(8, min(128, 2048 // env.num_envs))
        return PPO("CnnPolicy", env, n_steps=n_steps, **PPO_RECIPE, policy_kwargs=kw, seed=seed, device="cpu",
                   verbose=0)
    if algo == "dqn":
        return DQN("CnnPolicy", env, buffer_size=20_000, learning_starts=1000, train_freq=4, batch_size=64,
                   target_update_interval=1000, exploration_fraction=0.3, gamma=0.95, policy_kwargs=kw, seed=seed,
                   device="cpu", verbose=0)
    raise ValueError(f"unknown algorithm {algo!r}, expected one of {ALGOS}")


def train(algo: str, env_kind: str, steps: int, maps: Sequence[MapSpec], model=None, n_envs: int = 16,
          pad_to: int = 6, seed: int = 0, max_steps: int | None = TRAIN_MAX_STEPS,
          reencode_every: int = 0) -> tuple[object, dict]:
    """Train an agent for ``steps`` env steps in the world model or the real env.

    Training episodes are truncated at ``max_steps`` in either env (an imagination horizon, as in Dreamer, IRIS
    and DIAMOND: imagined frames drift on very long rollouts; SB3 bootstraps the value at truncation). ``None``
    keeps the env's ``4 · size²``. Evaluation in the real env always uses ``4 · size²``. ``reencode_every``: see
    :func:`make_vec_env` (world-model env only).

    Returns:
        ``(agent, meta)``; ``meta`` has ``algo``, ``env``, ``steps``, ``real_env_steps`` (0 inside the world model:
        its own training data are counted separately), ``pad_to``, ``cell_px``, ``train_seconds``.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    cell_px = model.cfg.cell_px if model is not None else 16
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    env = make_vec_env(env_kind, maps, n_envs, pad_to, model, seed, max_steps=max_steps,
                       reencode_every=reencode_every)
    agent = build_agent(algo, env, seed, cell_px)
    t0 = time.perf_counter()
    agent.learn(total_timesteps=steps)
    meta = {"algo": algo, "env": env_kind, "steps": int(agent.num_timesteps), "pad_to": pad_to, "cell_px": cell_px,
            "train_max_steps": max_steps, "reencode_every": reencode_every,
            "real_env_steps": int(agent.num_timesteps) if env_kind == "real" else 0,
            "train_seconds": time.perf_counter() - t0}
    env.close()
    return agent, meta


def save_agent(agent, path: str | Path, meta: dict) -> Path:
    """Save with SB3's ``save`` plus a JSON sidecar (``path`` with ``.json``)."""
    path = Path(path).with_suffix(".zip")
    path.parent.mkdir(parents=True, exist_ok=True)
    agent.save(path)
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    return path


def load_agent(path: str | Path) -> tuple[object, dict]:
    """Load an agent saved by :func:`save_agent`; return ``(agent, meta)``."""
    from stable_baselines3 import DQN, PPO

    path = Path(path).with_suffix(".zip")
    if not path.exists():
        raise FileNotFoundError(f"no agent at {path}")
    meta = json.loads(path.with_suffix(".json").read_text())
    cls = {"ppo": PPO, "dqn": DQN}[meta["algo"]]
    return cls.load(path, device="cpu"), meta


class FrameAgent:
    """An SB3 agent acting on (unpadded) frames, for :func:`rss_world.evaluation.run_agent` (``reset``, ``act``)."""

    def __init__(self, agent, pad_to: int, cell_px: int = 16, deterministic: bool = True) -> None:
        self.agent, self.side, self.deterministic = agent, pad_to * cell_px, deterministic
        self.name = type(agent).__name__.lower()

    def reset(self) -> None:
        """Stateless."""

    def act(self, obs: np.ndarray, info: dict | None = None) -> int:
        return int(self.agent.predict(pad_frame(obs, self.side), deterministic=self.deterministic)[0])


def eval_maps(sizes: Sequence[int] = (3, 4, 5, 6), episodes: int | None = 200, seed: int = 0) -> list[MapSpec]:
    """Test maps spread evenly over ``sizes`` (shipped test suite)."""
    from rss_world.evaluation import select_maps

    return select_maps(load_default_suite("test"), sizes, episodes, seed)


def evaluate(agent, meta: dict, maps: Sequence[MapSpec], seed: int = 0, deterministic: bool = True) -> dict:
    """FrozenLake metrics of an agent in the real env (see :func:`rss_world.evaluation.summarize`).

    ``deterministic``: the policy's most likely action (greedy); False samples actions, from a torch RNG seeded with
    ``seed`` inside :func:`torch.random.fork_rng`, so the result is reproducible and the caller's RNG is untouched.
    """
    from rss_world.evaluation import run_agent, summarize

    fa = FrameAgent(agent, meta["pad_to"], meta["cell_px"], deterministic=deterministic)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return summarize(run_agent(fa, maps, meta["cell_px"], seed))


def evaluate_imagined(agent, meta: dict, model, maps: Sequence[MapSpec], deterministic: bool = True,
                      seed: int = 0, reencode_every: int = 0) -> dict:
    """The agent judged inside the world model instead: one imagined episode per map from its real start frame,
    with the real evaluation's step limit (``4 · size²``); goal and hole come from the model's status heads.

    Returns ``{"episodes", "success_rate", "hole_rate", "timeout_rate"}`` (timeouts: the step limit ended it).
    """
    fa = FrameAgent(agent, meta["pad_to"], meta["cell_px"], deterministic=deterministic)
    ends = {"goal": 0, "hole": 0, "timeout": 0}
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for m in maps:
            env = WorldModelEnv(model, desc=m.desc, max_steps=4 * m.size ** 2, reencode_every=reencode_every)
            obs, _ = env.reset()
            reward, term, trunc = 0.0, False, False
            while not (term or trunc):
                obs, reward, term, trunc, _ = env.step(fa.act(obs))
            ends["goal" if reward > 0 else "hole" if term else "timeout"] += 1
    n = len(maps)
    return {"episodes": n, "success_rate": ends["goal"] / n, "hole_rate": ends["hole"] / n,
            "timeout_rate": ends["timeout"] / n}


@dataclass
class Replay:
    """An agent's imagined episode and the same actions replayed in the real env.

    Attributes:
        desc: the map.
        actions: actions the agent chose from the imagined frames.
        imagined: imagined frames, start first; ``status``: head probabilities [goal, hole] per imagined frame.
        real: real frames (shorter when the real episode ended first); ``cells``: real agent cells.
    """

    desc: tuple[str, ...]
    actions: list[int] = field(default_factory=list)
    imagined: list[np.ndarray] = field(default_factory=list)
    status: list[tuple[float, float]] = field(default_factory=list)
    real: list[np.ndarray] = field(default_factory=list)
    cells: list[tuple[int, int]] = field(default_factory=list)

    def exact(self, k: int) -> bool | None:
        """Whether imagined frame ``k`` parses to the real grid (None when the real episode ended before ``k``)."""
        if k >= len(self.real) or k >= len(self.imagined):
            return None
        return parse_frame(self.imagined[k], size=len(self.desc)).equals_grid(self.desc, self.cells[k])


def imagine_and_replay(model, desc: Sequence[str], actor: FrameAgent | str, horizon: int = 16,
                       stop_on_imagined_end: bool = False, reencode_every: int = 0) -> Replay:
    """Run ``actor`` in the world model from the real start of ``desc`` (open loop: it sees only imagined frames)
    and replay its actions in the real env until the real episode ends or ``horizon`` steps.

    Args:
        model: the world model.
        desc: map rows.
        actor: a :class:`FrameAgent`, or ``"oracle"`` (a shortest path of the real map, fixed in advance).
        horizon: most steps.
        stop_on_imagined_end: also stop when the model's heads end the imagined episode.
        reencode_every: re-encode the decoded frame every this many steps (see ``WorldModelEnv``; 0: never).
    """
    desc = tuple(desc)
    wm = WorldModelEnv(model, desc=desc, max_steps=10**6, reencode_every=reencode_every)
    real = VisualFrozenLakeEnv(desc=desc, cell_px=model.cfg.cell_px, renderer="atlas")
    obs, info = wm.reset()
    robs, rinfo = real.reset(seed=0)
    out = Replay(desc, imagined=[obs], status=[(info["p_goal"], info["p_hole"])], real=[robs], cells=[rinfo["cell"]])
    path: list[int] = []
    if actor == "oracle":
        cell = rinfo["cell"]
        while desc[cell[0]][cell[1]] != "G" and len(path) < horizon:
            a = min(optimal_actions(desc, cell))
            path.append(a)
            cell = run_actions(desc, path, 10**6).cells[-1]
    for t in range(horizon):
        if actor == "oracle":
            if t >= len(path):
                break
            a = path[t]
        else:
            a = actor.act(obs)
        obs, _, term, _, info = wm.step(a)
        out.actions.append(a)
        out.imagined.append(obs)
        out.status.append((info["p_goal"], info["p_hole"]))
        robs, _, rterm, rtrunc, rinfo = real.step(a)
        out.real.append(robs)
        out.cells.append(rinfo["cell"])
        if rterm or rtrunc or (term and stop_on_imagined_end):
            break
    real.close()
    return out


def write_play_video(replays: Sequence[Replay], path: str | Path, fps: float = 2.0) -> int:
    """GIF/MP4 of replays: real | imagined | difference per step, captioned with the heads' readings."""
    import imageio.v2 as imageio

    from rss_world.video import compose

    frames = []
    for rp in replays:
        n = len(rp.desc)
        for k in range(len(rp.imagined)):
            real = rp.real[min(k, len(rp.real) - 1)]
            what = "start" if k == 0 else ACTION_NAMES[rp.actions[k - 1]]
            g, h = rp.status[k]
            frames.append(compose(real, rp.imagined[k], f"{n}x{n} t={k} {what} | heads goal {g:.2f} hole {h:.2f}"))
    if not frames:
        raise ValueError("no frames to write")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        imageio.mimwrite(path, frames, duration=1000.0 / fps, loop=0)
    else:
        imageio.mimwrite(path, frames, fps=fps, macro_block_size=16)
    return len(frames)


def _load_wm(checkpoint: str | None):
    if checkpoint is None:
        return None
    from rss_world.checkpoint import load_model

    return load_model(checkpoint)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``train``, ``eval`` and ``play`` (see the module docstring)."""
    p = argparse.ArgumentParser(prog="python -m rss_world.agent", description=__doc__.split("\n\n")[0])
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
    pl.add_argument("--horizon", type=int, default=16)
    for s in (t, e, pl):
        s.add_argument("--checkpoint", default=None, help="world-model checkpoint directory")
        s.add_argument("--sizes", type=int, nargs="+", default=[3, 4, 5, 6])
        s.add_argument("--seed", type=int, default=0)
        s.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        if args.cmd == "train":
            model = _load_wm(args.checkpoint)
            agent, meta = train(args.algo, args.env, args.steps, load_default_suite("train", args.sizes), model,
                                args.n_envs, max(args.sizes), args.seed, args.train_max_steps or None)
            print(f"saved {save_agent(agent, args.out, meta)}: {json.dumps(meta)}")
        elif args.cmd == "eval":
            agent, meta = load_agent(args.agent)
            summary = evaluate(agent, meta, eval_maps(args.sizes, args.episodes, args.seed), args.seed)
            print(json.dumps(summary, indent=1))
        else:
            model = _load_wm(args.checkpoint)
            if model is None:
                raise ValueError("play needs --checkpoint (the world model to imagine with)")
            actor: FrameAgent | str = "oracle"
            if args.agent != "oracle":
                agent, meta = load_agent(args.agent)
                actor = FrameAgent(agent, meta["pad_to"], meta["cell_px"])
            reps = [imagine_and_replay(model, m.desc, actor, args.horizon)
                    for m in eval_maps(args.sizes, args.episodes, args.seed)]
            print(f"wrote {write_play_video(reps, args.out)} frames to {args.out}")
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["CellCNN", "FrameAgent", "PaddedRealEnv", "Replay", "build_agent", "evaluate", "imagine_and_replay",
           "load_agent", "make_vec_env", "save_agent", "eval_maps", "train", "write_play_video"]

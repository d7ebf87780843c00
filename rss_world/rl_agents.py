"""The one stable-baselines3 recipe of the project: agents that act on frames, trained in the world model or in
the real env, saved, loaded and judged.

Agents see frames only: zero-padded to ``pad_to`` cells (one observation space for several map sizes), read by
:class:`CellCNN` (average-pooled to 4 px per cell, one convolution per cell, two 3x3 convolutions over the grid).
Each saved agent ``X.zip`` (SB3's own format) has a sidecar ``X.json`` with its algorithm and settings.
"""

from __future__ import annotations

import json
import os
import pickle
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from rss_world.envs.frozenlake import VisualFrozenLakeEnv
from rss_world.envs.maps import MapSpec, load_default_suite, step_limit
from rss_world.envs.render import DEFAULT_CELL_PX
from rss_world.imagination.env import WorldModelEnv
from rss_world.imagination.slots import REENCODE_EVERY, pad_frame
from rss_world.io import atomic_write, atomic_write_text
from rss_world.world_model import WorldModel

ALGOS = ("ppo", "dqn")
ENVS = ("wm", "real")
SIZES = (3, 4, 5, 6)  # map sizes agents train and are judged on by default
PAD_TO = max(SIZES)  # default canvas side in cells
TRAIN_MAX_STEPS = 24  # training episode limit in both envs (the imagination horizon)
# PPO settings besides n_steps (2048 / n_envs per rollout), chosen by training in the real env only
# (docs/agent_in_the_loop.md).
PPO_RECIPE = {"batch_size": 128, "n_epochs": 10, "learning_rate": 1e-3, "gamma": 0.95, "ent_coef": 0.01}


class CellCNN(BaseFeaturesExtractor):
    """Frame features for FrozenLake: pool to ``px`` pixels per cell, embed each cell, mix neighbours.

    Args:
        observation_space: channel-first image space ``(3, H, W)`` (SB3 transposes the env's HWC frames).
        features_dim: output width.
        cell_px: pixels per cell in the frames.
        px: pixels per cell after average pooling.
    """

    def __init__(self, observation_space: gym.spaces.Box, features_dim: int = 128, cell_px: int = DEFAULT_CELL_PX,
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
        maps: maps to draw from (uniformly, with the env's RNG); maps larger than ``pad_to`` are left out.
        pad_to: canvas side in cells.
        cell_px: pixels per cell.
        renderer: "atlas" (fast, pixel-identical) or "gymnasium" (pygame).
        max_steps: episode step limit (default ``4 · size²``).
    """

    metadata = {"render_modes": []}

    def __init__(self, maps: Sequence[MapSpec], pad_to: int = PAD_TO, cell_px: int = DEFAULT_CELL_PX,
                 renderer: str = "atlas", max_steps: int | None = None) -> None:
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


def env_reencode_every(kind: str, reencode_every: int | None) -> int:
    """The re-encoding period an env of ``kind`` runs with: ``reencode_every`` as given, else the imagined env's
    default (:data:`~rss_world.imagination.slots.REENCODE_EVERY`) for ``"wm"`` and 0 for the real env."""
    if reencode_every is not None:
        return reencode_every
    return REENCODE_EVERY if kind == "wm" else 0


def make_training_env(kind: str, maps: Sequence[MapSpec], n_envs: int = 16, pad_to: int = PAD_TO,
                      model: WorldModel | None = None, seed: int = 0, device: str | None = None,
                      max_steps: int | None = None, reencode_every: int | None = None):
    """The SB3 ``VecEnv`` an agent trains in: ``"wm"`` (batched imagination, needs ``model``) or ``"real"``
    (a ``DummyVecEnv`` of :class:`PaddedRealEnv`).

    Args:
        kind: "wm" or "real".
        maps: training maps.
        n_envs: parallel episodes.
        pad_to: canvas side in cells.
        model: the world model (``"wm"`` only).
        seed: seed of the envs' map draws.
        device: torch device of the world model.
        max_steps: truncates episodes (default: the env's ``4 · size²``).
        reencode_every: the imagined env re-encodes its decoded frame every this many steps (0: never; see
            :class:`~rss_world.imagination.slots.LatentSlots`); ``None``: the imagined env's default
            (:data:`~rss_world.imagination.slots.REENCODE_EVERY`), and nothing for the real env.

    Raises:
        ValueError: an unknown kind, ``"wm"`` without a model, or ``reencode_every`` for the real env (it has no
            latent).
    """
    if kind == "wm":
        from rss_world.imagination.vec_env import WorldModelVecEnv

        if model is None:
            raise ValueError("the world-model env needs a model (--checkpoint)")
        # Every start latent is encoded once, up front, and kept: resets then never run the encoder.
        return WorldModelVecEnv(model, n_envs, suite=maps, pad_to=pad_to, seed=seed, device=device,
                                max_steps=max_steps, preencode=True,
                                reencode_every=env_reencode_every(kind, reencode_every))
    if kind == "real":
        if reencode_every:
            raise ValueError(f"reencode_every={reencode_every} applies to the world-model env only")
        from stable_baselines3.common.vec_env import DummyVecEnv

        env = DummyVecEnv([lambda: PaddedRealEnv(maps, pad_to, max_steps=max_steps) for _ in range(n_envs)])
        env.seed(seed)
        return env
    raise ValueError(f"unknown env kind {kind!r}, expected one of {ENVS}")


def build_agent(algo: str, env, seed: int = 0, cell_px: int = DEFAULT_CELL_PX, recipe: dict | None = None):
    """A fresh SB3 agent (PPO or DQN) with the :class:`CellCNN` extractor, on the CPU; PPO uses ``recipe``
    (default :data:`PPO_RECIPE`)."""
    from stable_baselines3 import DQN, PPO

    kw = {"features_extractor_class": CellCNN, "features_extractor_kwargs": {"cell_px": cell_px},
          "net_arch": [64]}
    if algo == "ppo":
        n_steps = max(8, min(128, 2048 // env.num_envs))
        recipe = PPO_RECIPE if recipe is None else recipe
        return PPO("CnnPolicy", env, n_steps=n_steps, **recipe, policy_kwargs=kw, seed=seed, device="cpu",
                   verbose=0)
    if algo == "dqn":
        return DQN("CnnPolicy", env, buffer_size=20_000, learning_starts=1000, train_freq=4, batch_size=64,
                   target_update_interval=1000, exploration_fraction=0.3, gamma=0.95, policy_kwargs=kw, seed=seed,
                   device="cpu", verbose=0)
    raise ValueError(f"unknown algorithm {algo!r}, expected one of {ALGOS}")


def train_agent(algo: str, env_kind: str, steps: int, maps: Sequence[MapSpec], model: WorldModel | None = None,
                n_envs: int = 16, pad_to: int = PAD_TO, seed: int = 0, max_steps: int | None = TRAIN_MAX_STEPS,
                reencode_every: int | None = None, recipe: dict | None = None) -> tuple[object, dict]:
    """Train an agent for ``steps`` env steps in the world model or the real env (PPO: ``recipe``, default
    :data:`PPO_RECIPE`).

    Training episodes are truncated at ``max_steps`` in either env (an imagination horizon, as in Dreamer, IRIS
    and DIAMOND: imagined frames drift on very long rollouts; SB3 bootstraps the value at truncation). ``None``
    keeps the env's ``4 · size²``. Evaluation in the real env always uses ``4 · size²``. ``reencode_every``: see
    :func:`make_training_env` (world-model env only).

    Returns:
        ``(agent, meta)``; ``meta`` has ``algo``, ``env``, ``steps``, ``real_env_steps`` (0 inside the world model:
        its own training data are counted separately), ``pad_to``, ``cell_px``, ``train_max_steps``,
        ``reencode_every``, ``train_seconds``.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    cell_px = model.cfg.cell_px if model is not None else DEFAULT_CELL_PX
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    env = make_training_env(env_kind, maps, n_envs, pad_to, model, seed, max_steps=max_steps,
                            reencode_every=reencode_every)
    agent = build_agent(algo, env, seed, cell_px, recipe)
    t0 = time.perf_counter()
    agent.learn(total_timesteps=steps)
    meta = {"algo": algo, "env": env_kind, "steps": int(agent.num_timesteps), "pad_to": pad_to, "cell_px": cell_px,
            "train_max_steps": max_steps, "reencode_every": env_reencode_every(env_kind, reencode_every),
            "real_env_steps": int(agent.num_timesteps) if env_kind == "real" else 0,
            "train_seconds": time.perf_counter() - t0}
    env.close()
    return agent, meta


class FrameAgent:
    """An SB3 agent acting on (unpadded) frames, for :func:`rss_world.protocols.run_agent` (``reset``, ``act``).

    Args:
        agent: the SB3 agent.
        pad_to: its canvas side in cells; frames are zero-padded (bottom and right) to it, and a larger frame
            raises ``ValueError``.
        cell_px: pixels per cell.
        deterministic: the policy's most likely action (greedy); False samples one (torch RNG).
    """

    def __init__(self, agent, pad_to: int, cell_px: int = DEFAULT_CELL_PX, deterministic: bool = True) -> None:
        self.agent, self.side, self.deterministic = agent, pad_to * cell_px, deterministic
        self.name = type(agent).__name__.lower()

    def reset(self) -> None:
        """Stateless."""

    def act(self, obs: np.ndarray, info: dict | None = None) -> int:
        """The action for frame ``obs`` (``info`` is not read)."""
        return int(self.agent.predict(pad_frame(obs, self.side), deterministic=self.deterministic)[0])


def train_real_ppo(maps: Sequence[MapSpec], steps: int, seed: int = 0, *,
                   pad_to: int | None = None) -> tuple[FrameAgent, dict]:
    """The tuned PPO recipe trained in the real env on frames only: the PPO baseline of the planning benchmark.

    Args:
        maps: training maps.
        steps: env steps of training (SB3 finishes the rollout it is in).
        seed: PPO and env seed.
        pad_to: canvas side in cells; the agent handles maps up to this size (default: the largest of ``maps``).

    Returns:
        ``(greedy FrameAgent, meta)`` with ``meta`` as :func:`train_agent` returns it.
    """
    if not maps:
        raise ValueError("no maps to train PPO on")
    if pad_to is None:
        pad_to = max(m.size for m in maps)
    agent, meta = train_agent("ppo", "real", steps, maps, pad_to=pad_to, seed=seed)
    return FrameAgent(agent, meta["pad_to"], meta["cell_px"]), meta


def save_agent(agent, path: str | Path, meta: dict) -> Path:
    """Save with SB3's ``save`` plus a JSON sidecar (``path`` with ``.json``), each written atomically."""
    path = Path(path).with_suffix(".zip")
    atomic_write(path, agent.save)  # the temporary file ends in .zip, so SB3 adds no suffix of its own
    atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=1))
    return path


def load_agent(path: str | os.PathLike) -> tuple[object, dict]:
    """Load an agent saved by :func:`save_agent`; return ``(agent, meta)``.

    Raises:
        FileNotFoundError: there is no agent (``.zip``) or sidecar (``.json``) at ``path``.
        ValueError: the sidecar is not valid JSON or names an unknown algorithm, or the zip is damaged (each one
            line naming the file).
    """
    from stable_baselines3 import DQN, PPO

    path = Path(path).with_suffix(".zip")
    if not path.exists():
        raise FileNotFoundError(f"no agent at {path}")
    sidecar = path.with_suffix(".json")
    if not sidecar.exists():
        raise FileNotFoundError(f"agent {path} has no sidecar {sidecar}")
    try:
        meta = json.loads(sidecar.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"agent sidecar {sidecar} is not valid JSON: {err}") from None
    algos = {"ppo": PPO, "dqn": DQN}
    if not isinstance(meta, dict) or meta.get("algo") not in algos:
        algo = meta.get("algo") if isinstance(meta, dict) else None
        raise ValueError(f"agent sidecar {sidecar} names unknown algo {algo!r}; expected one of {sorted(algos)}")
    try:
        return algos[meta["algo"]].load(path, device="cpu"), meta
    except (zipfile.BadZipFile, EOFError, RuntimeError, pickle.UnpicklingError, KeyError, ValueError) as err:
        why = " ".join(str(err).split()) or type(err).__name__
        raise ValueError(f"agent file {path} is damaged or not a {meta['algo']} agent: {why[:200]}") from None


def eval_maps(sizes: Sequence[int] = SIZES, episodes: int | None = 200, seed: int = 0) -> list[MapSpec]:
    """Test maps spread evenly over ``sizes`` (shipped test suite)."""
    from rss_world.protocols import select_maps  # imported here: protocols' users may import this module

    return select_maps(load_default_suite("test"), sizes, episodes, seed)


def evaluate_real(agent, meta: dict, maps: Sequence[MapSpec], seed: int = 0, deterministic: bool = True) -> dict:
    """FrozenLake metrics of an agent in the real env (see :func:`rss_world.protocols.summarize`).

    ``deterministic``: the policy's most likely action (greedy); False samples actions, from a torch RNG seeded with
    ``seed`` inside :func:`torch.random.fork_rng`, so the result is reproducible and the caller's RNG is untouched.
    """
    from rss_world.protocols import run_agent, summarize

    fa = FrameAgent(agent, meta["pad_to"], meta["cell_px"], deterministic=deterministic)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return summarize(run_agent(fa, maps, meta["cell_px"], seed))


def evaluate_imagined(agent, meta: dict, model: WorldModel, maps: Sequence[MapSpec], deterministic: bool = True,
                      seed: int = 0, reencode_every: int = REENCODE_EVERY) -> dict:
    """The agent judged inside the world model instead: one imagined episode per map from its real start frame,
    with the real evaluation's step limit (``4 · size²``); goal and hole come from the model's status heads.

    Returns ``{"episodes", "success_rate", "hole_rate", "timeout_rate"}`` (timeouts: the step limit ended it).
    """
    fa = FrameAgent(agent, meta["pad_to"], meta["cell_px"], deterministic=deterministic)
    ends = {"goal": 0, "hole": 0, "timeout": 0}
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for m in maps:
            env = WorldModelEnv(model, desc=m.desc, max_steps=step_limit(m.size), reencode_every=reencode_every)
            obs, _ = env.reset()
            reward, term, trunc = 0.0, False, False
            while not (term or trunc):
                obs, reward, term, trunc, _ = env.step(fa.act(obs))
            ends["goal" if reward > 0 else "hole" if term else "timeout"] += 1
    n = len(maps)
    return {"episodes": n, "success_rate": ends["goal"] / n, "hole_rate": ends["hole"] / n,
            "timeout_rate": ends["timeout"] / n}

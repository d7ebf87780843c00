"""The learned world model as an environment: agents train and are judged "in imagination".

- :mod:`.slots`: :class:`LatentSlots`, the batched latent states of imagined episodes, and the helpers both envs share.
- :mod:`.env`: :class:`WorldModelEnv`, a gymnasium env (one episode).
- :mod:`.vec_env`: ``WorldModelVecEnv``, a batched stable-baselines3 ``VecEnv``, and ``measure_head_agreement``
  (imported from there, so that this package does not import stable-baselines3).

The model is passed in; nothing here loads a checkpoint. Importing this package registers
``rss_world/WorldModelFrozenLake-v0`` with gymnasium (once): ``gymnasium.make(WM_ENV_ID, model=model, desc=rows)``.
"""

from __future__ import annotations

import gymnasium

from rss_world.imagination.env import WorldModelEnv
from rss_world.imagination.slots import REENCODE_EVERY, LatentSlots, pad_frame, start_frame

WM_ENV_ID = "rss_world/WorldModelFrozenLake-v0"

if WM_ENV_ID not in gymnasium.registry:
    gymnasium.register(id=WM_ENV_ID, entry_point="rss_world.imagination.env:WorldModelEnv")

__all__ = ["REENCODE_EVERY", "WM_ENV_ID", "LatentSlots", "WorldModelEnv", "pad_frame", "start_frame"]

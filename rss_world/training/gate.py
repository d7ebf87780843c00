"""Stage 2 of the world model: the planning gate trained on the frozen model's encoded and imagined latents."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rss_world.checkpoint import save_model
from rss_world.data import Episodes, sample_batch
from rss_world.world_model import WorldModel

from .config import TrainConfig
from .loop import LoopConfig, Task, cosine_decay, frozen, make_accelerator, run
from .signals import demo_nll, gate_signal_losses


def imagined_latents(model: WorldModel, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """Teacher-forced latents of a window batch, flattened: ``(B*(T+1), N, D)`` and the alive mask ``(B*(T+1),)``.

    Step 0 is the encoded real frame; steps 1..T are imagined, exactly as a planner sees them.
    """
    with torch.no_grad():
        z = model.encode(batch["frames"][:, 0])
        latents, alive = [z], [torch.ones(len(z), dtype=torch.bool, device=z.device)]
        for t in range(batch["actions"].shape[1]):
            z, _, _ = model.step(z, batch["actions"][:, t], with_logits=False)
            latents.append(z)
            alive.append(alive[-1] & batch["valid"][:, t])
    return torch.stack(latents, 1).flatten(0, 1), torch.stack(alive, 1).flatten()


def gate_losses(model: WorldModel, batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """Stage-2 losses on one window batch, at every alive state (encoded start and imagined latents), from the
    shard's signals only (:mod:`rss_world.training.signals`):

    * ``demo``: cross-entropy against the recorded action, in episodes that reached a reward (demonstrations);
    * for a gate with per-token heads (the value-iteration gate): ``agent``, ``goal`` and ``hole`` from the cells
      that change, the rewards and the terminations. Its transition kernels learn through ``demo``.

    A gate without per-token heads (the paper-like transformer gate) learns from the demonstrations alone.
    """
    z, alive = imagined_latents(model, batch)  # (B*(T+1), N, D), (B*(T+1),)
    b, t = batch["actions"].shape
    steps = alive.view(b, t + 1)[:, :-1] & batch["valid"]  # (B, T) transitions t -> t+1 that happened
    demo = (steps & batch["success"][:, None]).flatten()
    now = torch.arange(b * (t + 1), device=z.device).view(b, t + 1)
    idx_now, idx_next = now[:, :-1].flatten(), now[:, 1:].flatten()
    actions = batch["actions"].flatten()
    out = {"demo": demo_nll(model.gate_logits(z[idx_now]), actions, demo)}
    tl = model.gate_token_logits(z)  # (B*(T+1), N, 3) or None
    if tl is not None:
        use = steps.flatten()
        out |= gate_signal_losses(tl[idx_now], tl[idx_next], batch["changed"].flatten(0, 1), batch["rewards"].flatten(),
                                  batch["terminated"].flatten(), use)
    out["loss"] = sum(out.values())
    return out


def train_gate(
    model: WorldModel,
    train_data: dict[int, Episodes],
    cfg: TrainConfig,
    out: str | Path,
    validate: Callable[[], dict[str, Any]] | None = None,
    progress: bool = True,
    accelerator=None,
    meta: dict[str, Any] | None = None,
) -> dict:
    """Stage 2: train only the planning gate on the frozen world model's latents.

    Each step samples ``gate_batch`` teacher-forced windows and trains on every alive state of them: the encoded
    start and the imagined latents after 1..horizon steps, which is what an open-loop planner feeds the gate; the
    targets come from the shard (:func:`gate_losses`). The encoder, dynamics and decoder do not change. Runs in
    this process alone (it takes minutes) with cosine learning-rate decay and writes the final checkpoint; an
    interrupted stage 2 restarts from its beginning on ``--resume``.

    Args:
        validate: held-out metrics, every ``cfg.val_every`` steps and at the end (``None``: none).
        accelerator: whose trackers log (``None``: a default one, no trackers).
        meta: more to record in the checkpoint's ``config.json``, e.g. the recipe.

    Returns:
        The last validation metrics (or an empty dict).
    """
    rng = np.random.default_rng([cfg.seed, 2])
    torch.manual_seed(cfg.seed + 2)
    # A fresh gate: a gate trained while the latent was still moving learns slower than a new one. (modules()
    # includes the gate itself, so ValueIterationGate.reset_parameters re-draws its kernels too.)
    for sub in model.gate.modules():
        if hasattr(sub, "reset_parameters"):
            sub.reset_parameters()
    opt = torch.optim.AdamW(model.gate_parameters(), lr=cfg.gate_lr)
    device = next(model.parameters()).device

    def draw() -> tuple[dict[str, Tensor], dict[str, Any]]:
        return sample_batch(train_data, cfg.gate_batch, cfg.horizon, rng, device)[0], {}

    meta = {"step": cfg.steps, "gate_steps": cfg.gate_steps, "train": asdict(cfg), **(meta or {})}
    task = Task(model=model, optimizer=opt, draw=draw, losses=gate_losses,
                schedule=lambda s: cosine_decay(s / cfg.gate_steps, cfg.lr_min_ratio), rng=rng, validate=validate,
                save=lambda d, step: save_model(d, model, meta))
    loop = LoopConfig(steps=cfg.gate_steps, val_every=cfg.val_every, stage="gate", resumable=False)
    gate = {id(p) for p in model.gate_parameters()}
    with frozen([p for p in model.parameters() if id(p) not in gate]):  # the gate alone trains
        result = run(task, loop, out, accelerator or make_accelerator(), progress=progress, local=True)
    return result.last_val

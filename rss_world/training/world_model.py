"""Stage 1 of the world model: its losses on teacher-forced windows, its validation, and :func:`train`.

Every signal comes from the rollout shards (frames, actions, rewards, terminations; ``rss_world.data``), never from
the map. Losses on windows of ``horizon`` steps (default 8):

* reconstruction: decoded frame k vs true frame k, for k = 0 (the encoded start) and every latent step, with extra
  weight on the cells whose pixels change between consecutive frames and on the cells unlike the frame's most
  common one (``rss_world.training.signals``);
* latent (``latent_weight``; 0 in the shipped recipe): each imagined latent pulled towards the encoding of the
  real frame it predicts (no gradient into that encoding);
* status: "the agent reached the goal" from the reward, "the agent fell in a hole" from a termination without
  reward, on the latent after each step (per-token logits pooled by max);
* balance: Switch balance loss over the chosen experts (only when several experts serve one action).

Stage 2 (``rss_world.training.gate``) trains the planning gate on the frozen model. The same code runs on one
CPU, one GPU, or several processes (``accelerate launch`` / ``torchrun``): every rank samples its own batches from
a rank-seeded RNG, and accelerate's DDP averages the gradients.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rss_world.checkpoint import load_model, save_model
from rss_world.data import Episodes, sample_batch, sample_windows
from rss_world.nn.routing import balance_loss
from rss_world.world_model import CELL_TOLERANCE, WorldModel, cell_errors

from .config import TrainConfig
from .gate import train_gate
from .loop import LoopConfig, Task, frozen, make_accelerator, run, warmup_cosine
from .signals import rare_cells


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up for ``warmup`` steps, then cosine decay to ``lr_min_ratio`` at ``steps``."""
    return warmup_cosine(step, cfg.steps, cfg.warmup, cfg.lr_min_ratio)


class WindowLoss(nn.Module):
    """Wraps the model so that one ``forward`` computes every loss (what DDP needs to sync gradients)."""

    def __init__(self, model: WorldModel, cfg: TrainConfig) -> None:
        super().__init__()
        self.model, self.cfg = model, cfg

    def pixel_weights(self, frames: Tensor, changed: Tensor) -> Tensor:
        """Per-pixel loss weights ``(B, T+1, H, W, 1)`` from the pixels alone: ``changed_weight`` extra on the cells
        that change into or out of each frame (where the agent was and went), ``rare_weight`` extra on the cells
        unlike the frame's most common cell (holes, start, goal: one or a few per map, easily drowned by the
        floor), 1 elsewhere; normalised to mean 1 per frame. ``changed`` is the batch's ``(B, T, N)`` cells that
        change from frame t to t+1 (``rss_world.data.sample_windows``)."""
        p = self.model.cfg.cell_px
        changed = changed.float()
        pad = torch.zeros_like(changed[:, :1])
        moved = torch.maximum(torch.cat([pad, changed], 1), torch.cat([changed, pad], 1))  # (B, T+1, N)
        w = 1.0 + self.cfg.changed_weight * moved + self.cfg.rare_weight * rare_cells(frames, p).float()
        w = w / w.mean(-1, keepdim=True)
        b, t1, n = w.shape
        s = math.isqrt(n)
        w = w.view(b, t1, s, 1, s, 1).expand(b, t1, s, p, s, p).reshape(b, t1, s * p, s * p)
        return w[..., None]

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        m, cfg = self.model, self.cfg
        frames, actions, valid = batch["frames"], batch["actions"], batch["valid"]
        reward, terminated = batch["rewards"], batch["terminated"]
        b, t1 = frames.shape[:2]
        z = m.encode(frames[:, 0])
        rec, stat, bal, lat = [], [], [], []
        alive = torch.ones(b, dtype=torch.bool, device=frames.device)
        weights = self.pixel_weights(frames, batch["changed"])  # (B, T+1, H, W, 1)
        zeros = torch.zeros(b, 2, device=frames.device)
        for t in range(t1):
            target = frames[:, t].float() / 255.0
            err = (m.decode(z) - target).square() * weights[:, t]  # (B, H, W, 3)
            if t > 0 and cfg.latent_weight > 0:  # the imagined latent should be what the encoder makes of the frame
                with torch.no_grad():
                    z_real = m.encode(frames[:, t])
                lat.append(((z - z_real).square().mean((1, 2)), alive))
            rec.append((err.mean((1, 2, 3)), alive))
            # The state reached by step t-1: on the goal when that step paid, in a hole when it ended unpaid.
            status = zeros if t == 0 else torch.stack([reward[:, t - 1] > 0,
                                                       terminated[:, t - 1] & (reward[:, t - 1] <= 0)], -1).float()
            pooled = m.status_logits(z).float().amax(1)  # (B, 2)
            stat.append((F.binary_cross_entropy_with_logits(pooled, status, reduction="none").mean(-1), alive))
            if t == t1 - 1:
                break
            z_next, _, sel = m.step(z, actions[:, t], with_logits=m.experts_per_action > 1)
            if m.experts_per_action > 1:
                bal.append(balance_loss(sel.probs, sel.index))
            if cfg.reencode:
                z_next, _ = m.reencode(z_next)  # uint8 frames: no gradient flows through the round trip
            alive = alive & valid[:, t]
            z = z_next

        def masked(pairs):
            num = sum((v * w.float()).sum() for v, w in pairs)
            den = sum(w.float().sum() for _, w in pairs).clamp_min(1.0)
            return num / den

        out = {"recon": masked(rec), "status": masked(stat)}
        if lat:
            out["latent"] = masked(lat)
        out["balance"] = torch.stack(bal).mean() if bal else frames.new_zeros((), dtype=torch.float32)
        out["loss"] = (cfg.recon_weight * out["recon"] + cfg.status_weight * out["status"]
                       + cfg.balance_weight * out["balance"] + cfg.latent_weight * out.get("latent", 0.0))
        return out


@torch.no_grad()
def validate(model: WorldModel, val: dict[int, Episodes], cfg: TrainConfig) -> dict:
    """Held-out metrics that need no map: per latent step, the share of decoded frames whose every cell is within
    ``CELL_TOLERANCE`` of the true frame (mean absolute error of the cell's pixels, out of 255), and the planning
    gate's agreement with the recorded actions of episodes that reached a reward."""
    was_training = model.training
    model.eval()
    rng = np.random.default_rng(12345)
    correct = np.zeros(cfg.horizon + 1)
    count = np.zeros(cfg.horizon + 1)
    g_ok = g_n = 0
    p = model.cfg.cell_px
    for _, ep in sorted(val.items()):
        batch = sample_windows(ep, cfg.val_windows, cfg.horizon, rng, long=True)
        z = model.encode(batch["frames"][:, 0])
        alive = torch.ones(cfg.val_windows, dtype=torch.bool)
        for t in range(cfg.horizon + 1):
            errors = cell_errors(model.to_uint8(model.decode(z)), batch["frames"][:, t], p)  # (B, N)
            exact = (errors <= CELL_TOLERANCE).all(-1)  # (B,)
            correct[t] += int(exact[alive].sum())
            count[t] += int(alive.sum())
            if t == cfg.horizon:
                break
            demo = alive & batch["valid"][:, t] & batch["success"]
            g_ok += int((model.policy(z).argmax(-1) == batch["actions"][:, t])[demo].sum())
            g_n += int(demo.sum())
            z, _, _ = model.step(z, batch["actions"][:, t], with_logits=False)
            if cfg.reencode:
                z, _ = model.reencode(z)
            alive &= batch["valid"][:, t]
    model.train(was_training)
    acc = {f"frame_acc_step{t}": float(correct[t] / count[t]) for t in range(cfg.horizon + 1) if count[t]}
    acc.update({f"frame_n_step{t}": int(count[t]) for t in range(cfg.horizon + 1)})
    acc["gate_demo_agree"] = g_ok / max(g_n, 1)
    acc["gate_n"] = g_n
    return acc


def train(
    model: WorldModel,
    train_data: dict[int, Episodes],
    val_data: dict[int, Episodes] | None,
    cfg: TrainConfig,
    out: str | Path,
    resume: bool = False,
    accelerator=None,
    progress: bool = True,
    stop_after: int | None = None,
    meta: dict[str, Any] | None = None,
) -> dict:
    """Train ``model`` (stage 1, then stage 2 when ``cfg.gate_steps > 0``); checkpoints and ``metrics.jsonl`` go
    under ``out``.

    Args:
        resume: continue stage 1 from ``out/checkpoint`` exactly (a finished stage 1 goes straight to stage 2).
        accelerator: from :func:`~rss_world.training.loop.make_accelerator` (``None``: a default one).
        stop_after: stop (as if interrupted) after this many steps of this call; used by resume tests.
        meta: more to record with every checkpoint of both stages (in its ``config.json`` and train state), e.g.
            the recipe.

    Returns:
        The last validation metrics (or an empty dict).

    Raises:
        Interrupted: Ctrl-C in either stage (:mod:`~rss_world.training.loop`).
    """
    cfg.validate()
    acc = accelerator or make_accelerator()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng([cfg.seed, acc.process_index])
    held_out = (lambda: validate(model, val_data, cfg)) if val_data else None

    def draw() -> tuple[dict[str, Tensor], dict[str, int]]:
        batch, size = sample_batch(train_data, cfg.batch, cfg.horizon, rng, acc.device)
        return batch, {"size": size}

    loop = LoopConfig(steps=cfg.steps, grad_clip=cfg.grad_clip, val_every=cfg.val_every, ckpt_every=cfg.ckpt_every)
    # Stage 1 does not reach the gate: freeze it, so that DDP needs no unused-parameter search.
    with frozen(model.gate_parameters()):
        wrapped = WindowLoss(model, cfg)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                                weight_decay=cfg.weight_decay)
        wrapped, opt = acc.prepare(wrapped, opt)
        task = Task(
            model=wrapped, optimizer=opt, draw=draw, losses=lambda m, batch: m(batch),
            schedule=lambda s: lr_factor(s, cfg), rng=rng,
            validate=held_out,
            save=lambda d, step: save_model(d, model, {"step": step, "train": asdict(cfg), **(meta or {})}),
            load=lambda d: model.load_state_dict(load_model(d).state_dict()),
            meta=dict(meta or {}),
        )
        result = run(task, loop, out, acc, resume=resume, stop_after=stop_after, progress=progress)
    last_val = result.last_val
    if cfg.gate_steps > 0 and result.step == cfg.steps and acc.is_main_process:
        last_val = train_gate(model, train_data, cfg, out, held_out, progress, accelerator=acc, meta=meta)
    acc.wait_for_everyone()
    return last_val

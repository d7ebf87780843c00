"""Stage 1 of the world model: its losses on teacher-forced windows, its validation, and :func:`train`.

Losses on windows of ``horizon`` steps (default 8):

* reconstruction: decoded frame k vs true frame k, for k = 0 (the encoded start) and every latent step;
* gate: cross-entropy against the oracle's optimal action *set*: ``-log Σ_{a optimal} π(a | z_k)`` (weight 0 in the
  shipped recipe, whose stage 2 trains the gate on the frozen model: ``rss_world.training.gate``);
* status: per-token BCE for "agent on goal here" and "agent in hole here";
* balance: Switch balance loss over the chosen experts (only when several experts serve one action).

The same code runs on one CPU, one GPU, or several processes (``accelerate launch`` / ``torchrun``): every rank
samples its own batches from a rank-seeded RNG, and accelerate's DDP averages the gradients.
"""

from __future__ import annotations

from collections.abc import Callable
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
from rss_world.world_model import WorldModel

from .config import TrainConfig
from .gate import set_nll, train_gate
from .loop import LoopConfig, Task, frozen, make_accelerator, run, warmup_cosine

FrameCheck = Callable[[np.ndarray, np.ndarray, tuple[int, int]], bool]


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up for ``warmup`` steps, then cosine decay to ``lr_min_ratio`` at ``steps``."""
    return warmup_cosine(step, cfg.steps, cfg.warmup, cfg.lr_min_ratio)


class WindowLoss(nn.Module):
    """Wraps the model so that one ``forward`` computes every loss (what DDP needs to sync gradients)."""

    def __init__(self, model: WorldModel, cfg: TrainConfig) -> None:
        super().__init__()
        self.model, self.cfg = model, cfg

    def cell_weights(self, cells: Tensor, tiles: Tensor) -> Tensor:
        """Per-pixel loss weights ``(B, T+1, H, W, 1)``: ``agent_weight`` extra on the agent's current and previous
        cell (the only pixels that change), ``tile_weight`` extra on hole/start/goal cells (one or a few per map,
        easily drowned by the frozen tiles), 1 elsewhere; normalised to mean 1 per frame."""
        b, t1, _ = cells.shape
        size = tiles.shape[-1]
        flat = cells[..., 0] * size + cells[..., 1]  # (B, T+1)
        rare = (tiles.reshape(b, 1, size * size) != 0).float() * self.cfg.tile_weight  # F is code 0
        w = (1.0 + rare).expand(b, t1, size * size).clone()
        w.scatter_add_(2, flat[..., None], torch.full((b, t1, 1), self.cfg.agent_weight, device=cells.device))
        prev = torch.cat([flat[:, :1], flat[:, :-1]], 1)
        w.scatter_add_(2, prev[..., None], torch.full((b, t1, 1), self.cfg.agent_weight, device=cells.device))
        w = w / w.mean(-1, keepdim=True)
        p = self.model.cfg.cell_px
        w = w.view(b, t1, size, 1, size, 1).expand(b, t1, size, p, size, p).reshape(b, t1, size * p, size * p)
        return w[..., None]

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        m, cfg = self.model, self.cfg
        frames, actions, valid = batch["frames"], batch["actions"], batch["valid"]
        optimal, status = batch["optimal"], batch["status"]
        b, t1 = frames.shape[:2]
        z = m.encode(frames[:, 0])
        rec, gate, stat, bal = [], [], [], []
        alive = torch.ones(b, dtype=torch.bool, device=frames.device)
        weights = self.cell_weights(batch["cells"], batch["tiles"])  # (B, T+1, H, W, 1)
        for t in range(t1):
            target = frames[:, t].float() / 255.0
            err = (m.decode(z) - target).square() * weights[:, t]  # (B, H, W, 3)
            rec.append((err.mean((1, 2, 3)), alive))
            stat.append((F.binary_cross_entropy_with_logits(m.status_logits(z), status[:, t], reduction="none")
                         .mean((1, 2)), alive))
            if t < t1 - 1:
                z_next, _, sel = m.step(z, actions[:, t], with_logits=m.experts_per_action > 1)
                if m.experts_per_action > 1:
                    bal.append(balance_loss(sel.probs, sel.index))
            # The gate learns to plan on top of the latent, not by reshaping it: its cross-entropy sees a detached
            # latent, so a gate that is still guessing cannot inject noise into the encoder and dynamics.
            # With gate_weight 0 (the two-stage recipe: stage 2 trains the gate) the term is skipped entirely.
            if cfg.gate_weight > 0:
                has_opt = optimal[:, t].any(-1) & alive
                gate.append((set_nll(m.action_probs(m.gate_logits(z.detach())), optimal[:, t]), has_opt))
            if t == t1 - 1:
                break
            if cfg.reencode:
                z_next = m.encode(m.to_uint8(m.decode(z_next)).detach())
            alive = alive & valid[:, t]
            z = z_next

        def masked(pairs):
            num = sum((v * w.float()).sum() for v, w in pairs)
            den = sum(w.float().sum() for _, w in pairs).clamp_min(1.0)
            return num / den

        zero = frames.new_zeros((), dtype=torch.float32)
        out = {"recon": masked(rec), "gate": masked(gate) if gate else zero, "status": masked(stat)}
        out["balance"] = torch.stack(bal).mean() if bal else frames.new_zeros((), dtype=torch.float32)
        out["loss"] = (cfg.recon_weight * out["recon"] + cfg.gate_weight * out["gate"]
                       + cfg.status_weight * out["status"] + cfg.balance_weight * out["balance"])
        return out


@torch.no_grad()
def validate(model: WorldModel, val: dict[int, Episodes], cfg: TrainConfig, check: FrameCheck) -> dict:
    """Per-latent-step exact-grid accuracy of decoded frames and gate top-1 accuracy on held-out maps."""
    was_training = model.training
    model.eval()
    rng = np.random.default_rng(12345)
    correct = np.zeros(cfg.horizon + 1)
    count = np.zeros(cfg.horizon + 1)
    g_ok = g_n = 0
    for _, ep in sorted(val.items()):
        batch = sample_windows(ep, cfg.val_windows, cfg.horizon, rng, long=True)
        z = model.encode(batch["frames"][:, 0])
        alive = np.ones(cfg.val_windows, dtype=bool)
        for t in range(cfg.horizon + 1):
            frames = model.to_uint8(model.decode(z)).numpy()
            probs = model.policy(z).numpy()
            opt = batch["optimal"][:, t].numpy()
            for i in np.nonzero(alive)[0]:
                cell = tuple(int(v) for v in batch["cells"][i, t])
                correct[t] += check(frames[i], batch["tiles"][i].numpy(), cell)
                count[t] += 1
                if opt[i].any():
                    g_ok += bool(opt[i, probs[i].argmax()])
                    g_n += 1
            if t == cfg.horizon:
                break
            z, _, _ = model.step(z, batch["actions"][:, t], with_logits=False)
            if cfg.reencode:
                z = model.encode(model.to_uint8(model.decode(z)))
            alive &= batch["valid"][:, t].numpy()
    model.train(was_training)
    acc = {f"frame_acc_step{t}": float(correct[t] / count[t]) for t in range(cfg.horizon + 1) if count[t]}
    acc.update({f"frame_n_step{t}": int(count[t]) for t in range(cfg.horizon + 1)})
    acc["gate_top1"] = g_ok / max(g_n, 1)
    acc["gate_n"] = g_n
    return acc


def train(
    model: WorldModel,
    train_data: dict[int, Episodes],
    val_data: dict[int, Episodes] | None,
    cfg: TrainConfig,
    out: str | Path,
    check: FrameCheck | None = None,
    resume: bool = False,
    accelerator=None,
    progress: bool = True,
    stop_after: int | None = None,
    meta: dict[str, Any] | None = None,
) -> dict:
    """Train ``model`` (stage 1, then stage 2 when ``cfg.gate_steps > 0``); checkpoints and ``metrics.jsonl`` go
    under ``out``.

    Args:
        check: the frame checker validation uses (``None``: no validation).
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
    held_out = (lambda: validate(model, val_data, cfg, check)) if val_data and check else None

    def draw() -> tuple[dict[str, Tensor], dict[str, int]]:
        batch, size = sample_batch(train_data, cfg.batch, cfg.horizon, rng, acc.device)
        return batch, {"size": size}

    loop = LoopConfig(steps=cfg.steps, grad_clip=cfg.grad_clip, val_every=cfg.val_every, ckpt_every=cfg.ckpt_every)
    # Without a gate term stage 1 does not reach the gate: freeze it, so that DDP needs no unused-parameter search.
    with frozen(model.gate_parameters() if cfg.gate_weight == 0 else []):
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

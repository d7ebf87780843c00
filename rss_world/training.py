"""Accelerate-based trainer for the FrozenLake world model.

Losses on teacher-forced windows of ``horizon`` steps (default 8):

* reconstruction: decoded frame k vs true frame k, for k = 0 (the encoded start) and every latent step;
* gate: cross-entropy against the oracle's optimal action *set*: ``-log Σ_{a optimal} π(a | z_k)``;
* status: per-token BCE for "agent on goal here" and "agent in hole here";
* balance: Switch balance loss over the chosen experts (only when several experts serve one action).

The same code runs on one CPU, one GPU, or several processes (``accelerate launch`` / ``torchrun``): every
rank samples its own batches from a rank-seeded RNG, and accelerate's DDP averages the gradients.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rss_world.checkpoint import load_model, load_train_state, save_model, save_train_state
from rss_world.data import TILE_GOAL, TILE_HOLE, Episodes, sample_windows
from rss_world.nn.routing import balance_loss
from rss_world.world_model import WorldModel

FrameCheck = Callable[[np.ndarray, np.ndarray, tuple[int, int]], bool]


@dataclass
class TrainConfig:
    """Optimisation settings (``configs/train/*.yaml``)."""

    steps: int = 3000
    batch: int = 32
    horizon: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup: int = 100
    lr_min_ratio: float = 0.05  # cosine decay from lr to lr * lr_min_ratio over the run (1.0: constant)
    recon_weight: float = 10.0
    agent_weight: float = 20.0  # extra reconstruction weight on the cells the agent leaves and enters
    tile_weight: float = 5.0  # extra reconstruction weight on the rare hole, start and goal cells
    gate_weight: float = 1.0
    status_weight: float = 1.0
    balance_weight: float = 0.01
    grad_clip: float = 1.0
    val_every: int = 500
    val_windows: int = 48
    ckpt_every: int = 250
    seed: int = 0
    reencode: bool = False  # ablation "no recursion": decode, quantise and re-encode after every step
    gate_steps: int = 0  # stage 2: steps of planning-gate training on the frozen world model's latents
    gate_batch: int = 64
    gate_lr: float = 1e-3

    def validate(self) -> None:
        bad = [k for k in ("steps", "batch", "horizon", "val_every", "ckpt_every", "val_windows")
               if getattr(self, k) < 1]
        if not (self.lr > 0 and math.isfinite(self.lr)):
            bad.append("lr")
        if not 0 <= self.lr_min_ratio <= 1:
            bad.append("lr_min_ratio")
        if self.warmup < 1:
            bad.append("warmup")
        if self.gate_steps < 0 or self.gate_batch < 1 or not self.gate_lr > 0:
            bad.append("gate_steps/gate_batch/gate_lr")
        if bad:
            raise ValueError(f"invalid training config values for {bad}: {self}")


def set_nll(probs: Tensor, optimal: Tensor) -> Tensor:
    """``-log Σ_{a optimal} π(a)`` per sample: any shortest-path action counts as correct."""
    return -(probs * optimal.float()).sum(-1).clamp_min(1e-8).log()


def cosine_decay(frac: float, floor: float) -> float:
    """1 at ``frac = 0``, ``floor`` at ``frac >= 1``, half a cosine in between."""
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up for ``warmup`` steps, then cosine decay to ``lr_min_ratio`` at ``steps``."""
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    return cosine_decay((step - cfg.warmup) / max(1, cfg.steps - cfg.warmup), cfg.lr_min_ratio)


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
                z_next, _, sel = m.step(z, actions[:, t], with_logits=m.cfg.experts_per_action > 1)
                if m.cfg.experts_per_action > 1:
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


def make_accelerator(**kw):
    """An ``Accelerator`` whose DDP tolerates parameters a loss does not touch (the base out-projection bias
    of the dynamics layer never enters the latent update; ablations leave the gate or policy head unused)."""
    from accelerate import Accelerator, DistributedDataParallelKwargs

    return Accelerator(kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)], **kw)


def _rng_state(rng: np.random.Generator) -> dict:
    return {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state()}


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
) -> dict:
    """Train ``model`` and write checkpoints and ``metrics.jsonl`` under ``out``.

    Args:
        stop_after: stop (as if interrupted) after this many steps of this call; used by resume tests.

    Returns:
        The last validation metrics (or an empty dict).
    """
    from tqdm import tqdm

    cfg.validate()
    out = Path(out)
    acc = accelerator or make_accelerator()
    rank = acc.process_index
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng([cfg.seed, rank])
    wrapped = WindowLoss(model, cfg)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                            weight_decay=cfg.weight_decay)
    start = 0
    ckpt = out / "checkpoint"
    if resume:
        state = load_train_state(ckpt)
        model.load_state_dict(load_model(ckpt).state_dict())
        opt.load_state_dict(state["optimizer"])
        start = state["step"]
        rng.bit_generator.state = state["rng"][rank]["numpy"]
        torch.set_rng_state(state["rng"][rank]["torch"])
    wrapped, opt = acc.prepare(wrapped, opt)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s + start, cfg))
    sizes = sorted(train_data)
    metrics_file = out / "metrics.jsonl"
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
    last_val: dict = {}
    t0 = time.time()
    end = cfg.steps if stop_after is None else min(cfg.steps, start + stop_after)
    bar = tqdm(range(start, end), desc="train", disable=not (progress and acc.is_main_process))
    model.train()
    for step in bar:
        size = sizes[int(rng.integers(len(sizes)))]
        batch = {k: v.to(acc.device) for k, v in sample_windows(train_data[size], cfg.batch, cfg.horizon, rng).items()}
        losses = wrapped(batch)
        if not torch.isfinite(losses["loss"]):
            raise FloatingPointError(
                f"training loss is {losses['loss'].item()} at step {step} (size {size}); stopping. The last good "
                f"checkpoint in {ckpt} is kept."
            )
        opt.zero_grad(set_to_none=True)
        acc.backward(losses["loss"])
        if cfg.grad_clip > 0:
            acc.clip_grad_norm_(wrapped.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        done = step + 1
        if acc.is_main_process:
            rec = {"step": done, "size": size, "time_s": round(time.time() - t0, 2),
                   **{k: round(float(v.detach()), 6) for k, v in losses.items()}}
            bar.set_postfix(loss=f"{rec['loss']:.4f}", gate=f"{rec['gate']:.3f}")
            if val_data and check and (done % cfg.val_every == 0 or done == cfg.steps):
                last_val = validate(model, val_data, cfg, check)
                rec.update(last_val)
                bar.write(f"step {done}: " + ", ".join(f"{k}={v:.4f}" for k, v in last_val.items()
                                                       if "acc" in k or "top1" in k))
            with metrics_file.open("a") as f:
                f.write(json.dumps(rec) + "\n")
        if done % cfg.ckpt_every == 0 or done == end:
            rngs = [None] * acc.num_processes
            if acc.num_processes > 1:
                torch.distributed.all_gather_object(rngs, _rng_state(rng))
            else:
                rngs = [_rng_state(rng)]
            if acc.is_main_process:
                meta = {"step": done, "train": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}}
                save_model(ckpt, acc.unwrap_model(wrapped).model, meta)
                save_train_state(ckpt, {"optimizer": opt.state_dict(), "step": done, "rng": rngs})
            acc.wait_for_everyone()
    if cfg.gate_steps > 0 and end == cfg.steps and acc.is_main_process:
        last_val = train_gate(acc.unwrap_model(wrapped).model, train_data, val_data, cfg, out, check, progress)
    acc.wait_for_everyone()
    return last_val


def gate_parameters(model: WorldModel) -> list[nn.Parameter]:
    """The planning gate's parameters (``WorldModel.gate_modules``)."""
    return [p for m in model.gate_modules() for p in m.parameters()]


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
    """Stage-2 losses on one window batch: set-valued cross-entropy at every alive state with an optimal action,
    plus (value gate) auxiliary per-token targets for its three maps: goal here, walkable here, agent here."""
    z, alive = imagined_latents(model, batch)
    optimal = batch["optimal"].flatten(0, 1)  # (B*(T+1), 4)
    use = alive & optimal.any(-1)
    out = {"gate": set_nll(model.action_probs(model.gate_logits(z[use])), optimal[use]).mean()}
    if model.value_gate is not None:
        maps = model.gate_maps(z[alive])  # (M, N, 3)
        t1 = batch["frames"].shape[1]
        tiles = batch["tiles"].flatten(1)[:, None].expand(-1, t1, -1).flatten(0, 1)[alive]  # (M, N)
        cells = batch["cells"].flatten(0, 1)[alive]
        size = batch["tiles"].shape[-1]
        target = torch.stack([tiles == TILE_GOAL, tiles != TILE_HOLE], -1).float()
        out["aux"] = (F.binary_cross_entropy_with_logits(maps[..., :2].float(), target)
                      + F.cross_entropy(maps[..., 2].float(), cells[:, 0] * size + cells[:, 1]))
    else:
        out["aux"] = out["gate"].new_zeros(())
    out["loss"] = out["gate"] + out["aux"]
    return out


def train_gate(
    model: WorldModel,
    train_data: dict[int, Episodes],
    val_data: dict[int, Episodes] | None,
    cfg: TrainConfig,
    out: str | Path,
    check: FrameCheck | None = None,
    progress: bool = True,
) -> dict:
    """Stage 2: train only the planning gate on the frozen world model's latents.

    Each step samples ``gate_batch`` teacher-forced windows and trains on every alive state of them: the encoded
    start and the imagined latents after 1..horizon steps, which is what an open-loop planner feeds the gate. The
    target is the oracle's optimal action set. The encoder, dynamics and decoder do not change. Runs in one
    process (it takes minutes) with cosine learning-rate decay and writes the final checkpoint; an interrupted
    stage 2 restarts from its beginning on ``--resume``.
    """
    from tqdm import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "checkpoint"
    rng = np.random.default_rng([cfg.seed, 2])
    torch.manual_seed(cfg.seed + 2)
    # A fresh gate: a gate trained while the latent was still moving learns slower than a new one. (modules()
    # includes each gate module itself, so ValueIterationGate.reset_parameters re-draws its kernels too.)
    for mod in model.gate_modules():
        for sub in mod.modules():
            if hasattr(sub, "reset_parameters"):
                sub.reset_parameters()
    trainable = {id(p) for p in gate_parameters(model)}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in trainable)
    opt = torch.optim.AdamW(gate_parameters(model), lr=cfg.gate_lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_decay(s / cfg.gate_steps, cfg.lr_min_ratio))
    sizes = sorted(train_data)
    device = next(model.parameters()).device
    t0 = time.time()
    last_val: dict = {}
    model.train()
    bar = tqdm(range(cfg.gate_steps), desc="gate", disable=not progress)
    for step in bar:
        ep = train_data[sizes[int(rng.integers(len(sizes)))]]
        batch = {k: v.to(device) for k, v in sample_windows(ep, cfg.gate_batch, cfg.horizon, rng).items()}
        losses = gate_losses(model, batch)
        if not torch.isfinite(losses["loss"]):
            raise FloatingPointError(
                f"gate loss is {losses['loss'].item()} at gate step {step}; {ckpt} keeps the last good model"
            )
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        opt.step()
        sched.step()
        rec = {"stage": "gate", "gate_step": step + 1, "time_s": round(time.time() - t0, 2),
               **{k: round(float(v.detach()), 6) for k, v in losses.items()}}
        bar.set_postfix(gate=f"{rec['gate']:.3f}", aux=f"{rec['aux']:.3f}")
        if val_data and check and ((step + 1) % cfg.val_every == 0 or step + 1 == cfg.gate_steps):
            last_val = validate(model, val_data, cfg, check)
            rec.update(last_val)
            bar.write(f"gate step {step + 1}: gate_top1={last_val['gate_top1']:.4f}")
        with (out / "metrics.jsonl").open("a") as f:
            f.write(json.dumps(rec) + "\n")
    for n, p in model.named_parameters():
        p.requires_grad_(flags[n])
    meta = {"step": cfg.steps, "gate_steps": cfg.gate_steps,
            "train": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}}
    save_model(ckpt, model, meta)
    return last_val

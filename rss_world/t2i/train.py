"""Base-model training: text encoder and SD3 transformer together, by flow matching on fresh compbench renders of
one prompt split, in the package's one training loop (:func:`rss_world.training.loop.run`: NaN stop, JSONL log,
progress bar, resumable checkpoints). The text encoder is frozen at the end and the base checkpoint written.

Every batch is drawn afresh: a category uniformly (so the 108 ``color_attr`` training prompts do not drown the
three single-object ones), a prompt of that category and split uniformly, and a random scene that satisfies it
(:func:`rss_world.compbench.scene_for`). With probability ``prompt_dropout`` a prompt is replaced by ``""`` so the
model also learns the unconditional flow that classifier-free guidance needs.

With ``ema > 0`` an exponential moving average of the weights is kept beside the trained ones (in the resumable
train state too) and is what the base checkpoint holds: averaged weights sample cleaner shapes than the last step's.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from rss_world.compbench import CATEGORIES, prompts_in, render, scene_for
from rss_world.t2i.checkpoint import save_base
from rss_world.t2i.model import T2IConfig, TextToImage
from rss_world.training.loop import LoopConfig, Task, make_accelerator, run, warmup_cosine

BASE_DIR = "base"  # the final checkpoint's folder under the run's output directory


@dataclass
class BaseTrainConfig:
    """How the base model trains.

    Attributes:
        steps: optimizer steps.
        batch_size: images per step.
        lr: peak AdamW learning rate (linear warm-up over ``warmup`` steps, cosine down to ``lr * lr_floor``).
        prompt_dropout: share of prompts replaced by the empty prompt (0: no classifier-free guidance).
        split: the compbench prompt split to train on.
        ckpt_every: also checkpoint (resumable) every this many steps (0: at the end only).
        ema: decay of the weights' moving average, which the base checkpoint holds (0: the last step's weights).
            Early on the decay is ``min(ema, (1 + n) / (10 + n))`` after ``n`` updates, so the average warms up.
    """

    steps: int = 3000
    batch_size: int = 32
    lr: float = 1e-3
    warmup: int = 100
    lr_floor: float = 0.05
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    prompt_dropout: float = 0.1
    split: str = "train"
    seed: int = 0
    ckpt_every: int = 500
    log_every: int = 100
    ema: float = 0.999

    def validate(self) -> None:
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not 0 <= self.prompt_dropout < 1:
            raise ValueError(f"prompt_dropout must be in [0, 1), got {self.prompt_dropout}")
        if self.split not in ("train", "val", "test", "all"):
            raise ValueError(f"split must be train, val, test or all, got {self.split!r}")
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema must be in [0, 1), got {self.ema}")


class RenderedBatches:
    """Draws ``(images (B, 3, S, S) in [-1, 1], texts)`` of freshly rendered scenes from one prompt split."""

    def __init__(self, split: str, size: int, rng: np.random.Generator, prompt_dropout: float) -> None:
        self.pools = [prompts_in(split, c) for c in CATEGORIES]
        self.size, self.rng, self.dropout = size, rng, prompt_dropout

    def draw(self, batch_size: int) -> tuple[Tensor, list[str]]:
        cats = self.rng.integers(len(self.pools), size=batch_size)
        prompts = [self.pools[c][self.rng.integers(len(self.pools[c]))] for c in cats]
        images = np.stack([render(scene_for(p, self.rng, self.size)) for p in prompts])  # (B, S, S, 3) uint8
        drop = self.rng.random(batch_size) < self.dropout
        texts = ["" if d else p.text for p, d in zip(prompts, drop, strict=True)]
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (B, 3, S, S)
        return x, texts


class Trainee(nn.Module):
    """The model being trained and, when ``decay > 0``, the moving average of its weights (not trained)."""

    def __init__(self, model: TextToImage, decay: float) -> None:
        super().__init__()
        self.model, self.decay = model, decay
        self.ema = copy.deepcopy(model).requires_grad_(False) if decay > 0 else None
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update_ema(self) -> None:
        """Move the average towards the current weights (a no-op without an average)."""
        if self.ema is None:
            return
        d = min(self.decay, (1 + self.updates.item()) / (10 + self.updates.item()))
        for avg, cur in zip(self.ema.state_dict().values(), self.model.state_dict().values(), strict=True):
            if avg.is_floating_point():
                avg.lerp_(cur, 1 - d)
        self.updates += 1

    def final(self) -> TextToImage:
        """The weights to ship: the average, or the model itself without one."""
        return self.ema if self.ema is not None else self.model


def train_base(model_cfg: T2IConfig, cfg: BaseTrainConfig, out: str | Path, progress: bool = True,
               resume: bool = False) -> dict[str, Any]:
    """Train a base model from scratch; write ``out/base`` (text encoder frozen) and ``out/metrics.jsonl``.

    Returns:
        ``model`` (text encoder frozen, eval mode), ``losses`` (mean loss of each step), ``path`` of the base
        checkpoint and ``seconds`` of training.

    Raises:
        FloatingPointError: a non-finite loss (names the step).
        ValueError: bad settings.
    """
    import time

    model_cfg.validate()
    cfg.validate()
    out = Path(out)
    accelerator = make_accelerator(cpu=True)
    torch.manual_seed(cfg.seed)
    trainee = Trainee(TextToImage(model_cfg), cfg.ema)
    rng = np.random.default_rng(cfg.seed)
    data = RenderedBatches(cfg.split, model_cfg.transformer.sample_size, rng, cfg.prompt_dropout)
    opt = torch.optim.AdamW(trainee.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    trainee, opt = accelerator.prepare(trainee, opt)
    meta = {"train": asdict(cfg), "model": model_cfg.to_dict()}

    def draw():
        x, texts = data.draw(cfg.batch_size)
        return (x, trainee.model.tokens(texts)), {}

    def losses(t: Trainee, batch) -> dict[str, Tensor]:
        t.update_ema()  # the average takes in the previous step's weights (a resume continues it exactly)
        return {"loss": t.model.loss(*batch)}

    task = Task(model=trainee, optimizer=opt, draw=draw, losses=losses,
                schedule=lambda s: warmup_cosine(s, cfg.steps, cfg.warmup, cfg.lr_floor), rng=rng,
                save=lambda path, step: save_base(path, accelerator.unwrap_model(trainee).final(),
                                                  {"step": step, **meta}),
                meta=meta)
    loop = LoopConfig(steps=cfg.steps, grad_clip=cfg.grad_clip, ckpt_every=cfg.ckpt_every, log_every=cfg.log_every)
    t0 = time.time()
    result = run(task, loop, out, accelerator, resume=resume, progress=progress)
    seconds = time.time() - t0
    unwrapped = accelerator.unwrap_model(trainee)
    unwrapped.update_ema()  # the last step's weights
    final = unwrapped.final().requires_grad_(True)  # the transformer may still fine-tune
    final.freeze_text()
    path = save_base(out / BASE_DIR, final, {"steps": cfg.steps, "train_seconds": round(seconds, 1), **meta})
    accelerator.end_training()
    return {"model": final.eval(), "losses": result.losses, "path": str(path), "seconds": seconds}

"""The one training loop of the package: every model (world model, planning gate, DiT/SD3 adapters) trains here.

A model brings a :class:`Task` (how to draw a batch, what to minimise, how to save and load its weights); the loop
does the rest, the same way for all of them:

* steps with accelerate (one CPU, one GPU, or several processes under ``accelerate launch`` / ``torchrun``);
* stops on a non-finite loss with an error that names the step, before the step touches the weights, so the last
  checkpoint stays the last good one;
* checkpoints every ``ckpt_every`` steps and at the end, and resumes exactly: weights, optimizer, step and the RNG
  state of every rank (the task's numpy sampler, torch's CPU and CUDA generators). The train state is one file
  written atomically that holds the weights too, so a run killed at any point (even ``kill -9`` in the middle of a
  checkpoint) resumes from one consistent step;
* logs every step once: a row in ``<out>/metrics.jsonl`` (a resume first cuts the log back to its checkpoint) and
  the same numbers through accelerate's trackers (``Accelerator(log_with=...)``, e.g. TensorBoard, when installed);
* stops on Ctrl-C (SIGINT) with :class:`Interrupted`, which says where the last checkpoint is; a Ctrl-C during a
  checkpoint write waits until the write is done;
* shows a tqdm progress bar on the main process when stderr is a terminal.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from rss_world.checkpoint import load_train_state, save_train_state
from rss_world.io import atomic_write_text

LOG, CHECKPOINT = "metrics.jsonl", "checkpoint"


def make_accelerator(find_unused_parameters: bool = False, **kw):
    """An ``Accelerator`` (``kw`` go to it, e.g. ``cpu``, ``mixed_precision``, ``log_with``, ``project_dir``).

    Args:
        find_unused_parameters: let DDP tolerate parameters that a loss does not reach (slower; a model whose
            every trainable parameter enters the loss does not need it).
    """
    from accelerate import Accelerator, DistributedDataParallelKwargs

    ddp = DistributedDataParallelKwargs(find_unused_parameters=find_unused_parameters)
    return Accelerator(kwargs_handlers=[ddp], **kw)


@contextmanager
def frozen(params: Iterable[nn.Parameter]) -> Iterator[None]:
    """Within the block, ``params`` take no gradient; afterwards each has its ``requires_grad`` flag back."""
    flags = [(p, p.requires_grad) for p in params]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def cosine_decay(frac: float, floor: float) -> float:
    """1 at ``frac = 0``, ``floor`` at ``frac >= 1``, half a cosine in between."""
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))


def warmup_cosine(step: int, steps: int, warmup: int, floor: float) -> float:
    """Learning-rate factor: linear warm-up over ``warmup`` steps, then cosine decay to ``floor`` at ``steps``."""
    if step < warmup:
        return (step + 1) / warmup
    return cosine_decay((step - warmup) / max(1, steps - warmup), floor)


@dataclass
class LoopConfig:
    """How the loop runs one stage.

    Attributes:
        steps: optimizer steps of the stage.
        grad_clip: largest gradient norm (0: no clipping).
        val_every: validate every this many steps, and after the last (0: after the last only).
        ckpt_every: checkpoint every this many steps, and after the last (0: after the last only).
        log_every: print a line every this many steps (0: the progress bar only).
        stage: name of a later stage (e.g. ``"gate"``): its log rows read ``{"stage": name, "<name>_step": n}``
            and its tracker values are prefixed ``"<name>/"``. ``None``: rows read ``{"step": n}``.
        resumable: write the optimizer, step and RNG state with each checkpoint, so ``resume`` can continue.
    """

    steps: int
    grad_clip: float = 0.0
    val_every: int = 0
    ckpt_every: int = 0
    log_every: int = 0
    stage: str | None = None
    resumable: bool = True

    def step_key(self) -> str:
        """The step's name in this stage's log rows."""
        return f"{self.stage}_step" if self.stage else "step"


@dataclass
class Task:
    """What one model brings to the loop.

    Attributes:
        model: the module to train, as the accelerator prepared it (``accelerator.prepare``).
        optimizer: its optimizer, prepared likewise.
        draw: the next batch (on the model's device) and the log fields it brings, e.g. ``{"size": 4}``.
        losses: ``losses(model, batch)`` -> the terms to log; the loop minimises ``"loss"``.
        schedule: learning-rate factor at a step of the stage (``None``: constant).
        rng: the numpy generator that ``draw`` samples with; a resume restores its state on every rank.
        validate: held-out metrics, run on the main process only.
        save: ``save(directory, step)`` writes the weights; ``None``: the loop writes no checkpoint.
        load: ``load(directory)`` reads them back on resume from a train state written before train states held
            the weights (a newer one restores the weights from itself).
        meta: settings to keep in the train state (``"meta"``), e.g. the recipe, for a resume to check against.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    draw: Callable[[], tuple[Any, dict[str, Any]]]
    losses: Callable[[nn.Module, Any], dict[str, Tensor]]
    schedule: Callable[[int], float] | None = None
    rng: np.random.Generator | None = None
    validate: Callable[[], dict[str, Any]] | None = None
    save: Callable[[Path, int], None] | None = None
    load: Callable[[Path], None] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) stopped a stage; the message says where, and where the last checkpoint is.

    Attributes:
        stage: the stage's name (``None``: the first).
        step: its last finished step, of ``steps``.
        checkpoint: the last resumable checkpoint (``None``: none of this run), and ``checkpoint_step``, its step.
    """

    def __init__(self, stage: str | None, step: int, steps: int, checkpoint: Path | None,
                 checkpoint_step: int | None, message: str | None = None) -> None:
        self.stage, self.step, self.steps = stage, step, steps
        self.checkpoint, self.checkpoint_step = checkpoint, checkpoint_step
        if message is None:
            where = f"stopped after {stage + ' ' if stage else ''}step {step} of {steps}"
            message = (f"{where}; no resumable checkpoint was written" if checkpoint is None else
                       f"{where}; the last checkpoint is {checkpoint} (step {checkpoint_step})")
        super().__init__(message)


@contextmanager
def sigint_deferred() -> Iterator[None]:
    """Within the block a Ctrl-C (SIGINT) waits: it raises ``KeyboardInterrupt`` when the block is done, so a
    checkpoint is never left half-written. Only in the main thread, and only over Python's default handler."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    caught: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if caught:
        raise KeyboardInterrupt


@dataclass
class LoopResult:
    """Where a call of :func:`run` stopped: its last step, last validation and the mean loss of each step."""

    step: int
    last_val: dict[str, Any] = field(default_factory=dict)
    losses: list[float] = field(default_factory=list)


def rng_state(rng: np.random.Generator | None) -> dict[str, Any]:
    """This process's RNG state: the sampler's, torch's CPU generator and (when present) the current CUDA one."""
    state = {"numpy": rng.bit_generator.state if rng is not None else None, "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any], rng: np.random.Generator | None) -> None:
    """Restore what :func:`rng_state` recorded."""
    if rng is not None:
        rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def trim_log(path: Path, cfg: LoopConfig, step: int) -> None:
    """Cut the JSONL log back to where the rows of ``cfg.stage`` reached ``step``: from the first row of that stage
    past ``step`` on, every row goes (a later stage's too: the log is in the order things ran), so each step is
    logged once after a resume, and a stage that starts afresh (``step`` 0) replaces its old rows. A last row that
    does not parse (a process killed in the middle of writing it) goes too.

    Raises:
        ValueError: a row before the last does not parse: the log is not this loop's.
    """
    if not path.exists():
        return
    text = path.read_text()
    lines = text.splitlines()
    keep = len(lines)
    for i, line in enumerate(lines):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if i < len(lines) - 1:
                raise ValueError(f"{path} line {i + 1} is not JSON: {line[:60]!r}") from None
            keep = i
            break
        if row.get("stage") == cfg.stage and row.get(cfg.step_key(), 0) > step:
            keep = i
            break
    if keep < len(lines) or not text.endswith("\n"):
        atomic_write_text(path, "".join(f"{line}\n" for line in lines[:keep]))


class _Runner:
    """The collective operations of a run; ``local`` runs on one process of a group without them."""

    def __init__(self, accelerator, local: bool) -> None:
        self.acc, self.local = accelerator, local
        self.main = local or accelerator.is_main_process
        self.rank = 0 if local else accelerator.process_index
        self.size = 1 if local else accelerator.num_processes

    def mean(self, values: Tensor) -> Tensor:
        """Mean over processes of a ``(K,)`` vector (the same numbers on every rank)."""
        return values if self.size == 1 else self.acc.gather(values[None]).mean(0)

    def backward(self, loss: Tensor) -> None:
        if self.local:
            loss.backward()
        else:
            self.acc.backward(loss)

    def clip(self, params: list[nn.Parameter], norm: float) -> None:
        if self.local:
            torch.nn.utils.clip_grad_norm_(params, norm)
        else:
            self.acc.clip_grad_norm_(params, norm)

    def rng_states(self, rng: np.random.Generator | None) -> list[dict[str, Any]]:
        """Every rank's :func:`rng_state`, in rank order."""
        if self.size == 1:
            return [rng_state(rng)]
        states: list[Any] = [None] * self.size
        torch.distributed.all_gather_object(states, rng_state(rng))
        return states

    def barrier(self) -> None:
        if not self.local:
            self.acc.wait_for_everyone()

    def unwrap(self, model: nn.Module) -> nn.Module:
        """``model`` without the wrapper ``accelerator.prepare`` put around it."""
        return model if self.local else self.acc.unwrap_model(model)


def _restore(task: Task, ckpt: Path, run: _Runner) -> int:
    """Load weights, optimizer and this rank's RNG state from ``ckpt``; return the step to continue from."""
    state = load_train_state(ckpt)
    if len(state["rng"]) != run.size:
        raise ValueError(f"{ckpt} was written by {len(state['rng'])} processes; resume it with as many, not "
                         f"{run.size}")
    if "model" in state:  # the weights of the train state's own step (model.safetensors may be a later one)
        run.unwrap(task.model).load_state_dict(state["model"])
    elif task.load is not None:
        task.load(ckpt)
    else:
        raise ValueError(f"{ckpt} holds no weights in its train state and this task cannot load them")
    task.optimizer.load_state_dict(state["optimizer"])
    set_rng_state(state["rng"][run.rank], task.rng)
    return int(state["step"])


def run(
    task: Task,
    cfg: LoopConfig,
    out: str | Path,
    accelerator,
    resume: bool = False,
    stop_after: int | None = None,
    progress: bool = True,
    local: bool = False,
) -> LoopResult:
    """Train ``task`` for ``cfg.steps`` steps, logging to ``out/metrics.jsonl`` and checkpointing to
    ``out/checkpoint``.

    Args:
        accelerator: the ``Accelerator`` that prepared ``task.model`` and ``task.optimizer`` (its trackers log).
        resume: continue from ``out/checkpoint`` exactly (weights, optimizer, step, every rank's RNG state).
        stop_after: stop, as if interrupted, after this many steps of this call (with a checkpoint).
        local: run on this process alone, without collective operations (a stage that only the main process of a
            group runs); the model and optimizer are then plain, not prepared.

    Raises:
        FloatingPointError: a non-finite loss; it names the step, and the last checkpoint is kept.
        ValueError: ``resume`` without a resumable checkpoint.
        Interrupted: Ctrl-C; it names the last resumable checkpoint and its step.
    """
    from tqdm import tqdm

    out = Path(out)
    runner = _Runner(accelerator, local)
    ckpt, log = out / CHECKPOINT, out / LOG
    start = 0
    if resume:
        if task.save is None or not cfg.resumable:
            raise ValueError("resume needs a resumable task that writes checkpoints")
        start = _restore(task, ckpt, runner)
    schedule = task.schedule
    sched = None if schedule is None else torch.optim.lr_scheduler.LambdaLR(
        task.optimizer, lambda s: schedule(s + start))
    if runner.main:
        out.mkdir(parents=True, exist_ok=True)
        trim_log(log, cfg, start)
    params = [p for group in task.optimizer.param_groups for p in group["params"]]
    end = cfg.steps if stop_after is None else min(cfg.steps, start + stop_after)
    result = LoopResult(step=start)
    saved = start if resume else None  # the step of this run's last resumable checkpoint
    prefix, label = (f"{cfg.stage}/", f"{cfg.stage} ") if cfg.stage else ("", "")
    t0 = time.time()
    # disable=None: the bar shows on a terminal only, so a redirected stderr gets no carriage-return clutter
    bar = tqdm(range(start, end), desc=cfg.stage or "train", disable=True if not (progress and runner.main) else None)
    task.model.train()
    try:
        for step in bar:
            batch, fields = task.draw()
            losses = task.losses(task.model, batch)
            values = runner.mean(torch.stack([v.detach().float() for v in losses.values()]))
            row_losses = dict(zip(losses, values.tolist()))
            if not math.isfinite(row_losses["loss"]):
                where = "".join(f", {k} {v}" for k, v in fields.items())
                kept = f"the last good checkpoint in {ckpt} is kept" if task.save else "no checkpoint is written"
                raise FloatingPointError(f"non-finite {cfg.stage or 'training'} loss {row_losses['loss']} at step "
                                         f"{step + 1}{where}; stopping ({kept})")
            task.optimizer.zero_grad(set_to_none=True)
            runner.backward(losses["loss"])
            if cfg.grad_clip > 0:
                runner.clip(params, cfg.grad_clip)
            task.optimizer.step()
            if sched is not None:
                sched.step()
            done = result.step = step + 1
            result.losses.append(row_losses["loss"])
            if runner.main:
                head = {"stage": cfg.stage, cfg.step_key(): done} if cfg.stage else {"step": done}
                row = {**head, **fields, "time_s": round(time.time() - t0, 2),
                       **{k: round(v, 6) for k, v in row_losses.items()}}
                bar.set_postfix({k: f"{v:.4g}" for k, v in row_losses.items()})
                if task.validate and (done == cfg.steps or (cfg.val_every and done % cfg.val_every == 0)):
                    result.last_val = task.validate()
                    row.update(result.last_val)
                    shown = ", ".join(f"{k}={v:.4f}" for k, v in result.last_val.items() if isinstance(v, float))
                    bar.write(f"{label}step {done}: {shown}")
                elif cfg.log_every and (done % cfg.log_every == 0 or done == end):
                    bar.write(f"{label}step {done}: " + ", ".join(f"{k}={v:.5f}" for k, v in row_losses.items()))
                with log.open("a") as f:  # one short line per step: appending it is enough (a resume cuts back)
                    f.write(json.dumps(row) + "\n")
                scalars = {f"{prefix}{k}": v for k, v in row.items() if isinstance(v, int | float) and k not in head}
                accelerator.log(scalars, step=done)
            if task.save is not None and (done == end or (cfg.ckpt_every and done % cfg.ckpt_every == 0)):
                rngs = runner.rng_states(task.rng) if cfg.resumable else []
                with sigint_deferred():
                    if runner.main:
                        task.save(ckpt, done)
                        if cfg.resumable:
                            weights = {k: v.detach().cpu() for k, v in runner.unwrap(task.model).state_dict().items()}
                            save_train_state(ckpt, {"model": weights, "optimizer": task.optimizer.state_dict(),
                                                    "step": done, "rng": rngs, "meta": task.meta})
                    if cfg.resumable:
                        saved = done
                runner.barrier()
    except KeyboardInterrupt:
        bar.close()
        raise Interrupted(cfg.stage, result.step, cfg.steps, ckpt if saved is not None else None, saved) from None
    bar.close()
    return result

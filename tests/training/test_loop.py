"""The training loop on a tiny regression task: exact resume, NaN stop, one log row per step, trackers, Ctrl-C."""

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate.tracking import GeneralTracker
from torch import nn

from rss_world.io import atomic_write
from rss_world.training.loop import Interrupted, LoopConfig, Task, make_accelerator, run, sigint_deferred, warmup_cosine

STEPS = 6


class Regression:
    """``y = x · w`` with dropout (so torch's RNG matters too) and numpy-sampled batches; ``nan_at`` poisons the
    batch of that step (1-based), as a diverging run would."""

    def __init__(self, seed: int, nan_at: int | None = None) -> None:
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.5), nn.Linear(16, 1))
        self.rng = np.random.default_rng(0)
        self.nan_at, self.drawn = nan_at, 0

    def draw(self):
        self.drawn += 1
        x = torch.from_numpy(self.rng.normal(size=(8, 4))).float()
        if self.drawn == self.nan_at:
            x[0, 0] = float("nan")
        return (x, x.sum(-1, keepdim=True)), {"rows": 8}

    def task(self, acc) -> Task:
        opt = torch.optim.AdamW(self.net.parameters(), lr=1e-2)
        net, opt = acc.prepare(self.net, opt)

        def losses(m, batch):
            x, y = batch
            mse = (m(x) - y).square().mean()
            return {"mse": mse, "loss": mse + 0.1 * m[0].weight.abs().mean()}

        def save(d: Path, step: int) -> None:
            atomic_write(d / "weights.pt", lambda tmp: torch.save(self.net.state_dict(), tmp))

        return Task(model=net, optimizer=opt, draw=self.draw, losses=losses, rng=self.rng,
                    schedule=lambda s: warmup_cosine(s, STEPS, 2, 0.1), save=save,
                    load=lambda d: self.net.load_state_dict(torch.load(d / "weights.pt")))


def rows(out: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "time_s"}
            for line in (out / "metrics.jsonl").read_text().splitlines()]


def train(out: Path, seed: int = 0, **kw) -> Regression:
    reg = Regression(seed, kw.pop("nan_at", None))
    acc = make_accelerator(cpu=True)
    run(reg.task(acc), LoopConfig(steps=STEPS, grad_clip=1.0, ckpt_every=2), out, acc, progress=False, **kw)
    return reg


def test_resume_is_exact_and_logs_each_step_once(tmp_path):
    straight = train(tmp_path / "a")
    train(tmp_path / "b", stop_after=3)  # interrupted after step 3: its checkpoint is at step 3
    resumed = train(tmp_path / "b", seed=99, resume=True)  # other initial weights: all must come from the checkpoint
    for (k, p), q in zip(straight.net.state_dict().items(), resumed.net.state_dict().values()):
        assert torch.equal(p, q), k
    assert rows(tmp_path / "a") == rows(tmp_path / "b")
    assert [r["step"] for r in rows(tmp_path / "b")] == list(range(1, STEPS + 1))
    assert rows(tmp_path / "a")[0].keys() == {"step", "rows", "mse", "loss"}


def test_nan_loss_names_the_step_keeps_the_checkpoint_and_resume_drops_later_rows(tmp_path):
    out = tmp_path / "r"
    with pytest.raises(FloatingPointError, match=r"non-finite training loss nan at step 5, rows 8; .*last good"):
        train(out, nan_at=5)
    weights = (out / "checkpoint" / "weights.pt").read_bytes()  # written at step 4, before the bad step
    assert torch.load(out / "checkpoint" / "train_state.pt")["step"] == 4
    assert [r["step"] for r in rows(out)] == [1, 2, 3, 4]
    # a crash after step 5 would leave its row past the checkpoint: the resume drops it and logs step 5 once
    with (out / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"step": 5, "loss": 0.0}) + "\n")
    train(out, resume=True)
    assert (out / "checkpoint" / "weights.pt").read_bytes() != weights
    assert [r["step"] for r in rows(out)] == list(range(1, STEPS + 1))
    train(tmp_path / "straight")
    assert rows(out) == rows(tmp_path / "straight")


class Recorder(GeneralTracker):
    """An in-memory accelerate tracker."""

    name, requires_logging_directory, main_process_only = "recorder", False, True

    def __init__(self) -> None:
        super().__init__()
        self.logged: list[tuple[int, dict]] = []

    @property
    def tracker(self):
        return self

    def store_init_configuration(self, values: dict) -> None:
        pass

    def log(self, values: dict, step: int | None = None, **kwargs) -> None:
        self.logged.append((step, dict(values)))


def test_steps_reach_accelerate_trackers_and_later_stages_are_named(tmp_path):
    recorder = Recorder()
    acc = make_accelerator(cpu=True, log_with=[recorder])
    acc.init_trackers("test")
    reg = Regression(0)
    val = {"acc": 0.5}
    task = reg.task(acc)
    task.validate = lambda: val
    run(task, LoopConfig(steps=3, val_every=2, stage="probe", resumable=False), tmp_path, acc, progress=False)
    assert [s for s, _ in recorder.logged] == [1, 2, 3]
    assert set(recorder.logged[1][1]) == {"probe/rows", "probe/time_s", "probe/mse", "probe/loss", "probe/acc"}
    logged = rows(tmp_path)
    assert [(r["stage"], r["probe_step"], "acc" in r) for r in logged] == [("probe", 1, False), ("probe", 2, True),
                                                                            ("probe", 3, True)]
    assert not (tmp_path / "checkpoint" / "train_state.pt").exists()  # not resumable: weights only
    saved = torch.load(tmp_path / "checkpoint" / "weights.pt")  # the trained weights, at the end of the run
    assert saved.keys() == reg.net.state_dict().keys()
    assert all(torch.equal(v, reg.net.state_dict()[k]) for k, v in saved.items())
    with pytest.raises(ValueError, match="resumable"):
        run(reg.task(acc), LoopConfig(steps=3, resumable=False), tmp_path, acc, resume=True, progress=False)


def test_resume_takes_the_weights_of_the_train_states_step(tmp_path):
    """A kill between the weights file and the train state leaves newer weights next to an older train state: the
    resume continues from the train state's own step, weights included, and stays exact."""
    out = tmp_path / "b"
    train(out, stop_after=4)  # checkpoints at steps 2 and 4
    newer = train(tmp_path / "c", stop_after=2)  # as if step 2's weights had been written over those of step 4 ...
    atomic_write(out / "checkpoint" / "weights.pt", lambda tmp: torch.save(newer.net.state_dict(), tmp))
    resumed = train(out, seed=99, resume=True)
    straight = train(tmp_path / "a")
    for (k, p), q in zip(straight.net.state_dict().items(), resumed.net.state_dict().values()):
        assert torch.equal(p, q), k
    assert rows(out) == rows(tmp_path / "a")


def test_resume_cuts_the_log_back_in_order_and_drops_a_torn_last_row(tmp_path):
    out = tmp_path / "r"
    train(out, stop_after=4)
    with (out / "metrics.jsonl").open("a") as f:  # later rows of the killed run: step 5, a later stage, a torn row
        f.write(json.dumps({"step": 5, "loss": 0.0}) + "\n" + json.dumps({"stage": "gate", "gate_step": 1}) + "\n")
        f.write('{"step": 6, "lo')
    train(out, resume=True)
    assert [r["step"] for r in rows(out)] == list(range(1, STEPS + 1))
    (out / "metrics.jsonl").write_text('{"step": 1\n{"step": 2}\n')  # a broken row before the last: not ours
    with pytest.raises(ValueError, match="line 1 is not JSON"):
        train(out, resume=True)


def test_ctrl_c_stops_with_the_last_checkpoint_and_its_step(tmp_path):
    reg = Regression(0)
    acc = make_accelerator(cpu=True)
    task = reg.task(acc)
    draw = task.draw

    def ctrl_c_at_step_4():
        if reg.drawn == 3:
            raise KeyboardInterrupt
        return draw()

    task.draw = ctrl_c_at_step_4
    with pytest.raises(Interrupted, match=r"after step 3 of 6; the last checkpoint is .*checkpoint \(step 2\)") as stop:
        run(task, LoopConfig(steps=STEPS, ckpt_every=2), tmp_path, acc, progress=False)
    assert (stop.value.step, stop.value.checkpoint, stop.value.checkpoint_step) == (3, tmp_path / "checkpoint", 2)
    assert isinstance(stop.value, KeyboardInterrupt)  # what callers that know nothing of the loop catch
    task.draw = lambda: (_ for _ in ()).throw(KeyboardInterrupt)  # before a first checkpoint: none to name
    with pytest.raises(Interrupted, match="after step 0 of 6; no resumable checkpoint") as stop:
        run(task, LoopConfig(steps=STEPS, ckpt_every=2), tmp_path / "fresh", acc, progress=False)
    assert stop.value.checkpoint is None


def test_ctrl_c_during_a_checkpoint_write_waits_for_the_write():
    # Python's own Ctrl-C handler for the test (a process started with SIGINT ignored, e.g. under nohup, has none)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        done = []
        with pytest.raises(KeyboardInterrupt):
            with sigint_deferred():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)  # the signal has arrived: a plain handler would have raised here
                done.append(True)
        assert done and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, before)

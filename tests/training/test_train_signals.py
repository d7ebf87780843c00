"""``python -m rss_world.train`` stopped by a signal at a random step, then resumed, ends as a run never stopped:
each step logged once with the same values, bit-identical weights. SIGKILL (nothing can run on the way out) and
SIGINT (Ctrl-C: one line naming the last checkpoint, exit status 130). Stopped before its first checkpoint, a run
has nothing to resume: ``--resume`` is refused and the run starts again."""

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rss_world.checkpoint import load_model, load_train_state

# Stage 1 checkpoints every other step; stage 2 has no checkpoints of its own (a resume redoes it).
STEPS, GATE_STEPS = 12, 4
CHANGES = (f"train.steps={STEPS}", "train.ckpt_every=2", f"train.gate_steps={GATE_STEPS}", "train.val_every=6")


def rows(run: Path) -> list[dict]:
    """The run's log rows less their times."""
    return [{k: v for k, v in json.loads(line).items() if k != "time_s"}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def straight(tmp_path_factory, run_cli, tiny_recipe) -> tuple[Path, Path]:
    """The data root and the out folder of the recipe run without a stop (in this process)."""
    root = tmp_path_factory.mktemp("signals")
    assert run_cli("rss_world.train", ["--env", "frozenlake", *tiny_recipe(root, root / "straight", *CHANGES)]) == 0
    return root, root / "straight"


def stop_at_a_row(argv: list[str], log: Path, row: int, signum: int, where: str) -> subprocess.CompletedProcess:
    """Run ``python -m rss_world.train argv`` and send it ``signum`` once ``log`` has ``row`` rows."""
    # SIGINT as a terminal sends it, even if this test runs where SIGINT is ignored (which a child would inherit)
    proc = subprocess.Popen([sys.executable, "-m", "rss_world.train", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not (log.exists() and len(log.read_text().splitlines()) >= row):
        assert proc.poll() is None, f"{where}: the run ended before its row {row}: {proc.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, f"{where}: no row {row} after 120 s"
        time.sleep(0.005)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_a_run_stopped_at_a_random_step_resumes_to_the_same_end(signum, straight, tmp_path, run_cli, tiny_recipe):
    root, reference = straight
    seed = random.randrange(2**32)
    row = random.Random(seed).randint(1, STEPS + GATE_STEPS - 2)  # a row of stage 1 or 2, not the last two
    where = f"{signal.Signals(signum).name} after log row {row} (seed {seed})"
    run = tmp_path / "run"
    recipe = tiny_recipe(root, run, *CHANGES)
    stopped = stop_at_a_row(["--env", "frozenlake", *recipe], run / "metrics.jsonl", row, signum, where)
    assert stopped.returncode == (-signal.SIGKILL if signum == signal.SIGKILL else 130), (where, stopped.stderr)
    saved = (run / "checkpoint" / "train_state.pt").exists()  # not when stopped before the first checkpoint
    if signum == signal.SIGINT:
        line = stopped.stderr.rstrip("\n").split("\n")[-1]  # after the data collection's progress bars, if any
        assert "Traceback" not in stopped.stderr and line.startswith("python -m rss_world.train: interrupted: "), \
            (where, stopped.stderr)
        assert re.search(r"stopped (in stage 2 \(gate\) )?after (gate )?step \d+ of", line), (where, line)
        if saved:
            step = load_train_state(run / "checkpoint")["step"]
            assert f"the last checkpoint is {run}/checkpoint (step {step}" in line, (where, line)
            assert line.endswith(" ".join(["--env", "frozenlake", "--resume", *recipe]).replace(
                "data.sizes=[3]", "'data.sizes=[3]'")), (where, line)
        else:
            assert "before the first checkpoint (train.ckpt_every=2); nothing to resume" in line, (where, line)
    half = len(recipe) // 2
    resume = ["--env", "frozenlake", *recipe[:half], "--resume", *recipe[half:]]
    if saved:
        assert run_cli("rss_world.train", resume) == 0, where
    else:  # nothing to resume: the run starts again
        assert run_cli("rss_world.train", resume) == 2, where
        assert run_cli("rss_world.train", ["--env", "frozenlake", *recipe]) == 0, where
    resumed = rows(run)
    assert [(r.get("stage"), r.get("step", r.get("gate_step"))) for r in resumed] == (
        [(None, s) for s in range(1, STEPS + 1)] + [("gate", s) for s in range(1, GATE_STEPS + 1)]), where
    assert resumed == rows(reference), where  # the same losses and validations, step by step
    a, b = load_model(reference / "checkpoint").state_dict(), load_model(run / "checkpoint").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), where  # the final weights, bit for bit
    a, b = (load_train_state(r / "checkpoint")["model"] for r in (reference, run))
    assert all(torch.equal(a[k], b[k]) for k in a), where  # stage 1's end too

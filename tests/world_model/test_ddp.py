"""Two-process CPU data-parallel training (torchrun + accelerate, gloo) keeps the ranks' parameters identical."""

import os
import subprocess
import sys
from pathlib import Path

import torch


def test_two_process_training_keeps_ranks_identical(tmp_path):
    worker = Path(__file__).parent / "ddp_worker.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           str(worker), str(tmp_path)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{i}.pt") for i in range(2))
    assert r0["world"] == r1["world"] == 2
    assert "gloo" in r0["backend"]
    assert not torch.equal(r0["params"], r0["init"])  # training moved the weights
    assert torch.equal(r0["params"], r1["params"])  # and every rank holds the same ones

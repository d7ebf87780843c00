"""Two-process CPU data-parallel training (torchrun + accelerate, gloo) keeps the ranks' parameters identical."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch


@pytest.mark.slow
def test_two_process_training_keeps_ranks_identical(tmp_path, tiny_settings, map3_transitions):
    data = tmp_path / "data"
    data.mkdir()
    np.savez(data / "size3_00000.npz", **dataclasses.asdict(map3_transitions))  # the layout load_shards reads
    worker = Path(__file__).parent / "ddp_worker.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # --standalone: a rendezvous on a free local port, so parallel runs never collide
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(worker),
           str(data), json.dumps(tiny_settings), str(tmp_path)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{i}.pt") for i in range(2))
    assert r0["world"] == r1["world"] == 2
    assert "gloo" in r0["backend"]
    assert not torch.equal(r0["params"], r0["init"])  # training moved the weights
    assert torch.equal(r0["params"], r1["params"])  # and every rank holds the same ones

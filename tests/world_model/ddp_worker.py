"""Worker for the 2-process data-parallel test: ``torchrun --nproc_per_node 2 ddp_worker.py OUT``."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from wm_helpers import tiny_model, transitions  # noqa: E402

from rss_world.training import TrainConfig, make_accelerator, train  # noqa: E402


def main(out: str) -> None:
    torch.set_num_threads(1)
    acc = make_accelerator(cpu=True)
    model = tiny_model(seed=0)  # same init on every rank
    init = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    cfg = TrainConfig(steps=3, batch=8, horizon=1, val_every=10_000, ckpt_every=10_000)
    train(model, {3: transitions()}, None, cfg, Path(out) / "run", accelerator=acc, progress=False)
    params = torch.cat([p.detach().flatten() for p in model.parameters()])
    torch.save({"init": init, "params": params, "world": acc.num_processes, "backend": str(acc.state.backend)},
               Path(out) / f"rank{acc.process_index}.pt")


if __name__ == "__main__":
    main(sys.argv[1])

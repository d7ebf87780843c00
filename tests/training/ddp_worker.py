"""Worker of the 2-process data-parallel test, run by file path under torchrun: ``ddp_worker.py DATA SETTINGS OUT``.

It imports the installed package only: the rollouts come as shards in ``DATA``, the model as JSON ``SETTINGS``.
"""

import json
import sys
from pathlib import Path

import torch

from rss_world.data import load_shards
from rss_world.training.config import TrainConfig
from rss_world.training.loop import make_accelerator
from rss_world.training.world_model import train
from rss_world.world_model import build_world_model


def main(data: str, settings: str, out: str) -> None:
    torch.set_num_threads(1)
    acc = make_accelerator(cpu=True)
    torch.manual_seed(0)
    model = build_world_model(**json.loads(settings))  # same init on every rank
    init = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    cfg = TrainConfig(steps=3, batch=8, horizon=1, val_every=10_000, ckpt_every=10_000, gate_steps=0)
    train(model, load_shards(data), None, cfg, Path(out) / "run", accelerator=acc, progress=False)
    params = torch.cat([p.detach().flatten() for p in model.parameters()])
    torch.save({"init": init, "params": params, "world": acc.num_processes, "backend": str(acc.state.backend)},
               Path(out) / f"rank{acc.process_index}.pt")


if __name__ == "__main__":
    main(*sys.argv[1:])

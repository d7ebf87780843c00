"""The weights' moving average of base training: its warm-up and update, and that the checkpoint holds it."""

import pytest
import torch

from rss_world.t2i import BaseTrainConfig, TextToImage, load_base, train_base
from rss_world.t2i.train import Trainee


def test_moving_average_warms_up_and_follows(tiny_cfg):
    torch.manual_seed(0)
    trainee = Trainee(TextToImage(tiny_cfg), decay=0.9)
    w = trainee.model.transformer.proj_out.weight
    start = w.detach().clone()
    with torch.no_grad():
        w.add_(1.0)
    trainee.update_ema()  # first decay min(0.9, 1/10) = 0.1
    assert torch.allclose(trainee.ema.transformer.proj_out.weight, start + 0.9)
    for _ in range(200):
        trainee.update_ema()
    assert torch.allclose(trainee.ema.transformer.proj_out.weight, start + 1.0, atol=1e-5)
    assert not any(p.requires_grad for p in trainee.ema.parameters())
    assert trainee.final() is trainee.ema and Trainee(TextToImage(tiny_cfg), 0.0).ema is None


def test_checkpoint_holds_the_average(tiny_cfg, tmp_path):
    cfg = BaseTrainConfig(steps=3, batch_size=2, ckpt_every=0, log_every=0, lr=0.05, ema=0.99)
    averaged = train_base(tiny_cfg, cfg, tmp_path / "ema", progress=False)
    plain = train_base(tiny_cfg, BaseTrainConfig(**{**cfg.__dict__, "ema": 0.0}), tmp_path / "raw", progress=False)
    a, p = load_base(averaged["path"]).state_dict(), load_base(plain["path"]).state_dict()
    key = "transformer.proj_out.weight"
    assert torch.equal(a[key], averaged["model"].state_dict()[key]) and not torch.equal(a[key], p[key])
    with pytest.raises(ValueError, match="ema"):
        BaseTrainConfig(ema=1.0).validate()

"""The base model on a tiny config: a loss that falls, the sampler, training in the loop (encoder frozen after),
checkpoints that round-trip and refuse corrupt or mismatched files, and scoring."""

import json

import numpy as np
import pytest
import torch

from rss_world.t2i import BaseTrainConfig, TextToImage, evaluate, load_base, save_base, train_base
from rss_world.t2i.train import RenderedBatches
from rss_world.variants.sd3_base import sample


def test_training_steps_lower_the_loss(tiny_cfg):
    torch.manual_seed(0)
    model = TextToImage(tiny_cfg)
    x, texts = RenderedBatches("train", 32, np.random.default_rng(0), 0.0).draw(8)
    ids = model.tokens(texts)
    assert x.shape == (8, 3, 32, 32) and x.min() >= -1 and x.max() <= 1
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def fixed_loss():
        torch.manual_seed(1)  # the same noise and timesteps each time
        return model.loss(x, ids)

    before = fixed_loss().item()
    for _ in range(15):
        opt.zero_grad()
        fixed_loss().backward()
        opt.step()
    assert fixed_loss().item() < before


def test_sampler_shape_range_and_seed(tiny_cfg):
    torch.manual_seed(0)
    model = TextToImage(tiny_cfg)
    texts = ["a red circle", "three squares", "a circle above a triangle"]
    a = model.generate(texts, steps=3, guidance=2.0, seed=5, batch_size=2)
    assert a.shape == (3, 32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, model.generate(texts, steps=3, guidance=2.0, seed=5, batch_size=2))
    assert not np.array_equal(a, model.generate(texts, steps=3, guidance=2.0, seed=6, batch_size=2))
    embeds, pooled = model.encode(texts)
    x = sample(model.transformer, embeds, pooled, shift=1.0, prediction="velocity", steps=2)
    assert x.shape == (3, 3, 32, 32) and x.min() >= -1 and x.max() <= 1
    with pytest.raises(ValueError, match="null_embeds"):
        sample(model.transformer, embeds, pooled, shift=1.0, prediction="velocity", steps=2, guidance=3.0)
    with pytest.raises(ValueError, match="steps"):
        sample(model.transformer, embeds, pooled, shift=1.0, prediction="velocity", steps=0)


def test_train_base_freezes_the_text_encoder_and_round_trips(tiny_cfg, tmp_path):
    res = train_base(tiny_cfg, BaseTrainConfig(steps=3, batch_size=4, ckpt_every=0, log_every=0), tmp_path,
                     progress=False)
    model = res["model"]
    assert len(res["losses"]) == 3 and all(np.isfinite(res["losses"]))
    assert model.text_frozen and not any(p.requires_grad for p in model.text.parameters())
    assert all(p.requires_grad for p in model.transformer.parameters())  # the transformer may still fine-tune
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 3
    loaded = load_base(res["path"])
    assert loaded.text_frozen
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    texts = ["two circles", "a green triangle"]
    assert np.array_equal(model.generate(texts, steps=2, seed=1), loaded.generate(texts, steps=2, seed=1))
    model.train()  # a frozen encoder stays in eval mode when the rest trains
    assert not model.text.training and model.transformer.training


def test_checkpoint_refuses_corrupt_and_mismatched_files(tiny_cfg, tmp_path):
    torch.manual_seed(0)
    path = save_base(tmp_path / "ck", TextToImage(tiny_cfg))
    weights, config = path / "model.safetensors", path / "config.json"
    raw = bytearray(weights.read_bytes())
    raw[-5] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="corrupt"):
        load_base(path)
    save_base(path, TextToImage(tiny_cfg))
    cfg = json.loads(config.read_text())
    config.write_text(json.dumps({**cfg, "format": "something/0"}))
    with pytest.raises(ValueError, match="format"):
        load_base(path)
    cfg["model"]["transformer"]["num_layers"] = 2  # the weights hold one block
    config.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="does not fit"):
        load_base(path)
    cfg["model"]["text"]["out_dim"] = 17
    config.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="do not match"):
        load_base(path)
    config.write_text("{not json")
    with pytest.raises(ValueError, match="JSON"):
        load_base(path)
    with pytest.raises(ValueError, match="expected config.json"):
        load_base(tmp_path / "nowhere")


def test_bad_settings_and_nan_stop_training(tiny_cfg, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="lr"):
        train_base(tiny_cfg, BaseTrainConfig(steps=2, lr=0.0), tmp_path, progress=False)
    draw = RenderedBatches.draw
    monkeypatch.setattr(RenderedBatches, "draw", lambda self, n: (draw(self, n)[0] * float("nan"), draw(self, n)[1]))
    with pytest.raises(FloatingPointError, match="step 1"):
        train_base(tiny_cfg, BaseTrainConfig(steps=2, batch_size=2, ckpt_every=0), tmp_path, progress=False)


def test_evaluate_reports_counts_and_time(tiny_cfg):
    torch.manual_seed(0)
    out = evaluate(TextToImage(tiny_cfg), n_per_category=2, split="test", steps=2)
    assert out["images"] == 12 and set(out["n"].values()) == {2}
    assert out["seconds_per_image"] > 0 and 0 <= out["overall"] <= 1
    assert all(1 <= v <= 2 for v in out["distinct_prompts"].values())

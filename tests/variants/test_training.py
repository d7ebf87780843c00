"""The variants in the training loop: only adapters and gates move, NaN is caught, configs compose, the CLI."""

import dataclasses
import json
import math
import os
import socket
import subprocess
import sys

import pytest
import torch
from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler
from safetensors.torch import save_file

from rss_world.nn import RSRConfig
from rss_world.variants import attach_rsr, get_handle, load_adapters
from rss_world.variants import training as variant_training
from rss_world.variants.config import VariantConfig, VariantTrainConfig, compose_variant
from rss_world.variants.losses import dit_loss, sd3_loss
from rss_world.variants.tiny import tiny_dit, tiny_sd3
from rss_world.variants.training import as_settings, build_model, train_variant


def _cfg(kind: str, *overrides: str) -> VariantTrainConfig:
    return as_settings(compose_variant(kind, overrides))


@pytest.mark.parametrize("variant", ["dit", "sd3"])
def test_training_steps_change_only_adapter_and_gate(variant, tmp_path, monkeypatch):
    cfg = _cfg(variant, "steps=3", "batch_size=8", "lr=1e-2", f"output_dir={tmp_path}", "variant.rsr.num_experts=3")
    torch.manual_seed(0)
    base = build_model(cfg.variant)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    initial = {}  # the adapters as attached, before the first step

    def attach_and_record(model, layers, rsr):
        handle = attach_rsr(model, layers, rsr)
        adapter = {id(p) for p in handle.parameters()}
        initial.update({(i, n): p.detach().clone() for i, proc in handle.processors.items()
                        for n, p in proc.rsr.named_parameters() if id(p) in adapter})
        return handle

    monkeypatch.setattr(variant_training, "attach_rsr", attach_and_record)
    torch.manual_seed(0)
    result = train_variant(cfg, progress=False)
    model, handle = result["model"], result["handle"]
    trained = {id(p) for p in handle.parameters()}
    for name, p in model.named_parameters():
        if id(p) not in trained:
            assert torch.equal(p, before[name]), f"frozen parameter {name} changed"
    parts = {(i, n): p for i, proc in handle.processors.items() for n, p in proc.rsr.named_parameters()
             if id(p) in trained}
    assert parts.keys() == initial.keys() and {i for i, _ in parts} == set(cfg.variant.layers)
    for i in cfg.variant.layers:
        assert not initial[i, "lora_q.B"].any()  # zero-init: the adapter starts as the identity
        for n in ("lora_q.B", "lora_q.A", "lora_v.B", "gate.out.weight", "gate.cond.weight"):
            assert not torch.equal(parts[i, n], initial[i, n]), f"{n} of layer {i} did not move"
    assert len(result["losses"]) == 3
    summary = json.loads((tmp_path / "train_summary.json").read_text())
    assert summary["processes"] == 1 and summary["replicas_in_sync"]
    log = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]
    assert [r["loss"] for r in log] == [round(v, 6) for v in summary["losses"]]
    reloaded = build_model(cfg.variant)
    load_adapters(reloaded, tmp_path / "adapters")
    for a, b in zip(handle.parameters(), get_handle(reloaded).parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("kind", ["dit", "sd3"])
def test_one_optimizer_step_changes_only_adapter_params(kind):
    model = tiny_dit() if kind == "dit" else tiny_sd3()
    model.train()
    handle = attach_rsr(model, [0], RSRConfig(num_experts=2, steps=2, rank=4))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW(handle.parameters(), lr=1e-2, weight_decay=0.0)
    x0 = torch.randn(4, 4, 8, 8)
    if kind == "dit":
        loss = dit_loss(model, DDPMScheduler(), x0, torch.tensor([0, 1, 2, 3]))
    else:
        loss = sd3_loss(model, FlowMatchEulerDiscreteScheduler(), x0, torch.randn(4, 5, 16), torch.randn(4, 16))
    (loss + 0.01 * handle.balance_loss()).backward()
    opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    adapter = {n for n, p in model.named_parameters() if any(p is q for q in handle.parameters())}
    assert changed and changed <= adapter
    # LoRA B starts at zero, so the first step moves every B; A gets exactly zero gradient (the gate moves
    # only through the balance loss)
    assert {n for n in adapter if n.endswith(".B")} <= changed
    assert not any(n.endswith(".A") for n in changed)


def test_nan_loss_raises_clear_error(tmp_path):
    latents = torch.randn(8, 1, 16, 16)
    latents[0, 0, 0, 0] = float("nan")
    save_file({"latents": latents, "class_labels": torch.arange(8)}, str(tmp_path / "bad.safetensors"))
    cfg = _cfg("dit", "steps=2", "batch_size=8", "data.kind=tensors", f"data.path={tmp_path}/bad.safetensors",
               f"output_dir={tmp_path}/out")
    with pytest.raises(FloatingPointError, match="non-finite training loss nan at step 1"):
        train_variant(cfg, progress=False)


def test_local_pretrained_base_and_bad_config(tmp_path):
    torch.manual_seed(1)  # not the training seed: a base built afresh would have other weights
    pretrained = build_model(_cfg("sd3").variant)
    pretrained.save_pretrained(tmp_path / "sd3" / "transformer")
    cfg = _cfg("sd3", "steps=1", "batch_size=4", f"variant.pretrained={tmp_path}/sd3", "variant.subfolder=transformer",
               f"output_dir={tmp_path}/out")
    result = train_variant(cfg, progress=False)
    assert len(result["losses"]) == 1 and math.isfinite(result["losses"][0])
    adapter = {id(p) for p in result["handle"].parameters()}
    frozen = {n: p for n, p in result["model"].named_parameters() if id(p) not in adapter}
    assert frozen.keys() == dict(pretrained.named_parameters()).keys()  # the base's own names: the RSR is extra
    for n, p in pretrained.named_parameters():  # the base trained on is the local one, and stays frozen
        assert torch.equal(frozen[n], p), n
    with pytest.raises(ValueError, match="local directory"):
        train_variant(_cfg("dit", f"variant.pretrained={tmp_path}/missing"))
    with pytest.raises(ValueError, match="out of range"):
        train_variant(_cfg("dit", "variant.layers=[7]", f"output_dir={tmp_path}/o2"))
    with pytest.raises(ValueError, match="data.kind"):
        train_variant(_cfg("dit", "data.kind=images", f"output_dir={tmp_path}/o3"))


def test_presets_list_only_what_differs_from_the_defaults():
    dit = _cfg("dit")
    assert dit.output_dir == "outputs/variant_dit"  # resolved from ${variant.kind}
    assert dataclasses.replace(dit, output_dir=VariantTrainConfig.output_dir) == VariantTrainConfig()  # DiT: defaults
    sd3, default = _cfg("sd3").variant, VariantConfig()
    assert sd3.kind == "sd3" and sd3.scheduler.kwargs() == {"num_train_timesteps": 1000, "shift": 3.0}
    assert sd3.model.kwargs().keys() >= {"joint_attention_dim", "pooled_projection_dim"}
    assert "num_embeds_ada_norm" not in sd3.model.kwargs() and sd3.rsr == default.rsr


def test_cli_trains_a_variant_and_reports_bad_input_in_one_line(tmp_path, capsys, run_cli):
    assert run_cli("rss_world.train", ["--variant", "dit", "steps=1", "batch_size=4", f"output_dir={tmp_path}"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"adapters saved to {tmp_path}/adapters"
    summary = json.loads((tmp_path / "train_summary.json").read_text())
    assert summary["steps"] == 1 and len(summary["losses"]) == 1
    model = build_model(_cfg("dit").variant)
    handle = load_adapters(model, tmp_path / "adapters")  # what it saved loads back
    assert dataclasses.replace(handle.cfg, cond_dim=0) == _cfg("dit").variant.rsr  # cond_dim 0: the model's width
    assert handle.cfg.cond_dim == model.inner_dim
    for argv in (["--variant", "dit", "steps=abc"], ["--variant", "dit", "nope=1"], ["--variant", "dit", "--resume"],
                 ["--variant", "sdxl"]):
        assert run_cli("rss_world.train", argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("python -m rss_world.train: error: ") and err.count("\n") == 1, err


def free_port() -> int:
    """A local TCP port nobody listens on now (the launcher binds it right after)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_process_accelerate_launch(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(
        "import sys, torch\n"
        "torch.set_num_threads(1)\n"
        "from rss_world.variants.config import compose_variant\n"
        "from rss_world.variants.training import train_variant\n"
        "train_variant(compose_variant(sys.argv[1], sys.argv[2:]), progress=False)\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
           str(free_port()), str(script), "dit", "steps=2", "batch_size=8", f"output_dir={tmp_path}/out"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((tmp_path / "out" / "train_summary.json").read_text())
    assert summary["processes"] == 2 and summary["replicas_in_sync"]

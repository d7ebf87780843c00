"""RSR inside diffusers' DiT: base equality at B = 0, peft equality at E = T = 1, detach, adapter files, errors."""

import copy
import json

import pytest
import torch

from rss_world.nn import RSRConfig
from rss_world.variants import attach_rsr, detach_rsr, get_handle, load_adapters, recording, save_adapters
from rss_world.variants import dit as vdit
from rss_world.variants.tiny import dit_pipeline, tiny_dit, tiny_sd3


def _inputs(b: int = 3):
    g = torch.Generator().manual_seed(1)
    return dict(hidden_states=torch.randn(b, 4, 8, 8, generator=g), timestep=torch.tensor([3, 400, 999])[:b],
                class_labels=torch.tensor([1, 7, 1000])[:b])


def _run_pipe(model, guidance: float = 4.0):
    pipe = dit_pipeline(model)
    return pipe(class_labels=[3, 999], guidance_scale=guidance, num_inference_steps=3,
                generator=torch.Generator().manual_seed(0), output_type="pt").images


@pytest.mark.parametrize("e, t, training", [(2, 3, False), (5, 2, True)])
def test_b0_pipeline_output_identical_to_base(e, t, training):
    model = tiny_dit()
    want = _run_pipe(model)
    attach_rsr(model, [0, 1], RSRConfig(num_experts=e, steps=t, rank=4))
    model.train(training)  # Gumbel noise in training mode: still exact, whatever the gate picks
    got = _run_pipe(model)
    assert torch.equal(got, want)


def test_e1_t1_equals_peft_lora_on_the_same_projections(randomize):
    peft = pytest.importorskip("peft")
    model = tiny_dit()
    ref = copy.deepcopy(model)
    handle = vdit.attach_rsr(model, [1], RSRConfig(num_experts=1, steps=1, rank=4))
    randomize(handle)
    rsr = handle.processors[1].rsr
    targets = [f"transformer_blocks.1.attn1.{n}" for n in ("to_q", "to_k", "to_v")]
    ref = peft.inject_adapter_in_model(peft.LoraConfig(r=4, lora_alpha=4, target_modules=targets, lora_dropout=0.0),
                                       ref)
    attn = ref.transformer_blocks[1].attn1
    with torch.no_grad():
        for name in ("to_q", "to_k", "to_v"):
            ours = getattr(rsr, f"lora_{name[-1]}")
            getattr(attn, name).lora_A["default"].weight.copy_(ours.A[0])
            getattr(attn, name).lora_B["default"].weight.copy_(ours.B[0])
    base_out = tiny_dit()(**_inputs()).sample
    got, want = model(**_inputs()).sample, ref(**_inputs()).sample
    assert not torch.allclose(want, base_out, atol=1e-3)  # the LoRA really changes the model
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(_run_pipe(model), _run_pipe(ref), atol=1e-4, rtol=1e-4)


def test_detach_restores_the_base_exactly(randomize):
    model = tiny_dit()
    before_state = {k: v.clone() for k, v in model.state_dict().items()}
    before_procs = {n: m.processor for n, m in model.named_modules() if hasattr(m, "processor")}
    before_grad = {n: p.requires_grad for n, p in model.named_parameters()}
    out0 = model(**_inputs()).sample
    handle = attach_rsr(model, [0, 1], RSRConfig(num_experts=2, steps=2, rank=4))
    assert all(not p.requires_grad for n, p in model.named_parameters() if ".processor." not in n)
    randomize(handle)
    assert not torch.allclose(model(**_inputs()).sample, out0)
    detach_rsr(model)
    assert get_handle(model) is None
    assert set(model.state_dict()) == set(before_state)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before_state.items())
    after_procs = {n: m.processor for n, m in model.named_modules() if hasattr(m, "processor")}
    assert after_procs.keys() == before_procs.keys() and all(after_procs[k] is v for k, v in before_procs.items())
    assert {n: p.requires_grad for n, p in model.named_parameters()} == before_grad
    assert torch.equal(model(**_inputs()).sample, out0)
    assert all(len(m._forward_hooks) == 0 for m in model.modules())


def test_adapter_save_load_round_trip(tmp_path, randomize):
    model = tiny_dit()
    handle = attach_rsr(model, [1], RSRConfig(num_experts=3, steps=2, rank=4))
    randomize(handle)
    want = model(**_inputs()).sample
    save_adapters(model, tmp_path / "ad")
    files = sorted(p.name for p in (tmp_path / "ad").iterdir())
    assert files == ["rsr_adapters.safetensors", "rsr_config.json"]  # no temp files left behind
    config = json.loads((tmp_path / "ad" / "rsr_config.json").read_text())
    assert config["kind"] == "dit" and config["layers"] == [1] and config["rsr"]["num_experts"] == 3
    from safetensors.torch import load_file

    keys = load_file(str(tmp_path / "ad" / "rsr_adapters.safetensors")).keys()
    trainable = {id(p) for p in handle.parameters()}
    adapter = {f"layers.1.{n}" for n, p in handle.processors[1].rsr.named_parameters() if id(p) in trainable}
    assert set(keys) == adapter  # every adapter and gate tensor, and nothing of the frozen base
    assert {k.split(".")[2] for k in keys} == {"lora_q", "lora_k", "lora_v", "gate"}
    fresh = tiny_dit()
    loaded = load_adapters(fresh, tmp_path / "ad")
    assert loaded.cfg == handle.cfg
    assert torch.equal(fresh(**_inputs()).sample, want)
    again = tiny_dit()  # loading onto a model that already has the same config attached also works
    attach_rsr(again, [1], RSRConfig(num_experts=3, steps=2, rank=4, cond_dim=again.inner_dim))
    vdit.load_adapters(again, tmp_path / "ad")
    assert torch.equal(again(**_inputs()).sample, want)


def test_recording_gives_routes_and_states_per_forward():
    model = tiny_dit()
    attach_rsr(model, [1], RSRConfig(num_experts=3, steps=2, rank=4))
    with recording(model, states=True) as hist:
        _run_pipe(model, guidance=1.0)
    assert len(hist[1]) == 3  # one snapshot per diffusion step
    snap = hist[1][0]
    assert snap.route.indices().shape == (2, 2, 16) and len(snap.states) == 2
    assert snap.route.usage(3).shape == (2, 3)
    assert get_handle(model).processors[1].history is None  # recording stops with the context


@pytest.mark.parametrize("layers, match", [
    ([2], "out of range"), ([-1], "out of range"), ([], "at least one"), ([0, 0], "distinct"),
    (["1"], "integers"), (1, "list of block indices"),
])
def test_bad_layer_indices_raise(layers, match):
    model = tiny_dit()
    with pytest.raises(ValueError, match=match):
        attach_rsr(model, layers, RSRConfig())
    assert get_handle(model) is None  # nothing changed


def test_wrong_model_type_and_config_errors(tmp_path):
    with pytest.raises(ValueError, match="expects a diffusers DiTTransformer2DModel, got SD3Transformer2DModel"):
        vdit.attach_rsr(tiny_sd3(), [0], RSRConfig())
    with pytest.raises(ValueError, match="pass pipe.transformer"):
        attach_rsr(dit_pipeline(tiny_dit()), [0], RSRConfig())
    with pytest.raises(ValueError, match="support DiTTransformer2DModel and SD3Transformer2DModel"):
        attach_rsr(torch.nn.Linear(2, 2), [0], RSRConfig())
    model = tiny_dit()
    with pytest.raises(ValueError, match="cond_dim"):
        attach_rsr(model, [0], RSRConfig(cond_dim=3))
    with pytest.raises(ValueError, match="no RSR is attached"):
        detach_rsr(model)
    attach_rsr(model, [0], RSRConfig(num_experts=2))
    with pytest.raises(ValueError, match="already attached"):
        attach_rsr(model, [1], RSRConfig())
    save_adapters(model, tmp_path / "dit")
    other = tiny_dit()
    attach_rsr(other, [0], RSRConfig(num_experts=3))
    with pytest.raises(ValueError, match="does not match the attached one"):
        load_adapters(other, tmp_path / "dit")
    sd3 = tiny_sd3()
    with pytest.raises(ValueError, match="saved for a DiTTransformer2DModel"):
        load_adapters(sd3, tmp_path / "dit")
    assert get_handle(sd3) is None
    bigger = tiny_dit(num_layers=3)
    with pytest.raises(ValueError, match="num_layers=2"):
        load_adapters(bigger, tmp_path / "dit")
    with pytest.raises(ValueError, match="not an RSR adapter directory"):
        load_adapters(tiny_dit(), tmp_path)

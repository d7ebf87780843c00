"""RSR inside diffusers' SD3 (joint attention): base equality, peft equality, text stream, detach, files, errors."""

import copy

import pytest
import torch

from rss_world.nn import RSRConfig
from rss_world.variants import attach_rsr, detach_rsr, get_handle, load_adapters, save_adapters
from rss_world.variants import sd3 as vsd3
from rss_world.variants.tiny import TEXT_DIM, sd3_pipeline, tiny_dit, tiny_sd3


def _inputs(b: int = 2):
    g = torch.Generator().manual_seed(1)
    return dict(hidden_states=torch.randn(b, 4, 8, 8, generator=g),
                encoder_hidden_states=torch.randn(b, 5, TEXT_DIM, generator=g),
                pooled_projections=torch.randn(b, TEXT_DIM, generator=g), timestep=torch.tensor([3.0, 700.0])[:b])


def _run_pipe(model, guidance: float = 3.0):
    g = torch.Generator().manual_seed(2)
    pe, pooled = torch.randn(2, 5, TEXT_DIM, generator=g), torch.randn(2, TEXT_DIM, generator=g)
    return sd3_pipeline(model)(
        prompt_embeds=pe, pooled_prompt_embeds=pooled, negative_prompt_embeds=torch.zeros_like(pe),
        negative_pooled_prompt_embeds=torch.zeros_like(pooled), guidance_scale=guidance, num_inference_steps=3,
        height=16, width=16, generator=torch.Generator().manual_seed(0), output_type="pt",
    ).images


@pytest.mark.parametrize("qk_norm, training", [(None, False), ("rms_norm", True)])
def test_b0_pipeline_output_identical_to_base(qk_norm, training):
    model = tiny_sd3(qk_norm=qk_norm)
    want = _run_pipe(model)
    attach_rsr(model, [0, 1], RSRConfig(num_experts=3, steps=3, rank=4))  # block 1 is context_pre_only
    model.train(training)
    assert torch.equal(_run_pipe(model), want)


def test_e1_t1_equals_peft_lora_on_vision_projections(randomize):
    peft = pytest.importorskip("peft")
    model = tiny_sd3()
    ref = copy.deepcopy(model)
    handle = vsd3.attach_rsr(model, [0], RSRConfig(num_experts=1, steps=1, rank=4))
    randomize(handle)
    rsr = handle.processors[0].rsr
    targets = [f"transformer_blocks.0.attn.{n}" for n in ("to_q", "to_k", "to_v")]  # vision branch only
    ref = peft.inject_adapter_in_model(peft.LoraConfig(r=4, lora_alpha=4, target_modules=targets, lora_dropout=0.0),
                                       ref)
    attn = ref.transformer_blocks[0].attn
    with torch.no_grad():
        for name in ("to_q", "to_k", "to_v"):
            ours = getattr(rsr, f"lora_{name[-1]}")
            getattr(attn, name).lora_A["default"].weight.copy_(ours.A[0])
            getattr(attn, name).lora_B["default"].weight.copy_(ours.B[0])
    got, want = model(**_inputs()).sample, ref(**_inputs()).sample
    assert not torch.allclose(want, tiny_sd3()(**_inputs()).sample, atol=1e-3)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(_run_pipe(model), _run_pipe(ref), atol=1e-4, rtol=1e-4)


def test_text_stream_rejoins_joint_attention_at_every_step(randomize):
    model = tiny_sd3()
    block = model.transformer_blocks[0]
    handle = attach_rsr(model, [0], RSRConfig(num_experts=2, steps=3, rank=4))
    randomize(handle)
    x, ctx = torch.randn(2, 16, 16), torch.randn(2, 5, 16)
    handle.processors[0].set_condition(torch.randn(2, 16))
    out, text = block.attn(hidden_states=x, encoder_hidden_states=ctx)
    assert out.shape == (2, 16, 16) and text.shape == (2, 5, 16)
    res = handle.processors[0].last
    assert len(res.states) == 3
    assert torch.equal(text, block.attn.to_add_out(res.context))  # final-step text rows, then the text out-proj
    detach_rsr(model)
    _, base_text = block.attn(hidden_states=x, encoder_hidden_states=ctx)
    assert not torch.allclose(text, base_text)  # text tokens see the refined vision keys and values


def test_detach_restores_base_and_round_trip(tmp_path, randomize):
    model = tiny_sd3()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    procs = [b.attn.processor for b in model.transformer_blocks]
    out0 = model(**_inputs()).sample
    handle = attach_rsr(model, [1], RSRConfig(num_experts=2, steps=2, rank=4))
    randomize(handle)
    want = model(**_inputs()).sample
    save_adapters(model, tmp_path / "ad")
    detach_rsr(model)
    assert [b.attn.processor for b in model.transformer_blocks] == procs
    assert set(model.state_dict()) == set(before)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    assert all(p.requires_grad for p in model.parameters())
    assert torch.equal(model(**_inputs()).sample, out0)
    load_adapters(model, tmp_path / "ad")
    assert torch.equal(model(**_inputs()).sample, want)


def test_errors():
    with pytest.raises(ValueError, match="expects a diffusers SD3Transformer2DModel, got DiTTransformer2DModel"):
        vsd3.attach_rsr(tiny_dit(), [0], RSRConfig())
    model = tiny_sd3()
    with pytest.raises(ValueError, match="out of range"):
        attach_rsr(model, [0, 5], RSRConfig())
    assert get_handle(model) is None
    attach_rsr(model, [0], RSRConfig())
    with pytest.raises(RuntimeError, match="no condition embedding"):
        model.transformer_blocks[0].attn(hidden_states=torch.randn(1, 16, 16), encoder_hidden_states=None)

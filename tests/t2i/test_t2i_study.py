"""The compositional SD3 study: rows and matched-parameter arithmetic, fine-tuning, paired bootstrap, one tiny run."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rss_world.compbench import CATEGORIES
from rss_world.t2i import TextToImage, save_base
from rss_world.t2i.finetune import FinetuneConfig, Variant, count_trainable, finetune, finetune_set
from rss_world.t2i.study import BASE, FULL, StudySettings, bootstrap_rates, build_rows, rates, run_study
from rss_world.variants import get_handle


def three_block_base(cfg) -> TextToImage:
    torch.manual_seed(0)
    model = TextToImage(cfg)
    model.freeze_text()
    return model.eval()


def test_rows_and_matched_parameter_arithmetic(three_block_cfg):
    model = three_block_base(three_block_cfg)
    s = StudySettings(rank=4, middle=(1,), several=(0, 1))
    rows, params = build_rows(s, model.transformer)
    names = [v.name for v in rows]
    assert names[:3] == [BASE, FULL, "LoRA r=4 (rank-matched)"]
    width = 16  # 2 heads x 8
    lora_per_rank = 3 * 2 * width  # q, k, v: A (r x D) and B (D x r), D = inner = 16
    assert params["LoRA r=4 (rank-matched)"] == 4 * lora_per_rank
    assert params["RSR E=1 T=5 (no modulation)"] == params["LoRA r=4 (rank-matched)"]  # E = 1 builds no gate
    for e, rsr_row in ((2, "RSR E=2 T=2"), (5, "RSR E=5 T=1 (no recursion)")):
        rsr = params[rsr_row]
        lora = next(n for n in names if n.endswith(f"(params of RSR E={e})"))
        r = int(lora.split("r=")[1].split(" ")[0])
        assert params[lora] == r * lora_per_rank
        assert abs(params[lora] - rsr) <= lora_per_rank / 2  # the nearest rank
        assert params[f"RSR E={e} T=5"] == rsr  # steps add no parameters
    assert params[FULL] == sum(p.numel() for p in model.transformer.parameters())
    several = [v for v in rows if v.layers == (0, 1)]
    assert len(several) == 2 and params[several[0].name] == 2 * params["LoRA r=4 (rank-matched)"]
    reading = next(v for v in rows if v.state_update == "attention")
    assert params[reading.name] == params["RSR E=5 T=5"] and reading.match == "RSR E=5 T=5"
    assert all(v.match in names for v in rows if v.match)
    with pytest.raises(ValueError, match="search seed"):
        build_rows(StudySettings(seeds=(0, 100)), model.transformer)


def test_finetune_trains_only_the_variant_and_stops_on_nan(tmp_path, three_block_cfg):
    model = three_block_base(three_block_cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = FinetuneConfig(steps=3, batch_size=4, data_size=8)
    data = finetune_set(cfg, 32)
    assert data[0].shape == (8, 32, 32, 3) and len(data[1]) == 8
    assert finetune_set(cfg, 32)[1] == data[1]  # the fixed set is the same every time
    variant = Variant("rsr", "rsr", 2, 2, 4, (1,))
    res = finetune(model, variant, cfg, lr=1e-2, seed=0, out=tmp_path / "a", data=data)
    assert len(res["losses"]) == 3
    assert res["params"] == count_trainable(three_block_base(three_block_cfg).transformer, variant)
    handle = get_handle(model.transformer)
    changed = {k for k, v in model.state_dict().items() if k in before and not torch.equal(v, before[k])}
    assert not changed  # the base weights are untouched; only the adapters (new keys) trained
    assert any(p.abs().sum() > 0 for p in handle.parameters())
    bad = three_block_base(three_block_cfg)
    with torch.no_grad():
        bad.transformer.proj_out.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="step 1"):
        finetune(bad, Variant(FULL, "full"), cfg, lr=1e-3, seed=0, out=tmp_path / "b", data=data)


def test_paired_bootstrap():
    rng = np.random.default_rng(0)
    category = np.tile(np.repeat(np.array(CATEGORIES), 10), (3, 1))  # (3 seeds, 60 images)
    a = rng.random(category.shape) < 0.5
    b = a.copy()
    b[:, :10] = True  # b is a with every single-object image right
    reps = bootstrap_rates({"a": a, "b": b}, category, n_boot=200)
    assert reps["a"].shape == (200, 7)
    diff = reps["b"] - reps["a"]
    assert (diff[:, 1:6] == 0).all()  # paired: identical categories give identical replicates
    assert (diff[:, 0] >= 0).all() and diff[:, 0].mean() > 0
    r = rates(a, category)
    np.testing.assert_allclose(np.mean(reps["a"][:, 6]), r["overall"], atol=0.05)
    with pytest.raises(ValueError, match="shaped like"):
        bootstrap_rates({"a": a[:, :5]}, category, n_boot=2)


def test_tiny_study_runs_end_to_end(tmp_path, three_block_cfg):
    base = three_block_base(three_block_cfg)
    save_base(tmp_path / "base", base, {"sampling": {"steps": 2, "guidance": 2.0}})
    s = StudySettings(rank=2, middle=(1,), several=(0, 1), grid=((2, 2), (5, 5)), matched_experts=(5,),
                      lrs=(1e-3,), lrs_full=(1e-4,), seeds=(0, 1), n_val=1, n_test=2, latency_images=2, n_boot=20,
                      finetune=FinetuneConfig(steps=1, batch_size=2, data_size=4))
    res = run_study(s, tmp_path / "base", tmp_path / "work", workers=1, log=lambda _: None)
    names = [v.name for v in res["rows"]]
    assert res["matched"] is not None and res["matched"]["name"] in res["verdicts"]
    assert set(res["verdicts"]) == {*names, res["matched"]["name"]}
    assert all(v.shape == (2, 12) for v in res["verdicts"].values())  # 2 seeds x 6 categories x 2 images
    assert set(res["lr"]) == set(names) - {BASE} and res["steps"] == 2 and res["guidance"] == 2.0
    assert all(res["latency"][n] > 0 for n in names)


ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_study_command_quick_two_processes(tmp_path, three_block_cfg):
    """The one command, on a tiny base, with two spawned worker processes; bad input exits 2 and writes nothing."""
    save_base(tmp_path / "base", three_block_base(three_block_cfg), {"sampling": {"steps": 2, "guidance": 2.0}})
    out = tmp_path / "table.md"
    cmd = [sys.executable, str(ROOT / "experiments" / "sd3_study.py"), "--quick", "--base", str(tmp_path / "base"),
           "--work", str(tmp_path / "work"), "--out", str(out)]
    proc = subprocess.run(cmd + ["--workers", "2"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = out.read_text()
    assert "| RSR E=5 T=5 |" in text and "2 worker process(es)" in text and "sampler steps (latency of" in text
    assert (tmp_path / "work" / "verdicts.npz").is_file()


def test_study_command_bad_base_exits_2_and_writes_nothing(tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("sd3_study", ROOT / "experiments" / "sd3_study.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    with pytest.raises(SystemExit) as err:
        script.main(["--quick", "--base", str(tmp_path / "nowhere"), "--work", str(tmp_path / "w"), "--out",
                     str(tmp_path / "bad.md")])
    assert err.value.code == 2 and "not a base-model checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "bad.md").exists()
    with pytest.raises(SystemExit) as err:
        script.parse(["--workers", "0"])
    assert err.value.code == 2

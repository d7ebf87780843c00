"""A fair small DiT study: base, continued pre-training, matched LoRA and RSR at equal fine-tuning steps.

Data: scikit-learn's ``load_digits`` (1,797 labelled 8x8 digits), upsampled to 16x16, pixel space, split 75/25
(stratified). A tiny class-conditioned ``DiTTransformer2DModel`` is pre-trained on the train split, saved with
``save_pretrained`` and reloaded with ``from_pretrained`` for every run. Then, per seed, at equal steps, batch and
data:

* **continue pre-training**: every base weight trains (the control for an under-trained base);
* **LoRA** (RSR at E=1, T=1: no gate is built) at the RSR rank, and at the ranks whose trainable-parameter count
  matches RSR with E=2 and E=5 (:func:`matched_rank`);
* **RSR** without modulation (E=1, T>1), without recursion (E>1, T=1), and with both.

The balance loss is used for E > 3 only, as in the paper (``rss_world.variants.losses.balance_weight``).

Evaluation: a small CNN classifier trained on the train split reads the samples. Conditional accuracy is how often
it reads the requested class. The Fréchet distance is computed on its penultimate features (128 wide, minus the
ones dead on the whole train split) against the held-out test split. The noise floor is the same statistic for
class-balanced sets of real train images of the same size. Intervals are two-level bootstrap 95% (seeds, then
samples within each class; rows paired by seed; reference fixed), see ``rss_world.variants.study.bootstrap``.

Run: ``python experiments/replicate_dit.py`` (writes ``experiments/results/dit_replication.md`` and PNGs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, DiTTransformer2DModel
from sklearn.model_selection import train_test_split
from torch import Tensor, nn

from rss_world import plots
from rss_world.nn import RSRConfig
from rss_world.variants import dit, get_handle
from rss_world.variants.losses import balance_weight, digits_images, dit_loss
from rss_world.variants.study import adapter_params, balanced_subset, bootstrap, frechet, interval, matched_rank

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
NUM_CLASSES = 10


@dataclass(frozen=True)
class Settings:
    """All knobs of the study (the defaults are what the committed results used)."""

    size: int = 16
    pretrain_steps: int = 2000
    finetune_steps: int = 200
    batch: int = 64
    pretrain_lr: float = 1e-3  # also the continued pre-training's
    finetune_lr: float = 2e-3
    rank: int = 8
    layers: tuple[int, ...] = (2,)
    grid: tuple[tuple[int, int], ...] = ((1, 5), (5, 1), (2, 2), (5, 5))  # RSR (E, T) rows
    matched_experts: tuple[int, ...] = (2, 5)  # a parameter-matched LoRA row for each
    balance_weight: float = 0.01
    samples_per_class: int = 50
    sample_steps: int = 20
    seeds: tuple[int, ...] = (0, 1, 2)
    clf_steps: int = 800
    clf_width: int = 128
    n_boot: int = 200
    floor_draws: int = 30
    threads: int = 1  # 2 threads thrash on the shared 2-core CPU


QUICK = Settings(pretrain_steps=20, finetune_steps=4, samples_per_class=3, sample_steps=2, seeds=(0,), clf_steps=20,
                 n_boot=10, floor_draws=4)


@dataclass(frozen=True)
class Variant:
    """One table row: ``kind`` is ``base`` (no training), ``continue`` (all weights) or ``rsr`` (adapters)."""

    name: str
    kind: str
    experts: int = 1
    steps: int = 1
    rank: int = 8
    match: str | None = None  # the row the Δ column compares with


def build_variants(s: Settings, base: nn.Module) -> tuple[list[Variant], dict[str, int]]:
    """The rows of the study and their trainable-parameter counts."""
    if s.rank < 1 or not s.grid or any(e < 1 or t < 1 for e, t in s.grid):
        raise ValueError(f"need rank >= 1 and a non-empty grid of (E, T) >= 1, got rank {s.rank}, grid {s.grid}")
    layers = list(s.layers)
    count = {"base": 0, "continue pre-training (all weights)": sum(p.numel() for p in base.parameters())}
    rows = [Variant("base", "base"), Variant("continue pre-training (all weights)", "continue")]
    lora = f"LoRA r={s.rank} (rank-matched)"
    rows.append(Variant(lora, "rsr", rank=s.rank))
    per_rank = adapter_params(base, layers, RSRConfig(num_experts=1, steps=1, rank=1))
    by_experts = {1: lora}
    for e in s.matched_experts:
        target = adapter_params(base, layers, RSRConfig(num_experts=e, steps=1, rank=s.rank))
        r = matched_rank(target, per_rank)
        by_experts[e] = f"LoRA r={r} (params of RSR E={e})"
        rows.append(Variant(by_experts[e], "rsr", rank=r, match=lora))
    for e, t in s.grid:
        note = " (no modulation)" if e == 1 else " (no recursion)" if t == 1 else ""
        rows.append(Variant(f"RSR E={e} T={t}{note}", "rsr", e, t, s.rank, match=by_experts.get(e)))
    for v in rows[2:]:
        count[v.name] = adapter_params(base, layers, RSRConfig(num_experts=v.experts, steps=v.steps, rank=v.rank))
    return rows, count


class DigitNet(nn.Module):
    """Small CNN: two conv blocks, a ``width``-d feature layer, 10 logits."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.feat = nn.Linear(32 * 4 * 4, width)
        self.head = nn.Linear(width, NUM_CLASSES)

    def features(self, x: Tensor) -> Tensor:
        return F.relu(self.feat(self.conv(x).flatten(1)))  # (B, width)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))  # (B, 10)


def train_classifier(x: Tensor, y: Tensor, steps: int, width: int) -> DigitNet:
    torch.manual_seed(0)
    net = DigitNet(width)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    for _ in range(steps):
        i = torch.randint(0, len(y), (64,))
        loss = F.cross_entropy(net(x[i] + 0.1 * torch.randn_like(x[i])), y[i])  # noise: robust to imperfect samples
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def tiny_dit(size: int) -> DiTTransformer2DModel:
    return DiTTransformer2DModel(num_attention_heads=4, attention_head_dim=16, in_channels=1, out_channels=1,
                                 num_layers=4, sample_size=size, patch_size=2, num_embeds_ada_norm=NUM_CLASSES)


def fit(model: nn.Module, params: list[nn.Parameter], sched: DDPMScheduler, x: Tensor, y: Tensor, steps: int,
        lr: float, batch: int, seed: int, balance: float = 0.0) -> list[float]:
    """AdamW on ``params`` with the DDPM loss (+ ``balance`` x the balance loss); returns the DDPM losses."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    model.train()
    handle = get_handle(model)
    losses = []
    for _ in range(steps):
        i = torch.randint(0, len(y), (batch,), generator=g)
        ddpm = dit_loss(model, sched, x[i], y[i], generator=g)
        loss = ddpm + balance * handle.balance_loss() if handle is not None and balance > 0 else ddpm
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {loss.item()}")
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(ddpm.item())
    return losses


@torch.no_grad()
def sample(model: nn.Module, sched: DDPMScheduler, labels: Tensor, steps: int, size: int, seed: int) -> Tensor:
    """DDIM (eta 0, no guidance) samples ``(B, 1, S, S)`` in ``[-1, 1]`` for ``labels``."""
    model.eval()
    ddim = DDIMScheduler.from_config(sched.config)
    ddim.set_timesteps(steps)
    g = torch.Generator().manual_seed(10_000 + seed)
    x = torch.randn(len(labels), 1, size, size, generator=g)  # (B, 1, S, S)
    for t in ddim.timesteps:
        eps = model(x, timestep=t.expand(len(labels)), class_labels=labels).sample
        x = ddim.step(eps, t, x).prev_sample
    return x.clamp(-1, 1)


def run_variant(v: Variant, s: Settings, base_dir: Path, sched: DDPMScheduler, data: tuple[Tensor, Tensor],
                seed: int) -> tuple[nn.Module, dict]:
    """Fine-tune one row for one seed from the saved base; returns the model and its training record."""
    model = DiTTransformer2DModel.from_pretrained(base_dir)
    torch.manual_seed(seed)
    t0, losses = time.time(), []
    if v.kind == "continue":
        losses = fit(model, list(model.parameters()), sched, *data, s.finetune_steps, s.pretrain_lr, s.batch,
                     seed=100 + seed)
    elif v.kind == "rsr":
        handle = dit.attach_rsr(model, list(s.layers), RSRConfig(num_experts=v.experts, steps=v.steps, rank=v.rank))
        losses = fit(model, handle.parameters(), sched, *data, s.finetune_steps, s.finetune_lr, s.batch,
                     seed=100 + seed, balance=balance_weight(s.balance_weight, v.experts))
    elif v.kind != "base":
        raise ValueError(f"unknown variant kind {v.kind!r}")
    return model, {"loss": float(np.mean(losses[-50:])) if losses else None, "train_s": time.time() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny budget smoke run (not for the results file)")
    ap.add_argument("--out", default=str(RESULTS / "dit_replication.md"))
    ap.add_argument("--work", default="outputs/replicate_dit")
    ap.add_argument("--reuse-base", action="store_true", help="load WORK/base from an earlier run of these settings")
    args = ap.parse_args()
    s = QUICK if args.quick else Settings()
    torch.set_num_threads(s.threads)
    t_start, load0 = time.time(), os.getloadavg()
    out, work = Path(args.out), Path(args.work)
    out.parent.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)

    x, y = digits_images(s.size)
    tr, te = train_test_split(np.arange(len(y)), test_size=0.25, stratify=y.numpy(), random_state=0)
    x_tr, y_tr, x_te, y_te = x[tr], y[tr], x[te], y[te]
    clf = train_classifier(x_tr, y_tr, s.clf_steps, s.clf_width)
    with torch.no_grad():
        clf_acc = (clf(x_te).argmax(1) == y_te).float().mean().item()
        alive = (clf.features(x_tr) > 0).any(0)  # features that fire on some train image
        feats = lambda imgs: clf.features(imgs)[:, alive].numpy()  # noqa: E731
        ref, real_tr = feats(x_te), feats(x_tr)
        real_ok = (clf(x_tr).argmax(1) == y_tr).numpy()
    n_feat = int(alive.sum())
    print(f"classifier test accuracy {clf_acc:.3f}; {n_feat}/{s.clf_width} features alive", flush=True)

    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    recipe = {k: getattr(s, k) for k in ("size", "pretrain_steps", "batch", "pretrain_lr")}
    stamp = work / "base" / "pretrain.json"
    if args.reuse_base:
        if not stamp.exists() or json.loads(stamp.read_text())["recipe"] != recipe:
            raise ValueError(f"--reuse-base: {stamp} is missing or records another recipe than {recipe}")
        base, pretrain_s = DiTTransformer2DModel.from_pretrained(work / "base"), None
    else:
        torch.manual_seed(0)
        base, t0 = tiny_dit(s.size), time.time()
        fit(base, list(base.parameters()), sched, x_tr, y_tr, s.pretrain_steps, s.pretrain_lr, s.batch, seed=0)
        base.save_pretrained(work / "base")
        pretrain_s = time.time() - t0
        stamp.write_text(json.dumps({"recipe": recipe, "seconds": pretrain_s}))
    print(f"base ready ({'reused' if pretrain_s is None else f'pre-trained in {pretrain_s:.0f}s'})", flush=True)

    variants, params = build_variants(s, base)
    labels = torch.arange(NUM_CLASSES).repeat_interleave(s.samples_per_class)
    rng = np.random.default_rng(1)
    floor_name = f"noise floor: real train images ({len(labels)} per set)"
    sets = {floor_name: [(real_tr[i], real_ok[i], y_tr.numpy()[i]) for i in
                         (balanced_subset(y_tr.numpy(), s.samples_per_class, NUM_CLASSES, rng) for _ in s.seeds)]}
    one_set = [frechet(real_tr[balanced_subset(y_tr.numpy(), s.samples_per_class, NUM_CLASSES, rng)], ref)
               for _ in range(s.floor_draws)]
    rows: dict[str, dict] = {}
    for v in variants:
        rows[v.name] = {"params": params[v.name], "match": v.match, "loss": [], "train_s": [], "sample_s": []}
        sets[v.name] = []
        for seed in s.seeds:
            model, rec = run_variant(v, s, work / "base", sched, (x_tr, y_tr), seed)
            t0 = time.time()
            imgs = sample(model, sched, labels, s.sample_steps, s.size, seed)
            rows[v.name]["sample_s"].append(time.time() - t0)
            rows[v.name]["train_s"].append(rec["train_s"])
            if rec["loss"] is not None:
                rows[v.name]["loss"].append(rec["loss"])
            with torch.no_grad():
                sets[v.name].append((feats(imgs), (clf(imgs).argmax(1) == labels).numpy(), labels.numpy()))
            if v.kind == "rsr" and (v.experts, v.steps) == (5, 5) and seed == s.seeds[0]:
                make_plots(model, sched, s, seed, out.parent)
            print(f"{v.name:34s} seed {seed}: acc {sets[v.name][-1][1].mean():.3f}  "
                  f"FD {frechet(sets[v.name][-1][0], ref):.2f}  ({time.time() - t_start:.0f}s)", flush=True)
    boot = bootstrap(sets, ref, s.n_boot)
    ref_boot = bootstrap({floor_name: sets[floor_name]}, ref, s.n_boot, ref_labels=y_te.numpy())[floor_name]["fd"]
    np.savez_compressed(work / "features.npz", ref=ref, **{f"{i}_{j}_{part}": arr for i, k in enumerate(sets)
                        for j, trio in enumerate(sets[k]) for part, arr in zip("fcl", trio, strict=True)})
    rows = {floor_name: {"params": None, "match": None, "loss": [], "train_s": [], "sample_s": []}, **rows}
    for k, r in rows.items():
        r["fd_seeds"] = [frechet(f, ref) for f, _, _ in sets[k]]
        r["fd"], r["acc"] = float(np.mean(r["fd_seeds"])), float(np.mean([c.mean() for _, c, _ in sets[k]]))
        r["fd_ci"], r["acc_ci"] = interval(r["fd"], boot[k]["fd"]), np.percentile(boot[k]["acc"], [2.5, 97.5]).tolist()
        if r["match"]:
            r["delta"] = r["fd"] - rows[r["match"]]["fd"]
            r["delta_ci"] = interval(r["delta"], boot[k]["fd"] - boot[r["match"]]["fd"])
    wall = time.time() - t_start
    info = {"settings": asdict(s), "clf_acc": clf_acc, "features": n_feat, "pretrain_s": pretrain_s, "wall_s": wall,
            "load": [load0, os.getloadavg()], "one_set_floor": one_set, "quick": args.quick, "row_order": list(sets),
            "floor_ci_ref_resampled": interval(rows[floor_name]["fd"], ref_boot)}
    (work / "rows.json").write_text(json.dumps({"info": info, "rows": rows}, indent=1))
    write_report(out, rows, s, info)
    print(f"done in {wall / 60:.1f} min -> {out}")


def make_plots(model: nn.Module, sched: DDPMScheduler, s: Settings, seed: int, folder: Path) -> None:
    """Routing plots of one RSR model: use per latent step, per diffusion timestep, PCA trajectories."""
    labels = torch.arange(NUM_CLASSES).repeat_interleave(4)
    steps = max(s.sample_steps, 3)
    with dit.recording(model, states=True) as hist:
        sample(model, sched, labels, steps, s.size, seed)
    layer = s.layers[0]
    snaps = hist[layer]  # one per diffusion step, high noise first
    e = model.transformer_blocks[layer].attn1.processor.rsr.cfg.num_experts
    per_t = torch.stack([sn.route.usage(e) for sn in snaps])  # (S, T, E)
    ddim = DDIMScheduler.from_config(sched.config)
    ddim.set_timesteps(steps)
    plots.plot_usage_over_time(per_t, folder / "dit_usage_per_timestep.png", x_values=ddim.timesteps.tolist(),
                               title=f"RSR E={e}: expert use per diffusion timestep (block {layer})")
    plots.plot_expert_usage(per_t.mean(0), folder / "dit_usage_per_latent_step.png",
                            title=f"RSR E={e}: expert use per latent step (block {layer})")
    picks = [0, len(snaps) // 2, len(snaps) - 1]  # high, middle and low noise
    states = [torch.cat([snaps[k].states[t] for k in picks]) for t in range(len(snaps[0].states))]
    tlab = np.repeat([int(ddim.timesteps[k]) for k in picks], len(labels))
    plots.plot_latent_pca(states, folder / "dit_latent_pca_by_timestep.png", labels=[f"t={v}" for v in tlab],
                          title="Latent steps, coloured by diffusion timestep")
    plots.plot_latent_pca(snaps[-1].states, folder / "dit_latent_pca_by_class.png", labels=labels,
                          title=f"Latent steps at t={int(ddim.timesteps[-1])}, by class")


def _ci(v: float, ci: list[float], fmt: str) -> str:
    return f"{v:{fmt}} [{ci[0]:{fmt}}, {ci[1]:{fmt}}]"


def write_report(path: Path, rows: dict, s: Settings, info: dict) -> None:
    cpu = "unknown CPU"
    if Path("/proc/cpuinfo").exists():
        names = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                 if ln.startswith("model name")]
        cpu = f"{names[0]} ({len(names)} logical cores visible)" if names else cpu
    n = s.samples_per_class * NUM_CLASSES
    one = np.asarray(info["one_set_floor"])
    load = ", ".join(f"{a[0]:.1f}" for a in info["load"])
    pre = ("base reused from an earlier run of the same recipe (--reuse-base)" if info["pretrain_s"] is None
           else f"base pre-training {info['pretrain_s'] / 60:.1f} min")
    fl = info["floor_ci_ref_resampled"]
    lines = [
        "# DiT study on scikit-learn digits: base, continued pre-training, matched LoRA and RSR at equal steps",
        "",
        f"Command: `python experiments/replicate_dit.py{' --reuse-base' * (info['pretrain_s'] is None)}`"
        + ("  (--quick smoke run, NOT a result)" if info["quick"] else ""),
        f"Machine: {cpu}, {platform.system()} {platform.machine()}, torch {torch.__version__}, torch threads "
        f"{s.threads}, shared with other jobs (1-min load average {load} at start, end). Wall time: "
        f"{info['wall_s'] / 60:.1f} min ({pre}).",
        "",
        "| variant | trainable params | cond. accuracy ↑ | Fréchet dist. ↓ | Δ FD vs matched LoRA | "
        "train loss (DDPM, last 50) | fine-tune + sample s |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, r in rows.items():
        delta = f"{_ci(r['delta'], r['delta_ci'], '+.2f')} vs {r['match'].split(' (')[0]}" if r["match"] else "–"
        loss = f"{np.mean(r['loss']):.4f} ± {np.std(r['loss'], ddof=1) if len(r['loss']) > 1 else 0:.4f}" \
            if r["loss"] else "–"
        secs = f"{np.mean(r['train_s']):.0f} + {np.mean(r['sample_s']):.0f}" if r["sample_s"] else "–"
        params = "–" if r["params"] is None else f"{r['params']:,}"
        lines.append(f"| {k} | {params} | {_ci(r['acc'], r['acc_ci'], '.3f')} | {_ci(r['fd'], r['fd_ci'], '.2f')} | "
                     f"{delta} | {loss} | {secs} |")
    lines += [
        "",
        f"Accuracy and Fréchet distance: mean over seeds {list(s.seeds)} of the per-seed value ({n} samples per "
        f"seed), [95% interval of a two-level bootstrap, {s.n_boot} replicates: seeds drawn with replacement, the "
        "same draw for every row, then each seed's samples resampled within each class; the test reference is "
        "fixed, as it is shared by all rows. Fréchet distance: percentile interval shifted by the bootstrap bias, "
        "since duplicated samples raise it]. Δ: the same replicates, paired, of the difference. With the reference "
        f"resampled as well, the floor row's interval is [{fl[0]:.2f}, {fl[1]:.2f}]. Train loss: mean ± sample "
        "std over seeds "
        "of the DDPM loss alone (no balance term). The base row varies only the sampling noise. The noise-floor row "
        f"scores {len(s.seeds)} class-balanced sets of {n} real train images exactly like a row's {len(s.seeds)} "
        f"seeds. One such set alone scores {one.mean():.2f} ± {one.std(ddof=1) if len(one) > 1 else 0:.2f} "
        f"(mean ± std over {len(one)} draws).",
        "",
        "## Setup",
        f"- Data: `sklearn.datasets.load_digits`, upsampled 8x8 -> {s.size}x{s.size} (bilinear), pixels in [-1, 1]; "
        "stratified 75/25 train/test split (seed 0). Everything trains on the train split.",
        f"- Features: small CNN classifier ({s.clf_steps} steps on the train split), test accuracy "
        f"{info['clf_acc']:.3f}. The Fréchet distance uses its {s.clf_width}-d penultimate ReLU layer minus the "
        f"features dead on every train image: {info['features']} features. Reference: the test split.",
        f"- Base: `DiTTransformer2DModel` 4 blocks, 4 heads x 16 = 64 wide, patch 2 (64 tokens), 10 classes, "
        f"pre-trained {s.pretrain_steps} steps (batch {s.batch}, AdamW lr {s.pretrain_lr}) with the DDPM epsilon loss "
        "(1000 cosine steps), saved with `save_pretrained` and reloaded with `from_pretrained` for every run.",
        f"- Every trained row: {s.finetune_steps} steps, batch {s.batch}, same batches per seed. Continued "
        f"pre-training trains all weights with a fresh AdamW at the pre-training lr {s.pretrain_lr}. LoRA and RSR "
        f"train only adapters (and gates when E > 1) on q/k/v of block(s) {list(s.layers)}, AdamW lr "
        f"{s.finetune_lr}, alpha = rank. LoRA is RSR at E=1, T=1 (no gate is built; equal to peft LoRA, see "
        f"tests); parameter-matched ranks are the nearest to RSR's count at E={list(s.matched_experts)}. RSR: "
        f"rank {s.rank}, per-token hard Gumbel routing at temperature 5.0, balance loss weight {s.balance_weight} "
        "for E > 3 only (the paper's rule).",
        f"- Sampling: DDIM {s.sample_steps} steps, eta 0, no classifier-free guidance, {s.samples_per_class} per "
        f"class ({n} images) per seed.",
        "",
        "## Plots (RSR E=5, T=5, seed 0)",
        "- `dit_usage_per_latent_step.png`: share of tokens per expert at each latent step (mean over sampling).",
        "- `dit_usage_per_timestep.png`: the same per diffusion timestep, one panel per latent step.",
        "- `dit_latent_pca_by_timestep.png`, `dit_latent_pca_by_class.png`: PCA of the token-mean latent state "
        "over the latent steps (one line per sample).",
    ]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

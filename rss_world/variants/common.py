"""Shared machinery of the diffusers variants: the processor base, attach / detach, adapter files.

A variant (``dit.py``, ``sd3.py``) supplies a model check, the attention module of each block, a processor class
and a hook that captures the gate's condition embedding. Everything else lives here so that DiT and SD3 behave the
same way:

* :class:`RSRProcessor` is an ``nn.Module`` diffusers attention processor. Because it is a module, diffusers'
  ``Attention.set_processor`` registers it as a submodule, so ``model.to(...)``, ``model.parameters()`` and DDP see
  the adapters. It holds one :class:`~rss_world.nn.RecursiveSparseAttention` that wraps the block's own frozen
  projections (no copy).
* :class:`RSRHandle` remembers what attaching changed (original processors, hooks, ``requires_grad`` flags) so that
  :func:`detach_rsr` restores the base model exactly.
* :func:`save_adapters` / :func:`load_adapters` write and read only the adapter and gate weights (safetensors) plus a
  JSON config, each file written atomically (temporary file, then ``os.replace``).
"""

from __future__ import annotations

import json
import numbers
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from rss_world.nn import RecursiveSparseAttention, RoutingRecord, RSRConfig, RSROutput, Selection, balance_loss

ADAPTER_FILE = "rsr_adapters.safetensors"
CONFIG_FILE = "rsr_config.json"
FORMAT = "rss_world.rsr_adapters/1"
_HANDLE_ATTR = "_rsr_handle"


@dataclass
class RouteSnapshot:
    """What one processor call routed, detached from the graph (for plots and analysis).

    Attributes:
        route: the ``T`` selections of the call (indices ``(B, N)`` per token or ``(B,)`` per sample).
        states: the vision state after every latent step, ``T`` tensors ``(B, N, D)``, if states were recorded.
    """

    route: RoutingRecord
    states: list[Tensor] | None = None


def _detach_route(route: RoutingRecord) -> RoutingRecord:
    return RoutingRecord(
        [Selection(s.index.detach().cpu(), s.coef.detach().cpu(), s.probs.detach().cpu(), s.logits.detach().cpu(),
                   s.forced) for s in route.steps]
    )


class RSRProcessor(nn.Module):
    """Base diffusers attention processor that owns one recursive sparse attention layer.

    Subclasses implement ``forward(attn, hidden_states, ...)`` by preparing the inputs the way the diffusers
    processor they replace does, then calling :meth:`run`.

    Args:
        rsr: the recursive sparse attention wrapping this block's frozen projections.
    """

    def __init__(self, rsr: RecursiveSparseAttention) -> None:
        super().__init__()
        self.rsr = rsr
        self.cond: Tensor | None = None  # (B, C) gate condition, written by a forward hook on the model
        self.last: RSROutput | None = None  # the last call's output (route keeps its graph for the balance loss)
        self.history: list[RouteSnapshot] | None = None  # set by `recording`
        self.record_states = False

    def set_condition(self, cond: Tensor) -> None:
        """Store the condition embedding ``(B, C)`` for the next call (used by the model hooks)."""
        self.cond = cond

    def _condition(self, batch: int, dtype: torch.dtype) -> Tensor | None:
        if self.rsr.cfg.cond_dim == 0:
            return None
        if self.cond is None:
            raise RuntimeError(
                "RSR processor has no condition embedding: it is captured by a hook when the whole transformer "
                "runs; call the model, not the attention layer on its own"
            )
        if self.cond.shape != (batch, self.rsr.cfg.cond_dim):
            raise ValueError(
                f"captured condition is {tuple(self.cond.shape)}, expected (B, C)=({batch}, {self.rsr.cfg.cond_dim})"
            )
        return self.cond.to(dtype)

    def run(self, x: Tensor, context_qkv: tuple[Tensor, Tensor, Tensor] | None = None) -> RSROutput:
        """Run the recursive sparse attention on vision tokens ``x (B, N, D)`` with the captured condition."""
        res = self.rsr(x, self._condition(x.shape[0], x.dtype), context_qkv)
        self.last = res
        if self.history is not None:
            states = [s.detach().cpu() for s in res.states] if self.record_states else None
            self.history.append(RouteSnapshot(_detach_route(res.route), states))
        return res


@dataclass
class RSRHandle:
    """What :func:`attach` changed on a model; returned by ``attach_rsr`` and stored on the model.

    Attributes:
        model: the diffusers transformer.
        kind: ``"dit"`` or ``"sd3"``.
        layers: indices into ``model.transformer_blocks`` that were routed.
        cfg: the RSR config (with ``cond_dim`` filled in).
        processors: layer index -> the installed :class:`RSRProcessor`.
        attns: layer index -> the diffusers ``Attention`` it is installed on.
        originals: layer index -> the processor that was there before.
        hooks: forward hooks that capture the condition embedding.
        requires_grad: parameter name -> its ``requires_grad`` before attaching.
    """

    model: nn.Module
    kind: str
    layers: list[int]
    cfg: RSRConfig
    processors: dict[int, RSRProcessor] = field(default_factory=dict)
    attns: dict[int, nn.Module] = field(default_factory=dict)
    originals: dict[int, Any] = field(default_factory=dict)
    hooks: list[Any] = field(default_factory=list)
    requires_grad: dict[str, bool] = field(default_factory=dict)

    def parameters(self) -> list[nn.Parameter]:
        """The trainable parameters: every routed layer's LoRA experts and gate."""
        return [p for i in self.layers for p in self.processors[i].rsr.adapter_parameters()]

    def routes(self) -> dict[int, RoutingRecord]:
        """Layer index -> routing record of the last forward (with graph, during training)."""
        return {i: p.last.route for i, p in self.processors.items() if p.last is not None}

    def balance_loss(self) -> Tensor:
        """Mean Switch-style balance loss of the last forward over the routed layers (1.0 at uniform use)."""
        routes = self.routes()
        if len(routes) != len(self.layers):
            raise RuntimeError("balance_loss needs a forward pass of the model first")
        losses = [balance_loss(r.probs(), r.indices()) for r in routes.values()]
        return torch.stack(losses).mean()

    def adapter_state_dict(self) -> dict[str, Tensor]:
        """Only the adapter and gate tensors, keyed ``layers.<i>.<lora_q|lora_k|lora_v|gate>.<name>``."""
        out: dict[str, Tensor] = {}
        for i in self.layers:
            rsr = self.processors[i].rsr
            for part in ("lora_q", "lora_k", "lora_v", "gate"):
                for name, t in getattr(rsr, part).state_dict().items():
                    out[f"layers.{i}.{part}.{name}"] = t
        return out


def get_handle(model: nn.Module) -> RSRHandle | None:
    """The :class:`RSRHandle` of ``model``, or ``None`` when no RSR is attached."""
    return getattr(model, _HANDLE_ATTR, None)


def check_model(model: nn.Module, cls: type, kind: str, other: str) -> None:
    """Raise ``ValueError`` unless ``model`` is a ``cls`` (the variant ``kind``'s diffusers transformer)."""
    if not isinstance(model, cls):
        hint = " (pass pipe.transformer, not the pipeline)" if hasattr(model, "transformer") else ""
        raise ValueError(f"rss_world.variants.{kind} expects a diffusers {cls.__name__}, got "
                         f"{type(model).__name__}{hint}; for {other.upper()} use rss_world.variants.{other}")


def rsr_for_attention(attn: nn.Module, cfg: RSRConfig) -> RecursiveSparseAttention:
    """The core layer around a diffusers ``Attention``'s vision projections (and its q/k norms, if any)."""
    return RecursiveSparseAttention(cfg, attn.to_q, attn.to_k, attn.to_v, attn.to_out[0], heads=attn.heads,
                                    norm_q=attn.norm_q, norm_k=attn.norm_k)


def validate_layers(layers: Any, num_layers: int) -> list[int]:
    """Check that ``layers`` is a non-empty list of distinct block indices in ``[0, num_layers)``."""
    if isinstance(layers, int) or not hasattr(layers, "__iter__"):
        raise ValueError(f"layers must be a list of block indices such as [1], got {layers!r}")
    layers = list(layers)
    if not layers:
        raise ValueError("layers must name at least one transformer block")
    for i in layers:
        if isinstance(i, bool) or not isinstance(i, numbers.Integral):
            raise ValueError(f"layer indices must be integers, got {i!r} in {layers}")
    layers = [int(i) for i in layers]
    for i in layers:
        if not 0 <= i < num_layers:
            raise ValueError(
                f"layer index {i} is out of range: the model has {num_layers} blocks (0..{num_layers - 1})"
            )
    if len(set(layers)) != len(layers):
        raise ValueError(f"layer indices must be distinct, got {layers}")
    return sorted(layers)


def fill_cond_dim(cfg: RSRConfig, width: int) -> RSRConfig:
    """Return ``cfg`` with ``cond_dim`` set to the model's condition width (``0`` means "fill in")."""
    if not isinstance(cfg, RSRConfig):
        raise ValueError(f"cfg must be an rss_world.nn.RSRConfig, got {type(cfg).__name__}")
    if cfg.cond_dim not in (0, width):
        raise ValueError(
            f"cfg.cond_dim={cfg.cond_dim} does not match the model's condition width {width}; use 0 or {width}"
        )
    cfg = replace(cfg, cond_dim=width)
    cfg.validate()
    return cfg


def attach(
    model: nn.Module,
    kind: str,
    layers: list[int],
    cfg: RSRConfig,
    attn_of: Callable[[int], nn.Module],
    processor_class: type[RSRProcessor],
    install_hooks: Callable[[dict[int, RSRProcessor]], list[Any]],
) -> RSRHandle:
    """Validate ``layers`` and ``cfg``, install RSR processors on those layers and freeze the base model.

    Args:
        model: the diffusers transformer (``transformer_blocks`` and ``inner_dim``).
        kind: variant name stored in the handle and the saved config.
        layers: 0-based block indices.
        cfg: RSR config; ``cond_dim`` 0 is filled in with the model width.
        attn_of: block index -> the ``Attention`` module to route (raises ``ValueError`` for an unusable block).
        processor_class: the variant's processor, built around one ``RecursiveSparseAttention``.
        install_hooks: registers the condition hooks for the processors; returns the hook handles.
    """
    layers = validate_layers(layers, len(model.transformer_blocks))
    cfg = fill_cond_dim(cfg, model.inner_dim)
    for i in layers:
        attn_of(i)  # every block is checked before anything changes
    if get_handle(model) is not None:
        raise ValueError("RSR is already attached to this model; call detach_rsr(model) first")
    handle = RSRHandle(model=model, kind=kind, layers=list(layers), cfg=cfg)
    handle.requires_grad = {n: p.requires_grad for n, p in model.named_parameters()}
    procs = {i: processor_class(rsr_for_attention(attn_of(i), cfg)) for i in layers}  # all built before any change
    model.requires_grad_(False)  # the base stays frozen; only the adapters created below train
    for i, proc in procs.items():
        attn = attn_of(i)
        handle.originals[i] = attn.processor
        proc.to(device=attn.to_q.weight.device, dtype=attn.to_q.weight.dtype)
        proc.train(model.training)  # a model in eval() gets an argmax gate, not Gumbel noise
        for p in proc.rsr.adapter_parameters():
            p.requires_grad_(True)
        attn.set_processor(proc)
        handle.processors[i], handle.attns[i] = proc, attn
    handle.hooks = install_hooks(procs)
    setattr(model, _HANDLE_ATTR, handle)
    return handle


def detach_rsr(model: nn.Module) -> None:
    """Remove RSR from ``model``: original processors, hooks and ``requires_grad`` flags come back exactly.

    Raises:
        ValueError: if no RSR is attached.
    """
    handle = get_handle(model)
    if handle is None:
        raise ValueError("no RSR is attached to this model")
    for h in handle.hooks:
        h.remove()
    for i, original in handle.originals.items():
        handle.attns[i].set_processor(original)  # drops the RSR submodule from the Attention's _modules
    for n, p in model.named_parameters():
        p.requires_grad_(handle.requires_grad.get(n, p.requires_grad))
    delattr(model, _HANDLE_ATTR)


@contextmanager
def recording(model: nn.Module, states: bool = False) -> Iterator[dict[int, list[RouteSnapshot]]]:
    """Record every routed call while the context is open (for plots).

    Yields:
        Layer index -> list of :class:`RouteSnapshot`, one per transformer forward (e.g. per diffusion step).
    """
    handle = _require_handle(model)
    history: dict[int, list[RouteSnapshot]] = {i: [] for i in handle.layers}
    for i, proc in handle.processors.items():
        proc.history, proc.record_states = history[i], states
    try:
        yield history
    finally:
        for proc in handle.processors.values():
            proc.history, proc.record_states = None, False


def _require_handle(model: nn.Module) -> RSRHandle:
    handle = get_handle(model)
    if handle is None:
        raise ValueError(f"no RSR is attached to this {type(model).__name__}; call attach_rsr first")
    return handle


def _atomic_write(path: Path, write: Callable[[str], None]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write(str(tmp))
    os.replace(tmp, path)


def model_signature(model: nn.Module) -> dict[str, Any]:
    """Sizes that saved adapters must match: class, block count, width and heads."""
    blocks = model.transformer_blocks
    attn = getattr(blocks[0], "attn1", None) or blocks[0].attn
    return {
        "model_class": type(model).__name__,
        "num_layers": len(blocks),
        "inner_dim": attn.to_q.out_features,
        "heads": attn.heads,
    }


def save_adapters(model: nn.Module, path: str | os.PathLike) -> Path:
    """Save only the adapter and gate weights (safetensors) and the JSON config into directory ``path``.

    Both files are written atomically. Returns the directory.
    """
    handle = _require_handle(model)
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in handle.adapter_state_dict().items()}
    config = {"format": FORMAT, "kind": handle.kind, "layers": handle.layers, "rsr": asdict(handle.cfg),
              **model_signature(model)}
    _atomic_write(out / ADAPTER_FILE, lambda p: save_file(tensors, p, metadata={"format": FORMAT}))
    _atomic_write(out / CONFIG_FILE, lambda p: Path(p).write_text(json.dumps(config, indent=2) + "\n"))
    return out


def read_adapter_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check the JSON config of a saved adapter directory."""
    cfg_path = Path(path) / CONFIG_FILE
    if not cfg_path.is_file() or not (Path(path) / ADAPTER_FILE).is_file():
        raise ValueError(f"{path} is not an RSR adapter directory: expected {CONFIG_FILE} and {ADAPTER_FILE}")
    config = json.loads(cfg_path.read_text())
    if config.get("format") != FORMAT:
        raise ValueError(f"{cfg_path} has format {config.get('format')!r}, expected {FORMAT!r}")
    known = {f.name for f in fields(RSRConfig)}
    if not isinstance(config.get("rsr"), dict) or set(config["rsr"]) - known:
        raise ValueError(f"{cfg_path} has an invalid 'rsr' section: {config.get('rsr')!r}")
    return config


def load_adapters(model: nn.Module, path: str | os.PathLike, kind: str,
                  attach_fn: Callable[[nn.Module, list[int], RSRConfig], RSRHandle]) -> RSRHandle:
    """Load saved adapters onto ``model``, attaching RSR first if needed (used by each variant's wrapper).

    Raises:
        ValueError: wrong model type or size, a config that does not match the attached one, or missing or
            misshapen tensors. Nothing on the model changes when it raises.
    """
    config = read_adapter_config(path)
    sig = model_signature(model)
    if config["kind"] != kind or config["model_class"] != sig["model_class"]:
        raise ValueError(f"adapters in {path} were saved for a {config['model_class']} ({config['kind']}), "
                         f"not for this {sig['model_class']}")
    for key in ("num_layers", "inner_dim", "heads"):
        if config[key] != sig[key]:
            raise ValueError(f"adapters in {path} need {key}={config[key]}, this model has {key}={sig[key]}")
    saved_cfg = RSRConfig(**config["rsr"])
    tensors = load_file(str(Path(path) / ADAPTER_FILE))
    handle = get_handle(model)
    attached_here = handle is None
    if handle is not None and (handle.layers != config["layers"] or asdict(handle.cfg) != asdict(saved_cfg)):
        raise ValueError(f"saved config (layers={config['layers']}, rsr={asdict(saved_cfg)}) does not match the "
                         f"attached one (layers={handle.layers}, rsr={asdict(handle.cfg)})")
    if handle is None:
        handle = attach_fn(model, config["layers"], saved_cfg)
    want = handle.adapter_state_dict()
    problem = None
    if set(tensors) != set(want):
        missing, extra = sorted(set(want) - set(tensors)), sorted(set(tensors) - set(want))
        problem = f"adapter tensors do not match: missing {missing[:4]}, unexpected {extra[:4]}"
    else:
        bad = [k for k in want if tensors[k].shape != want[k].shape]
        if bad:
            problem = f"adapter tensor {bad[0]} is {tuple(tensors[bad[0]].shape)}, expected {tuple(want[bad[0]].shape)}"
    if problem is not None:
        if attached_here:
            detach_rsr(model)
        raise ValueError(f"{path}: {problem}")
    with torch.no_grad():
        for k, t in want.items():
            t.copy_(tensors[k].to(device=t.device, dtype=t.dtype))
    return handle

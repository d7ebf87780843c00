"""Settings of the world model. The dataclass defaults are the shipped model; presets list only what differs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

NUM_ACTIONS = 4


@dataclass
class WorldModelConfig:
    """Sizes of a :class:`~rss_world.world_model.WorldModel`; ``WorldModelConfig()`` is the shipped model.

    Attributes:
        cell_px: pixels per grid cell in the frames (one token per cell).
        dim: token width ``D``.
        heads: attention heads.
        enc_layers: transformer blocks of the frame encoder.
        dec_layers: transformer blocks of the frame decoder.
        rank: LoRA rank of each action's expert.
        temperature: Gumbel-softmax temperature of the gate (the paper's 5.0).
        window: side of the attention neighbourhood of every block (odd; 3: a cell and its 8 neighbours).
        mlp_ratio: hidden width of the MLPs, as a multiple of ``dim``.
    """

    cell_px: int = 16
    dim: int = 128
    heads: int = 4
    enc_layers: int = 2
    dec_layers: int = 1
    rank: int = 16
    temperature: float = 5.0
    window: int = 3
    mlp_ratio: float = 2.0

    def checks(self) -> dict[str, bool]:
        """Field name -> whether its value is valid (subclasses add their own fields)."""
        return {
            "cell_px": self.cell_px >= 1,
            "dim": self.dim >= 1,
            "heads": self.heads >= 1 and self.dim % max(self.heads, 1) == 0,
            "enc_layers": self.enc_layers >= 0,
            "dec_layers": self.dec_layers >= 0,
            "rank": self.rank >= 1,
            "temperature": self.temperature > 0,
            "window": self.window >= 1 and self.window % 2 == 1,
            "mlp_ratio": self.mlp_ratio > 0,
        }

    def validate(self) -> None:
        """Raise ``ValueError`` naming every field with a wrong type or value."""
        bad = []
        for f in fields(self):
            v = getattr(self, f.name)
            want = float if f.type in ("float", float) else int
            if isinstance(v, bool) or not isinstance(v, (int, float) if want is float else int):
                bad.append(f"{f.name}={v!r} (expected {want.__name__})")
        if not bad:
            bad = [f"{k}={getattr(self, k)!r}" for k, ok in self.checks().items() if not ok]
        if bad:
            raise ValueError(f"invalid {type(self).__name__}: {', '.join(bad)}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> WorldModelConfig:
        """Build from a dict (e.g. a checkpoint's ``config.json``); unknown keys raise ``ValueError``."""
        if not isinstance(d, dict):
            raise ValueError(f"{cls.__name__} must be a mapping, got {type(d).__name__}")
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys {sorted(unknown)}")
        cfg = cls(**d)
        cfg.validate()
        return cfg

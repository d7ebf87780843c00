"""The visual world model built on the RSR core (``rss_world.nn``): encode / step / decode / status / policy.

``WorldModel()`` is the shipped architecture; ablations are subclasses in ``ablations.py``, built by name
through :data:`ARCHS` (checkpoints record the name).
"""

from .ablations import (
    MultiExpertConfig,
    MultiExpertWorldModel,
    SharedExpertWorldModel,
    TrunkGateConfig,
    TrunkGateWorldModel,
)
from .blocks import CELL_TOLERANCE, cell_errors, patchify
from .config import NUM_ACTIONS, WorldModelConfig
from .model import Imagination, StepSelection, WorldModel

ARCHS: dict[str, type[WorldModel]] = {
    cls.arch: cls for cls in (WorldModel, TrunkGateWorldModel, SharedExpertWorldModel, MultiExpertWorldModel)
}


def build_world_model(arch: str = WorldModel.arch, **settings) -> WorldModel:
    """Build a world model of architecture ``arch`` with its config's defaults overridden by ``settings``."""
    if arch not in ARCHS:
        raise ValueError(f"unknown world-model architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    cls = ARCHS[arch]
    return cls(cls.config_class.from_dict(dict(settings)))


__all__ = [
    "CELL_TOLERANCE",
    "cell_errors",
    "patchify",
    "ARCHS",
    "NUM_ACTIONS",
    "Imagination",
    "MultiExpertConfig",
    "MultiExpertWorldModel",
    "SharedExpertWorldModel",
    "StepSelection",
    "TrunkGateConfig",
    "TrunkGateWorldModel",
    "WorldModel",
    "WorldModelConfig",
    "build_world_model",
]

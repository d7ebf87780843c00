"""Fixtures of the planning tests: the tiny world model and a saved copy, a scripted planner, 3x3 maps."""

import numpy as np
import pytest
import torch

from rss_world.checkpoint import save_model
from rss_world.envs.maps import MapSpec, map_id
from rss_world.planners import Plan
from rss_world.world_model import WorldModel, build_world_model


class Scripted:
    """A planner that ignores the frame: each call plans the script's remaining actions (closed loop takes one).
    Its imagined frames are uniform, valued by the call number."""

    def __init__(self, actions: list[int]) -> None:
        self.actions, self.calls = actions, 0

    def plan(self, frame: np.ndarray) -> Plan:
        rest = self.actions[self.calls:]
        self.calls += 1
        frames = np.full((len(rest) + 1, *frame.shape), self.calls, np.uint8)
        return Plan(actions=rest, frames=frames, halted_early=True, steps_saved=2, expansions=3)


@pytest.fixture(scope="session")
def scripted() -> type[Scripted]:
    """The :class:`Scripted` planner class: ``scripted([DOWN, RIGHT])``."""
    return Scripted


@pytest.fixture(scope="session")
def maps3() -> list[MapSpec]:
    """Two 3x3 maps; the first is ``SFH / FFF / HFG`` (start top left, goal bottom right)."""
    return [MapSpec(map_id(d), d) for d in (("SFH", "FFF", "HFG"), ("FFS", "FHF", "GFF"))]


@pytest.fixture
def new_tiny(tiny_settings):
    """Builds a fresh, untrained ``tiny`` world model (the preset of the root conftest): ``new_tiny(seed=0)``."""

    def build(seed: int = 0) -> WorldModel:
        torch.manual_seed(seed)
        return build_world_model(**tiny_settings)

    return build


@pytest.fixture
def tiny_model(new_tiny) -> WorldModel:
    return new_tiny().eval()


@pytest.fixture
def tiny_ckpt(new_tiny, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    save_model(path, new_tiny())
    return path

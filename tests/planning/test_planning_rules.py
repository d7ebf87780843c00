"""The rule: no planner may read the frame parser or the real map; planning happens in the model's latent space."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import rss_world.planners as planners
from rss_world.envs import frozenlake, metrics, oracle, parser, render
from rss_world.envs import maps as maps_mod
from rss_world.envs.render import render_grid

torch.set_num_threads(1)
ALLOWED = {"__future__", "heapq", "math", "dataclasses", "numpy", "torch", "torch.nn.functional", "rss_world.nn",
           "rss_world.world_model"}


def test_planners_module_imports_nothing_from_envs():
    tree = ast.parse(Path(planners.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module)
    assert imported <= ALLOWED, imported - ALLOWED
    assert not [m for m in imported if "envs" in m or "parser" in m or "gymnasium" in m]


@pytest.mark.slow  # a fresh interpreter imports torch
def test_importing_planners_loads_no_env_code():
    code = ("import sys, rss_world.planners; bad = [m for m in sys.modules if m.startswith('rss_world.envs') "
            "or m.startswith('gymnasium')]; print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def test_planners_never_call_the_parser_the_map_or_the_oracle(monkeypatch, new_tiny):
    desc = ("SFH", "FFF", "HFG")
    frame = render_grid(desc, (0, 0))  # made before the trap is set

    def trap(*args, **kwargs):
        raise AssertionError("a planner touched the parser, the map or the oracle")

    for mod in (parser, oracle, maps_mod, render, frozenlake, metrics):
        for name in dir(mod):
            obj = getattr(mod, name)
            if callable(obj) and not name.startswith("_") and getattr(obj, "__module__", None) == mod.__name__:
                monkeypatch.setattr(mod, name, trap)
    model = new_tiny()
    # Thresholds above 1 keep the search expanding until its budget: every code path of both planners runs.
    for planner in (planners.GatePlanner(model, planners.GatePlannerConfig(goal_threshold=1.1, hole_threshold=1.1)),
                    planners.SearchPlanner(model, planners.SearchPlannerConfig(goal_threshold=1.1, hole_threshold=1.1,
                                                                               dedupe_threshold=0.0,
                                                                               max_expansions=24)),
                    planners.SearchPlanner(model)):
        plan = planner.plan(frame)
        assert plan.actions
        if isinstance(planner, planners.SearchPlanner) and planner.cfg.max_expansions == 24:
            assert plan.expansions == 24 and plan.reason == "budget"
    with pytest.raises(AssertionError, match="touched"):
        parser.parse_frame(frame)  # the trap is live

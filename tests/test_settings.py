"""One source for every setting: a value has one default, in one place.

The config dataclasses hold the defaults (they are the shipped settings). YAML presets list only what differs from
them, and no function, constructor or command-line option restates a config field's default under the same name.
"""

import ast
import dataclasses
import importlib
from importlib.resources import files
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from rss_world.benchmark import EvaluateConfig
from rss_world.training.config import TrainRecipe
from rss_world.variants.config import VariantConfig, VariantTrainConfig
from rss_world.world_model import WorldModelConfig

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = Path(str(files("rss_world.configs")))
PRESET_GROUPS = {"model": WorldModelConfig, "variant": VariantConfig}  # configs/<group>/*.yaml -> their schema
TOP_LEVEL = {"train.yaml": TrainRecipe, "evaluate.yaml": EvaluateConfig, "train_variant.yaml": VariantTrainConfig}


def restated(values: dict, schema, path: str = "") -> list[str]:
    """Keys of ``values`` whose value equals ``schema``'s default (nested dataclasses followed)."""
    defaults = {f.name: f for f in dataclasses.fields(schema)}
    found = []
    for key, value in values.items():
        assert key in defaults, f"{path}{key} is not a field of {schema.__name__}"
        f = defaults[key]
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            continue
        if dataclasses.is_dataclass(default) and isinstance(value, dict):
            found += restated(value, type(default), f"{path}{key}.")
        elif value == (dataclasses.asdict(default) if dataclasses.is_dataclass(default) else default):
            found.append(f"{path}{key}={value!r}")
    return found


def test_every_yaml_file_is_known():
    known = set(TOP_LEVEL) | {f"{g}/{p.name}" for g in PRESET_GROUPS for p in (CONFIGS / g).glob("*.yaml")}
    assert {str(p.relative_to(CONFIGS)) for p in CONFIGS.rglob("*.yaml")} == known


@pytest.mark.parametrize("group", sorted(PRESET_GROUPS))
def test_presets_list_only_what_differs_from_the_dataclass(group):
    for preset in sorted((CONFIGS / group).glob("*.yaml")):
        values = OmegaConf.to_container(OmegaConf.load(preset)) or {}
        assert not restated(values, PRESET_GROUPS[group]), f"{preset.name} restates defaults"


@pytest.mark.parametrize("name", sorted(TOP_LEVEL))
def test_top_level_configs_hold_no_values(name):
    """The composed configs take every value from their schema: the YAML file is only a defaults list."""
    values = OmegaConf.to_container(OmegaConf.load(CONFIGS / name))
    assert set(values) == {"defaults"}, f"{name} defines {sorted(set(values) - {'defaults'})}"


def config_fields() -> dict[str, set[str]]:
    """Field name -> the config dataclasses (``*Config`` / ``*Recipe`` in the package) that give it a default."""
    fields: dict[str, set[str]] = {}
    for path in sorted((ROOT / "rss_world").rglob("*.py")):
        mod = importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts).replace(".__init__", ""))
        for obj in vars(mod).values():
            if (isinstance(obj, type) and dataclasses.is_dataclass(obj) and obj.__module__ == mod.__name__
                    and obj.__name__.endswith(("Config", "Recipe"))):
                for f in dataclasses.fields(obj):
                    if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                        fields.setdefault(f.name, set()).add(obj.__name__)
    return fields


# Names too generic to be one setting: every function that takes a seed or a device is not restating a config.
GENERIC = {"seed", "progress", "device", "out", "path", "threads", "episodes", "steps", "size", "sizes", "kind"}
# Same name, another setting: (file, name) -> what it is instead.
OTHER_SETTING = {
    ("rss_world/variants/tiny.py", "num_layers"): "depth of the tiny diffusers models the tests build",
    ("rss_world/imagination/slots.py", "batch"): "how many start frames the encoder takes at once",
}


def test_no_function_or_option_restates_a_config_default():
    """A keyword default (or argparse ``default=``) named like a config field, with a literal value, is a second
    source for that setting: take it from the dataclass (or default to None and resolve there)."""
    fields = config_fields()
    bad = []
    for path in sorted([*(ROOT / "rss_world").rglob("*.py"), *(ROOT / "envs").rglob("*.py")]):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            pairs = []
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args
                pos = args.args[len(args.args) - len(args.defaults):]
                pairs = list(zip([a.arg for a in pos], args.defaults))
                pairs += [(a.arg, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
                flag = next((a.value for a in node.args if isinstance(a, ast.Constant)), "")
                default = next((k.value for k in node.keywords if k.arg == "default"), None)
                if default is not None:
                    pairs = [(str(flag).lstrip("-").replace("-", "_"), default)]
            for name, default in pairs:
                literal = isinstance(default, ast.Constant) and default.value is not None
                other = name in GENERIC or (str(path.relative_to(ROOT)), name) in OTHER_SETTING
                if name in fields and literal and not other and not isinstance(default.value, bool):
                    bad.append(f"{path.relative_to(ROOT)}:{default.lineno} {name}={default.value!r} "
                               f"(a field of {sorted(fields[name])})")
    assert not bad, "\n".join(bad)

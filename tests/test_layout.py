"""The tree keeps its shape: thin entry points that nothing imports, small modules, and the import direction of
DESIGN.md (``nn`` imports torch only, ``envs`` never the model or stable-baselines3)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = {"rss_world": ROOT / "rss_world", "rss_world.envs": ROOT / "envs", "rss_world.configs": ROOT / "configs"}
MAX_LINES, MAX_ENTRY_LINES = 400, 100


def module_name(path: Path) -> str:
    for pkg, folder in sorted(PACKAGE_DIRS.items(), key=lambda kv: -len(str(kv[1]))):
        if path.is_relative_to(folder):
            parts = path.relative_to(folder).with_suffix("").parts
            return ".".join([pkg, *[p for p in parts if p != "__init__"]])
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def package_modules() -> list[Path]:
    return sorted(p for d in PACKAGE_DIRS.values() for p in d.rglob("*.py"))


def entry_points() -> set[str]:
    """Modules that run as ``python -m``: they hold an ``if __name__ == "__main__"`` block."""
    return {module_name(p) for p in package_modules() if 'if __name__ == "__main__"' in p.read_text()}


def imports_of(path: Path) -> set[str]:
    """Every module an ``import`` or ``from ... import`` names, including ``from pkg import submodule``."""
    tree, found = ast.parse(path.read_text()), set()
    package = module_name(path).rsplit(".", 0 if path.name == "__init__.py" else 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], *filter(None, [base])])
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return found


def test_entry_points_are_known_and_thin():
    entries = entry_points()
    verbs = {"plan", "train", "evaluate", "agent", "collect"}
    assert {f"rss_world.{v}" for v in verbs} <= entries
    fat = {m: n for p in package_modules() if (m := module_name(p)) in entries
           and (n := len(p.read_text().splitlines())) > MAX_ENTRY_LINES}
    assert not fat, f"entry points over {MAX_ENTRY_LINES} lines: {fat}"


def test_nothing_imports_an_entry_point():
    entries = entry_points()
    sources = [*package_modules(), *(ROOT / "experiments").rglob("*.py"), *(ROOT / "tests").rglob("*.py")]
    bad = {str(p.relative_to(ROOT)): sorted(imports_of(p) & (entries - {module_name(p)})) for p in sources}
    assert not {k: v for k, v in bad.items() if v}


def test_experiments_import_no_other_experiment():
    names = {p.stem for p in (ROOT / "experiments").glob("*.py")}
    bad = {p.name: sorted(imports_of(p) & names) for p in (ROOT / "experiments").glob("*.py")}
    assert not {k: v for k, v in bad.items() if v}


def test_no_module_is_too_long():
    sources = [*package_modules(), *sorted((ROOT / "experiments").rglob("*.py"))]
    long = {str(p.relative_to(ROOT)): n for p in sources if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_no_sys_path_edits():
    sources = [*package_modules(), *(ROOT / "experiments").rglob("*.py"), *(ROOT / "tests").rglob("*.py")]
    needle = "sys.path." + "insert"
    assert not [str(p.relative_to(ROOT)) for p in sources if needle in p.read_text()]


@pytest.mark.parametrize("package, forbidden", [
    ("rss_world.nn", ("gymnasium", "hydra", "diffusers", "peft", "stable_baselines3", "rss_world.envs",
                      "rss_world.world_model")),
    ("rss_world.envs", ("torch", "stable_baselines3", "rss_world.world_model", "rss_world.nn", "diffusers")),
])
def test_import_direction(package, forbidden):
    """Importing the package (all its modules) loads none of the forbidden ones."""
    folder = PACKAGE_DIRS.get(package) or ROOT / package.replace(".", "/")
    mods = sorted(module_name(p) for p in folder.rglob("*.py") if "__main__" not in p.read_text())
    code = (f"import importlib, sys\nfor m in {mods!r}: importlib.import_module(m)\n"
            f"print(sorted({{m.split('.')[0] for m in sys.modules if m.startswith({forbidden!r})}}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


def test_only_variants_import_diffusers():
    """diffusers lives in ``rss_world/variants/``; the world model, planners and envs never need it."""
    bad = [str(p.relative_to(ROOT)) for p in package_modules()
           if not p.is_relative_to(ROOT / "rss_world" / "variants")
           and any(m.split(".")[0] == "diffusers" for m in imports_of(p))]
    assert not bad


def test_every_package_is_installed():
    """A plain (non-editable) install ships exactly the packages listed in pyproject.toml: none may be missing."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {module_name(p) for p in package_modules() if p.name == "__init__.py"}
    assert found <= listed, sorted(found - listed)

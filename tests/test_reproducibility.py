"""Reproducible and dependable computation: code-versioned caches, refresh, corrupt files set
aside, weights errors without unsafe advice, and notebooks 01-04 giving the same data files twice."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from shiftinv.models import pretrained
from shiftinv.study import feature_data, training
from shiftinv.workbook import cache, runner, runtime

LIB = Path(cache.__file__).resolve().parents[2]

# A notebook-like script: one value cached through `cache.cached` (code given explicitly: the module
# of `primer.sample_image`), one head trained through `training.train_or_load` (code derived from the
# modules the script imported: primer, training, cache); prints whether the value was computed (the
# head's runs are counted as files under results/demo_head).
SCRIPT = r'''
import json, torch
from torch import nn
from shiftinv.shifts import primer
from shiftinv.study import feature_data, training
from shiftinv.workbook import cache

computed = []

def image_sum():
    computed.append("value")
    return {"sum": float(primer.sample_image(16).sum())}

value = cache.cached("demo_value", {"size": 16}, image_sum, code=primer.sample_image)
torch.manual_seed(0)
lin = nn.Linear(4, 2)
feats = feature_data.FeatureData({"x": torch.randn(16, 4)}, torch.arange(16) % 2)
model = nn.Sequential()
model.lin = lin
model.forward = lambda f: lin(f["x"])
training.train_or_load("demo_head", {"what": "tiny"}, model, feats, feats,
                       training.TrainConfig(epochs=1, batch_size=8, device="cpu"))
print(json.dumps({"value": value, "computed": computed}))
'''


def _run_copy(lib: Path, results: Path, script: Path) -> tuple[bool, int]:
    """Run ``script`` with ``lib`` first on the path: (value computed?, head runs cached so far)."""
    env = {**os.environ, "PYTHONPATH": str(lib), "SHIFTINV_RESULTS": str(results), "SHIFTINV_REFRESH": ""}
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    computed = json.loads(out.stdout.strip().splitlines()[-1])["computed"]
    return computed == ["value"], len(list((results / "demo_head").glob("*.pt")))


def _edit(file: Path, old: str, new: str) -> None:
    text = file.read_text()
    assert old in text, f"{old!r} not in {file}"
    file.write_text(text.replace(old, new, 1))


@pytest.mark.slow
def test_cache_keys_follow_the_code_behind_them(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    shutil.copytree(LIB, lib, ignore=shutil.ignore_patterns("__pycache__"))
    pkg, results, script = lib / "shiftinv", tmp_path / "results", tmp_path / "script.py"
    script.write_text(SCRIPT)

    assert _run_copy(lib, results, script) == (True, 1)
    assert _run_copy(lib, results, script) == (False, 1)  # same code: value and head reused

    # an unrelated module (the perceptual metric), a docstring and a comment: everything reused
    _edit(pkg / "perceptual" / "metrics.py", "\ndef ", "\ndef _unrelated_helper():\n    return 1\n\n\ndef ")
    _edit(pkg / "shifts" / "primer.py", '"""', '"""Docstring edited. ')
    _edit(pkg / "study" / "training.py", "\ndef fit(", "\n# a comment\ndef fit(")
    assert _run_copy(lib, results, script) == (False, 1)

    # the function the value depends on: the value is recomputed (and the head retrained: the
    # script imported primer, so its training key includes primer's code too)
    _edit(pkg / "shifts" / "primer.py", "def sample_image(size: int = 128) -> Tensor:",
          "def sample_image(size: int = 128) -> Tensor:\n    size = int(size)")
    assert _run_copy(lib, results, script) == (True, 2)

    # the training loop: the head is retrained, the value (which does not use training.py) reused
    _edit(pkg / "study" / "training.py", "def _l2_penalty(", "def _unused():\n    return 3\n\n\ndef _l2_penalty(")
    assert _run_copy(lib, results, script) == (False, 3)


def test_code_version_ignores_comments_and_sees_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = cache.code_version("shifts.translation")
    assert cache.code_version("shifts.translation") == before
    assert cache.code_version(["shifts.translation"]) == cache.code_version("shiftinv.shifts.translation")
    with pytest.raises(ValueError, match="names no module"):
        cache.code_version("classify")  # a flat name of the old layout: an error, not a hash of nothing
    assert "shiftinv.workbook.cache" in cache.module_closure(["shiftinv.study.training"])
    assert "shiftinv.perceptual.metrics" not in cache.module_closure(["shiftinv.study.modelset"])
    assert cache._tree_digest("x = 1  # a comment\n") == cache._tree_digest('"""doc"""\nx = 1\n')
    assert cache._tree_digest("x = 1\n") != cache._tree_digest("x = 2\n")


def test_module_closure_sees_an_import_added_in_the_same_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the parsed imports are kept per file version (a notebook kernel asks for them on every cached
    # value): an edit that adds an import must still reach the closure, and so the code version
    pkg = tmp_path / "shiftinv"
    shutil.copytree(cache._LIB_DIR, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(cache, "_LIB_DIR", pkg)
    assert "shiftinv.perceptual.metrics" not in cache.module_closure(["shiftinv.shifts.primer"])
    before = cache.code_version("shifts.primer")
    primer = pkg / "shifts" / "primer.py"
    primer.write_text(primer.read_text() + "\n\ndef _uses_metrics():\n    from ..perceptual import metrics\n    return metrics\n")
    assert "shiftinv.perceptual.metrics" in cache.module_closure(["shiftinv.shifts.primer"])
    assert cache.code_version("shifts.primer") != before


def test_refresh_env_recomputes_values_written_before_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SHIFTINV_RESULTS", str(tmp_path))
    monkeypatch.setenv(cache.REFRESH_ENV, "")
    calls = []

    def compute() -> dict:
        calls.append(1)
        return {"v": torch.ones(2)}

    cache.cached("r", {"a": 1}, compute, code="shifts.translation")
    cache.cached("r", {"a": 1}, compute, code="shifts.translation")
    assert len(calls) == 1
    monkeypatch.setenv(cache.REFRESH_ENV, "1")
    cache.cached("r", {"a": 1}, compute, code="shifts.translation")
    assert len(calls) == 2
    # a time stamp (what SHIFTINV_REFRESH=1 becomes when the package is imported): files written
    # before it are recomputed once, then reused for the rest of the run
    monkeypatch.setenv(cache.REFRESH_ENV, repr(time.time() + 1))
    time.sleep(0.01)
    path = cache.cache_path("r", {"a": 1}, code="shifts.translation")
    os.utime(path, (time.time() - 10, time.time() - 10))
    cache.cached("r", {"a": 1}, compute, code="shifts.translation")
    assert len(calls) == 3
    os.utime(path, (time.time() + 5, time.time() + 5))
    cache.cached("r", {"a": 1}, compute, code="shifts.translation")
    assert len(calls) == 3
    monkeypatch.setenv(cache.REFRESH_ENV, "maybe")
    with pytest.raises(ValueError, match="SHIFTINV_REFRESH"):
        cache.cached("r", {"a": 1}, compute, code="shifts.translation")


def test_refresh_one_is_pinned_to_a_time_when_the_package_is_imported(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(LIB), "SHIFTINV_REFRESH": "1"}
    # the runner imports only shiftinv.workbook.paths (no torch): that pins it too, for the kernels it starts
    out = subprocess.run([sys.executable, "-c", "import os, shiftinv.workbook.paths; print(os.environ['SHIFTINV_REFRESH'])"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert abs(float(out.stdout) - time.time()) < 120


@pytest.mark.parametrize("damage", ["truncate", "random"])
def test_corrupt_cache_file_is_set_aside_and_recomputed(damage: str, monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("SHIFTINV_RESULTS", str(tmp_path))
    monkeypatch.delenv(cache.REFRESH_ENV, raising=False)
    calls = []

    def compute() -> dict:
        calls.append(1)
        return {"v": torch.arange(1000.0)}

    cache.cached("c", {"a": 1}, compute, code="shifts.translation")
    path = cache.cache_path("c", {"a": 1}, code="shifts.translation")
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2] if damage == "truncate" else os.urandom(len(blob)))
    value = cache.cached("c", {"a": 1}, compute, code="shifts.translation")
    assert len(calls) == 2 and torch.equal(value["v"], torch.arange(1000.0))
    err = capsys.readouterr().err
    assert "set aside" in err and "recomputing" in err and "Re-download" not in err
    assert path.with_name(path.name + ".corrupt").is_file()
    assert torch.equal(cache.safe_torch_load(path)["value"]["v"], torch.arange(1000.0))


def test_corrupt_training_checkpoint_is_set_aside(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    feats = feature_data.FeatureData({"x": torch.randn(16, 4)}, torch.arange(16) % 2)
    wrapper = torch.nn.Sequential()
    wrapper.lin = model  # type: ignore[assignment]
    wrapper.forward = lambda f: model(f["x"])  # type: ignore[method-assign]
    ckpt = tmp_path / "run.ckpt.pt"
    ckpt.write_bytes(b"PK\x03\x04 truncated")
    result = training.fit(wrapper, feats, feats, training.TrainConfig(epochs=2, batch_size=8, device="cpu"), checkpoint=ckpt)
    assert len(result.history) == 2
    assert (tmp_path / "run.ckpt.pt.corrupt").is_file()
    assert "set aside" in capsys.readouterr().err


def test_random_bytes_weights_file_gets_a_clear_error_without_unsafe_advice(tmp_path: Path) -> None:
    path = tmp_path / "vgg16.pth"
    path.write_bytes(b"\x13" + os.urandom(4095))  # random bytes (not starting like a pickle or a zip)
    with pytest.raises(ValueError) as info:
        pretrained.resolve_state_dict(str(path))
    message = str(info.value)
    assert str(path) in message
    assert "not a loadable torch file" in message and "not a torch file" in message
    assert "weights_only=False" not in message and "Re-download" not in message


def test_require_finite_refuses_to_cache_nan(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SHIFTINV_RESULTS", str(tmp_path))
    with pytest.raises(ValueError, match="non-finite.*w"):
        cache.cached("n", {"a": 1}, lambda: {"w": torch.tensor([1.0, float("nan")])}, code="shifts.translation", require_finite=True)
    assert not list(tmp_path.rglob("*.pt"))
    table = cache.cached("n", {"a": 2}, lambda: {"drop": [float("nan")]}, code="shifts.translation")  # NaN on purpose: kept
    assert table["drop"][0] != table["drop"][0]


def test_reproducible_block_fixes_threads_and_restores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(runtime.THREADS_ENV, "3")
    before = torch.get_num_threads()
    with runtime.reproducible() as n:
        assert n == 3 and torch.get_num_threads() == 3
        assert torch.are_deterministic_algorithms_enabled()
    assert torch.get_num_threads() == before and not torch.are_deterministic_algorithms_enabled()
    assert runtime.run_conditions()["threads"] == 3
    monkeypatch.setenv(runtime.THREADS_ENV, "zero")
    with pytest.raises(ValueError, match="SHIFTINV_THREADS"):
        runtime.default_threads()


# ----------------------------------------------------------------------------- notebooks twice

TIMING_FILES = ("_timings",)


def data_files(folder: Path) -> dict[str, Path]:
    """Every figure data file (.csv, .json) under ``folder`` except timings and manifests."""
    return {str(p.relative_to(folder)): p for p in sorted(folder.rglob("*")) if p.suffix in (".csv", ".json")
            and not any(t in p.stem for t in TIMING_FILES) and "manifest" not in p.stem.lower()}


def differences(a: Path, b: Path, rtol: float = 0.0) -> list[str]:
    """Files that differ between two data files (CSV compared as tables, JSON as text)."""
    if a.suffix == ".csv":
        fa, fb = pd.read_csv(a), pd.read_csv(b)
        try:
            pd.testing.assert_frame_equal(fa, fb, check_exact=rtol == 0, rtol=rtol or 1e-5)
        except AssertionError as err:
            return [f"{a.name}: {str(err).splitlines()[0:3]}"]
        return []
    return [] if a.read_bytes() == b.read_bytes() else [f"{a.name}: JSON differs"]


@pytest.mark.notebooks
@pytest.mark.slow
def test_notebooks_03_and_04_give_the_same_data_files_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = []
    for run in ("a", "b"):
        figs, results = tmp_path / run / "figures", tmp_path / run / "results"
        monkeypatch.setenv("SHIFTINV_FIGURES", str(figs))
        monkeypatch.setenv("SHIFTINV_RESULTS", str(results))
        monkeypatch.delenv(cache.REFRESH_ENV, raising=False)
        # 03-04 train and sweep (01-02 are seeded toy networks, run by the smoke tier)
        for nb in runner.list_notebooks(["03", "04"]):
            runner.run_notebook(nb, {"PROFILE": "demo", "SMOKE": True}, tmp_path / run / "executed")
        runs.append(figs)
    first, second = data_files(runs[0]), data_files(runs[1])
    assert len(first) >= 8 and sorted(first) == sorted(second)
    diffs = [d for name in first for d in differences(first[name], second[name])]
    assert not diffs, diffs

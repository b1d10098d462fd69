"""Unit tests of the foundation helpers: paths, figure saving, caching, seeding."""

from __future__ import annotations

import json
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

from shiftinv.viz import figures
from shiftinv.workbook import cache, paths, publish, runtime


def test_paths_do_not_depend_on_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = paths.ROOT
    monkeypatch.chdir(tmp_path)
    assert paths.ROOT == before
    assert (paths.ROOT / "lib" / "shiftinv" / "workbook" / "paths.py").exists()
    assert paths.NOTEBOOKS == paths.ROOT / "notebooks"


def test_env_overrides_figures_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIFTINV_FIGURES", str(tmp_path / "figs"))
    assert paths.figures_dir() == (tmp_path / "figs").resolve()
    assert paths.figures_dir().is_dir()


def test_require_dir_names_folder_and_source(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"KADID.*nowhere.*download it"):
        paths.require_dir(tmp_path / "nowhere", "KADID images", "download it from X")


def _figure() -> plt.Figure:
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1, 2], [1, 3, 2])
    return fig


def test_save_figure_writes_png_pdf_and_data_deterministically(tmp_path: Path) -> None:
    figures.set_style()
    data = pd.DataFrame({"x": [0, 1, 2], "y": [1.0, 3.0, 2.0]})
    first = figures.save_figure(_figure(), "00_test", data, out_dir=tmp_path / "a")
    second = figures.save_figure(_figure(), "00_test", data, out_dir=tmp_path / "b")
    assert set(first) == {"png", "pdf", "data"}
    assert first["data"].suffix == ".csv"
    for kind in ("png", "pdf", "data"):
        assert first[kind].read_bytes() == second[kind].read_bytes(), kind
    assert b"CreationDate" not in first["pdf"].read_bytes()
    assert pd.read_csv(first["data"])["y"].tolist() == [1.0, 3.0, 2.0]
    plt.close("all")


def test_save_figure_json_data_handles_numpy_and_tensors(tmp_path: Path) -> None:
    out = figures.save_figure(_figure(), "00_json", {"a": np.float32(0.5), "t": torch.arange(3), "n": float("nan")}, out_dir=tmp_path)
    assert json.loads(out["data"].read_text()) == {"a": 0.5, "n": None, "t": [0, 1, 2]}
    with pytest.raises(TypeError, match="DataFrame or a dict"):
        figures.save_figure(_figure(), "00_bad", [1, 2], out_dir=tmp_path)  # type: ignore[arg-type]
    plt.close("all")


def test_cached_computes_once_per_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIFTINV_RESULTS", str(tmp_path))
    calls: list[int] = []

    def compute() -> dict:
        calls.append(1)
        return {"acc": torch.tensor([0.5, 0.7]), "n": 3}

    a = cache.cached("thing", {"lr": 1e-3, "epochs": 2}, compute)
    b = cache.cached("thing", {"epochs": 2, "lr": 1e-3}, compute)  # same config, other key order
    c = cache.cached("thing", {"lr": 1e-2, "epochs": 2}, compute)
    assert len(calls) == 2
    assert torch.equal(a["acc"], b["acc"]) and c["n"] == 3


def test_safe_torch_load_refuses_pickled_code(tmp_path: Path) -> None:
    import pickle

    class Evil:
        def __reduce__(self):  # runs on unpickling with weights_only=False
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        pickle.dump({"w": Evil()}, handle)
    with pytest.raises(ValueError, match="weights_only"):
        cache.safe_torch_load(path)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        cache.safe_torch_load(tmp_path / "missing.pth")


def test_atomic_save_leaves_no_temporary_files(tmp_path: Path) -> None:
    cache.atomic_torch_save({"x": torch.ones(2)}, tmp_path / "ck.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]
    assert torch.equal(cache.safe_torch_load(tmp_path / "ck.pt")["x"], torch.ones(2))


def test_seed_everything_is_reproducible() -> None:
    g1 = runtime.seed_everything(666)
    a = torch.randn(3), torch.rand(2, generator=g1)
    g2 = runtime.seed_everything(666)
    b = torch.randn(3), torch.rand(2, generator=g2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_default_device_refuses_missing_cuda() -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    assert runtime.default_device().type == "cpu"
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        runtime.default_device("cuda")


# --------------------------------------------------------------------------- where figures go


@pytest.fixture
def figure_roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Committed and smoke figure folders under ``tmp_path``; no $SHIFTINV_FIGURES; no active profile."""
    monkeypatch.delenv("SHIFTINV_FIGURES", raising=False)
    monkeypatch.delenv("SHIFTINV_PROFILE", raising=False)
    monkeypatch.delenv("SHIFTINV_RUN", raising=False)
    monkeypatch.setattr(paths, "FIGURES", tmp_path / "figures")
    monkeypatch.setattr(paths, "SMOKE_FIGURES", tmp_path / "build" / "smoke" / "figures")
    monkeypatch.setitem(publish._ACTIVE, "profile", None)
    monkeypatch.setitem(publish._ACTIVE, "smoke", False)
    return tmp_path


def test_each_profile_has_its_own_figure_folder(figure_roots: Path) -> None:
    data = pd.DataFrame({"x": [1.5]})
    with pytest.raises(ValueError, match=r"use_profile\(PROFILE"):
        figures.save_figure(_figure(), "00_where", data)  # no profile: no silent default folder
    assert figures.use_profile("demo") == figure_roots / "figures" / "demo"
    demo = figures.save_figure(_figure(), "00_where", data)
    figures.use_profile("paper")
    paper = figures.save_figure(_figure(), "00_where", pd.DataFrame({"x": [2.5]}))
    assert demo["png"] == figure_roots / "figures" / "demo" / "00_where.png"
    assert paper["data"] == figure_roots / "figures" / "paper" / "00_where.csv"
    assert pd.read_csv(demo["data"])["x"].item() == 1.5  # the paper run did not overwrite demo's
    figures.use_profile("demo", smoke=True)
    smoke = figures.save_figure(_figure(), "00_where", pd.DataFrame({"x": [9.0]}))
    assert smoke["png"].parent == figure_roots / "build" / "smoke" / "figures" / "demo"
    assert pd.read_csv(demo["data"])["x"].item() == 1.5  # smoke never lands in figures/
    with pytest.raises(ValueError, match="plain name"):
        figures.use_profile("../elsewhere")
    plt.close("all")


def test_committed_figures_are_in_profile_folders() -> None:
    from shiftinv.study import profiles

    entries = sorted(paths.FIGURES.iterdir())
    assert entries, "figures/ is empty"
    loose = [p.name for p in entries if not p.is_dir()]
    assert not loose, f"figures must be in figures/<profile>/, found loose files {loose[:5]}"
    assert {p.name for p in entries} <= set(profiles.PROFILES)
    assert (paths.FIGURES / "demo" / "01_conv_equivariance.png").is_file()


def test_not_a_clone_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from shiftinv.workbook import parameters, runner

    monkeypatch.setattr(paths, "NOTEBOOKS", tmp_path / "site-packages" / "notebooks")
    monkeypatch.delenv("SHIFTINV_RESULTS", raising=False)
    with pytest.raises(RuntimeError, match=r"pip install -e \."):
        paths.require_clone()
    with pytest.raises(RuntimeError, match=r"pip install -e \."):
        paths.results_dir()
    with pytest.raises(parameters.NotebookError, match=r"pip install -e \."):
        runner.list_notebooks()
    assert runner.main(["--profile", "demo"]) != 0
    empty = tmp_path / "notebooks"
    empty.mkdir()
    monkeypatch.setattr(paths, "NOTEBOOKS", empty)
    with pytest.raises(parameters.NotebookError, match="no notebooks"):
        runner.list_notebooks()
    assert runner.main(["--profile", "demo"]) == 2  # zero notebooks is not a success


# --------------------------------------------------------------------------- deterministic data files


def test_numbers_are_written_to_fixed_significant_digits(tmp_path: Path) -> None:
    # the primer's round-off difference between two machines must not change the data file
    a = publish.encode_data(pd.DataFrame({"v": [0.00585665, 13.70000001, 4.7e-7], "n": [1, 2, 3]}))
    b = publish.encode_data(pd.DataFrame({"v": [0.00585666, 13.69999999, 4.7000001e-7], "n": [1, 2, 3]}))
    assert a == b
    assert a[1].decode().splitlines()[1:] == ["0.005857,1", "13.7,2", "4.7e-07,3"]
    assert publish.format_number(14_714_688.0) == "14714688"  # counts stored as floats stay exact
    assert publish.format_number(-0.0) == "0"
    ja = publish.encode_data({"v": np.float64(0.00585665), "w": [0.1 + 0.2]})
    jb = publish.encode_data({"v": np.float64(0.00585666), "w": [0.3]})
    assert ja == jb and json.loads(ja[1]) == {"v": 0.005857, "w": [0.3]}


@pytest.mark.slow
def test_figure_files_are_byte_identical_across_processes(tmp_path: Path) -> None:
    """PNG/PDF metadata and the manifest hold no times, versions or host names."""
    import subprocess
    import sys

    script = (
        "import sys, matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt, pandas as pd\n"
        "from shiftinv.viz import figures\n"
        "figures.set_style(); fig, ax = plt.subplots(figsize=(3, 2)); ax.plot([0, 1, 2], [1, 3, 2])\n"
        "run = {'by': 'test', 'notebook': '00', 'profile': 'demo', 'parameters': {'A': 1}}\n"
        "figures.save_figure(fig, '00_same', pd.DataFrame({'y': [1.25]}), out_dir=sys.argv[1], run=run)\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path / name)],
                              env={**os.environ, "SOURCE_DATE_EPOCH": epoch})
             for name, epoch in (("a", "0"), ("b", "1234567890"))]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["00_same.csv", "00_same.pdf", "00_same.png", "MANIFEST.json"]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


# --------------------------------------------------------------------------- concurrency and the manifest

_RACE = """
import sys, time
from pathlib import Path
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from shiftinv.viz import figures

tag, out, go = int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])

def draw():
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, tag])
    ax.set_title(f"writer {tag}")
    return fig

run = {"by": "test", "notebook": f"writer{tag}", "profile": "demo"}
figures.save_figure(draw(), "00_race", pd.DataFrame({"writer": [tag]}), out_dir=out / f"ref{tag}", run=run)
(out / f"ready{tag}").touch()
while not go.exists():
    time.sleep(0.01)
for _ in range(15):
    fig = draw()
    figures.save_figure(fig, "00_race", pd.DataFrame({"writer": [tag]}), out_dir=out / "shared", run=run)
    plt.close(fig)
"""


@pytest.mark.slow
def test_concurrent_saves_of_one_figure_leave_a_consistent_set(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", _RACE, str(tag), str(tmp_path), str(go)],
                              stderr=subprocess.PIPE, text=True) for tag in (1, 2)]
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready{t}").exists() for t in (1, 2)):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "writers did not start"
        time.sleep(0.05)
    go.touch()
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(errors)
    shared = tmp_path / "shared"
    writer = int(pd.read_csv(shared / "00_race.csv")["writer"].item())
    for ext in ("png", "pdf", "csv"):  # every file of the figure from the same writer
        assert (shared / f"00_race.{ext}").read_bytes() == (tmp_path / f"ref{writer}" / f"00_race.{ext}").read_bytes(), ext
    assert sorted(p.name for p in shared.iterdir()) == ["00_race.csv", "00_race.pdf", "00_race.png", "MANIFEST.json"]
    manifest = publish.read_manifest(shared)
    for name, entry in manifest["files"].items():
        import hashlib

        assert entry["sha256"] == hashlib.sha256((shared / name).read_bytes()).hexdigest(), name
        assert manifest["runs"][entry["run"]]["notebook"] == f"writer{writer}"


def test_manifest_names_the_run_and_reruns_are_byte_identical(tmp_path: Path) -> None:
    run = {"by": "python -m shiftinv.workbook.runner", "notebook": "01_x", "profile": "demo", "smoke": False,
           "parameters": {"PROFILE": "demo", "EPOCHS": 3, "LR": 0.00123456}, **publish.code_commit()}
    folder = tmp_path / "figures" / "demo"

    def run_notebook(names: list[str]) -> None:
        staging = folder / ".staging-01_x-1-abcd"
        staging.mkdir(parents=True)
        for name in names:
            figures.save_figure(_figure(), name, pd.DataFrame({"v": [1.0]}), out_dir=staging, run=run)
        publish.publish_folder(staging, folder, run)

    run_notebook(["01_a", "01_b"])
    first = (folder / publish.MANIFEST).read_bytes()
    manifest = json.loads(first)
    assert set(manifest["files"]) == {f"01_{s}.{e}" for s in "ab" for e in ("png", "pdf", "csv")}
    (entry,) = manifest["runs"].values()
    assert entry["notebook"] == "01_x" and entry["parameters"] == {"PROFILE": "demo", "EPOCHS": 3, "LR": 0.00123456}
    assert entry["profile"] == "demo" and "commit" in entry and "code_modified" in entry
    text = first.decode().lower()
    assert not any(word in text for word in ("time", "date", "host")), "the manifest must not change between reruns"
    run_notebook(["01_a", "01_b"])
    assert (folder / publish.MANIFEST).read_bytes() == first
    run_notebook(["01_a"])  # the notebook no longer makes 01_b: its old files are stale, removed
    assert not (folder / "01_b.png").exists() and (folder / "01_a.png").exists()
    assert set(publish.read_manifest(folder)["files"]) == {"01_a.png", "01_a.pdf", "01_a.csv"}
    assert not list(folder.glob(".staging-*"))
    plt.close("all")


def test_save_figure_leaves_no_temporary_files_and_drops_stale_data(tmp_path: Path) -> None:
    figures.save_figure(_figure(), "00_t", pd.DataFrame({"v": [1]}), out_dir=tmp_path)
    figures.save_figure(_figure(), "00_t", {"v": 1}, out_dir=tmp_path)  # data now JSON: the CSV goes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["00_t.json", "00_t.pdf", "00_t.png", "MANIFEST.json"]
    assert oct((tmp_path / "00_t.png").stat().st_mode & 0o044) == oct(0o044)  # readable like other files
    plt.close("all")


def test_amp_policy_is_one_rule_for_training_and_sweeps() -> None:
    assert runtime.resolve_amp("cpu", None) == "off"
    assert runtime.resolve_amp("cpu", True) == "off"  # no autocast policy on a CPU unless asked by name
    assert runtime.resolve_amp("cpu", "bfloat16") == "bf16"
    assert runtime.resolve_amp("cuda", None) == "bf16"
    with pytest.raises(ValueError, match="amp must be"):
        runtime.resolve_amp("cpu", "int8")
    with runtime.autocast("cpu", "bf16"):
        y = torch.nn.Linear(4, 4)(torch.randn(2, 4))
    assert y.dtype == torch.bfloat16


def test_state_fingerprint_changes_with_any_weight() -> None:
    torch.manual_seed(0)
    a = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    b = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    b.load_state_dict(a.state_dict())
    assert cache.state_fingerprint(a) == cache.state_fingerprint(b)
    b[1].running_mean += 1e-6  # a buffer counts too
    assert cache.state_fingerprint(a) != cache.state_fingerprint(b)
    assert cache.state_fingerprint(a, "not a module") == cache.state_fingerprint(a)

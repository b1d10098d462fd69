"""Unit tests of the foundation helpers: paths, figure saving, caching, seeding."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

from shiftinv import figures, paths, utils


def test_paths_do_not_depend_on_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = paths.ROOT
    monkeypatch.chdir(tmp_path)
    assert paths.ROOT == before
    assert (paths.ROOT / "lib" / "shiftinv" / "paths.py").exists()
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

    a = utils.cached("thing", {"lr": 1e-3, "epochs": 2}, compute)
    b = utils.cached("thing", {"epochs": 2, "lr": 1e-3}, compute)  # same config, other key order
    c = utils.cached("thing", {"lr": 1e-2, "epochs": 2}, compute)
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
        utils.safe_torch_load(path)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        utils.safe_torch_load(tmp_path / "missing.pth")


def test_atomic_save_leaves_no_temporary_files(tmp_path: Path) -> None:
    utils.atomic_torch_save({"x": torch.ones(2)}, tmp_path / "ck.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]
    assert torch.equal(utils.safe_torch_load(tmp_path / "ck.pt")["x"], torch.ones(2))


def test_seed_everything_is_reproducible() -> None:
    g1 = utils.seed_everything(666)
    a = torch.randn(3), torch.rand(2, generator=g1)
    g2 = utils.seed_everything(666)
    b = torch.randn(3), torch.rand(2, generator=g2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_default_device_refuses_missing_cuda() -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    assert utils.default_device().type == "cpu"
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        utils.default_device("cuda")

"""Fault injection for the commands and for publishing (issue 20): bad outputs, missing caches, a
damaged manifest, a run whose data source changed. Each case asserts the error text and that nothing
that was made (a models file, committed figures, the manifest's records) is lost or left half-done."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import pytest
import torch

from shiftinv.commands import models_file
from shiftinv.commands import sweep as sweep_command
from shiftinv.study import modelset, profiles
from shiftinv.viz import figures
from shiftinv.workbook import cache, paths, publish, runner

pytestmark = pytest.mark.faults

RANDOM_RUN = ["--synthetic", "2", "--size", "32", "--width", "0.0625", "--num-classes", "2", "--shifts", "1",
              "--device", "cpu", "--random-weights"]


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones too) with its SHA-256."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _models_file(path: Path) -> Path:
    torch.save({"format": models_file.MODELS_FORMAT, "trunks": {}, "heads": {}}, path)
    return path


# --------------------------------------------------------------------------- outputs checked before any work


def test_run_refuses_to_write_its_result_over_the_models_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    models = _models_file(tmp_path / "m.pt")
    before = _snapshot(tmp_path)
    assert sweep_command.main(["run", "--models", str(models), "--out", str(models)]) == 2
    assert "is also an input of this command" in capsys.readouterr().err
    assert _snapshot(tmp_path) == before  # the models file is intact, nothing beside it


@pytest.mark.parametrize("case", ["folder", "read-only", "other kind", "models file"])
def test_run_checks_its_output_before_sweeping(tmp_path: Path, capsys: pytest.CaptureFixture, case: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    expected = {"folder": "is a folder", "read-only": "is not a writable folder",
                "other kind": "exists and is not a sweep result", "models file": "but a models file"}[case]
    out = work / "result.pt"
    if case == "folder":
        out = work
    elif case == "read-only":
        work.chmod(0o555)
        if os.access(work, os.W_OK):  # root writes anywhere: a folder no one can write to instead
            out = Path("/proc/shiftinv-result.pt")
    elif case == "other kind":
        out.write_text("notes the user keeps here\n")
    else:
        _models_file(out)
    before = _snapshot(tmp_path)
    start = time.monotonic()
    try:
        assert sweep_command.main([*RANDOM_RUN, "--out", str(out)]) == 2
    finally:
        work.chmod(0o755)
    assert expected in capsys.readouterr().err
    assert time.monotonic() - start < 5  # refused before anything was built or swept
    assert _snapshot(tmp_path) == before  # no .NAME.PID.tmp, no per-trunk NAME.<trunk>.pt, file unchanged


def test_export_refuses_to_replace_a_file_that_is_not_a_models_file(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "sweep.pt"
    torch.save({"complete": True, "result": {}}, out)  # a sweep result: export must not overwrite it
    before = _snapshot(tmp_path)
    assert sweep_command.main(["export", "--profile", "demo", "--smoke", "--out", str(out)]) == 2
    assert "exists and is not a models file" in capsys.readouterr().err and _snapshot(tmp_path) == before


def test_an_existing_result_of_the_same_kind_is_replaced(tmp_path: Path) -> None:
    out = tmp_path / "r.pt"
    assert sweep_command.main([*RANDOM_RUN, "--out", str(out)]) == 0
    assert sweep_command.check_output(out, [], "sweep") == out  # a sweep result may be resumed / replaced
    assert sweep_command.main([*RANDOM_RUN, "--out", str(out)]) == 0


# --------------------------------------------------------------------------- export reads the cache as it is


def test_export_names_a_missing_model_before_computing_its_features(shared_data: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture) -> None:
    """`natural` (pretrained trunk, nothing cached): no feature is extracted before the error."""
    monkeypatch.setenv("SHIFTINV_RESULTS", str(tmp_path / "empty"))

    def extracted(*args: object, **kwargs: object) -> None:
        raise AssertionError("features were computed for a model that is not cached")

    monkeypatch.setattr(modelset.feature_data, "extract_features", extracted)
    assert sweep_command.main(["export", "--profile", "natural", "--smoke", "--out", str(tmp_path / "m.pt")]) == 2
    err = capsys.readouterr().err
    assert "vgg/flatten of profile natural" in err and "not in the cache" in err and "NOTEBOOKS=03" in err
    assert not (tmp_path / "m.pt").exists()


def test_export_ignores_refresh_unless_it_may_train(monkeypatch: pytest.MonkeyPatch) -> None:
    """`REFRESH=1` made export retrain, which it refuses, so it reported cached models as missing."""
    seen: list[tuple[str | None, bool]] = []

    def load(profile: object, *, load_only: bool) -> None:
        seen.append((os.environ.get(cache.REFRESH_ENV), load_only))
        raise modelset.ModelNotCachedError("vgg/flatten is not in the cache")

    monkeypatch.setattr(modelset, "train_or_load_models", load)
    monkeypatch.setenv(cache.REFRESH_ENV, "1")
    profile = profiles.get_profile("demo", smoke=True)
    for train_missing in (False, True):
        with pytest.raises(sweep_command.CommandError, match="not in the cache"):
            models_file.export_models(profile, train_missing=train_missing)
    assert seen == [(None, True), ("1", False)] and os.environ[cache.REFRESH_ENV] == "1"


# --------------------------------------------------------------------------- publishing


def _figure(tag: float = 1.0) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, tag])
    return fig


def _committed(folder: Path, sources: dict[str, str], names: list[str]) -> dict[str, str]:
    """``folder`` as a committed profile folder: notebook 09's figures made from ``sources`` by the runner."""
    run = {"by": "python -m shiftinv.workbook.runner", "notebook": "09_raid", "profile": "natural",
           "smoke": False, "parameters": {}}
    staging = folder / ".staging-09_raid-1-abcd"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHIFTINV_RUN", json.dumps(run))
        publish.record_sources(**sources)
        for name in names:
            figures.save_figure(_figure(), name, pd.DataFrame({"v": [1.0]}), out_dir=staging)
    publish.publish_folder(staging, folder, run)
    plt.close("all")
    return _snapshot(folder)


@pytest.fixture
def fresh_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """No profile or sources recorded by an earlier test of this process."""
    monkeypatch.setitem(publish._ACTIVE, "profile", None)
    monkeypatch.setitem(publish._ACTIVE, "sources", {})


def test_a_run_from_another_data_source_neither_replaces_nor_deletes_committed_figures(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, fresh_run: None) -> None:
    """Issue 20's case: RAID's `auto` fell back to stimuli without human responses, the run made
    09_raid_curves only, and the runner deleted the committed 09_raid_srcc as stale."""
    folder = tmp_path / "figures" / "natural"
    committed = _committed(folder, {"data": "raid-approx (human responses)"}, ["09_raid_curves", "09_raid_srcc"])
    monkeypatch.setattr(paths, "BUILD", tmp_path / "build")

    def fallback_run(source: Path, params: dict, out_dir: Path, progress: object = None) -> Path:
        publish.record_sources(data="embedded (no human responses)")
        figures.save_figure(_figure(2.0), "09_raid_curves", pd.DataFrame({"v": [2.0]}))  # into the staging folder
        return out_dir / "09_raid.ipynb"

    monkeypatch.setattr(runner, "run_notebook", fallback_run)
    monkeypatch.setattr(publish, "code_commit", lambda: {"commit": None, "code_modified": None})
    rc = runner.run_notebooks([Path("09_raid.py")], {}, "natural", False, folder, tmp_path / "executed")
    err = capsys.readouterr().err
    assert rc == 1
    assert "refusing to replace or delete 6 file(s)" in err and "09_raid_srcc.csv" in err
    assert "'raid-approx (human responses)', now 'embedded (no human responses)'" in err and "git rm" in err
    assert _snapshot(folder) == committed  # every committed file and the manifest as they were
    kept = tmp_path / "build" / "refused" / "natural" / "09_raid"
    assert sorted(p.name for p in kept.iterdir() if p.suffix != ".json") == ["09_raid_curves.csv", "09_raid_curves.pdf",
                                                                            "09_raid_curves.png"]


def test_the_same_sources_publish_and_remove_stale_files(tmp_path: Path, fresh_run: None) -> None:
    folder = tmp_path / "natural"
    _committed(folder, {"data": "raid-approx"}, ["09_raid_curves", "09_raid_srcc"])
    _committed(folder, {"data": "raid-approx"}, ["09_raid_curves"])
    assert not (folder / "09_raid_srcc.csv").exists() and (folder / "09_raid_curves.csv").exists()
    with pytest.raises(publish.PublishError, match="09_raid_curves.png"):  # an interactive save is checked too
        publish.record_sources(data="embedded")
        figures.save_figure(_figure(), "09_raid_curves", None, out_dir=folder)
    plt.close("all")


def test_a_damaged_manifest_is_rebuilt_from_the_files_with_a_warning(tmp_path: Path, fresh_run: None) -> None:
    """Issue 20's case: a damaged MANIFEST.json was rebuilt silently from the next write, dropping the
    records of every other file (89 of 101)."""
    folder = tmp_path / "demo"
    run = {"by": "test", "notebook": "01_x", "profile": "demo"}
    for k in range(12):
        figures.save_figure(_figure(k), f"01_f{k:02d}", pd.DataFrame({"v": [k]}), out_dir=folder, run=run)
    plt.close("all")
    manifest = folder / publish.MANIFEST
    damaged = manifest.read_bytes()[: len(manifest.read_bytes()) // 2]  # cut in half
    manifest.write_bytes(damaged)
    with pytest.warns(publish.ManifestWarning, match=r"damaged \(not readable JSON.*rebuilt from the 36 file\(s\)"):
        figures.save_figure(_figure(99), "02_new", pd.DataFrame({"v": [99]}), out_dir=folder, run=run)
    plt.close("all")
    records = publish.read_manifest(folder)["files"]
    on_disk = {p.name for p in folder.iterdir() if p.name not in (publish.MANIFEST, publish.DAMAGED_MANIFEST)}
    assert set(records) == on_disk and len(records) == 39  # nothing dropped
    for name, entry in records.items():
        assert entry["sha256"] == hashlib.sha256((folder / name).read_bytes()).hexdigest(), name
    assert (folder / publish.DAMAGED_MANIFEST).read_bytes() == damaged  # the damaged copy is kept


def test_run_names_every_image_of_a_folder_it_cannot_decode(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A truncated image and random bytes in `--images DIR`: one error naming both files, no result written."""
    from PIL import Image

    for cls in ("cat", "dog"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        Image.new("RGB", (40, 48), (10, 200, 30)).save(tmp_path / "imgs" / cls / "good.png")
    whole = (tmp_path / "imgs" / "cat" / "good.png").read_bytes()
    (tmp_path / "imgs" / "cat" / "cut.png").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "imgs" / "dog" / "noise.jpg").write_bytes(os.urandom(2000))
    out = tmp_path / "r.pt"
    args = ["--images", str(tmp_path / "imgs"), "--size", "32", "--width", "0.0625", "--num-classes", "2",
            "--shifts", "1", "--device", "cpu", "--random-weights", "--out", str(out)]
    assert sweep_command.main(args) == 2
    err = capsys.readouterr().err
    assert "cut.png" in err and "noise.jpg" in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".r.pt*"))

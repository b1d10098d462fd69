"""Fault injection: damaged caches, hostile files, bad images, full disks and bad parameters, done for real.

Each case checks three things: the error names what was wrong and says what to do, a command
exits non-zero when it did not do what was asked, and nothing committed or cached (good files)
is lost. The files are made here (``tests/damage.py``): cut in half, random bytes, a hostile
pickle, a decompression bomb; a full or read-only disk is simulated with ``monkeypatch``.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import subprocess
import sys
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch import nn

import damage
from reference import standins as reference_standins
from shiftinv.models import pretrained, vgg
from shiftinv.perceptual import images, iqa, metric_training, metrics, raid, stimuli
from shiftinv.perceptual import profiles as perceptual_profiles
from shiftinv.shifts import engine, sweep_result
from shiftinv.study import authors, datasets, depth_heads, feature_data, training
from shiftinv.workbook import cache, checkpoints, imageio, parameters

pytestmark = pytest.mark.faults

ROOT = Path(__file__).resolve().parents[1]


def _digest(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` (what "nothing lost" compares)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


class _Evil:
    """Unpickling it would run a shell command (it must never be unpickled)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def results(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A results folder of this test's own (damaging files never touches another test's cache)."""
    folder = tmp_path / "results"
    monkeypatch.setenv("SHIFTINV_RESULTS", str(folder))
    monkeypatch.setenv(cache.REFRESH_ENV, "")
    return folder


@pytest.fixture(scope="module")
def standins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return reference_standins.write_standins(tmp_path_factory.mktemp("iqa"), torch.Generator().manual_seed(0),
                                             n_refs=2, size=32)


# ----------------------------------------------------------------------------- 1. data sources


def test_missing_raid_data_is_an_error_not_a_silent_switch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SHIFTINV_DATA", str(tmp_path))  # an empty data folder
    natural = perceptual_profiles.perceptual_profile_from_params("natural", True, raid_source="auto")
    with pytest.raises(FileNotFoundError) as info:
        raid.raid_inputs(natural)
    text = str(info.value)
    assert str(tmp_path / "kodak") in text and "kodim01.png" in text and str(tmp_path / "raid" / "responses.csv") in text
    assert iqa.KODAK_URL.split()[0] in text and iqa.RAID_URL.split()[0] in text and "RAID_SOURCE=embedded" in text
    named = perceptual_profiles.perceptual_profile_from_params("natural", True, raid_source="embedded")
    assert raid.raid_inputs(named)[0] == "embedded"  # the fallback asked for by name
    paper = perceptual_profiles.perceptual_profile_from_params("paper", True)
    with pytest.raises(ValueError, match="RAID_DIR"):
        raid.raid_inputs(paper)


def test_notebook_09_stops_in_its_settings_cell_without_its_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Notebook 09's own cells up to its derived settings, as papermill runs them under ``natural``: the
    missing data stop the run there, before any stimulus or figure (the runner then exits non-zero and
    publishes nothing; rerun by hand: ``SHIFTINV_DATA=/empty make figures PROFILE=natural NOTEBOOKS=09``)."""
    import jupytext

    monkeypatch.setenv("SHIFTINV_DATA", str(tmp_path))
    monkeypatch.setenv("SHIFTINV_FIGURES", str(tmp_path / "figures"))
    cells = [c.source for c in jupytext.read(ROOT / "notebooks" / "09_raid.py").cells if c.cell_type == "code"]
    scope: dict = {}
    for i, source in enumerate(cells[:3]):  # imports, parameters, derived settings
        if i == 2:
            scope.update(PROFILE="natural", SMOKE=True)  # papermill's injected parameters
            with pytest.raises(FileNotFoundError, match=r"kodim01\.png.*RAID_SOURCE=embedded"):
                exec(compile(source, "09_raid derived settings", "exec"), scope)
        else:
            exec(compile(source, f"09_raid cell {i}", "exec"), scope)
    assert "metric_set" not in scope and "refs" not in scope  # stopped before building a metric or a stimulus
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # and wrote nothing


# ----------------------------------------------------------------------------- 2. caches recover in one run


def _tiny_data(n: int = 48, seed: int = 0) -> feature_data.FeatureData:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.randn(n, 5, 1, 1, generator=g) + torch.nn.functional.one_hot(y, 5).float()[:, :, None, None] * 2
    return feature_data.FeatureData({"a": x}, y)


class _Head(nn.Module):
    taps = ("a",)

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(5, 3)

    def forward(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.fc(feats["a"].flatten(1))


CFG = training.TrainConfig(epochs=2, batch_size=16, lr=1e-2, patience=5, seed=0, device="cpu")
CODE = "study.feature_data"  # the code behind the cached heads (keeps the code-version hash small)


@pytest.mark.parametrize("damage_kind", ["cut in half", "hostile pickle", "another model"])
def test_damaged_head_file_is_retrained_in_the_same_run(results: Path, tmp_path: Path, damage_kind: str,
                                                        capsys: pytest.CaptureFixture) -> None:
    data, calls = _tiny_data(), []

    def lazy() -> feature_data.FeatureData:  # what notebook 03 passes: features computed only when needed
        calls.append(1)
        return data

    for key in ("keep", "victim"):
        torch.manual_seed(0)
        training.train_or_load("head", {"k": key}, _Head(), lazy, lazy, CFG, code=CODE)
    victim = next(p for p in (results / "head").glob("*.pt") if cache.safe_torch_load(p)["config"]["key"] == {"k": "victim"})
    good = {p: p.read_bytes() for p in (results / "head").glob("*.pt") if p != victim}
    if damage_kind == "cut in half":
        damage.cut_in_half(victim)
    elif damage_kind == "hostile pickle":
        torch.save({"config": {}, "value": _Evil(tmp_path / "PWNED")}, victim)
    else:
        torch.save({"config": {}, "value": {"state": {"fc.weight": torch.zeros(2, 2)}, "result": {}}}, victim)
    calls.clear()
    torch.manual_seed(0)
    res = training.train_or_load("head", {"k": "victim"}, _Head(), lazy, lazy, CFG, code=CODE)  # one run
    assert not res.loaded and calls == [1, 1]  # retrained, with its data
    assert list((results / "head").glob(victim.name + ".corrupt"))  # set aside, kept for inspection
    assert "set aside" in capsys.readouterr().err and not (tmp_path / "PWNED").exists()
    assert all(p.read_bytes() == b for p, b in good.items())  # good files untouched
    calls.clear()
    assert training.train_or_load("head", {"k": "victim"}, _Head(), lazy, lazy, CFG, code=CODE).loaded and not calls


def test_depth_heads_recover_from_a_damaged_head_in_one_run(results: Path) -> None:
    trunk = vgg.build_trunk(width=1 / 16).eval()
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(12, 3, 32, 32, generator=g), torch.arange(12) % 2
    split = datasets.TensorImages(x, y)
    args = dict(trunk=trunk, train_data=split, val_data=split, num_classes=2, cfg=CFG, key={"t": "tiny"},
                taps=("pool1", "pool5"), input_size=32)
    depth_heads.train_depth_heads(**args)
    files = sorted((results / "head").glob("*.pt"))
    damage.cut_in_half(files[0])
    good = files[1].read_bytes()
    _, table = depth_heads.train_depth_heads(**args)
    assert sorted(table["cached"]) == [False, True] and files[1].read_bytes() == good
    assert (files[0].parent / (files[0].name + ".corrupt")).is_file()


def test_damaged_cached_value_is_recomputed_and_good_ones_kept(results: Path) -> None:
    values = {"a": torch.arange(3.0), "b": torch.ones(2)}
    for name, value in values.items():
        cache.cached(name, {"n": 1}, lambda v=value: {"v": v}, code="shifts.translation")
    damaged = cache.cache_path("a", {"n": 1}, code="shifts.translation")
    damage.cut_in_half(damaged)
    before = _digest(results / "b")
    out = cache.cached("a", {"n": 1}, lambda: {"v": values["a"]}, code="shifts.translation")
    assert torch.equal(out["v"], values["a"]) and damaged.is_file() and _digest(results / "b") == before
    # loads, but not what the caller expects (validate): set aside and recomputed as well
    wrong = cache.cached("b", {"n": 1}, lambda: {"w": 1}, code="shifts.translation", validate=lambda v: v["w"])
    assert wrong == {"w": 1} and list((results / "b").glob("*.corrupt"))


def _sweep_case(tmp_path: Path) -> tuple[nn.Module, torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    return model, torch.rand(4, 3, 16, 16), torch.tensor([0, 1, 2, 0]), [(0, 0), (1, 0), (0, 1)]


def test_damaged_sweep_result_is_set_aside_and_swept_again(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    model, x, y, shifts = _sweep_case(tmp_path)
    out = tmp_path / "result.sweep.pt"
    first = engine.sweep(model, None, x, y, shifts, "circular", out_path=out, progress=False)
    damage.cut_in_half(out)
    with pytest.raises(ValueError) as info:
        sweep_result.SweepResult.load(out)
    assert str(out) in str(info.value) and "sweep result" in str(info.value)
    assert "state dict" not in str(info.value)  # not the advice meant for weights files
    again = engine.sweep(model, None, x, y, shifts, "circular", out_path=out, progress=False)
    assert torch.equal(again.loss["model"], first.loss["model"]) and (tmp_path / "result.sweep.pt.corrupt").is_file()
    assert "set aside" in capsys.readouterr().err


def test_sweep_never_overwrites_a_file_of_another_kind(tmp_path: Path) -> None:
    model, x, y, shifts = _sweep_case(tmp_path)
    models_file = tmp_path / "m.pt"
    cache.atomic_torch_save({"trunks": {}, "heads": {"vgg": {"flatten": torch.ones(2)}}}, models_file)
    before = models_file.read_bytes()
    with pytest.raises(ValueError, match=r"m\.pt' exists and is not a sweep result.*another out_path"):
        engine.sweep(model, None, x, y, shifts, "circular", out_path=models_file, progress=False)
    assert models_file.read_bytes() == before


@pytest.mark.parametrize("bad", ["cut in half", "non-finite weights"])
def test_damaged_metric_checkpoint_starts_over(tmp_path: Path, bad: str) -> None:
    class FakeTrunk(nn.Module):  # training works on precomputed pair features: only channels() is used
        def channels(self, tap: str) -> int:
            return {"a": 6, "b": 4}[tap]

    metric = metrics.GAPMetric(FakeTrunk(), ("a", "b"))
    g = torch.Generator().manual_seed(0)
    feats, scores = torch.rand(24, metric.num_weights, generator=g), torch.rand(24, generator=g)
    cfg = metric_training.MetricTrainConfig(epochs=2, batch_size=8, init="ones", select="train_loss")
    ckpt = tmp_path / "m.ckpt.pt"
    metric_training.train_metric(metric, feats, scores, cfg, checkpoint=ckpt)
    if bad == "cut in half":
        damage.cut_in_half(ckpt)
    else:
        state = cache.safe_torch_load(ckpt)
        state["weight"][0] = float("nan")
        cache.atomic_torch_save(state, ckpt)
    history = metric_training.train_metric(metric, feats, scores, cfg, checkpoint=ckpt)
    assert list(history["epoch"]) == [1, 2] and (tmp_path / "m.ckpt.pt.corrupt").is_file()
    assert torch.isfinite(metric.weight).all()


def test_training_checkpoint_without_its_entries_starts_over(tmp_path: Path) -> None:
    ckpt = tmp_path / "run.ckpt.pt"
    head = _Head()
    run_id = {"train": CFG.to_dict(), "initial": cache.state_fingerprint(head)}
    cache.atomic_torch_save({"run_id": run_id, "epoch": 1, "model": head.state_dict()}, ckpt)  # no optimiser...
    result = training.fit(head, _tiny_data(), _tiny_data(seed=1), CFG, checkpoint=ckpt)
    assert len(result.history) == 2 and (tmp_path / "run.ckpt.pt.corrupt").is_file()


# ----------------------------------------------------------------------------- 4. image readers


BAD_IMAGES = {
    "truncated": lambda p: damage.truncated_image(p),
    "random bytes": lambda p: damage.random_bytes(p),
    "decompression bomb": lambda p: damage.bomb_png(p, 20000),
}


@pytest.mark.parametrize("kind", list(BAD_IMAGES))
def test_dataset_readers_name_the_bad_file(standins: dict[str, Path], tmp_path: Path, kind: str) -> None:
    import shutil

    folder = tmp_path / "raid"
    shutil.copytree(standins["raid"], folder)
    table = iqa.load_raid(folder, include_anchors=True)
    victims = [Path(table["dist_path"].iloc[3]), Path(table["dist_path"].iloc[7])]
    for v in victims:
        BAD_IMAGES[kind](v)
    with pytest.raises(imageio.ImageReadError) as info:  # RAID (notebook 09)
        iqa.load_into_memory(table, 32, how="Download RAID again.")
    assert [p for p, _ in info.value.bad] == victims and all(str(v) in str(info.value) for v in victims)
    assert "Download RAID again" in str(info.value)
    with pytest.raises(ValueError, match=r"cannot be decoded.*\n.*\n.*\n.*\(RAID check\)"):  # KADID/TID check
        iqa.decode_check(list(table["dist_path"]), "RAID check", "Re-extract it.")
    with pytest.raises(imageio.ImageReadError, match=str(victims[0]).replace(".", r"\.")):
        images.read_for_metrics(victims[0], 32)


def test_a_folder_keeps_its_good_images_and_lists_the_bad(tmp_path: Path) -> None:
    for cls in ("a", "b"):
        for i in range(2):
            damage.photo(tmp_path / cls / f"{i}.png", (20, 24), seed=i)
    bad = [damage.truncated_image(tmp_path / "a" / "t.jpg"), damage.random_bytes(tmp_path / "b" / "r.jpg"),
           damage.bomb_png(tmp_path / "b" / "z.png", 10000)]
    imgs, names, found = imageio.read_folder(tmp_path)
    assert len(imgs) == 4 and sorted(p for p, _ in found) == sorted(bad)
    with pytest.raises(imageio.ImageReadError) as info:  # what a command given --images DIR reports
        datasets.image_folder_tensors(tmp_path, 16)
    assert sorted(info.value.bad) == sorted((p, r) for p, r in found) and "3 image file(s)" in str(info.value)
    kodak = tmp_path / "kodak"
    for i in (1, 2):
        damage.photo(kodak / f"kodim{i:02d}.png", (24, 24), seed=i)
    damage.cut_in_half(kodak / "kodim02.png")
    with pytest.raises(imageio.ImageReadError, match="kodim02.png.*KODAK_DIR"):
        stimuli.kodak_references(kodak, 16, images=(1, 2))


# ----------------------------------------------------------------------------- 5. writes, weights, pickles


def _full_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Writes through ``cache`` fail with ENOSPC after half their bytes reached the disk."""
    real_open = open

    class HalfWriter:
        def __init__(self, handle) -> None:
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            self.handle.close()

        def write(self, data: bytes) -> int:
            self.handle.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache, "open", lambda path, mode="r", *a, **k: HalfWriter(real_open(path, mode, *a, **k))
                        if "w" in mode else real_open(path, mode, *a, **k), raising=False)


def test_full_disk_leaves_no_temp_file_and_keeps_the_old_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "value.pt"
    cache.atomic_torch_save({"w": torch.ones(3)}, target)
    before = target.read_bytes()
    _full_disk(monkeypatch)
    with pytest.raises(OSError, match="No space left"):
        cache.atomic_torch_save({"w": torch.zeros(50_000)}, target)
    with pytest.raises(OSError):
        cache.atomic_write_bytes(tmp_path / "notes.json", b"{}" * 1000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["value.pt"] and target.read_bytes() == before
    monkeypatch.undo()
    (tmp_path / "a_dir").mkdir()
    with pytest.raises(OSError):  # the output names a folder: nothing left behind either
        cache.atomic_write_bytes(tmp_path / "a_dir", b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_dir", "value.pt"]


def test_read_only_folder_gives_the_error_and_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def read_only(self: Path, target: Path) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(target))

    monkeypatch.setattr(Path, "replace", read_only)
    with pytest.raises(OSError, match="Read-only"):
        cache.atomic_write_bytes(tmp_path / "x.csv", b"a,b\n")
    assert list(tmp_path.iterdir()) == []


def test_non_finite_weights_are_refused_at_load(tmp_path: Path) -> None:
    sd = vgg.build_trunk().state_dict()
    sd = {f"features.{k.split('features.', 1)[1]}": v for k, v in sd.items() if "features." in k}
    sd["features.28.weight"][0, 0, 0, 0] = float("inf")
    pth = tmp_path / "vgg16.pth"
    cache.atomic_torch_save(sd, pth)
    with pytest.raises(ValueError, match=r"vgg16\.pth' holds NaN or infinite weights \(in features\.28\.weight"):
        pretrained.resolve_state_dict(str(pth))
    h5 = tmp_path / "vgg16.h5"
    with h5py.File(h5, "w") as f:
        for n, (idx, (out_c, in_c)) in enumerate(zip(pretrained.CONV_INDICES, pretrained.VGG16_CONVS)):
            kernel = np.nan_to_num(sd[f"features.{idx}.weight"].numpy().transpose(2, 3, 1, 0), posinf=1.0)
            if n == 3:
                kernel[0, 0, 0, 0] = np.nan
            f[f"layers/conv2d_{n}/vars/0"] = kernel
            f[f"layers/conv2d_{n}/vars/1"] = sd[f"features.{idx}.bias"].numpy()
    with pytest.raises(ValueError, match=r"vgg16\.h5' holds NaN or infinite weights \(in features\.7\.weight"):
        pretrained.read_keras_vgg16(h5)
    with h5py.File(h5, "a") as f:
        del f["layers/conv2d_5/vars/1"]
    with pytest.raises(ValueError, match=r"vgg16\.h5' is damaged.*layer 'layers/conv2d_5' has no 'layers/conv2d_5/vars/1'"):
        pretrained.read_keras_vgg16(h5)
    damage.cut_in_half(h5)
    with pytest.raises(ValueError, match=r"vgg16\.h5' is a truncated HDF5 file.*good copy"):
        pretrained.read_keras_vgg16(h5)


def test_hostile_torch_file_is_reported_unsafe_and_never_run(tmp_path: Path) -> None:
    path = tmp_path / "weights.pth"
    torch.save({"features.0.weight": torch.ones(1), "payload": _Evil(tmp_path / "PWNED")}, path)
    for load in (cache.safe_torch_load, pretrained.resolve_state_dict):
        with pytest.raises(ValueError) as info:
            load(str(path))
        text = str(info.value)
        assert str(path) in text and "UNSAFE" in text and "system" in text and "truncated" not in text
        assert "weights_only=False" not in text
    assert not (tmp_path / "PWNED").exists()


def test_tiny_pickle_cannot_make_the_result_reader_allocate_gigabytes(tmp_path: Path) -> None:
    bombs = {"ndarray": b"cnumpy\nndarray\n(J\x00\xe1\xf5\x05\x85tR.",  # numpy.ndarray((10**8,)): 0.8 GB
             "list(range)": b"cbuiltins\nlist\n(cbuiltins\nrange\n(J\x00\xe1\xf5\x05tRtR.",
             "bytearray": b"cbuiltins\nbytearray\n(J\x00\xe1\xf5\x05tR."}
    for name, data in bombs.items():
        path = tmp_path / f"{name}.pkl"
        path.write_bytes(data)
        tracemalloc.start()
        with pytest.raises(authors.UnsafePickleError, match=re.escape(f"{path.name}'") + ".*at most 64 MiB"):
            authors.safe_load_pickle(path)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 8 * 2**20, f"{name}: {peak / 2**20:.0f} MiB allocated"
    import pickle

    results = {(dh, dv): {"loss": 0.1, "accuracy": np.float64(0.9)} for dh in range(-3, 4) for dv in range(-3, 4)}
    assert authors.safe_load_pickle(pickle.dumps(results)) == results  # the authors' files still load


# ----------------------------------------------------------------------------- parameters


@pytest.mark.parametrize("notebook, name, value", [("08", "EPOCHS", "-5"), ("07", "IMAGE_SIZE", "48"),
                                                   ("05", "N_IMAGES", "-1"), ("01", "SEED", "-3")])
def test_out_of_range_parameters_are_refused_before_any_notebook_runs(notebook: str, name: str, value: str) -> None:
    notebooks = sorted((ROOT / "notebooks").glob(f"{notebook}_*.py"))
    with pytest.raises(parameters.ParameterError, match=f"{name}={value} is out of range: expected"):
        parameters.resolve_parameters(notebooks, {name: value}, "demo", False)


def test_refresh_takes_only_its_documented_values(monkeypatch: pytest.MonkeyPatch) -> None:
    notebooks = sorted((ROOT / "notebooks").glob("01_*.py"))
    for ok in ("", "0", "1", "true", "off", repr(1.7e9)):
        monkeypatch.setenv(cache.REFRESH_ENV, ok)
        parameters.resolve_parameters(notebooks, {}, "demo", False)
    monkeypatch.setenv(cache.REFRESH_ENV, "2")
    with pytest.raises(parameters.ParameterError, match=r"SHIFTINV_REFRESH='2'.*0, false.*1, true"):
        parameters.resolve_parameters(notebooks, {}, "demo", False)
    with pytest.raises(ValueError, match="SHIFTINV_REFRESH"):
        cache.refresh_requested(Path("x"))


def test_runner_exits_non_zero_on_a_bad_parameter_and_runs_nothing(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "lib"), "SHIFTINV_FIGURES": str(tmp_path / "figures"),
           "SHIFTINV_RESULTS": str(tmp_path / "results"), "SHIFTINV_REFRESH": ""}
    run = subprocess.run([sys.executable, "-m", "shiftinv.workbook.runner", "--profile", "demo", "-p", "EPOCHS=-5", "08"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "EPOCHS=-5 is out of range" in run.stderr
    assert not (tmp_path / "figures").exists() and not (tmp_path / "results").exists()

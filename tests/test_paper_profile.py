"""The classification profiles: settings, model set on tiny data, and the ``paper`` profile end to end.

The ``paper`` profile needs ImageNet and pretrained VGG-16 weights, neither of which is on this
machine; the notebook test builds stand-ins (a tiny ImageNet-layout folder with a few
ImageNet-160 classes, and a random VGG-16 conv state dict in torchvision's layout) and runs
notebooks 03 and 04 on them with ``SMOKE=True``, so the real GPU run has no untested path.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from shiftinv.models import vgg
from shiftinv.study import analysis, datasets, modelset, profiles
from shiftinv.workbook import paths, runner


def test_profiles_have_every_setting_and_smoke_shrinks_them() -> None:
    for name in profiles.PROFILES:
        full, smoke = profiles.get_profile(name), profiles.get_profile(name, smoke=True)
        assert smoke.smoke and not full.smoke
        assert smoke.n_sweep < full.n_sweep and smoke.shift_radius <= full.shift_radius
        assert smoke.head_train.epochs < full.head_train.epochs
        names = full.model_names()
        assert {"vgg/flatten", "vgg/final_gap", "vgg/multi_gap", "vgg/gap_flatten", "vgg/flatten_aug"} <= set(names)
        assert any(n.startswith("blur/") for n in names) and any(n.startswith("aps/") for n in names)
    paper = profiles.get_profile("paper")
    assert (paper.image_size, paper.shift_radius, paper.grid_step, paper.shift_mode) == (256, 50, 1, "mosaic")
    assert len(analysis.sweep_shifts(paper, "grid")) == 101 * 101
    assert paper.head_train.batch_size == 32 and paper.head_train.patience == 25 and paper.seed == 666
    assert paper.weights == "IMAGENET1K_V1" and not paper.train_trunk and not paper.batch_norm
    demo = profiles.get_profile("demo")
    assert demo.image_size == 128 and demo.shift_mode == "zero" and demo.train_trunk
    assert profiles.get_profile("demo", device="cpu").device == "cpu"
    with pytest.raises(ValueError, match="unknown profile"):
        profiles.get_profile("imagenet")


def test_sweep_shift_sets() -> None:
    p = profiles.get_profile("demo", smoke=True)
    grid = analysis.sweep_shifts(p, "grid")
    assert (0, 0) in grid and max(abs(d) for s in grid for d in s) == p.shift_radius
    prof = analysis.sweep_shifts(p, "profile")
    assert all(dy == 0 for _, dy in prof) and (0, 0) in prof
    diag = analysis.sweep_shifts(p, "diagonal")
    assert diag[0] == (-p.diag_radius, -p.diag_radius) and len(diag) == 2 * p.diag_radius + 1
    with pytest.raises(ValueError, match="kind"):
        analysis.sweep_shifts(p, "spiral")


def test_paper_profile_without_imagenet_says_what_to_pass() -> None:
    with pytest.raises(FileNotFoundError, match="IMAGENET_DIR"):
        modelset.load_data(profiles.get_profile("paper", smoke=True))


def test_recalibrate_batchnorm_matches_the_data_statistics() -> None:
    torch.manual_seed(0)
    trunk = vgg.build_trunk(width=1 / 32, batch_norm=True, pool="blur")
    images = datasets.TensorImages(torch.rand(24, 3, 64, 64) * 0.5 + 0.25, torch.zeros(24, dtype=torch.long))
    modelset.recalibrate_batchnorm(trunk, images, batch_size=8, device="cpu")
    assert not trunk.training
    bn = trunk.features[1]  # first BatchNorm, right after conv1_1
    with torch.no_grad():
        pre = trunk.features[0](trunk.normalize_input(images.images))  # (24, C, 64, 64)
    torch.testing.assert_close(bn.running_mean, pre.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5)


def test_model_set_on_tiny_digits(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SHIFTINV_RESULTS", str(tmp_path))
    p = profiles.get_profile("demo", smoke=True, device="cpu", max_train=60, max_val=20, max_test=20,
                             aug_shift=4, n_sweep=6)
    ms = modelset.train_or_load_models(p)
    assert list(ms.summary.model) == p.model_names()
    s = ms.summary.set_index("model")
    assert s.loc["vgg/flatten", "head_params"] > s.loc["vgg/final_gap", "head_params"]
    assert s.loc["blur/multi_gap", "trunk_source"].startswith("vgg conv weights")
    assert s.loc["aps/multi_gap", "trunk_source"] == "trained here"  # own_trunk in demo
    assert set(ms.trunks) == {"vgg", "blur", "aps"}
    assert all(not prm.requires_grad for t in ms.trunks.values() for prm in t.parameters())
    # the whole set sweeps in one call; heads are named trunk/head; a second call loads the cache
    res = analysis.translation_sweep(ms, "profile")
    assert set(analysis.main_runs(res).heads) == set(p.model_names()) and res.num_images == 6
    # every other seed of every head rides on the same trunk passes
    assert set(res.heads) == {r for m in p.model_names() for r in ms.run_names(m)}
    assert len(res.heads) == len(p.model_names()) * len(p.head_seed_list())
    table = analysis.robustness_table(res)
    assert ((table.acc_min <= table.acc0 + 1e-9) & (table.acc0 <= 1)).all()
    again = analysis.translation_sweep(ms, "profile")
    assert torch.equal(again.loss["vgg/flatten"], res.loss["vgg/flatten"])
    # APS + circular padding is exactly invariant to circular shifts (the digits' zero canvas
    # makes the zero-canvas shift of the sweep a circular one as long as the digit stays inside)
    circ = analysis.translation_sweep(ms, "diagonal", mode="circular", trunks=["aps"])
    for h in circ.heads:
        spread = (circ.loss[h] - circ.loss[h][circ.index(0, 0)]).abs().max()
        assert float(spread) < 1e-4, h
    # training again loads every run from the cache, the BlurPool trunk's re-estimated BatchNorm statistics too
    def no_recalibration(*args: object, **kwargs: object) -> None:
        raise AssertionError("BatchNorm statistics re-estimated although they are cached")

    monkeypatch.setattr(modelset, "recalibrate_batchnorm", no_recalibration)
    ms2 = modelset.train_or_load_models(p)
    assert ms2.summary.cached.all()
    pd.testing.assert_series_equal(ms2.summary.test_acc, ms.summary.test_acc)
    for k, t in ms.trunks["blur"].state_dict().items():
        assert torch.equal(ms2.trunks["blur"].state_dict()[k], t), k


# ----------------------------------------------------------------------------- paper profile, end to end


def _standin_imagenet(root: Path, shared: Path | None) -> list[str]:
    """train/<wnid>/ (20 images) and val/<wnid>/ (2) for three ImageNet-160 classes."""
    wnids = [w for w, _ in datasets.imagenet160_classes()]
    chosen = [wnids[0], wnids[4], wnids[8]]  # ILSVRC indices 0, 25, 50: in the shared sample too
    rng = np.random.default_rng(0)
    for w in chosen:
        base = None
        if shared is not None:
            hits = sorted((shared / "imagenet_sample").glob(f"{w}_*.JPEG"))
            base = np.asarray(Image.open(hits[0]).convert("RGB").resize((96, 80))) if hits else None
        for split, n in (("train", 20), ("val", 2)):
            folder = root / split / w
            folder.mkdir(parents=True)
            for i in range(n):
                noise = rng.integers(0, 255, (80, 96, 3), dtype=np.uint8)
                img = noise if base is None else ((base.astype(int) + noise // 4) % 256).astype(np.uint8)
                Image.fromarray(img).save(folder / f"{w}_{i}.JPEG")
    return chosen


def _paper_params(tmp_path: Path) -> dict:
    """Parameters of the `paper` profile pointing at a stand-in ImageNet folder and VGG-16 weights."""
    shared = paths.data_dir() if (paths.data_dir() / "imagenet_sample").is_dir() else None
    imagenet = tmp_path / "imagenet"
    _standin_imagenet(imagenet, shared)
    weights = tmp_path / "vgg16_standin.pth"
    torch.manual_seed(0)
    trunk = vgg.build_trunk(width=1.0)  # random conv weights in torchvision's vgg16().features layout
    torch.save({f"features.{k}": v for k, v in trunk.features.state_dict().items()}, weights)
    return {"PROFILE": "paper", "SMOKE": True, "IMAGENET_DIR": str(imagenet), "VGG_WEIGHTS": str(weights)}


@pytest.mark.notebooks
def test_paper_profile_runs_notebooks_05_and_06(tmp_path: Path, session_tmp: Path) -> None:
    """The aliasing and rotation/scaling notebooks on the same stand-ins (they train or load 03's models)."""
    params = _paper_params(tmp_path)
    out = session_tmp / "executed-paper-0506"
    for nb in runner.list_notebooks(["05", "06"]):
        assert runner.run_notebook(nb, params, out).exists()


@pytest.mark.notebooks
def test_paper_profile_runs_notebooks_03_and_04(tmp_path: Path, session_tmp: Path) -> None:
    params = _paper_params(tmp_path)
    out = session_tmp / "executed-paper"
    for nb in runner.list_notebooks(["03", "04"]):
        assert runner.run_notebook(nb, params, out).exists()
    figs = paths.figures_dir()
    summary = pd.read_csv(figs / "03_accuracy_params.csv")
    assert set(summary.model) == set(profiles.get_profile("paper", smoke=True).model_names())
    assert summary.trunk_source.str.contains("pretrained").all()
    assert (summary.trunk_params == 14_714_688).all()  # the full VGG-16 conv trunk
    assert summary.head_params[summary.model == "vgg/final_gap"].item() == 512 * 160 + 160
    rel = pd.read_csv(figs / "04_relative_loss.csv")
    assert {"dataset_signed", "acc_loss", "acc_loss_lo", "acc_loss_hi", "pred_change"} <= set(rel.columns)
    maps = pd.read_csv(figs / "04_shift_maps_accuracy.csv")
    assert {"head", "dx", "dy", "accuracy", "loss"} <= set(maps.columns)
    executed = json.loads((out / "04_translation_robustness.ipynb").read_text())
    assert executed["cells"], "executed notebook is empty"

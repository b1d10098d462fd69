"""The ``natural`` profile: the authors' MNIST-canvas experiment on the HED VGG-16 trunk, offline."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from shiftinv.study import digits, profiles
from shiftinv.workbook import runner


def test_natural_profile_is_the_authors_recipe_on_hed() -> None:
    p = profiles.get_profile("natural")
    assert (p.dataset, p.weights, p.train_trunk, p.width, p.batch_norm) == ("mnist_canvas", "hed", False, 1.0, False)
    assert p.image_size == 128 and p.digit_size == 28 and p.shift_mode == "zero" and p.profile_step == 1
    assert p.l2_heads == () and p.num_classes == 10
    assert [v.pool for v in p.variants] == ["max", "blur", "aps"] and not any(v.own_trunk for v in p.variants)
    assert {"vgg/flatten", "vgg/final_gap", "vgg/multi_gap", "blur/multi_gap", "aps/multi_gap"} <= set(p.model_names())


def test_overrides_are_typed_and_checked() -> None:
    p = profiles.get_profile("natural")
    assert profiles.parse_overrides(p, "image_size:256,shift_radius=50 max_train:none,grid_step:1") == {
        "image_size": 256, "shift_radius": 50, "max_train": None, "grid_step": 1}
    q = profiles.profile_from_params("natural", False, overrides="image_size:56 n_sweep:8")
    assert (q.image_size, q.n_sweep, q.weights) == (56, 8, "hed")
    with pytest.raises(ValueError, match="image_siz.*FIELD one of"):
        profiles.parse_overrides(p, "image_siz:256")
    with pytest.raises(ValueError, match="not a valid int for image_size"):
        profiles.parse_overrides(p, "image_size:big")


@pytest.mark.shared_data
def test_mnist_splits_from_the_test_split_only(shared_data: Path) -> None:
    if not (shared_data / "mnist" / "MNIST" / "raw").is_dir():
        pytest.skip("no MNIST in the shared data folder")
    s = digits.mnist_splits(shared_data / "mnist", canvas=56, sizes=(100, 30, 40), seed=3)
    assert s.sizes() == {"train": 100, "val": 30, "test": 40} and "test split only" in s.info["source"]
    assert s.train.images.shape[1:] == (1, 56, 56) and s.background == "zero"
    assert int(s.train.images[:, :, :14].max()) == 0 and int(s.train.images[:, :, 14:42, 14:42].max()) > 200
    again = digits.mnist_splits(shared_data / "mnist", canvas=56, sizes=(100, 30, 40), seed=3)
    assert torch.equal(s.test.images, again.test.images)  # deterministic
    full = digits.mnist_splits(shared_data / "mnist", canvas=32, seed=3)
    assert sum(full.sizes().values()) == 10000  # disjoint parts of the 10k test digits
    ids = [set(map(bytes, map(lambda t: t.numpy().tobytes(), part.images[:300]))) for part in (full.train, full.test)]
    assert len(ids[0] & ids[1]) < 5  # (a few MNIST digits are exact duplicates)


@pytest.mark.notebooks
@pytest.mark.shared_data
@pytest.mark.slow
def test_natural_profile_runs_notebooks_03_and_04(shared_data: Path, session_tmp: Path) -> None:
    if not (shared_data / "mnist" / "MNIST" / "raw").is_dir():
        pytest.skip("no MNIST in the shared data folder")
    for nb in runner.list_notebooks(["03", "04"]):  # 05-06 run on demo and paper stand-ins; 01-02 read no profile data
        runner.run_notebook(nb, {"PROFILE": "natural", "SMOKE": True}, session_tmp / "executed-natural")
    from shiftinv.workbook import paths

    summary = pd.read_csv(next(paths.figures_dir().rglob("03_accuracy_params.csv")))
    assert set(summary.model) == set(profiles.get_profile("natural", smoke=True).model_names())
    assert summary["trunk_source"].str.contains("HED").all()

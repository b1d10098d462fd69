"""Intervals: seeded bootstrap over test images (against scipy's), relative loss per resample."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy import stats

from shiftinv.shifts import relative_loss
from shiftinv.shifts.sweep_result import SweepResult
from shiftinv.study import feature_data, intervals


def test_bootstrap_weights_are_seeded_resamples() -> None:
    w = intervals.bootstrap_weights(50, 300, seed=3)
    assert w.shape == (300, 50)
    assert torch.allclose(w.sum(1), torch.ones(300, dtype=torch.float64))
    assert torch.equal(w, intervals.bootstrap_weights(50, 300, seed=3))
    assert not torch.equal(w, intervals.bootstrap_weights(50, 300, seed=4))
    assert torch.allclose((w * 50).round(), w * 50)  # counts


def test_accuracy_interval_matches_scipy_percentile_bootstrap() -> None:
    g = torch.Generator().manual_seed(0)
    correct = torch.rand(64, generator=g) < 0.8
    lo, hi = intervals.accuracy_interval(correct, n_boot=4000, seed=1)
    ref = stats.bootstrap((correct.numpy().astype(float),), np.mean, n_resamples=4000, method="percentile",
                          confidence_level=0.95, rng=np.random.default_rng(0)).confidence_interval
    acc = float(correct.double().mean())
    assert lo <= acc <= hi
    assert lo == pytest.approx(ref.low, abs=0.025) and hi == pytest.approx(ref.high, abs=0.025)
    lo2, hi2 = intervals.accuracy_interval(correct.repeat(16), n_boot=2000, seed=1)
    assert hi2 - lo2 < (hi - lo) / 2  # 16x the images: about a quarter of the width


def test_relative_loss_replicates_recompute_the_point_estimate() -> None:
    g = torch.Generator().manual_seed(0)
    shifts = torch.tensor([[0, 0], [1, 0], [2, 0], [0, 1]])
    loss = torch.rand(4, 10, generator=g) + 0.1
    loss[1:] *= 3
    result = SweepResult(shifts, torch.zeros(10, dtype=torch.long), "zero", {"h": loss}, {"h": loss > 0.5},
                         {"h": torch.zeros(4, 10, dtype=torch.long)}, {"h": loss}, {}, {})
    uniform = torch.full((1, 10), 0.1, dtype=torch.float64)
    point = relative_loss.relative_loss(result, "h", "dataset_signed")
    assert float(intervals.relative_loss_replicates(loss, result.index(0, 0), uniform)[0]) == pytest.approx(point)
    reps = intervals.relative_loss_replicates(loss, 0, intervals.bootstrap_weights(10, 500))
    lo, hi = intervals.percentile_interval(reps)
    assert lo < point < hi and point > 1.0


def test_seed_heads_and_test_correctness_reuse_the_model_sets_features(monkeypatch, tmp_path) -> None:
    """Per-image correctness from the model set's cached test features equals a pass through the trunk,
    and the re-seeded heads train on those features (no second trunk pass over the data)."""
    from shiftinv.study import modelset, profiles

    monkeypatch.setenv("SHIFTINV_RESULTS", str(tmp_path))
    p = profiles.get_profile("demo", smoke=True, device="cpu", max_train=40, max_val=12, max_test=16, aug_shift=0)
    ms = modelset.train_or_load_models(p)
    names = {t: {f"{t}/{h}": m for h, m in hs.items()} for t, hs in ms.heads.items()}
    from_features = intervals._test_correct(ms, names)
    through_trunk = intervals._test_correct(dataclasses.replace(ms, features={}), names)
    assert from_features.keys() == through_trunk.keys()
    for k in from_features:
        assert torch.equal(from_features[k], through_trunk[k]), k
    calls = []
    monkeypatch.setattr(feature_data, "extract_features", lambda *a, **k: calls.append(a) or (_ for _ in ()).throw(
        AssertionError("a second trunk pass")))
    reruns = intervals.seed_heads(ms, seeds=(0, 1))
    assert set(reruns) == {n for n in ms.names()} and not calls
    # the GAP-depth ablation of notebook 05 also trains on those features
    from shiftinv.study import depth_heads

    heads, table = depth_heads.train_depth_heads(ms.trunks["vgg"], ms.splits.train, ms.splits.val, p.num_classes,
                                              cfg=dataclasses.replace(p.head_train, device="cpu"), key={"test": 1},
                                              test_data=ms.splits.test, input_size=p.image_size,
                                              source=ms.features["vgg"])
    assert len(heads) == 5 and table["test_acc"].between(0, 1).all() and not calls

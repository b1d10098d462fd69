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


def _result(correct: torch.Tensor, pred: torch.Tensor, loss: torch.Tensor) -> SweepResult:
    shifts = torch.tensor([[0, 0], [1, 0], [2, 0]])
    n = correct.shape[1]
    return SweepResult(shifts, torch.zeros(n, dtype=torch.long), "zero", {"h": loss}, {"h": correct}, {"h": pred},
                       {"h": loss}, {}, {})


def test_sweep_statistics_match_their_definitions_by_hand() -> None:
    correct = torch.tensor([[1, 1, 0, 1], [0, 1, 0, 1], [0, 0, 0, 1]], dtype=torch.bool)  # (S=3, N=4)
    pred = torch.tensor([[2, 1, 0, 3], [1, 1, 0, 3], [0, 2, 0, 3]])
    loss = torch.tensor([[0.5, 0.5, 2.0, 1.0], [1.0, 0.5, 2.0, 1.0], [2.0, 1.5, 2.0, 1.0]])
    uniform = torch.full((1, 4), 0.25, dtype=torch.float64)
    st = {k: float(v[0]) for k, v in intervals.sweep_statistics(_result(correct, pred, loss), "h", uniform).items()}
    assert st["acc0"] == 0.75 and st["acc_mean"] == pytest.approx((3 + 2 + 1) / 12)
    assert st["acc_min"] == 0.25 and st["acc_loss"] == pytest.approx(0.75 - 0.5)
    assert st["loss0"] == 1.0 and st["dataset_signed"] == pytest.approx(((1.125 - 1) + (1.625 - 1)) / 2)
    assert st["pred_change"] == pytest.approx((0 + 1 + 0 + 0 + 1 + 1 + 0 + 0) / 12)  # two of three shifts differ


def test_pooled_runs_give_an_interval_around_the_mean_wider_than_one_run() -> None:
    g = torch.Generator().manual_seed(0)
    runs = {}
    for name, p in (("h", 0.8), ("h@1", 0.6), ("h@2", 0.7)):
        runs[name] = torch.rand(200, generator=g) < p
    one = intervals.run_intervals({"h": [(runs, "h")]}, intervals.accuracy_statistics)
    pooled = intervals.run_intervals({"h": [(runs, n) for n in runs]}, intervals.accuracy_statistics)
    r, r1 = pooled.iloc[0], one.iloc[0]
    accs = [float(runs[n].double().mean()) for n in runs]
    assert r["test_acc"] == pytest.approx(np.mean(accs)) and r["test_acc_main"] == pytest.approx(accs[0])
    assert r["test_acc_seed_min"] == min(accs) and r["test_acc_seed_max"] == max(accs) and r["runs"] == 3
    assert r["test_acc_lo"] < r["test_acc_seed_min"] <= r["test_acc"] <= r["test_acc_seed_max"] < r["test_acc_hi"]
    assert r["test_acc_hi"] - r["test_acc_lo"] > r1["test_acc_hi"] - r1["test_acc_lo"]
    assert not r["few_images"] and r["n_images"] == 200
    with pytest.raises(ValueError, match="different numbers of images"):
        intervals.run_intervals({"h": [(runs, "h"), ({"x": torch.ones(5, dtype=torch.bool)}, "x")]},
                                intervals.accuracy_statistics)


def test_ripple_statistic_finds_a_period_and_not_noise() -> None:
    g = torch.Generator().manual_seed(0)
    dx = torch.arange(-32, 33)
    shifts = torch.stack([dx, torch.zeros_like(dx)], 1)
    n = 40
    noise = torch.randn(65, n, generator=g)
    periodic = torch.cos(2 * np.pi * dx[:, None] / 32) + 0.3 * noise

    def result(values: torch.Tensor) -> SweepResult:
        zero = torch.zeros(65, n)
        return SweepResult(shifts, torch.zeros(n, dtype=torch.long), "mosaic", {"h": values.float()}, {"h": zero > 0},
                           {"h": zero.long()}, {"h": zero}, {}, {})

    stat = intervals.ripple_statistic(32, field="loss")
    table = intervals.run_intervals({"p": [(result(periodic), "h")], "n": [(result(noise), "h")]}, stat)
    p, q = table.set_index("head").loc["p"], table.set_index("head").loc["n"]
    assert p["ripple_lo"] > 1.5 and p["chance"] == pytest.approx(31 / 63)  # at most 63 / 31 with 2 periods
    assert 0.8 < q["ripple"] < 1.2 and q["ripple_hi"] < p["ripple_lo"]  # white noise: about its chance share
    step4 = intervals.ripple_statistic(128, field="loss")(result(noise), "h", torch.full((1, n), 1 / n,
                                                                                       dtype=torch.float64))
    assert torch.isnan(step4["ripple"]).all()  # a period longer than the line: NaN, not an error


def test_accuracy_intervals_pool_every_seed_from_cached_features(monkeypatch, tmp_path) -> None:
    """Every seed of every head is trained on the model set's features (no second trunk pass) and its
    per-image test outcomes give the accuracy interval; the depth heads of notebook 05 reuse the features."""
    from shiftinv.study import modelset, profiles

    monkeypatch.setenv("SHIFTINV_RESULTS", str(tmp_path))
    p = profiles.get_profile("demo", smoke=True, device="cpu", max_train=40, max_val=12, max_test=16, aug_shift=0)
    ms = modelset.train_or_load_models(p)
    assert set(ms.seed_heads["vgg"]["multi_gap"]) == set(p.head_seed_list()) == {0, 1, 2}
    assert ms.heads["vgg"]["multi_gap"] is ms.seed_heads["vgg"]["multi_gap"][p.seed]
    table = intervals.accuracy_intervals([ms]).set_index("model")
    for name in ms.names():
        accs = [float(ms.test_outcomes[f"{name}@{s}"].double().mean()) for s in p.head_seed_list()]
        assert table.loc[name, "test_acc"] == pytest.approx(np.mean(accs)) and table.loc[name, "runs"] == 3
        assert table.loc[name, "test_acc_main"] == pytest.approx(float(ms.summary.set_index("model").loc[name, "test_acc"]))
    assert bool(table["few_images"].all())  # 16 test images
    calls = []
    monkeypatch.setattr(feature_data, "extract_features", lambda *a, **k: calls.append(a) or (_ for _ in ()).throw(
        AssertionError("a second trunk pass")))
    from shiftinv.study import depth_heads

    heads, t = depth_heads.train_depth_heads(ms.trunks["vgg"], ms.splits.train, ms.splits.val, p.num_classes,
                                             cfg=dataclasses.replace(p.head_train, device="cpu"), key={"test": 1},
                                             test_data=ms.splits.test, input_size=p.image_size,
                                             source=ms.features["vgg"])
    assert len(heads) == 5 and t["test_acc"].between(0, 1).all() and not calls

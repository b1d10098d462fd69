"""Correlations, logistic fits, bootstrap intervals and dependent-correlation tests vs scipy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as sps

from shiftinv.perceptual import stats


@pytest.fixture()
def pairs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    refs = np.repeat(np.arange(12), 10)  # 12 references x 10 pairs
    damage = rng.uniform(0, 1, refs.size)
    mos = 5 - 4 * damage + 0.3 * rng.normal(size=refs.size)  # quality: falls with damage
    dist = damage**1.5 + 0.05 * rng.normal(size=refs.size)  # a distance: grows with damage
    return dist, mos, refs


def test_sign_convention_table() -> None:
    assert stats.agreement_sign("distance", "quality") == -1
    assert stats.agreement_sign("distance", "distortion") == 1
    assert stats.agreement_sign("similarity", "quality") == 1
    assert stats.agreement_sign("similarity", "distortion") == -1
    with pytest.raises(ValueError, match="score_kind"):
        stats.agreement_sign("distance", "mos")


def test_correlations_match_scipy_with_sign(pairs) -> None:
    dist, mos, _ = pairs
    out = stats.correlations(dist, mos, "distance", "quality")
    assert out["srcc"] == pytest.approx(-sps.spearmanr(dist, mos).statistic, abs=1e-12)
    assert out["krcc"] == pytest.approx(-sps.kendalltau(dist, mos).statistic, abs=1e-12)
    assert out["plcc"] == pytest.approx(-sps.pearsonr(dist, mos).statistic, abs=1e-12)
    assert out["srcc"] > 0.8  # the distance agrees with humans, so the reported value is positive
    # a nonlinear but monotonic relation: the logistic fit must improve PLCC
    assert out["plcc_logistic"] >= out["plcc"] - 1e-9
    flipped = stats.correlations(-dist, mos, "similarity", "quality")
    assert flipped["srcc"] == pytest.approx(out["srcc"])


def test_correlation_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="same length"):
        stats.srcc([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="NaN"):
        stats.plcc([1, 2, np.nan, 4], [1, 2, 3, 4])


@pytest.mark.parametrize("params", [4, 5])
def test_logistic_fit_recovers_a_logistic(params: int) -> None:
    x = np.linspace(-3, 3, 200)
    y = 1 + 4 / (1 + np.exp(-(x - 0.5) / 0.7))
    f = stats.fit_logistic(x, y, params)
    assert np.abs(f(x) - y).max() < 0.05
    assert stats.plcc_logistic(x, y, params) > 0.999
    assert stats.plcc(x, y) < 0.98  # raw PLCC is lower: the fit matters


def test_vectorised_spearman_matches_scipy_with_ties() -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 5, size=(20, 30)).astype(float)  # many ties
    y = rng.normal(size=(20, 30))
    ours = stats.spearman_rows(x, y)
    ref = [sps.spearmanr(a, b).statistic for a, b in zip(x, y)]
    np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_bootstrap_is_reproducible_and_contains_estimate(pairs) -> None:
    dist, mos, refs = pairs
    a = stats.bootstrap_ci(dist, mos, refs, torch.Generator().manual_seed(5), n_boot=300)
    b = stats.bootstrap_ci(dist, mos, refs, torch.Generator().manual_seed(5), n_boot=300)
    c = stats.bootstrap_ci(dist, mos, refs, torch.Generator().manual_seed(6), n_boot=300)
    assert a == b and a != c
    assert a.low < a.estimate < a.high
    assert a.estimate == pytest.approx(-sps.spearmanr(dist, mos).statistic)
    for stat in ("krcc", "plcc"):
        iv = stats.bootstrap_ci(dist, mos, refs, torch.Generator().manual_seed(5), stat=stat, n_boot=100)
        assert iv.low < iv.estimate < iv.high


def test_bootstrap_resamples_references_not_pairs() -> None:
    # each reference has its own offset: pairs within a reference are strongly dependent, so
    # resampling references must give a wider interval than resampling pairs would.
    rng = np.random.default_rng(3)
    refs = np.repeat(np.arange(8), 40)
    offset = rng.normal(size=8)[refs] * 2
    x = offset + 0.2 * rng.normal(size=refs.size)
    y = offset + 0.2 * rng.normal(size=refs.size) + 0.5 * rng.normal(size=8)[refs]
    by_ref = stats.bootstrap_ci(x, y, refs, torch.Generator().manual_seed(0), "plcc", "distance", "distortion", 400)
    by_pair = stats.bootstrap_ci(x, y, np.arange(refs.size), torch.Generator().manual_seed(0), "plcc",
                                 "distance", "distortion", 400)
    assert (by_ref.high - by_ref.low) > 2 * (by_pair.high - by_pair.low)


def _trivariate(n: int, r12: float, r13: float, r23: float, rng: np.random.Generator) -> np.ndarray:
    cov = np.array([[1, r12, r13], [r12, 1, r23], [r13, r23, 1]])
    return rng.multivariate_normal(np.zeros(3), cov, size=n)


def test_williams_test_is_calibrated_and_powerful() -> None:
    rng = np.random.default_rng(7)
    null_p, alt_p = [], []
    for _ in range(400):
        d = _trivariate(60, 0.5, 0.5, 0.4, rng)
        r = np.corrcoef(d.T)
        null_p.append(stats.williams_test(r[0, 1], r[0, 2], r[1, 2], 60)[1])
        d = _trivariate(60, 0.8, 0.4, 0.4, rng)
        r = np.corrcoef(d.T)
        alt_p.append(stats.williams_test(r[0, 1], r[0, 2], r[1, 2], 60)[1])
    assert 0.02 < np.mean(np.array(null_p) < 0.05) < 0.09  # size close to 5 %
    assert np.mean(np.array(alt_p) < 0.05) > 0.9


def test_williams_limits_and_symmetry() -> None:
    t, p = stats.williams_test(0.6, 0.6, 0.3, 50)
    assert t == 0 and p == pytest.approx(1.0)
    t1, _ = stats.williams_test(0.7, 0.5, 0.3, 50)
    t2, _ = stats.williams_test(0.5, 0.7, 0.3, 50)
    assert t1 == pytest.approx(-t2) and t1 > 0
    with pytest.raises(ValueError, match="n >= 4"):
        stats.williams_test(0.5, 0.4, 0.1, 3)


def test_zou_interval_covers_true_difference() -> None:
    rng = np.random.default_rng(11)
    cover = 0
    trials = 300
    for _ in range(trials):
        d = _trivariate(80, 0.7, 0.4, 0.3, rng)
        r = np.corrcoef(d.T)
        low, high = stats.zou_ci(r[0, 1], r[0, 2], r[1, 2], 80)
        cover += low <= 0.3 <= high
    assert 0.90 < cover / trials < 0.99


def test_compare_metrics_and_paired_bootstrap(pairs) -> None:
    dist, mos, refs = pairs
    rng = np.random.default_rng(2)
    worse = dist + 0.4 * rng.normal(size=dist.size)
    out = stats.compare_metrics(dist, worse, mos)
    assert out["r_a"] > out["r_b"] and out["p_value"] < 0.01 and out["zou_low"] > 0
    diff = stats.bootstrap_difference(dist, worse, mos, refs, torch.Generator().manual_seed(0), n_boot=200)
    assert diff["difference"] == pytest.approx(-sps.spearmanr(dist, mos).statistic + sps.spearmanr(worse, mos).statistic)
    assert diff["low"] > 0 and diff["p_value"] < 0.05


def test_monotonicity_per_group() -> None:
    table = pd.DataFrame({"ref": ["a"] * 5 + ["b"] * 5, "distortion": ["blur"] * 10,
                          "level": list(range(1, 6)) * 2, "d": [1, 2, 3, 4, 5, 5, 4, 3, 2, 1]})
    out = stats.monotonicity(table, "d")
    np.testing.assert_allclose(out["srcc_level"], [1.0, -1.0])
    np.testing.assert_allclose(stats.monotonicity(table, "d", metric_kind="similarity")["srcc_level"], [-1.0, 1.0])


def test_evaluation_and_curve_tables(pairs) -> None:
    dist, mos, refs = pairs
    table = pd.DataFrame({"a": dist, "b": -dist + 0.3 * np.random.default_rng(0).normal(size=dist.size),
                          "score": mos, "ref": refs})
    out = stats.evaluation_table(table, {"a": "distance", "b": "similarity"}, "quality",
                                 torch.Generator().manual_seed(0), n_boot=100)
    assert out.loc[0, "srcc"] == pytest.approx(-sps.spearmanr(dist, mos).statistic)
    assert (out["srcc_low"] < out["srcc"]).all() and (out["srcc"] < out["srcc_high"]).all()
    assert out.loc[0, "srcc"] > out.loc[1, "srcc"] > 0  # b is a noisier similarity: positive, lower

    levels = np.tile(np.arange(1, 6), 8)
    curve_table = pd.DataFrame({"ref": np.repeat(np.arange(4), 10), "transform": np.tile(np.repeat(["rot", "gn"], 5), 4),
                                "level": levels, "m": levels ** 2.0, "curve": (levels - 1) / 4})
    curves = stats.response_curves(curve_table, ["m"])
    m = curves[(curves["source"] == "m") & (curves["transform"] == "rot")]["mean"].to_numpy()
    np.testing.assert_allclose(m, np.arange(1, 6) ** 2 / 25)  # a distance keeps its zero
    sim = stats.response_curves(curve_table, ["m"], {"m": "similarity"})
    m = sim[(sim["source"] == "m") & (sim["transform"] == "rot")]["mean"].to_numpy()
    np.testing.assert_allclose(m, 1 - (np.arange(1, 6) ** 2 - 1) / 24)  # negated, min-max
    h = curves[(curves["source"] == "human") & (curves["transform"] == "gn")]["mean"].to_numpy()
    np.testing.assert_allclose(h, np.linspace(0, 1, 5))
    summary, per = stats.monotonicity_summary(curve_table.assign(distortion=curve_table["transform"]), {"m": "distance"},
                                              torch.Generator().manual_seed(0), n_boot=50)
    assert summary.loc[0, "monotonicity"] == pytest.approx(1.0) and len(per) == 2


def test_compare_metric_pairs_skips_absent_metrics() -> None:
    g = np.random.default_rng(0)
    score = np.repeat(np.arange(5.0), 8)
    values = pd.DataFrame({"ref": np.tile(np.arange(8), 5), "score": score,
                           "a": score + 0.1 * g.standard_normal(40), "b": score + 2.0 * g.standard_normal(40)})
    kinds = {"a": "distance", "b": "distance"}
    table = stats.compare_metric_pairs(values, kinds, [("a", "b"), ("a", "missing")], "score", "distortion",
                                       torch.Generator().manual_seed(0), n_boot=50)
    assert list(table[["A", "B"]].itertuples(index=False, name=None)) == [("a", "b")]
    assert table.loc[0, "PLCC A"] > table.loc[0, "PLCC B"] and table.loc[0, "SRCC A-B (bootstrap)"] > 0

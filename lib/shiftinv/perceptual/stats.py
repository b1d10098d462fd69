"""Agreement between a metric and human scores: rank/linear correlations, logistic fits,
bootstrap intervals over reference images, and tests for two dependent correlations.

Sign convention (explicit everywhere): a *metric* is either a ``"distance"`` (higher = images
more different: LPIPS, the GAP metric, MSE) or a ``"similarity"`` (higher = more alike: PSNR,
SSIM); a human *score* is either ``"quality"`` (higher = better: MOS, KADID-10k ``dmos``) or
``"distortion"`` (higher = worse: DMOS of LIVE/CSIQ, RAID's MLDS responses). :func:`agreement_sign`
returns the factor (+1 or -1) that makes a reported correlation *positive when the metric agrees
with humans*. Every public function here that takes ``metric_kind`` / ``score_kind`` applies it.

The correlations themselves are scipy's (``spearmanr``, ``kendalltau``, ``pearsonr``); the
vectorised Spearman used inside the bootstrap is checked against scipy in the tests.
Ties: scipy's average ranks (Spearman) and tau-b (Kendall).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import numpy as np
import pandas as pd
import torch
from scipy import optimize, stats

MetricKind = Literal["distance", "similarity"]


ScoreKind = Literal["quality", "distortion"]


CORRELATIONS = ("srcc", "krcc", "plcc")


def agreement_sign(metric_kind: str, score_kind: str) -> int:
    """+1 if a larger metric value should go with a larger score, else -1.

    A distance agrees with a distortion score (both grow with the damage); a distance
    disagrees in sign with a quality score (MOS falls as the damage grows), etc.
    """
    if metric_kind not in ("distance", "similarity"):
        raise ValueError(f"metric_kind must be 'distance' or 'similarity', got {metric_kind!r}")
    if score_kind not in ("quality", "distortion"):
        raise ValueError(f"score_kind must be 'quality' (higher = better, e.g. MOS) or "
                         f"'distortion' (higher = worse, e.g. DMOS), got {score_kind!r}")
    grows_with_damage = metric_kind == "distance"
    score_grows_with_damage = score_kind == "distortion"
    return 1 if grows_with_damage == score_grows_with_damage else -1


def _as_pair(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"metric values and scores must have the same length, got {x.size} and {y.size}")
    if x.size < 3:
        raise ValueError(f"need at least 3 pairs to correlate, got {x.size}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("metric values or scores contain NaN/inf; drop those pairs first")
    return x, y


def srcc(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (scipy, average ranks for ties), no sign change."""
    x, y = _as_pair(x, y)
    return float(stats.spearmanr(x, y).statistic)


def krcc(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall tau-b (scipy), no sign change."""
    x, y = _as_pair(x, y)
    return float(stats.kendalltau(x, y).statistic)


def plcc(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson linear correlation (scipy), no sign change."""
    x, y = _as_pair(x, y)
    return float(stats.pearsonr(x, y).statistic)


# ----------------------------------------------------------------------------------------------
# Logistic mapping (VQEG): PLCC is usually reported after a monotonic logistic fit of the
# metric to the scores.


def logistic4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """4-parameter logistic: ``(b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2``."""
    z = np.clip(-(x - b3) / (abs(b4) + 1e-12), -60, 60)
    return (b1 - b2) / (1.0 + np.exp(z)) + b2


def logistic5(x: np.ndarray, b1: float, b2: float, b3: float, b4: float, b5: float) -> np.ndarray:
    """5-parameter logistic (VQEG / Sheikh 2006): ``b1 (1/2 - 1/(1+exp(b2 (x-b3)))) + b4 x + b5``."""
    z = np.clip(b2 * (x - b3), -60, 60)
    return b1 * (0.5 - 1.0 / (1.0 + np.exp(z))) + b4 * x + b5


def fit_logistic(x: Sequence[float], y: Sequence[float], params: int = 5) -> Callable[[np.ndarray], np.ndarray]:
    """Fit the ``params``-parameter logistic (4 or 5) mapping metric ``x`` to scores ``y``.

    Returns the fitted function ``f`` (``f(x)`` predicts the scores). Raises ``RuntimeError``
    when scipy's least squares does not converge.
    """
    x, y = _as_pair(x, y)
    # fit on standardised x (well conditioned; no parameter starts at a tiny nonzero value,
    # where MINPACK's relative finite-difference step would vanish)
    mx, sx = float(np.mean(x)), float(np.std(x)) or 1.0
    z = (x - mx) / sx
    slope_sign = 1.0 if stats.pearsonr(x, y).statistic >= 0 else -1.0
    if params == 4:
        func = logistic4
        p0 = [y.max() if slope_sign > 0 else y.min(), y.min() if slope_sign > 0 else y.max(), 0.0, 1.0]
    elif params == 5:
        func = logistic5
        p0 = [slope_sign * (y.max() - y.min()), 1.0, 0.0, 0.0, float(np.mean(y))]
    else:
        raise ValueError(f"params must be 4 or 5, got {params}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        coef, _ = optimize.curve_fit(func, z, y, p0=p0, maxfev=20000)
    return lambda v: func((np.asarray(v, dtype=np.float64) - mx) / sx, *coef)


def plcc_logistic(x: Sequence[float], y: Sequence[float], params: int = 5) -> float:
    """PLCC between the logistic-mapped metric and the scores (falls back to raw on failure)."""
    x, y = _as_pair(x, y)
    try:
        pred = fit_logistic(x, y, params)(x)
        if np.std(pred) == 0 or not np.isfinite(pred).all():
            raise RuntimeError("degenerate fit")
        return float(stats.pearsonr(pred, y).statistic)
    except RuntimeError:
        return plcc(x, y)  # no convergence: report the raw PLCC rather than a bad fit


def correlations(values: Sequence[float], scores: Sequence[float], metric_kind: str = "distance",
                 score_kind: str = "quality", logistic: int | None = 5) -> dict[str, float]:
    """SRCC, KRCC, PLCC (raw) and PLCC after a logistic fit, sign-corrected.

    Positive = the metric orders pairs as humans do (see :func:`agreement_sign`). The logistic
    PLCC is always reported as agreement (the fit absorbs the sign) when the raw PLCC agrees.
    Returns ``{"srcc", "krcc", "plcc", "plcc_logistic"}`` (the last is absent if ``logistic=None``).
    """
    sign = agreement_sign(metric_kind, score_kind)
    x, y = _as_pair(values, scores)
    out = {"srcc": sign * srcc(x, y), "krcc": sign * krcc(x, y), "plcc": sign * plcc(x, y)}
    if logistic:
        # fit on sign-corrected values, so an agreeing metric gives a positive PLCC
        out["plcc_logistic"] = plcc_logistic(sign * x, y, logistic)
    return out


# ----------------------------------------------------------------------------------------------
# Vectorised Spearman for resampling


def _rankdata_rows(a: np.ndarray) -> np.ndarray:
    """Average ranks along the last axis (ties get the mean rank), shape preserved."""
    return stats.rankdata(a, axis=-1)


def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row of ``x`` with the same row of ``y``.

    Args:
        x, y: (B, n) arrays. Returns: (B,) correlations (NaN for a constant row).
    """
    rx, ry = _rankdata_rows(np.asarray(x, float)), _rankdata_rows(np.asarray(y, float))
    rx = rx - rx.mean(-1, keepdims=True)
    ry = ry - ry.mean(-1, keepdims=True)
    den = np.sqrt((rx * rx).sum(-1) * (ry * ry).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rx * ry).sum(-1) / den


def _stat_fn(stat: str) -> Callable[[np.ndarray, np.ndarray], float]:
    table = {"srcc": srcc, "krcc": krcc, "plcc": plcc}
    if stat not in table:
        raise ValueError(f"stat must be one of {sorted(table)}, got {stat!r}")
    return table[stat]


def _group_indices(groups: Sequence) -> list[np.ndarray]:
    codes, uniques = pd.factorize(pd.Series(list(groups)), sort=True)
    return [np.flatnonzero(codes == g) for g in range(len(uniques))]


def _resample_groups(members: list[np.ndarray], n_boot: int, generator: torch.Generator) -> list[np.ndarray]:
    picks = torch.randint(len(members), (n_boot, len(members)), generator=generator).numpy()
    return [np.concatenate([members[g] for g in row]) for row in picks]


@dataclass(frozen=True)
class Interval:
    """A point estimate with a percentile bootstrap interval."""
    estimate: float
    low: float
    high: float
    level: float
    n_boot: int

    def __str__(self) -> str:
        return f"{self.estimate:.3f} [{self.low:.3f}, {self.high:.3f}]"


def bootstrap_ci(values: Sequence[float], scores: Sequence[float], groups: Sequence, generator: torch.Generator,
                 stat: str = "srcc", metric_kind: str = "distance", score_kind: str = "quality",
                 n_boot: int = 1000, level: float = 0.95) -> Interval:
    """Percentile bootstrap interval of a sign-corrected correlation, resampling *reference images*.

    Pairs that share a reference image are not independent; resampling whole references (with
    replacement, all their pairs together) gives honest intervals. ``groups[i]`` is pair i's
    reference. ``generator`` (a seeded ``torch.Generator``) is the only randomness used.
    """
    sign = agreement_sign(metric_kind, score_kind)
    x, y = _as_pair(values, scores)
    members = _group_indices(groups)
    if len(groups) != x.size:
        raise ValueError(f"groups has {len(groups)} entries for {x.size} pairs")
    if len(members) < 2:
        raise ValueError("bootstrap over reference images needs at least 2 distinct references")
    estimate = sign * _stat_fn(stat)(x, y)
    samples = _resample_groups(members, n_boot, generator)
    if stat == "srcc":
        # all resamples have the same length when the groups have the same size: vectorise
        lengths = {len(s) for s in samples}
        if len(lengths) == 1:
            idx = np.stack(samples)
            boots = spearman_rows(x[idx], y[idx])
        else:
            boots = np.array([spearman_rows(x[s][None], y[s][None])[0] for s in samples])
    else:
        fn = _stat_fn(stat)
        boots = np.array([_safe(fn, x[s], y[s]) for s in samples])
    boots = sign * boots[np.isfinite(boots)]
    alpha = (1 - level) / 2
    low, high = np.quantile(boots, [alpha, 1 - alpha])
    return Interval(float(estimate), float(low), float(high), level, int(boots.size))


def _safe(fn: Callable[[np.ndarray, np.ndarray], float], a: np.ndarray, b: np.ndarray) -> float:
    try:
        return fn(a, b)
    except ValueError:
        return float("nan")


def bootstrap_difference(values_a: Sequence[float], values_b: Sequence[float], scores: Sequence[float],
                         groups: Sequence, generator: torch.Generator, stat: str = "srcc",
                         kinds_a: tuple[str, str] = ("distance", "quality"),
                         kinds_b: tuple[str, str] = ("distance", "quality"),
                         n_boot: int = 1000, level: float = 0.95) -> dict[str, float]:
    """Paired bootstrap (over references) of ``corr(A) - corr(B)`` on the same pairs.

    Returns ``{"difference", "low", "high", "p_value"}`` where ``p_value`` is the two-sided
    bootstrap p-value (twice the smaller tail fraction beyond 0).
    """
    xa, y = _as_pair(values_a, scores)
    xb, _ = _as_pair(values_b, scores)
    sa, sb = agreement_sign(*kinds_a), agreement_sign(*kinds_b)
    fn = _stat_fn(stat)
    diff = sa * fn(xa, y) - sb * fn(xb, y)
    samples = _resample_groups(_group_indices(groups), n_boot, generator)
    boots = np.array([sa * _safe(fn, xa[s], y[s]) - sb * _safe(fn, xb[s], y[s]) for s in samples])
    boots = boots[np.isfinite(boots)]
    alpha = (1 - level) / 2
    low, high = np.quantile(boots, [alpha, 1 - alpha])
    p = min(1.0, 2 * min((boots <= 0).mean(), (boots >= 0).mean()))
    return {"difference": float(diff), "low": float(low), "high": float(high), "p_value": float(p)}


# ----------------------------------------------------------------------------------------------
# Two dependent, overlapping correlations: r12 = corr(score, A), r13 = corr(score, B),
# r23 = corr(A, B), all on the same n pairs.


def williams_test(r12: float, r13: float, r23: float, n: int) -> tuple[float, float]:
    """Williams' t test (Steiger 1980, eq. 7) of H0: rho12 = rho13 with variable 1 shared.

    Returns ``(t, two-sided p)`` with ``n - 3`` degrees of freedom (the test used in
    metric comparisons, e.g. WMT). Pass *sign-corrected* correlations.
    """
    if n < 4:
        raise ValueError(f"Williams' test needs n >= 4 pairs, got {n}")
    for r in (r12, r13, r23):
        if not -1 <= r <= 1:
            raise ValueError(f"correlations must lie in [-1, 1], got {r}")
    det = 1 - r12**2 - r13**2 - r23**2 + 2 * r12 * r13 * r23
    rbar = (r12 + r13) / 2
    den = 2 * (n - 1) / (n - 3) * det + rbar**2 * (1 - r23) ** 3
    t = (r12 - r13) * math.sqrt((n - 1) * (1 + r23) / max(den, 1e-300))
    p = 2 * stats.t.sf(abs(t), df=n - 3)
    return float(t), float(p)


def zou_ci(r12: float, r13: float, r23: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Zou's (2007) confidence interval for ``r12 - r13`` (overlapping dependent correlations).

    Built from the Fisher-z intervals of each correlation and their correlation
    (Zou 2007, eqs. 11-12). The difference is significant at ``1 - level`` when 0 is outside.
    """
    if n < 4:
        raise ValueError(f"Zou's interval needs n >= 4 pairs, got {n}")
    zcrit = stats.norm.ppf(1 - (1 - level) / 2)

    def fisher_ci(r: float) -> tuple[float, float]:
        z = math.atanh(max(min(r, 1 - 1e-12), -1 + 1e-12))
        half = zcrit / math.sqrt(n - 3)
        return math.tanh(z - half), math.tanh(z + half)

    l1, u1 = fisher_ci(r12)
    l2, u2 = fisher_ci(r13)
    # correlation between r12 and r13 (Olkin-Finn / Dunn-Clark form used by Zou)
    c = ((r23 - 0.5 * r12 * r13) * (1 - r12**2 - r13**2 - r23**2) + r23**3) / ((1 - r12**2) * (1 - r13**2))
    d = r12 - r13
    low = d - math.sqrt((r12 - l1) ** 2 + (u2 - r13) ** 2 - 2 * c * (r12 - l1) * (u2 - r13))
    high = d + math.sqrt((u1 - r12) ** 2 + (r13 - l2) ** 2 - 2 * c * (u1 - r12) * (r13 - l2))
    return float(low), float(high)


def compare_metrics(values_a: Sequence[float], values_b: Sequence[float], scores: Sequence[float],
                    kinds_a: tuple[str, str] = ("distance", "quality"),
                    kinds_b: tuple[str, str] = ("distance", "quality"),
                    stat: str = "plcc", level: float = 0.95) -> dict[str, float]:
    """Is metric A closer to the scores than metric B on the same pairs?

    Uses the sign-corrected correlations r12 = corr(scores, A), r13 = corr(scores, B) and
    r23 = corr(A', B') of the sign-corrected metrics, with Williams' t and Zou's interval.
    ``stat="srcc"`` applies the same formulas to ranks (an approximation, as usual in the field).
    Returns ``{"r_a", "r_b", "r_ab", "n", "t", "p_value", "zou_low", "zou_high"}``.
    """
    xa, y = _as_pair(values_a, scores)
    xb, _ = _as_pair(values_b, scores)
    xa = agreement_sign(*kinds_a) * xa
    xb = agreement_sign(*kinds_b) * xb
    fn = {"plcc": plcc, "srcc": srcc}.get(stat)
    if fn is None:
        raise ValueError(f"stat must be 'plcc' or 'srcc', got {stat!r}")
    r12, r13, r23 = fn(y, xa), fn(y, xb), fn(xa, xb)
    t, p = williams_test(r12, r13, r23, xa.size)
    low, high = zou_ci(r12, r13, r23, xa.size, level)
    return {"r_a": r12, "r_b": r13, "r_ab": r23, "n": int(xa.size), "t": t, "p_value": p,
            "zou_low": low, "zou_high": high}


# ----------------------------------------------------------------------------------------------
# Monotonicity (demo profile, no human scores)


def monotonicity(table: pd.DataFrame, value_col: str, level_col: str = "level",
                 by: Sequence[str] = ("ref", "distortion"), metric_kind: str = "distance") -> pd.DataFrame:
    """Spearman correlation of a metric with the distortion level within each group.

    Not agreement with humans: only whether the metric grows with the amount of distortion
    for a fixed reference and distortion type (+1 = perfectly monotonic). Sign-corrected for
    ``metric_kind`` (a similarity should *fall* with the level). Returns one row per group
    with column ``srcc_level`` (NaN when the metric is constant within the group).
    """
    sign = 1 if metric_kind == "distance" else -1
    rows = []
    for key, sub in table.groupby(list(by), sort=True):
        key = key if isinstance(key, tuple) else (key,)
        v, lv = sub[value_col].to_numpy(float), sub[level_col].to_numpy(float)
        r = np.nan if (np.ptp(v) == 0 or np.ptp(lv) == 0) else sign * stats.spearmanr(v, lv).statistic
        rows.append({**dict(zip(by, key)), "srcc_level": float(r)})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------
# Tables for the notebooks


def evaluation_table(table: pd.DataFrame, metric_kinds: dict[str, str], score_kind: str,
                     generator: torch.Generator, score_col: str = "score", group_col: str = "ref",
                     n_boot: int = 1000, level: float = 0.95, logistic: int | None = 5) -> pd.DataFrame:
    """One row per metric: sign-corrected SRCC (with a bootstrap interval over ``group_col``),
    KRCC, PLCC and PLCC after a logistic fit, and the number of pairs and references."""
    rows = []
    for name, kind in metric_kinds.items():
        sub = table[[name, score_col, group_col]].replace([np.inf, -np.inf], np.nan).dropna()
        corr = correlations(sub[name], sub[score_col], kind, score_kind, logistic)
        iv = bootstrap_ci(sub[name], sub[score_col], sub[group_col].tolist(), generator, "srcc", kind, score_kind,
                          n_boot, level)
        rows.append({"metric": name, "srcc": corr["srcc"], "srcc_low": iv.low, "srcc_high": iv.high,
                     "krcc": corr["krcc"], "plcc": corr["plcc"], "plcc_logistic": corr.get("plcc_logistic", np.nan),
                     "n_pairs": len(sub), "n_refs": sub[group_col].nunique()})
    return pd.DataFrame(rows)


def monotonicity_summary(table: pd.DataFrame, metric_kinds: dict[str, str], generator: torch.Generator,
                         level_col: str = "level", by: Sequence[str] = ("ref", "distortion"),
                         n_boot: int = 1000, level: float = 0.95) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Monotonicity with the distortion level (no human data), summarised per metric.

    Returns ``(summary, per_distortion)``: ``summary`` has the mean within-group SRCC with level
    per metric and a percentile bootstrap interval resampling the *references* (``by[0]``);
    ``per_distortion`` the mean per metric and distortion (``by[1]``).
    """
    summary, per = [], []
    ref_col, dist_col = by[0], by[1]
    for name, kind in metric_kinds.items():
        mono = monotonicity(table, name, level_col, by, kind)
        per_ref = mono.groupby(ref_col)["srcc_level"].mean()
        vals = per_ref.to_numpy()
        picks = torch.randint(len(vals), (n_boot, len(vals)), generator=generator).numpy()
        boots = np.nanmean(vals[picks], axis=1)
        alpha = (1 - level) / 2
        low, high = np.nanquantile(boots, [alpha, 1 - alpha])
        summary.append({"metric": name, "monotonicity": float(np.nanmean(mono["srcc_level"])), "low": float(low),
                        "high": float(high), "n_groups": int(mono["srcc_level"].notna().sum())})
        for d, v in mono.groupby(dist_col)["srcc_level"].mean().items():
            per.append({"metric": name, dist_col: d, "monotonicity": float(v)})
    return pd.DataFrame(summary), pd.DataFrame(per)


def response_curves(table: pd.DataFrame, metric_cols: Sequence[str], kinds: dict[str, str] | None = None,
                    group: Sequence[str] = ("ref", "transform"), level_col: str = "level",
                    human_col: str | None = "curve") -> pd.DataFrame:
    """Mean response curves per transform and level, each metric normalised like RAID's curves.

    Within each (reference, transform) a *distance* is divided by its maximum over the levels
    present (so 0 stays the undistorted anchor, as in RAID's curves, whether or not the anchor
    rows are in the table); a *similarity* has no natural zero and is negated and min-max rescaled
    to [0, 1]. Then the curves are averaged over references.
    Returns long format: ``transform, level, source (metric name or "human"), mean, sem``.
    """
    kinds = kinds or {}
    rows = []
    sources = list(metric_cols) + ([human_col] if human_col and human_col in table else [])
    for src in sources:
        v = table[src].astype(float) * (-1 if kinds.get(src) == "similarity" else 1)
        g = table.assign(_v=v).groupby(list(group))["_v"]
        hi = g.transform("max")
        if kinds.get(src, "distance") == "distance":
            norm = v / hi.replace(0, np.nan)
        else:
            lo = g.transform("min")
            norm = (v - lo) / (hi - lo).replace(0, np.nan)
        if src == human_col:
            norm = table[src].astype(float)
        agg = table.assign(_n=norm).groupby([group[1], level_col])["_n"].agg(["mean", "sem"]).reset_index()
        agg["source"] = "human" if src == human_col else src
        rows.append(agg)
    out = pd.concat(rows, ignore_index=True)
    return out.rename(columns={group[1]: "transform"})[["transform", level_col, "source", "mean", "sem"]]


def compare_metric_pairs(values: pd.DataFrame, kinds: dict[str, str], pairs: Sequence[tuple[str, str]],
                         score_col: str, score_kind: str, generator: torch.Generator, group_col: str = "ref",
                         n_boot: int = 1000) -> pd.DataFrame:
    """Is metric A better than metric B on the same pairs? One row per ``(A, B)`` in ``pairs``.

    Williams' t and Zou's interval on the PLCCs (:func:`compare_metrics`), and the SRCC difference
    with a paired bootstrap over ``group_col`` (:func:`bootstrap_difference`, drawn from ``generator``
    in the order of ``pairs``). Pairs naming a metric absent from ``kinds`` are skipped.
    """
    rows = []
    for a, b in [(a, b) for a, b in pairs if a in kinds and b in kinds]:
        ka, kb = (kinds[a], score_kind), (kinds[b], score_kind)
        w = compare_metrics(values[a], values[b], values[score_col], ka, kb, stat="plcc")
        boot = bootstrap_difference(values[a], values[b], values[score_col], values[group_col].tolist(), generator,
                                    kinds_a=ka, kinds_b=kb, n_boot=n_boot)
        rows.append({"A": a, "B": b, "PLCC A": w["r_a"], "PLCC B": w["r_b"], "Williams t": w["t"],
                     "p (Williams)": w["p_value"], "Zou low": w["zou_low"], "Zou high": w["zou_high"],
                     "SRCC A-B (bootstrap)": boot["difference"], "low": boot["low"], "high": boot["high"]})
    return pd.DataFrame(rows)

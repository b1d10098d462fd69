"""Periodicity of a response over the shift grid: spectra, energy at predicted periods, dominant period.

A GAP read after ``k`` stride-2 pools is exactly invariant only to shifts that
are multiples of ``2**k`` (circular shifts, circular padding), so a response
``R(dx)`` (loss, accuracy, a logit...) over the shift grid is periodic with
period ``P = 2**k``: all its non-constant energy sits at the frequencies
``m / P`` (``m = 1, 2, ...``: the fundamental and its harmonics).

To put ``1/P`` exactly on a DFT bin, a response of length ``L`` is trimmed
(centred) to the largest length ``L'`` that is a multiple of every predicted
period not longer than ``L`` (e.g. 101 shifts ``-50..50`` -> 96 for periods up
to 32). Then:

    fraction(P) = sum_{k != 0, k multiple of L'/P} |X_k|^2 / sum_{k != 0} |X_k|^2

equals the R^2 of the best ``P``-periodic fit (the mean over each residue
class ``dx mod P``). A response with no periodic structure (white noise) still
scores ``chance(P) = (P - 1) / (L' - 1)`` on average, reported beside it;
``exclusive(P)`` keeps only the odd harmonics (energy at period ``P`` that is
not already periodic with ``P / 2``). Several responses (rows of a map, heads,
images) pool their energies.

The two periodicity tables: :func:`periodicity_table` (image-averaged response over a
2-D shift grid, per axis) and :func:`periodicity_summary` (per-image responses over a
dense 1-D dx sweep against the architecture's predicted period, with :func:`exact_period`).
"""

from __future__ import annotations

import math
from functools import reduce
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd


def predicted_period(trunk: Any, head: Any) -> int | None:
    """The period (px) of a head's response over circular shifts that the architecture predicts.

    A GAP read after ``k`` stride-2 pools is invariant to shifts by multiples of ``2**k``
    (exactly so with circular shifts and circular padding), so a head reading only GAP
    taps has period ``max 2**k`` over its taps. A head with a flatten (or fc) part sees
    positions: ``None`` (no period below the image size). APS pooling is invariant to every
    circular shift: period 1.
    """
    if getattr(head, "flatten_tap", None) or getattr(head, "kind", "") in ("flatten", "fc"):
        return None
    taps = tuple(getattr(head, "taps", ()))
    if not taps:
        raise ValueError(f"head {head!r} reads no taps: cannot predict its period")
    if getattr(trunk, "pool", "max") == "aps" and getattr(trunk, "circular", False):
        return 1
    return max(int(trunk.stride(t)) for t in taps)


#: Periods a VGG trunk predicts: 2**k after k stride-2 pools (pool1..pool5).
PERIODS: tuple[int, ...] = (2, 4, 8, 16, 32)


def _as_array(response: np.ndarray | Sequence[float] | object) -> np.ndarray:
    if hasattr(response, "detach"):
        response = response.detach().cpu().numpy()  # type: ignore[union-attr]
    a = np.asarray(response, dtype=np.float64)
    if a.ndim == 0 or a.shape[-1] < 2:
        raise ValueError(f"a response needs at least 2 samples along its last axis, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("the response has NaN/inf values (missing grid points?): sweep a full rectangular grid")
    return a


def trimmed_length(length: int, periods: Sequence[int] = PERIODS) -> int:
    """Largest ``L' <= length`` that is a multiple of every period ``<= length`` (their lcm)."""
    usable = [int(p) for p in periods if 1 <= p <= length]
    if not usable:
        return length
    step = reduce(math.lcm, usable)
    if step > length:  # periods with a large lcm: fall back to the longest period alone
        step = max(usable)
    return (length // step) * step


def _trim(a: np.ndarray, length: int, axis: int) -> np.ndarray:
    start = (a.shape[axis] - length) // 2
    return np.take(a, np.arange(start, start + length), axis=axis)


def spectrum_1d(response: np.ndarray | Sequence[float], periods: Sequence[int] = PERIODS) -> tuple[np.ndarray, np.ndarray]:
    """Power spectrum along the last axis, after centred trimming to :func:`trimmed_length`.

    Args:
        response: (..., L) real values sampled at consecutive integer shifts.
    Returns:
        ``(freqs (L'//2 + 1,) in cycles / px, power (..., L'//2 + 1))`` of the
        mean-removed response; ``power`` sums to the non-constant energy
        (one-sided: positive and negative frequencies folded together).
    """
    a = _as_array(response)
    n = trimmed_length(a.shape[-1], periods)
    a = _trim(a, n, -1)
    x = np.fft.rfft(a - a.mean(axis=-1, keepdims=True), axis=-1)
    power = np.abs(x) ** 2 / n
    power[..., 1 : (n + 1) // 2] *= 2  # fold the negative frequencies (Nyquist and DC appear once)
    return np.fft.rfftfreq(n), power


def spectrum_2d(response: np.ndarray, periods: Sequence[int] = PERIODS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """2-D power spectrum of a map (..., Ly, Lx) (row = dy, column = dx), both axes trimmed.

    Returns ``(fy (Ly',), fx (Lx',), power (..., Ly', Lx'))`` with the zero frequency
    centred (``numpy.fft.fftshift``) for plotting; the mean is removed.
    """
    a = _as_array(response)
    if a.ndim < 2:
        raise ValueError(f"spectrum_2d needs a map (..., Ly, Lx), got shape {a.shape}")
    ny, nx = trimmed_length(a.shape[-2], periods), trimmed_length(a.shape[-1], periods)
    a = _trim(_trim(a, ny, -2), nx, -1)
    x = np.fft.fft2(a - a.mean(axis=(-2, -1), keepdims=True))
    power = np.fft.fftshift(np.abs(x) ** 2 / (ny * nx), axes=(-2, -1))
    return np.fft.fftshift(np.fft.fftfreq(ny)), np.fft.fftshift(np.fft.fftfreq(nx)), power


def _full_power(a: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    x = np.fft.fftn(a - a.mean(axis=axes, keepdims=True), axes=axes)
    return np.abs(x) ** 2


def period_energy(response: np.ndarray | Sequence[float], periods: Sequence[int] = PERIODS) -> pd.DataFrame:
    """Fraction of the non-constant energy at each period and its harmonics (1-D, last axis).

    Returns:
        DataFrame, one row per period: ``period``, ``fraction`` (energy at ``m/P``,
        ``m >= 1``), ``exclusive`` (odd ``m`` only), ``chance`` (white-noise
        expectation of ``fraction``), ``length`` (samples used). Periods longer than
        the response give NaN.
    """
    a = _as_array(response)
    n_all = a.shape[-1]
    common = trimmed_length(n_all, periods)
    rows = []
    for p in periods:
        p = int(p)
        if p < 1 or p > n_all:
            rows.append({"period": p, "fraction": math.nan, "exclusive": math.nan, "chance": math.nan, "length": 0})
            continue
        n = common if common % p == 0 else (n_all // p) * p
        power = _full_power(_trim(a, n, -1), (-1,)).reshape(-1, n).sum(0)  # pooled over leading axes, (n,)
        total = power[1:].sum()
        k = np.arange(n)
        step = n // p
        at = (k % step == 0) & (k != 0)
        odd = at & ((k // step) % 2 == 1)
        # the "odd" harmonics of P live at odd multiples of 1/P (aliased: k and n-k are both odd multiples)
        rows.append({
            "period": p,
            "fraction": float(power[at].sum() / total) if total > 0 else math.nan,
            "exclusive": float(power[odd].sum() / total) if total > 0 else math.nan,
            "chance": (p - 1) / (n - 1) if n > 1 else math.nan,
            "length": n,
        })
    return pd.DataFrame(rows)


def harmonic_energy(response: np.ndarray | Sequence[float], period: int,
                    periods: Sequence[int] = PERIODS) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-response energy at period ``period`` and its harmonics, and its non-constant energy.

    The per-row terms of :func:`period_energy`'s pooled ``fraction`` (which is
    ``at.sum() / total.sum()``), so that a weighted pool (a bootstrap over images) can be formed.

    Args:
        response: (N, L) real values at consecutive integer shifts (one row per image).
    Returns:
        ``(at (N,), total (N,), chance)``: energy at ``m / period`` (``m >= 1``), energy at every
        non-zero frequency, and the white-noise expectation of ``at / total``.
    """
    a = _as_array(response)
    a = a.reshape(-1, a.shape[-1])
    n_all, p = a.shape[-1], int(period)
    if not 1 <= p <= n_all:
        raise ValueError(f"period {p} must lie in 1..{n_all} (the response's length)")
    common = trimmed_length(n_all, periods)
    n = common if common % p == 0 else (n_all // p) * p
    power = _full_power(_trim(a, n, -1), (-1,))  # (N, n)
    k = np.arange(n)
    at = (k % (n // p) == 0) & (k != 0)
    return power[:, at].sum(1), power[:, 1:].sum(1), (p - 1) / (n - 1)


def period_energy_2d(response: np.ndarray, periods: Sequence[int] = PERIODS) -> pd.DataFrame:
    """2-D analogue of :func:`period_energy` on a map (..., Ly, Lx): energy at ``(my/P, mx/P)``, not both 0.

    ``fraction`` is the R^2 of the best fit periodic with period ``P`` in both
    ``dx`` and ``dy``; ``chance = (P^2 - 1) / (Ly' Lx' - 1)``.
    """
    a = _as_array(response)
    if a.ndim < 2:
        raise ValueError(f"period_energy_2d needs a map (..., Ly, Lx), got shape {a.shape}")
    ny0, nx0 = a.shape[-2:]
    rows = []
    for p in periods:
        p = int(p)
        if p < 1 or p > min(ny0, nx0):
            rows.append({"period": p, "fraction": math.nan, "chance": math.nan, "length_y": 0, "length_x": 0})
            continue
        ny = trimmed_length(ny0, periods) if trimmed_length(ny0, periods) % p == 0 else (ny0 // p) * p
        nx = trimmed_length(nx0, periods) if trimmed_length(nx0, periods) % p == 0 else (nx0 // p) * p
        b = _trim(_trim(a, ny, -2), nx, -1)
        power = _full_power(b, (-2, -1)).reshape(-1, ny, nx).sum(0)
        ky, kx = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
        at = (ky % (ny // p) == 0) & (kx % (nx // p) == 0)
        at[0, 0] = False
        total = power.sum() - power[0, 0]
        rows.append({"period": p, "fraction": float(power[at].sum() / total) if total > 0 else math.nan,
                     "chance": (p * p - 1) / (ny * nx - 1), "length_y": ny, "length_x": nx})
    return pd.DataFrame(rows)


def dominant_period(response: np.ndarray | Sequence[float], periods: Sequence[int] = PERIODS) -> float:
    """Period (in px) of the strongest non-constant frequency bin, energy pooled over leading axes.

    For a non-sinusoidal periodic response the strongest bin may be a harmonic
    (``P/2``, ``P/3``...); :func:`fundamental_period` returns ``P`` itself.
    NaN for a constant response.
    """
    freqs, power = spectrum_1d(response, periods)
    p = power.reshape(-1, power.shape[-1]).sum(0)
    if p[1:].sum() <= 0:
        return math.nan
    k = 1 + int(np.argmax(p[1:]))
    return float(1.0 / freqs[k])


def fundamental_period(
    response: np.ndarray | Sequence[float], threshold: float = 0.9, max_period: int | None = None
) -> float:
    """Smallest integer period ``P`` whose ``P``-periodic fit explains ``>= threshold`` of the non-constant energy.

    The fit is the mean over each residue class ``i mod P`` (R^2 of a
    ``P``-periodic function, all harmonics included), computed on the centred
    ``(L // P) * P`` samples; energies pool over leading axes. ``P`` runs from 2 to
    ``max_period`` (default ``L // 3``: at least three full periods, so that noise
    cannot pass for a period). NaN when no period qualifies or the response is constant.
    """
    a = _as_array(response)
    n_all = a.shape[-1]
    top = max_period if max_period is not None else n_all // 3
    for p in range(2, min(top, n_all) + 1):
        n = (n_all // p) * p
        b = _trim(a, n, -1)
        b = (b - b.mean(axis=-1, keepdims=True)).reshape(-1, n // p, p)  # (rows, cycles, P)
        total = (b ** 2).sum()
        if total <= 0:
            return math.nan
        fit = b.mean(axis=1)  # (rows, P): the best P-periodic fit
        if (fit ** 2).sum() * (n // p) / total >= threshold:
            return float(p)
    return math.nan


def dominant_period_2d(response: np.ndarray, periods: Sequence[int] = PERIODS) -> tuple[float, float]:
    """``(period_x, period_y)`` of the strongest non-constant 2-D frequency (``inf`` along an axis with frequency 0)."""
    fy, fx, power = spectrum_2d(response, periods)
    p = power.reshape(-1, *power.shape[-2:]).sum(0)
    cy, cx = len(fy) // 2, len(fx) // 2  # zero frequency after fftshift
    p[cy, cx] = -1.0
    if p.max() <= 0:
        return math.nan, math.nan
    iy, ix = np.unravel_index(int(np.argmax(p)), p.shape)
    per = lambda f: math.inf if f == 0 else float(1.0 / abs(f))  # noqa: E731
    return per(fx[ix]), per(fy[iy])


def periodicity_table(result: object, heads: Sequence[str] | None = None, field: str = "loss",
                      periods: Sequence[int] = PERIODS) -> pd.DataFrame:
    """Periodicity of each head's image-averaged response over the shift grid of a sweep.

    For each head, the map from :func:`shiftinv.shifts.invariance.response_map` is analysed
    along ``dx`` (rows pooled), along ``dy`` (columns pooled) and in 2-D.

    Returns:
        DataFrame with columns ``head, axis ("dx" | "dy" | "2d"), period, fraction,
        chance, dominant`` (``dominant``: the dominant period along that axis; for
        ``"2d"`` the dominant ``dx`` period).
    """
    from .invariance import response_map

    rows = []
    for h in heads or result.heads:  # type: ignore[attr-defined]
        values, _, _ = response_map(result, h, field)  # type: ignore[arg-type]
        analyses = []
        if values.shape[1] >= 2:
            analyses.append(("dx", period_energy(values, periods), dominant_period(values, periods)))
        if values.shape[0] >= 2:
            analyses.append(("dy", period_energy(values.T, periods), dominant_period(values.T, periods)))
        if min(values.shape) >= 2:
            analyses.append(("2d", period_energy_2d(values, periods), dominant_period_2d(values, periods)[0]))
        for axis, table, dom in analyses:
            for _, r in table.iterrows():
                rows.append({"head": h, "axis": axis, "period": int(r["period"]), "fraction": r["fraction"],
                             "chance": r["chance"], "dominant": dom})
    return pd.DataFrame(rows)


def exact_period(values: np.ndarray, rtol: float = 1e-5, atol: float = 1e-7) -> float:
    """Smallest ``P`` in ``1 .. S // 2`` with ``values[:, P:] == values[:, :-P]`` up to float
    round-off, ``max(atol, rtol * max |values|)``; NaN when there is none.

    The tolerance scales with the values' magnitude (float32 networks agree to ~1e-6 relative),
    not with their range, so a small periodic component is not mistaken for round-off unless
    it is below ``rtol`` of the values themselves.

    Args:
        values: ``(N, S)`` responses over consecutive shifts (or ``(S,)``).
    """
    v = np.atleast_2d(np.asarray(values, dtype=np.float64))
    tol = max(atol, rtol * float(np.abs(v).max()))
    for p in range(1, v.shape[1] // 2 + 1):
        if float(np.abs(v[:, p:] - v[:, :-p]).max()) <= tol:
            return float(p)
    return float("nan")


def periodicity_summary(result: Any, predicted: Mapping[str, int | None], fields: Sequence[str] = ("loss",),
                        label: str = "") -> pd.DataFrame:
    """Periodicity of each head's response over a dense 1-D dx sweep.

    For each head and field (per-image responses, energies pooled over images):

    - ``predicted_period``: from :func:`shiftinv.shifts.periodicity.predicted_period` (``None``/NaN for flatten heads);
    - ``fraction``: energy at the predicted period and its harmonics / non-constant energy
      (:func:`period_energy`: the *periodicity index*), with ``chance``, its
      white-noise level; NaN when nothing is predicted or the response is constant;
    - ``dominant_period``: strongest frequency bin of the image-mean response;
      ``fundamental_period``: smallest period whose periodic fit explains 90 % of the
      image-mean response's variance (up to half the sweep length);
    - ``exact_period``: smallest ``P >= 1`` (up to half the sweep) with ``R(dx + P) = R(dx)`` for
      every image and dx, up to float round-off (:func:`exact_period`; 1 = invariant; NaN = none):
      what the architecture predicts for GAP heads under circular shifts and padding;
    - ``periodic_deviation``: ``max |R(dx + P) - R(dx)|`` over images and dx (0 = exactly periodic);
    - ``invariance_deviation``: ``max |R(dx) - R(0)|`` over images and dx (0 = exactly invariant);
    - ``ripple``: standard deviation over dx of the image-mean response.

    Args:
        result: ``SweepResult`` with a dense dx sweep at ``dy = 0``.
        predicted: ``{head: period or None}`` for the heads to analyse.
        label: free text stored in a ``setting`` column (e.g. ``"circular shift, circular padding"``).
    """
    from .invariance import response_profile

    rows = []
    for head, period in predicted.items():
        for field in fields:
            dxs, values = response_profile(result, head, field)  # (S,), (N, S)
            mean = values.mean(0)
            zero = int(np.nonzero(dxs == 0)[0][0]) if (dxs == 0).any() else 0
            row: dict[str, Any] = {"setting": label, "head": head, "field": field, "predicted_period": period,
                                   "n_images": values.shape[0], "n_shifts": values.shape[1]}
            constant = float(np.ptp(values, axis=1).max()) == 0.0
            if period is not None and period > 1 and not constant:
                e = period_energy(values, (period,)).iloc[0]
                row["fraction"], row["chance"] = float(e["fraction"]), float(e["chance"])
            else:
                row["fraction"], row["chance"] = float("nan"), float("nan")
            row["dominant_period"] = dominant_period(mean) if np.ptp(mean) > 0 else float("nan")
            row["fundamental_period"] = (fundamental_period(mean, max_period=len(mean) // 2)
                                         if np.ptp(mean) > 0 else float("nan"))
            row["exact_period"] = exact_period(values)
            if period is not None and period < values.shape[1]:
                row["periodic_deviation"] = float(np.abs(values[:, period:] - values[:, :-period]).max())
            else:
                row["periodic_deviation"] = float("nan")
            row["invariance_deviation"] = float(np.abs(values - values[:, zero:zero + 1]).max())
            row["ripple"] = float(mean.std())
            rows.append(row)
    return pd.DataFrame(rows)

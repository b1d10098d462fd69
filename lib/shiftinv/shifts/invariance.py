"""Invariance metrics: pure functions of a :class:`~shiftinv.shifts.sweep_result.SweepResult` (plus one of a trunk).

Notation used in the definitions: ``L_n(s)`` is the cross-entropy of image
``n`` under shift ``s``, ``Lbar(s) = mean_n L_n(s)`` the dataset loss at ``s``,
``A(s)`` the top-1 accuracy at ``s``, ``s = 0`` the unshifted image, and
``mean_s`` runs over the *non-zero* shifts of the sweep.

- the paper's "average relative loss" and its candidate readings: :mod:`shiftinv.shifts.relative_loss`.
- :func:`response_map`: loss / accuracy / true-class probability over the 2-D shift grid;
  :func:`response_profile`: per-image responses along ``dx`` (both read
  :meth:`shiftinv.shifts.sweep_result.SweepResult.per_image`).
- :func:`relative_change`: the one measure of relative change under shift,
  ``||f(shift x) - expected|| / ||f(x)||``, that every other such measure calls.
- :func:`consistency` (sampled, Zhang 2019) and :func:`expected_consistency` (exact).
- :func:`diagonal_stability`: Azulay & Weiss's P(top-1 change) and mean
  absolute change between consecutive 1-px diagonal shifts.
- :func:`equivariance_error`: per-layer, phase-resolved equivariance error of a trunk;
  :func:`error_by_phase` averages it per (tap, phase)
  (:func:`shiftinv.viz.equivariance_plots.plot_equivariance_by_phase` draws it).

Randomness only enters through a ``torch.Generator`` the caller passes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..models import vgg
from ..models.vgg import POOL_TAPS, VGGTrunk
from .sweep_result import SweepResult
from .translation import shift_windows, subpixel_shift


def response_map(result: SweepResult, head: str, field: str = "loss") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image-averaged response over the 2-D shift grid.

    Args:
        field: a :data:`shiftinv.shifts.sweep_result.RESPONSES` name, averaged over images: ``"loss"`` (mean
            cross-entropy), ``"accuracy"`` (top-1), ``"p_true"`` (mean true-class probability),
            ``"pred_change"`` (fraction of images whose top-1 differs from the unshifted one),
            ``"true_logit"`` (mean true-class logit; needs ``keep_logits=True``).

    Returns:
        ``(values (len(dys), len(dxs)), dxs, dys)``: row = ``dy``, column = ``dx``,
        both ascending; grid points absent from the sweep are NaN.
    """
    per = result.per_image(head, field).double().mean(1)  # (S,)
    s = result.shifts.numpy()
    dxs, dys = np.unique(s[:, 0]), np.unique(s[:, 1])
    values = np.full((len(dys), len(dxs)), np.nan)
    values[np.searchsorted(dys, s[:, 1]), np.searchsorted(dxs, s[:, 0])] = per.numpy()
    return values, dxs, dys


def response_profile(result: SweepResult, head: str, field: str = "loss", dy: int = 0,
                     uniform: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per-image response along ``dx`` (at fixed ``dy``): the input of the periodicity analysis.

    Args:
        field: a :data:`shiftinv.shifts.sweep_result.RESPONSES` name (:meth:`~shiftinv.shifts.sweep_result.SweepResult.per_image`):
            ``"loss"`` (cross-entropy, nats), ``"accuracy"`` (0/1), ``"p_true"`` (softmax probability
            of the true class), ``"true_logit"`` (needs a sweep run with ``keep_logits=True``), ...

        uniform: accept any constant step between the dx values (else they must be consecutive integers).

    Returns:
        ``(dxs (S',) ascending, values (N, S') float64)``.
    """
    per = result.per_image(head, field)  # (S, N)
    s = result.shifts
    rows = (s[:, 1] == dy).nonzero()[:, 0]
    if rows.numel() < 2:
        raise ValueError(f"the sweep has fewer than 2 shifts with dy = {dy}")
    dxs = s[rows, 0]
    order = torch.argsort(dxs)
    dxs, rows = dxs[order], rows[order]
    steps = dxs.diff()
    if not bool((steps == (steps[0] if uniform else 1)).all()):
        raise ValueError("response_profile needs " + ("evenly spaced dx values" if uniform else
                         "consecutive integer dx values (a dense 1-D sweep, step 1)"))
    values = per[rows].double().T.numpy()  # (N, S')
    return dxs.numpy(), values


def consistency(result: SweepResult, head: str, generator: torch.Generator, pairs_per_image: int = 1) -> float:
    """Zhang's consistency: P(top-1 agrees) for two shifts drawn uniformly (with replacement) from the sweep.

    For every image, ``pairs_per_image`` pairs ``(s1, s2)`` are drawn with ``generator``;
    the result is the fraction of pairs whose top-1 predictions agree (Zhang 2019 uses
    two random 224 crops of a 256 image: sweep with ``mode="crop"``).
    """
    result.check_head(head)
    if not isinstance(generator, torch.Generator):
        raise TypeError("pass a torch.Generator (e.g. torch.Generator().manual_seed(0)): metrics are never unseeded")
    pred = result.pred[head]  # (S, N)
    s, n = pred.shape
    idx = torch.randint(0, s, (2, pairs_per_image, n), generator=generator)
    cols = torch.arange(n).expand(pairs_per_image, n)
    return float((pred[idx[0], cols] == pred[idx[1], cols]).double().mean())


def expected_consistency(result: SweepResult, head: str, per_image: bool = False) -> float | Tensor:
    """Exact expectation of :func:`consistency`: ``mean_n sum_k (c_nk / S)^2``.

    ``c_nk`` counts the shifts at which image ``n`` is predicted as class ``k``. With ``per_image``
    the (N,) float64 tensor ``sum_k (c_nk / S)^2`` of every image instead of its mean.
    """
    result.check_head(head)
    pred = result.pred[head]  # (S, N)
    s, n = pred.shape
    k = int(pred.max()) + 1
    counts = torch.zeros(n, k, dtype=torch.float64).scatter_add_(1, pred.T, torch.ones(n, s, dtype=torch.float64))
    per = ((counts / s) ** 2).sum(1)  # (N,)
    return per if per_image else float(per.mean())


def diagonal_stability(result: SweepResult, head: str, per_image: bool = False) -> dict[str, Any]:
    """Azulay & Weiss (2019): stability between consecutive 1-px diagonal shifts ``(d, d) -> (d+1, d+1)``.

    Returns:
        ``p_top1_change``: mean over images and consecutive pairs of [top-1 differs];
        ``mean_abs_change``: mean |p_true(d+1) - p_true(d)| (true-class probability);
        ``pairs``: number of consecutive diagonal pairs used. With ``per_image`` the first two are
        (N,) float64 tensors (means over the pairs of each image).
    """
    result.check_head(head)
    s = result.shifts
    diag = {int(s[i, 0]): i for i in range(result.num_shifts) if s[i, 0] == s[i, 1]}
    pairs = [(diag[d], diag[d + 1]) for d in sorted(diag) if d + 1 in diag]
    if not pairs:
        raise ValueError("no consecutive diagonal shifts (d, d), (d+1, d+1) in the sweep; "
                         "use shiftinv.shifts.translation.diagonal_shifts(a, b)")
    a, b = torch.tensor([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs])
    pred, prob = result.pred[head], result.p_true[head].double()
    change = (pred[a] != pred[b]).double().mean(0)  # (N,)
    mac = (prob[a] - prob[b]).abs().mean(0)
    if per_image:
        return {"p_top1_change": change, "mean_abs_change": mac, "pairs": len(pairs)}
    return {"p_top1_change": float(change.mean()), "mean_abs_change": float(mac.mean()), "pairs": len(pairs)}


def relative_change(reference: Tensor, changed: Tensor, dims: int | Sequence[int] | None = None, *,
                    expected: Tensor | None = None, squared: bool = False, floor: float | None = None) -> Tensor:
    """The workbook's one measure of "relative change under shift": ``||changed - expected|| / ||reference||``.

    ``expected`` defaults to ``reference`` (invariance: ``changed = f(shift x)``, ``reference = f(x)``);
    for equivariance pass ``expected = shift f(x)``. Norms are L2 over ``dims`` (default: all
    elements), so the result has the shape of ``reference`` without ``dims`` (changed and expected
    broadcast against it, e.g. (S, N, C) against (N, C) with ``dims=-1`` gives (S, N)).

    Args:
        squared: the ratio of squared norms, ``sum (changed - expected)^2 / sum reference^2``, summed
            in float64; NaN where the denominator is 0. Otherwise the ratio of L2 norms in the
            tensors' dtype (where the denominator is 0 the division gives inf or NaN).
        floor: lower bound of the denominator norm (``clamp_min``), e.g. 1e-12 for an all-zero reference.

    Used by :func:`equivariance_error` (per layer, squared, valid region), notebook 01's
    :func:`shiftinv.shifts.primer.toy_equivariance_error` / :func:`~shiftinv.shifts.primer.invariance_error`,
    :func:`shiftinv.shifts.invariance.gap_drift_under_circular_shift` and :attr:`shiftinv.viz.explorer.Panels.gap_change`.
    """
    diff = changed - (reference if expected is None else expected)
    if squared:
        num = diff.double().pow(2).sum() if dims is None else diff.double().pow(2).sum(dim=dims)
        den = reference.double().pow(2).sum() if dims is None else reference.double().pow(2).sum(dim=dims)
        if floor is not None:
            den = den.clamp_min(floor * floor)
        return torch.where(den > 0, num / den, torch.full_like(num, math.nan))
    num = diff.norm() if dims is None else diff.norm(dim=dims)
    den = reference.norm() if dims is None else reference.norm(dim=dims)
    return num / (den if floor is None else den.clamp_min(floor))


def _shift_features(f: Tensor, fx: float, fy: float, reference: str) -> Tensor:
    if reference == "subpixel":
        return subpixel_shift(f, fx, fy, boundary="circular")
    return torch.roll(f, shifts=(int(fy), int(fx)), dims=(-2, -1))


def equivariance_error(
    trunk: Any,
    images: Tensor,
    taps: Sequence[str],
    shifts: Sequence[tuple[int, int]] | None = None,
    *,
    mode: str = "circular",
    reference: str = "nearest",
    margin: int = 0,
    device: str | torch.device | None = None,
) -> pd.DataFrame:
    """Per-layer equivariance error, resolved by the shift's phase within each layer's stride.

    For a tap with total stride ``r`` and an input shift ``d = (dx, dy)`` the
    feature map of the shifted input ``F(T_d x)`` is compared with the feature
    map shifted by ``d / r`` feature pixels, ``T_{d/r} F(x)``:

        error = ||F(T_d x) - T_{d/r} F(x)||^2 / ||F(x)||^2   (summed over images, channels, valid pixels)

    ``T_{d/r}`` is an integer roll by ``round(d/r)`` (``reference="nearest"``),
    ``floor(d/r)`` (``"floor"``) or a Fourier sub-pixel shift (``"subpixel"``).
    Only the *valid region* is compared: the ``ceil(|d|/r)`` feature pixels on the
    side where new content enters, and ``margin`` more on every side, are
    excluded. With ``mode="circular"`` and a circular-padded trunk, a shift that is
    a multiple of ``r`` gives exactly 0 for max/blur pooling (phase 0).

    Args:
        trunk: ``trunk(x, taps) -> {tap: map}`` with ``trunk.stride(tap)``.
        images: (N, 3, H, W) in [0, 1].
        shifts: input shifts; default ``(d, 0)`` for ``d = 0 .. max stride`` (one
            full period of the coarsest tap along x).
        mode: how the input is shifted (:data:`shiftinv.shifts.translation.MODES`).

    Returns:
        DataFrame with columns ``tap, stride, dx, dy, phase_x, phase_y, error``.
    """
    if reference not in ("nearest", "floor", "subpixel"):
        raise ValueError(f"reference must be 'nearest', 'floor' or 'subpixel', got {reference!r}")
    if not hasattr(trunk, "stride"):
        raise TypeError("trunk needs a .stride(tap) method (the total downsampling at each tap)")
    taps = tuple(taps)
    strides = {t: int(trunk.stride(t)) for t in taps}
    if shifts is None:
        shifts = [(d, 0) for d in range(max(strides.values()) + 1)]
    dev = torch.device(device) if device is not None else images.device
    x = images.to(dev)
    rows = []
    with torch.inference_mode():
        base = {k: v.float() for k, v in trunk(x, taps).items()}
        shifted = shift_windows(x, list(shifts), mode)  # (S*N, C, H, W)
        n = x.shape[0]
        for si, (dx, dy) in enumerate(shifts):
            feats = trunk(shifted[si * n : (si + 1) * n], taps)
            for t in taps:
                err = _tap_error(base[t], feats[t].float(), strides[t], dx, dy, reference, margin)
                rows.append({"tap": t, "stride": strides[t], "dx": dx, "dy": dy, "phase_x": dx % strides[t],
                             "phase_y": dy % strides[t], "error": err})
    return pd.DataFrame(rows)


def _tap_error(f0: Tensor, f1: Tensor, r: int, dx: int, dy: int, reference: str, margin: int) -> float:
    """One tap's error: ``f0``, ``f1`` (N, C, h, w) float32 maps of the unshifted and the shifted input,
    ``r`` the tap's stride; NaN when the shift (plus ``margin``) leaves no valid pixel."""
    if reference == "subpixel":
        fx, fy = dx / r, dy / r
    elif reference == "floor":
        fx, fy = dx // r, dy // r
    else:
        fx, fy = _round_half_away(dx / r), _round_half_away(dy / r)
    expected = _shift_features(f0, fx, fy, reference)
    h, w = f0.shape[-2:]
    cx, cy = math.ceil(abs(dx) / r), math.ceil(abs(dy) / r)  # feature pixels where new content enters
    x0 = margin + (cx if dx > 0 else 0)
    x1 = w - margin - (cx if dx < 0 else 0)
    y0 = margin + (cy if dy > 0 else 0)
    y1 = h - margin - (cy if dy < 0 else 0)
    if x1 <= x0 or y1 <= y0:
        return math.nan
    valid = (..., slice(y0, y1), slice(x0, x1))
    return float(relative_change(f0[valid], f1[valid], expected=expected[valid], squared=True))


def _round_half_away(v: float) -> int:
    return int(math.floor(abs(v) + 0.5) * (1 if v >= 0 else -1))


_EQUIVARIANCE_COLUMNS = ("tap", "stride", "dx", "dy", "phase_x", "phase_y", "error")


def check_equivariance_table(table: pd.DataFrame) -> None:
    """Raise a ValueError naming the missing columns unless ``table`` is an :func:`equivariance_error` table."""
    missing = set(_EQUIVARIANCE_COLUMNS) - set(table.columns)
    if missing:
        raise ValueError(f"the table lacks columns {sorted(missing)}: pass the output of equivariance_error")
    if table.empty:
        raise ValueError("the equivariance table is empty: pass at least one tap and one shift")


def error_by_phase(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and max of :func:`equivariance_error`'s ``error`` per tap and phase within the tap's stride.

    Args:
        table: the output of :func:`equivariance_error` (columns ``tap, stride, dx, dy, phase_x,
            phase_y, error``).

    Returns:
        DataFrame ``tap, stride, phase_x, phase_y, mean_error, max_error, shifts`` (``shifts``: how
        many input shifts fell on that phase), taps in their order of appearance, phases ascending.
    """
    check_equivariance_table(table)
    order = {t: i for i, t in enumerate(dict.fromkeys(table["tap"]))}
    g = table.groupby(["tap", "stride", "phase_x", "phase_y"], sort=False)["error"]
    out = g.agg(mean_error="mean", max_error="max", shifts="size").reset_index()
    out["_order"] = out["tap"].map(order)
    return out.sort_values(["_order", "phase_y", "phase_x"], kind="stable", ignore_index=True).drop(columns="_order")


def gap_drift_under_circular_shift(
    trunk: VGGTrunk, x: Tensor, shifts: Sequence[int], taps: Sequence[str] = POOL_TAPS, batch_size: int = 64
) -> pd.DataFrame:
    """Relative change of the GAP vectors when ``x`` is circularly shifted diagonally.

    For each shift ``s`` (pixels, applied to rows and columns) and tap:
    ``||GAP(f(roll(x, s))) - GAP(f(x))|| / ||GAP(f(x))||`` averaged over the batch.
    ``x`` is (N, 3, H, W) in [0, 1]; shifted copies are evaluated ``batch_size`` images
    at a time. Returns columns ``shift, tap, drift``.
    """
    pass
    from ..models.layers import circular_shift

    taps = tuple(taps)
    n = x.shape[0]
    shifts = [int(s) for s in shifts]
    with torch.no_grad():
        ref = {t: f.mean(dim=(2, 3)) for t, f in trunk(x, taps).items()}  # (N, C)
        moved = torch.cat([circular_shift(x, s, s) for s in shifts])  # (S*N, 3, H, W)
        gaps: dict[str, list[Tensor]] = {t: [] for t in taps}
        for chunk in moved.split(batch_size):
            for t, f in trunk(chunk, taps).items():
                gaps[t].append(f.mean(dim=(2, 3)))
    rows = []
    for t in taps:
        g = torch.cat(gaps[t]).view(len(shifts), n, -1)  # (S, N, C)
        rel = relative_change(ref[t], g, dims=-1, floor=1e-30)  # (S, N)
        rows += [{"shift": s, "tap": t, "drift": float(r)} for s, r in zip(shifts, rel.mean(dim=1))]
    return pd.DataFrame(rows)


def zoo_circular_drift(x: torch.Tensor, shifts: Sequence[int], width: float, seed: int,
                       pools: Sequence[str] = ("max", "blur", "aps")) -> pd.DataFrame:
    """GAP drift per tap under diagonal circular shifts, for circular-padding trunks that share conv weights.

    Args:
        x: ``(N, 3, S, S)`` float64 images.
        shifts: diagonal shifts in pixels.
        width: channel width factor of the trunks.
        seed: ``torch.manual_seed`` before building each trunk (same conv weights in all of them).
    Returns:
        ``invariance.gap_drift_under_circular_shift`` rows (``tap``, ``shift``, ``drift``) with a ``pool`` column.
    """
    drift = []
    for pool in pools:
        torch.manual_seed(seed)
        trunk = vgg.build_trunk(width=width, pool=pool, circular=True).double().eval()
        drift.append(gap_drift_under_circular_shift(trunk, x, shifts).assign(pool=pool))
    return pd.concat(drift, ignore_index=True)


def zoo_exact_shifts(drift: pd.DataFrame, tol: float = 1e-12) -> pd.DataFrame:
    """The shifts at which each tap's GAP is exact (``drift < tol``: float64 rounding), tap x pool, as text."""
    exact = (drift.assign(exact=drift["drift"] < tol)
             .groupby(["pool", "tap"], sort=False)
             .apply(lambda d: ", ".join(str(s) for s in d.loc[d["exact"], "shift"]) or "-", include_groups=False))
    return exact.unstack("pool")

"""Invariance metrics: pure functions of a :class:`~shiftinv.sweep.SweepResult` (plus one of a trunk).

Notation used in the definitions: ``L_n(s)`` is the cross-entropy of image
``n`` under shift ``s``, ``Lbar(s) = mean_n L_n(s)`` the dataset loss at ``s``,
``A(s)`` the top-1 accuracy at ``s``, ``s = 0`` the unshifted image, and
``mean_s`` runs over the *non-zero* shifts of the sweep.

- :func:`relative_loss` / :func:`relative_loss_table`: every candidate reading of
  the paper's "average relative loss" (the authors' code does not define it),
  each named, plus accuracy-based analogues. Only the dataset-level ones
  (``dataset_*``, ``acc_*``, :data:`AUTHORS_COMPUTABLE`) can be computed from what
  the authors saved (test-set mean loss and accuracy per shift), so only they can
  be the paper's; the per-image ones (``image_*``, ``flip_rate``, ``pred_change``)
  are the workbook's additions. :func:`relative_loss_definitions` labels them,
  :func:`relative_loss_long` is the long table with that label per value, and
  :func:`relative_loss_from_table` computes the dataset-level ones from a per-shift
  table alone (the workbook's ``classify.shift_frame`` or the authors' results read
  by :func:`shiftinv.authors.read_results`).
- :func:`response_map`: loss / accuracy / true-class probability over the 2-D shift grid;
  :func:`response_profile`: per-image responses along ``dx`` (both read
  :meth:`shiftinv.sweep.SweepResult.per_image`).
- :func:`relative_change`: the one measure of relative change under shift,
  ``||f(shift x) - expected|| / ||f(x)||``, that every other such measure calls.
- :func:`consistency` (sampled, Zhang 2019) and :func:`expected_consistency` (exact).
- :func:`diagonal_stability`: Azulay & Weiss's P(top-1 change) and mean
  absolute change between consecutive 1-px diagonal shifts.
- :func:`equivariance_error`: per-layer, phase-resolved equivariance error of a trunk;
  :func:`error_by_phase` averages it per (tap, phase) and :func:`plot_equivariance_by_phase` draws it.

Randomness only enters through a ``torch.Generator`` the caller passes.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from .shifts import shift_windows, subpixel_shift
from .sweep import SweepResult

__all__ = [
    "RELATIVE_LOSS_DEFINITIONS",
    "AUTHORS_COMPUTABLE",
    "relative_loss_definitions",
    "relative_loss",
    "relative_loss_from_table",
    "relative_loss_long",
    "relative_loss_table",
    "response_map",
    "response_profile",
    "consistency",
    "expected_consistency",
    "diagonal_stability",
    "relative_change",
    "equivariance_error",
    "error_by_phase",
    "plot_equivariance_by_phase",
]

#: name -> formula (``mean_s`` over non-zero shifts, ``mean_n`` over images). The dataset-level
#: definitions (computable from the authors' saved outputs) come first.
RELATIVE_LOSS_DEFINITIONS: dict[str, str] = {
    "dataset_signed": "mean_s (Lbar(s) - Lbar(0)) / Lbar(0)  [= (mean_s Lbar(s) - Lbar(0)) / Lbar(0)]",
    "dataset_abs": "mean_s |Lbar(s) - Lbar(0)| / Lbar(0)",
    "dataset_max": "max_s (Lbar(s) - Lbar(0)) / Lbar(0)  (worst shift)",
    "dataset_cv": "std_s Lbar(s) / mean_s Lbar(s)  (all shifts, no reference shift)",
    "acc_drop": "(A(0) - mean_s A(s)) / A(0)",
    "acc_abs": "mean_s |A(s) - A(0)| / A(0)",
    "image_signed": "mean_{s,n} (L_n(s) - L_n(0)) / L_n(0)",
    "image_abs": "mean_{s,n} |L_n(s) - L_n(0)| / L_n(0)",
    "image_abs_pooled": "mean_{s,n} |L_n(s) - L_n(0)| / Lbar(0)",
    "flip_rate": "mean_{s,n} [correct_n(s) != correct_n(0)]",
    "pred_change": "mean_{s,n} [top1_n(s) != top1_n(0)]",
}

#: Definitions that need only the test-set mean loss ``Lbar(s)`` and accuracy ``A(s)`` per shift:
#: what the authors' scripts saved (``{(desp_h, desp_v): {"loss", "accuracy"}}``). Only these can be
#: the paper's "average relative loss"; the others need per-image outcomes (workbook additions).
AUTHORS_COMPUTABLE: tuple[str, ...] = ("dataset_signed", "dataset_abs", "dataset_max", "dataset_cv",
                                       "acc_drop", "acc_abs")


def relative_loss_definitions() -> pd.DataFrame:
    """Every definition with its formula and where it can come from.

    Returns:
        DataFrame ``definition, formula, computable_from_authors_outputs, source``, the
        authors-computable definitions first (``source``: "authors' outputs" or "workbook addition").
    """
    rows = [{"definition": d, "formula": f, "computable_from_authors_outputs": d in AUTHORS_COMPUTABLE,
             "source": "authors' outputs (test-set mean loss / accuracy per shift)" if d in AUTHORS_COMPUTABLE
             else "workbook addition (needs per-image outcomes)"}
            for d, f in RELATIVE_LOSS_DEFINITIONS.items()]
    return pd.DataFrame(rows).sort_values("computable_from_authors_outputs", ascending=False, kind="stable",
                                          ignore_index=True)


def _zero_and_rest(result: SweepResult) -> tuple[int, Tensor]:
    try:
        z = result.index(0, 0)
    except KeyError:
        raise ValueError("relative metrics need the unshifted image: include (0, 0) in the sweep's shifts") from None
    rest = torch.tensor([i for i in range(result.num_shifts) if i != z], dtype=torch.long)
    if rest.numel() == 0:
        raise ValueError("the sweep has only the zero shift; relative metrics need at least one other shift")
    return z, rest


def relative_loss(result: SweepResult, head: str, definition: str = "dataset_signed", eps: float = 1e-12) -> float:
    """One named reading of the "average relative loss under translation" (see :data:`RELATIVE_LOSS_DEFINITIONS`).

    Per-image definitions divide by ``L_n(0)``, which is tiny for confidently
    correct images: they are dominated by those images (``eps`` only avoids 0/0).
    """
    result.check_head(head)
    if definition not in RELATIVE_LOSS_DEFINITIONS:
        raise ValueError(f"unknown definition {definition!r}; choose one of {list(RELATIVE_LOSS_DEFINITIONS)}")
    z, rest = _zero_and_rest(result)
    loss = result.loss[head].double()  # (S, N)
    lbar = loss.mean(dim=1)  # (S,)
    acc = result.correct[head].double().mean(dim=1)  # (S,)
    if definition == "dataset_signed":
        v = ((lbar[rest] - lbar[z]) / lbar[z]).mean()
    elif definition == "dataset_abs":
        v = ((lbar[rest] - lbar[z]).abs() / lbar[z]).mean()
    elif definition == "dataset_max":
        v = ((lbar[rest] - lbar[z]) / lbar[z]).max()
    elif definition == "dataset_cv":
        v = lbar.std(unbiased=False) / lbar.mean()
    elif definition == "image_signed":
        v = ((loss[rest] - loss[z]) / (loss[z] + eps)).mean()
    elif definition == "image_abs":
        v = ((loss[rest] - loss[z]).abs() / (loss[z] + eps)).mean()
    elif definition == "image_abs_pooled":
        v = (loss[rest] - loss[z]).abs().mean() / lbar[z]
    elif definition == "acc_drop":
        v = (acc[z] - acc[rest].mean()) / acc[z] if acc[z] > 0 else torch.tensor(math.nan)
    elif definition == "acc_abs":
        v = (acc[rest] - acc[z]).abs().mean() / acc[z] if acc[z] > 0 else torch.tensor(math.nan)
    elif definition == "flip_rate":
        c = result.correct[head]
        v = (c[rest] != c[z]).double().mean()
    else:  # pred_change
        p = result.pred[head]
        v = (p[rest] != p[z]).double().mean()
    return float(v)


def relative_loss_table(result: SweepResult, heads: Sequence[str] | None = None) -> pd.DataFrame:
    """Every definition for every head: one row per head, columns ``head``, ``loss0``, ``acc0`` and the definitions."""
    rows = []
    for h in heads or result.heads:
        z, _ = _zero_and_rest(result)
        row: dict[str, Any] = {"head": h, "loss0": float(result.loss[h][z].double().mean()),
                               "acc0": float(result.correct[h][z].double().mean())}
        row.update({d: relative_loss(result, h, d) for d in RELATIVE_LOSS_DEFINITIONS})
        rows.append(row)
    return pd.DataFrame(rows)


def relative_loss_long(result: SweepResult, heads: Sequence[str] | None = None) -> pd.DataFrame:
    """Every definition for every head, one row each: ``head, definition, value,
    computable_from_authors_outputs`` (authors-computable definitions first within each head)."""
    order = relative_loss_definitions()
    rows = [{"head": h, "definition": d, "value": relative_loss(result, h, d), "computable_from_authors_outputs": c}
            for h in heads or result.heads
            for d, c in zip(order["definition"], order["computable_from_authors_outputs"])]
    return pd.DataFrame(rows)


def relative_loss_from_table(table: pd.DataFrame, head: str, definition: str = "dataset_signed") -> float:
    """A dataset-level definition from a per-shift table alone (no per-image outcomes).

    Args:
        table: columns ``head, dx, dy, loss, accuracy`` with one row per (head, shift): the
            workbook's :func:`shiftinv.classify.shift_frame` or the authors' results
            (:func:`shiftinv.authors.read_results`); must contain the shift ``(0, 0)``.
        head: which head's rows to use.
        definition: one of :data:`AUTHORS_COMPUTABLE`.

    Returns:
        The same number :func:`relative_loss` gives on the full sweep (tested).
    """
    if definition not in RELATIVE_LOSS_DEFINITIONS:
        raise ValueError(f"unknown definition {definition!r}; choose one of {list(RELATIVE_LOSS_DEFINITIONS)}")
    if definition not in AUTHORS_COMPUTABLE:
        raise ValueError(f"{definition!r} needs per-image outcomes, which a per-shift table (and the authors' "
                         f"saved results) lacks; choose one of {AUTHORS_COMPUTABLE}")
    missing = {"head", "dx", "dy", "loss", "accuracy"} - set(table.columns)
    if missing:
        raise ValueError(f"the per-shift table lacks columns {sorted(missing)}")
    g = table[table["head"] == head]
    if g.empty:
        raise KeyError(f"no rows for head {head!r}; the table has heads {sorted(set(table['head']))}")
    is_zero = (g["dx"] == 0) & (g["dy"] == 0)
    if is_zero.sum() != 1:
        raise ValueError(f"head {head!r} needs exactly one row for the unshifted image (0, 0), has {int(is_zero.sum())}")
    rest = g[~is_zero]
    if rest.empty:
        raise ValueError("the table has only the zero shift; relative metrics need at least one other shift")
    l0, a0 = float(g.loc[is_zero, "loss"].iloc[0]), float(g.loc[is_zero, "accuracy"].iloc[0])
    lr, ar = rest["loss"].to_numpy(np.float64), rest["accuracy"].to_numpy(np.float64)
    if definition == "dataset_signed":
        return float(((lr - l0) / l0).mean())
    if definition == "dataset_abs":
        return float((np.abs(lr - l0) / l0).mean())
    if definition == "dataset_max":
        return float(((lr - l0) / l0).max())
    if definition == "dataset_cv":
        every = g["loss"].to_numpy(np.float64)
        return float(every.std() / every.mean())
    if a0 <= 0:
        return math.nan
    if definition == "acc_drop":
        return float((a0 - ar.mean()) / a0)
    return float(np.abs(ar - a0).mean() / a0)  # acc_abs


def response_map(result: SweepResult, head: str, field: str = "loss") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image-averaged response over the 2-D shift grid.

    Args:
        field: a :data:`shiftinv.sweep.RESPONSES` name, averaged over images: ``"loss"`` (mean
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


def response_profile(result: SweepResult, head: str, field: str = "loss", dy: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-image response along ``dx`` (at fixed ``dy``): the input of the periodicity analysis.

    Args:
        field: a :data:`shiftinv.sweep.RESPONSES` name (:meth:`~shiftinv.sweep.SweepResult.per_image`):
            ``"loss"`` (cross-entropy, nats), ``"accuracy"`` (0/1), ``"p_true"`` (softmax probability
            of the true class), ``"true_logit"`` (needs a sweep run with ``keep_logits=True``), ...

    Returns:
        ``(dxs (S',) ascending, values (N, S') float64)``; the dx values must be consecutive integers.
    """
    per = result.per_image(head, field)  # (S, N)
    s = result.shifts
    rows = (s[:, 1] == dy).nonzero()[:, 0]
    if rows.numel() < 2:
        raise ValueError(f"the sweep has fewer than 2 shifts with dy = {dy}")
    dxs = s[rows, 0]
    order = torch.argsort(dxs)
    dxs, rows = dxs[order], rows[order]
    if not bool((dxs.diff() == 1).all()):
        raise ValueError("response_profile needs consecutive integer dx values (a dense 1-D sweep, step 1)")
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


def expected_consistency(result: SweepResult, head: str) -> float:
    """Exact expectation of :func:`consistency`: ``mean_n sum_k (c_nk / S)^2``.

    ``c_nk`` counts the shifts at which image ``n`` is predicted as class ``k``.
    """
    result.check_head(head)
    pred = result.pred[head]  # (S, N)
    s, n = pred.shape
    k = int(pred.max()) + 1
    counts = torch.zeros(n, k, dtype=torch.float64).scatter_add_(1, pred.T, torch.ones(n, s, dtype=torch.float64))
    return float(((counts / s) ** 2).sum(1).mean())


def diagonal_stability(result: SweepResult, head: str) -> dict[str, float]:
    """Azulay & Weiss (2019): stability between consecutive 1-px diagonal shifts ``(d, d) -> (d+1, d+1)``.

    Returns:
        ``p_top1_change``: mean over images and consecutive pairs of [top-1 differs];
        ``mean_abs_change``: mean |p_true(d+1) - p_true(d)| (true-class probability);
        ``pairs``: number of consecutive diagonal pairs used.
    """
    result.check_head(head)
    s = result.shifts
    diag = {int(s[i, 0]): i for i in range(result.num_shifts) if s[i, 0] == s[i, 1]}
    pairs = [(diag[d], diag[d + 1]) for d in sorted(diag) if d + 1 in diag]
    if not pairs:
        raise ValueError("no consecutive diagonal shifts (d, d), (d+1, d+1) in the sweep; "
                         "use shiftinv.shifts.diagonal_shifts(a, b)")
    a, b = torch.tensor([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs])
    pred, prob = result.pred[head], result.p_true[head].double()
    return {
        "p_top1_change": float((pred[a] != pred[b]).double().mean()),
        "mean_abs_change": float((prob[a] - prob[b]).abs().mean()),
        "pairs": len(pairs),
    }


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
    :func:`shiftinv.primer.toy_equivariance_error` / :func:`~shiftinv.primer.invariance_error`,
    :func:`shiftinv.models.gap_drift_under_circular_shift` and :attr:`shiftinv.explorer.Panels.gap_change`.
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
        mode: how the input is shifted (:data:`shiftinv.shifts.MODES`).

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


def plot_equivariance_by_phase(table: pd.DataFrame, floor: float = 1e-12, title: str = "") -> Any:
    """Draw per-layer, phase-resolved equivariance (shifts along x, ``dy = 0``).

    Left: the error of each tap against the input shift ``dx`` (log scale; values below
    ``floor``, exact zeros included, are drawn at ``floor``; filled markers: phase 0, the
    shifts that are multiples of the tap's stride). Right: ``log10`` of the mean error per tap
    and phase ``dx mod stride`` (blank where the phase does not exist, ``phase >= stride``).

    Args:
        table: the output of :func:`equivariance_error` with shifts ``(dx, 0)``.
        floor: smallest error drawn (> 0).

    Returns:
        The matplotlib figure (two axes).
    """
    import matplotlib.pyplot as plt

    check_equivariance_table(table)
    if floor <= 0:
        raise ValueError(f"floor must be > 0 (it stands for exact zeros on a log axis), got {floor}")
    if (table["dy"] != 0).any():
        raise ValueError("plot_equivariance_by_phase draws shifts along x: pass shifts (dx, 0) only")
    taps = list(dict.fromkeys(table["tap"]))
    fig, (ax, hm) = plt.subplots(1, 2, figsize=(13, 0.45 * len(taps) + 3.2), layout="constrained",
                                 gridspec_kw={"width_ratios": [1.2, 1]})
    for i, t in enumerate(taps):
        g = table[table["tap"] == t].sort_values("dx")
        err = g["error"].clip(lower=floor).to_numpy()
        ax.semilogy(g["dx"], err, "-", color=f"C{i}", lw=1, label=f"{t} (stride {int(g['stride'].iloc[0])})")
        on = (g["phase_x"] == 0).to_numpy()
        ax.semilogy(g["dx"][on], err[on], "o", color=f"C{i}", ms=5)
        ax.semilogy(g["dx"][~on], err[~on], ".", color=f"C{i}", ms=3)
    ax.axhline(floor, color="k", ls=":", lw=0.8)
    ax.set(xlabel="input shift dx (px), dy = 0", ylabel=r"$||F(T_d x) - T_{d/r} F(x)||^2 \,/\, ||F(x)||^2$",
           title=f"error per shift (dotted: {floor:g} and below, i.e. exact up to round-off)")
    ax.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3)
    phases = error_by_phase(table)
    width = int(phases["stride"].max())
    grid = np.full((len(taps), width), np.nan)  # (taps, phases)
    for i, t in enumerate(taps):
        p = phases[phases["tap"] == t]
        grid[i, p["phase_x"].to_numpy(int)] = np.log10(p["mean_error"].clip(lower=floor).to_numpy())
    im = hm.imshow(grid, aspect="auto", cmap="magma", interpolation="nearest")
    hm.set_yticks(range(len(taps)), [f"{t} (r={int(phases[phases['tap'] == t]['stride'].iloc[0])})" for t in taps])
    hm.set(xlabel="phase dx mod stride r", title="log10 mean error by phase (blank: phase >= stride)")
    hm.grid(False)
    fig.colorbar(im, ax=hm, label="log10 error")
    if title:
        fig.suptitle(title)
    return fig

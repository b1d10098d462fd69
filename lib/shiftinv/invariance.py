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
- :func:`response_map`: loss / accuracy / true-class probability over the 2-D shift grid.
- :func:`consistency` (sampled, Zhang 2019) and :func:`expected_consistency` (exact).
- :func:`diagonal_stability`: Azulay & Weiss's P(top-1 change) and mean
  absolute change between consecutive 1-px diagonal shifts.
- :func:`equivariance_error`: per-layer, phase-resolved equivariance error of a trunk.

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
    "consistency",
    "expected_consistency",
    "diagonal_stability",
    "equivariance_error",
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
        field: ``"loss"`` (mean cross-entropy), ``"accuracy"`` (top-1), ``"p_true"``
            (mean true-class probability), ``"pred_change"`` (fraction of images whose
            top-1 differs from the unshifted one).

    Returns:
        ``(values (len(dys), len(dxs)), dxs, dys)``: row = ``dy``, column = ``dx``,
        both ascending; grid points absent from the sweep are NaN.
    """
    result.check_head(head)
    if field == "loss":
        per = result.loss[head].double().mean(1)
    elif field == "accuracy":
        per = result.correct[head].double().mean(1)
    elif field == "p_true":
        per = result.p_true[head].double().mean(1)
    elif field == "pred_change":
        z, _ = _zero_and_rest(result)
        per = (result.pred[head] != result.pred[head][z]).double().mean(1)
    else:
        raise ValueError(f"field must be 'loss', 'accuracy', 'p_true' or 'pred_change', got {field!r}")
    s = result.shifts.numpy()
    dxs, dys = np.unique(s[:, 0]), np.unique(s[:, 1])
    values = np.full((len(dys), len(dxs)), np.nan)
    values[np.searchsorted(dys, s[:, 1]), np.searchsorted(dxs, s[:, 0])] = per.numpy()
    return values, dxs, dys


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
                r = strides[t]
                f0, f1 = base[t], feats[t].float()  # (N, C, h, w)
                if reference == "subpixel":
                    fx, fy = dx / r, dy / r
                elif reference == "floor":
                    fx, fy = dx // r, dy // r
                else:
                    fx, fy = _round_half_away(dx / r), _round_half_away(dy / r)
                ref = _shift_features(f0, fx, fy, reference)
                h, w = f0.shape[-2:]
                cx, cy = math.ceil(abs(dx) / r), math.ceil(abs(dy) / r)
                x0 = margin + (cx if dx > 0 else 0)
                x1 = w - margin - (cx if dx < 0 else 0)
                y0 = margin + (cy if dy > 0 else 0)
                y1 = h - margin - (cy if dy < 0 else 0)
                if x1 <= x0 or y1 <= y0:
                    err = math.nan  # the shift (plus margin) leaves no valid pixel at this tap
                else:
                    diff = (f1 - ref)[..., y0:y1, x0:x1]
                    den = f0[..., y0:y1, x0:x1].double().pow(2).sum()
                    err = float(diff.double().pow(2).sum() / den) if den > 0 else math.nan
                rows.append({"tap": t, "stride": r, "dx": dx, "dy": dy, "phase_x": dx % r, "phase_y": dy % r,
                             "error": err})
    return pd.DataFrame(rows)


def _round_half_away(v: float) -> int:
    return int(math.floor(abs(v) + 0.5) * (1 if v >= 0 else -1))

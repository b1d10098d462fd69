"""The paper's "average relative loss" under translation: every candidate reading, named.

Notation: ``L_n(s)`` is the cross-entropy of image ``n`` under shift ``s``, ``Lbar(s) = mean_n L_n(s)``
the dataset loss at ``s``, ``A(s)`` the top-1 accuracy at ``s``, ``s = 0`` the unshifted image, and
``mean_s`` runs over the *non-zero* shifts of the sweep.

Functions: :func:`relative_loss` / :func:`relative_loss_table`: every candidate reading of
  the paper's "average relative loss" (the authors' code does not define it),
  each named, plus accuracy-based analogues. Only the dataset-level ones
  (``dataset_*``, ``acc_*``, :data:`AUTHORS_COMPUTABLE`) can be computed from what
  the authors saved (test-set mean loss and accuracy per shift), so only they can
  be the paper's; the per-image ones (``image_*``, ``flip_rate``, ``pred_change``)
  are the workbook's additions. :func:`relative_loss_definitions` labels them,
  :func:`relative_loss_long` is the long table with that label per value, and
  :func:`relative_loss_from_table` computes the dataset-level ones from a per-shift
  table alone (the workbook's ``analysis.shift_frame`` or the authors' results read
  by :func:`shiftinv.study.authors.read_results`).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from .sweep_result import SweepResult

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
            workbook's :func:`shiftinv.study.analysis.shift_frame` or the authors' results
            (:func:`shiftinv.study.authors.read_results`); must contain the shift ``(0, 0)``.
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

"""Every measure of an audit, indexed from one grid of shifted views (a :class:`SweepResult`).

Per image (:func:`per_image_measures`), from the rows of the preset's offset sets:

- ``consistency``: P(top-1 agrees) for two grid offsets drawn uniformly, exact (``sum_k p_k^2``,
  :func:`shiftinv.shifts.invariance.expected_consistency`); antialiased-cnns' under the crop
  protocol, APS's under the circular one;
- ``flip_probability``: P(top-1 differs) between neighbouring offsets of the 1-px line (ImageNet-P);
- ``diag_top1_change``, ``diag_mean_abs_change``: Azulay & Weiss between consecutive diagonal offsets
  (:func:`shiftinv.shifts.invariance.diagonal_stability`; probability of the reference class);
- ``min_change_radius``: the smallest ``max(|dx|, |dy|)`` among the audit's offsets at which the top-1
  differs from the unshifted one (``inf``: never); ``changes_within_1px``, ``never_changes``;
- ``output_change``: mean over grid offsets of ``||f(shifted) - f(x)|| / ||f(x)||`` (logits, probabilities
  or embeddings as the model outputs them; :func:`shiftinv.shifts.invariance.relative_change`);
- with labels: ``correct_unshifted``, ``accuracy_over_grid``, ``correct_everywhere`` (robust accuracy).

Summaries (:func:`summarise`) give each mean with a percentile bootstrap interval over images
(:func:`shiftinv.study.intervals.bootstrap_weights`, the same resamples for every model, so
:func:`compare` reports paired differences), plus the dataset-level ``accuracy_range`` and
``worst_offset_accuracy`` over the grid and consistency conditioned on correct / wrong images.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..shifts import invariance
from ..shifts.sweep_result import SweepResult
from ..study.intervals import bootstrap_weights, percentile_interval
from .protocol import Preset

#: Per-image measures that need labels.
LABELLED: tuple[str, ...] = ("correct_unshifted", "accuracy_over_grid", "correct_everywhere")


#: Per-image measures summarised as means with intervals (in this order), labels or not.
MEANS: tuple[str, ...] = ("consistency", "flip_probability", "diag_top1_change", "diag_mean_abs_change",
                          "changes_within_1px", "never_changes", "output_change")


def flip_probability(line: SweepResult, head: str) -> Tensor:
    """(N,) float64: per image, the share of neighbouring offsets of ``line`` (sorted by dx) whose
    top-1 differs (ImageNet-P's flip probability over a translation sequence)."""
    order = torch.argsort(line.shifts[:, 0])
    dxs = line.shifts[order, 0]
    if len(dxs) < 2 or not bool((dxs.diff() == 1).all()):
        raise ValueError("flip_probability needs a line of consecutive 1-px offsets")
    pred = line.pred[head][order]  # (L, N)
    return (pred[1:] != pred[:-1]).double().mean(0)


def min_change_radius(result: SweepResult, head: str) -> Tensor:
    """(N,) float64: the smallest ``max(|dx|, |dy|)`` over the result's offsets at which the top-1
    differs from the unshifted one; ``inf`` for an image that never changes."""
    changed = result.per_image(head, "pred_change")  # (S, N) bool
    radius = result.shifts.abs().max(dim=1).values.double()[:, None].expand_as(changed)  # (S, N)
    return torch.where(changed, radius, torch.full_like(radius, math.inf)).min(dim=0).values


def output_change(grid: SweepResult, head: str, output: str) -> Tensor:
    """(N,) float64: mean over the grid offsets of the relative change of the output vector."""
    logits = grid.logits[head].double()  # (S, N, K)
    f = logits.exp() if output == "probabilities" else logits  # the model's own output
    f0 = f[grid.index(0, 0)]  # (N, K)
    return invariance.relative_change(f0, f, dims=-1, floor=1e-30).mean(0)


def per_image_measures(result: SweepResult, head: str, preset: Preset, *, labelled: bool,
                       output: str = "logits") -> pd.DataFrame:
    """One row per image of every per-image measure (module docstring) of one model and protocol."""
    grid = result.select_shifts(preset.grid())
    diag = invariance.diagonal_stability(result.select_shifts(preset.diagonal_shifts()), head, per_image=True)
    radius = min_change_radius(result, head)
    frame = pd.DataFrame({
        "image": np.arange(result.num_images),
        "consistency": invariance.expected_consistency(grid, head, per_image=True).numpy(),
        "flip_probability": flip_probability(result.select_shifts(preset.line()), head).numpy(),
        "diag_top1_change": diag["p_top1_change"].numpy(),
        "diag_mean_abs_change": diag["mean_abs_change"].numpy(),
        "min_change_radius": radius.numpy(),
        "changes_within_1px": (radius <= 1).double().numpy(),
        "never_changes": torch.isinf(radius).double().numpy(),
        "output_change": output_change(grid, head, output).numpy(),
        "reference_class": result.labels.numpy(),
        "pred_unshifted": result.pred[head][result.index(0, 0)].numpy(),
    })
    if labelled:
        correct = grid.correct[head].double()  # (S, N)
        frame["correct_unshifted"] = correct[grid.index(0, 0)].numpy()
        frame["accuracy_over_grid"] = correct.mean(0).numpy()
        frame["correct_everywhere"] = (correct.min(0).values).numpy()
    return frame


def summarise(frame: pd.DataFrame, grid: SweepResult | None, head: str, weights: Tensor,
              level: float = 0.95) -> pd.DataFrame:
    """Means of ``frame``'s measures with bootstrap intervals (``weights``: (B, N) resamples), and the
    accuracy-based ones when labelled: ``measure, value, lo, hi, n``.

    ``grid``: the grid rows (for ``accuracy_range`` and ``worst_offset_accuracy`` over the grid's offsets).
    """
    rows = []
    measures = [m for m in (*MEANS, *LABELLED) if m in frame]
    for m in measures:
        v = torch.tensor(frame[m].to_numpy(dtype=np.float64))
        rows.append(_row(m, float(v.mean()), weights @ v, level))
    if "correct_unshifted" in frame and grid is not None:
        acc = weights @ grid.correct[head].double().T  # (B, S): accuracy at each offset, per resample
        point = grid.correct[head].double().mean(1)  # (S,)
        rows.append(_row("accuracy_range", float(point.max() - point.min()),
                         acc.max(1).values - acc.min(1).values, level))
        rows.append(_row("worst_offset_accuracy", float(point.min()), acc.min(1).values, level))
        rows += _conditioned(frame, weights, level)
    out = pd.DataFrame(rows)
    out["n"] = len(frame)
    return out


def _conditioned(frame: pd.DataFrame, weights: Tensor, level: float) -> list[dict]:
    """Consistency of the images classified correctly (unshifted) and of those classified wrongly:
    accuracy and invariance are not the same thing."""
    rows = []
    cons = torch.tensor(frame["consistency"].to_numpy(dtype=np.float64))
    right = torch.tensor(frame["correct_unshifted"].to_numpy(dtype=np.float64))
    for name, mask in (("consistency_if_correct", right), ("consistency_if_wrong", 1 - right)):
        if mask.sum() == 0:
            rows.append({"measure": name, "value": math.nan, "lo": math.nan, "hi": math.nan})
            continue
        reps = (weights @ (cons * mask)) / (weights @ mask)  # NaN where a resample drew no such image
        rows.append(_row(name, float((cons * mask).sum() / mask.sum()), reps, level))
    return rows


def _row(measure: str, value: float, replicates: Tensor, level: float) -> dict:
    lo, hi = percentile_interval(replicates, level)
    return {"measure": measure, "value": value, "lo": lo, "hi": hi}


def compare(frames: dict[tuple[str, str], pd.DataFrame], weights: Tensor, pairs: Sequence[tuple[tuple[str, str],
            tuple[str, str]]], level: float = 0.95) -> pd.DataFrame:
    """Paired differences ``a - b`` of the mean measures, with bootstrap intervals on the same resamples.

    Args:
        frames: ``{(model, protocol): per-image frame}`` on the same images.
        pairs: ``((model_a, protocol_a), (model_b, protocol_b))`` to compare: two models under one
            protocol, or one model under two protocols (crop against circular: the border's share).

    Returns:
        ``measure, a, b, difference, lo, hi, clear`` (``clear``: the interval excludes 0).
    """
    rows = []
    for a, b in pairs:
        fa, fb = frames[a], frames[b]
        for m in (*MEANS, *LABELLED):
            if m not in fa or m not in fb:
                continue
            d = torch.tensor(fa[m].to_numpy(dtype=np.float64) - fb[m].to_numpy(dtype=np.float64))
            lo, hi = percentile_interval(weights @ d, level)
            rows.append({"measure": m, "a": " ".join(a), "b": " ".join(b), "difference": float(d.mean()),
                         "lo": lo, "hi": hi, "clear": bool(lo > 0 or hi < 0)})
    return pd.DataFrame(rows)


def resamples(n: int, n_boot: int = 2000, seed: int = 0) -> Tensor:
    """(n_boot, n) bootstrap weights shared by every model of an audit (seeded, paired)."""
    return bootstrap_weights(n, n_boot, seed)


def agreement_map(result: SweepResult, head: str, preset: Preset) -> pd.DataFrame:
    """Per grid offset: the share of images whose top-1 equals the unshifted one (``agree``) and,
    with labels, the accuracy: ``dx, dy, agree[, accuracy]`` (the 2-D map of predictions)."""
    grid = result.select_shifts(preset.grid())
    values, dxs, dys = invariance.response_map(grid, head, "pred_change")
    yy, xx = np.meshgrid(dys, dxs, indexing="ij")
    frame = pd.DataFrame({"dx": xx.ravel(), "dy": yy.ravel(), "agree": 1.0 - values.ravel()})
    acc, _, _ = invariance.response_map(grid, head, "accuracy")
    frame["accuracy"] = acc.ravel()
    return frame


def diagonal_curve(result: SweepResult, head: str, preset: Preset) -> pd.DataFrame:
    """Along the diagonal ``(d, d)``: mean probability of the reference class and the share of images
    whose top-1 equals the unshifted one: ``d, p_reference, agree``."""
    diag = result.select_shifts(preset.diagonal_shifts())
    change = diag.per_image(head, "pred_change").double() if (0, 0) in preset.diagonal_shifts() else None
    return pd.DataFrame({"d": diag.shifts[:, 0].numpy(), "p_reference": diag.p_true[head].double().mean(1).numpy(),
                         "agree": (1 - change.mean(1)).numpy() if change is not None else np.nan})


def most_unstable(frame: pd.DataFrame, k: int) -> pd.DataFrame:
    """The ``k`` images with the lowest consistency (ties: the most flips on the line), for the gallery."""
    return frame.sort_values(["consistency", "flip_probability"], ascending=[True, False], kind="stable").head(k)

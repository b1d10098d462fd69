"""Tables of the classification study: translation sweeps of the model set, robustness tables, histories.
"""

from __future__ import annotations

from typing import Any, Sequence

import pandas as pd
import torch

from ..shifts import sweep_result, translation
from ..workbook import cache, runtime
from . import datasets, intervals, replicates
from .modelset import ModelSet
from .profiles import Profile

# ----------------------------------------------------------------------------- sweeps


def sweep_shifts(profile: Profile, kind: str = "grid") -> list[tuple[int, int]]:
    """The profile's shifts: ``"grid"`` (2-D map, step ``grid_step`` over +-``shift_radius``),
    ``"profile"`` (dx only, dy = 0, step ``profile_step``) or ``"diagonal"`` (every 1-px diagonal
    shift (d, d), |d| <= ``diag_radius``: Azulay & Weiss's one-pixel fragility)."""
    r = profile.shift_radius
    if kind == "grid":
        return translation.shift_grid(r, profile.grid_step)
    if kind == "profile":
        return [(dx, 0) for dx in range(-r, r + 1) if dx % profile.profile_step == 0]
    if kind == "diagonal":
        return translation.diagonal_shifts(-profile.diag_radius, profile.diag_radius)
    raise ValueError(f"kind must be 'grid', 'profile' or 'diagonal', got {kind!r}")


def translation_sweep(ms: ModelSet, kind: str = "grid", mode: str | None = None,
                      trunks: list[str] | None = None, heads: list[str] | None = None,
                      n_images: int | None = None, refresh: bool = False, seeds: bool = True,
                      keep_logits: bool = False, precision: str | None = None) -> sweep_result.SweepResult:
    """Sweep the model set over the profile's shifts (:func:`sweep_shifts`), cached and resumable.

    Args:
        ms: the trained :class:`ModelSet`.
        kind: ``"grid"``, ``"profile"`` or ``"diagonal"`` (see :func:`sweep_shifts`).
        mode: shift protocol (default ``profile.shift_mode``; ``"circular"`` for the APS check).
        trunks, heads: restrict to some trunks / head names (default all).
        n_images: test images (default :meth:`Profile.sweep_size` of the first trunk).
        seeds: every seed of every head rides on the same trunk passes (``"<trunk>/<head>@<seed>"``
            besides the main ``"<trunk>/<head>"``; :meth:`ModelSet.run_names`).
        keep_logits: keep (S, N, K) logits per head (spectra of the true-class logit).
        precision: ``"float32"`` or ``"bf16"`` (default: the profile's, with its ``channels_last``).
    Returns:
        :class:`shiftinv.shifts.sweep_result.SweepResult` with heads named ``"<trunk>/<head>[@<seed>]"``,
        run in the profile's precision (``profile.precision``, ``profile.channels_last``).
    """
    from ..shifts import engine

    p = ms.profile
    mode = mode or p.shift_mode
    if precision is not None and precision != p.precision:
        p = p.replace(precision=precision, channels_last=False)
    chosen = ms.sweep_models(trunks, heads, seeds=seeds)
    n = n_images if n_images is not None else p.sweep_size(kind, next(iter(chosen)))
    images, labels = ms.test_tensors(n)
    shift_list = sweep_shifts(p, kind)
    fingerprint = {t: cache.state_fingerprint(trunk, *hs.values()) for t, (trunk, hs) in chosen.items()}
    config = {"profile": p.to_dict(), "kind": kind, "mode": mode, "models": {t: list(hs) for t, (_, hs) in chosen.items()},
              "n": int(images.shape[0]), "fingerprint": fingerprint, "logits": keep_logits}
    path = cache.cache_path("sweep", config, ".sweep.pt", code=__name__)
    if path.exists() and not (refresh or cache.refresh_requested(path)):
        try:
            return sweep_result.SweepResult.load(path)
        except ValueError as err:  # truncated / damaged: set aside, sweep again
            cache.set_aside(path, str(err).split("\n")[0])
    with runtime.reproducible():
        result = engine.sweep_models(chosen, images, labels, shift_list, mode,
                                    out_path=path.with_suffix(".part.pt"), batch_size=p.sweep_batch,
                                    device=p.device, progress=True, amp=p.precision,
                                    channels_last=p.channels_last, keep_logits=keep_logits)
    result.save(path)
    for part in path.parent.glob(path.with_suffix("").name + ".part.*"):
        part.unlink(missing_ok=True)
    return result


def replicate_sweeps(model_sets: Sequence[ModelSet], kind: str = "grid", trunks: list[str] | None = None,
                     keep_logits: bool = False) -> list[sweep_result.SweepResult]:
    """:func:`translation_sweep` of every model set of ``model_sets`` (the main one, then its trunk
    replicates: :func:`shiftinv.study.replicates.trunk_replicates`), every head seed on the same passes,
    on the same images; the main model set's result first."""
    return [translation_sweep(ms, kind, trunks=trunks, keep_logits=keep_logits) for ms in model_sets]


def main_runs(result: sweep_result.SweepResult) -> sweep_result.SweepResult:
    """The runs of a sweep that the figures draw: each head's main seed (names without ``@``)."""
    return result.select([h for h in result.heads if "@" not in h])


def robustness_intervals(results: Sequence[sweep_result.SweepResult], model_sets: Sequence[ModelSet]) -> pd.DataFrame:
    """One row per head of the main sweep: every :data:`shiftinv.study.intervals.SWEEP_STATISTICS` as the mean
    over all runs (head seeds x trunk replicates), its 95% interval over images and runs, its range over
    runs and its main run's value (:func:`shiftinv.study.intervals.sweep_intervals`)."""
    heads = list(main_runs(results[0]).heads)
    return intervals.sweep_intervals(results, replicates.run_names(model_sets, heads))


def accuracy_table(model_sets: Sequence[ModelSet]) -> pd.DataFrame:
    """The main model set's summary (parameters, training, trunk) with each model's test accuracy over every
    run of ``model_sets`` (the main one, then its trunk replicates): ``test_acc`` the mean over runs,
    ``test_acc_lo/_hi`` its 95% interval over test images and runs, ``test_acc_seed_min/_max`` its range,
    ``test_acc_main`` the main run's (figures), ``runs``, ``n_images`` (:func:`intervals.accuracy_intervals`)."""
    summary = model_sets[0].summary.drop(columns=["test_acc"])
    return summary.merge(intervals.accuracy_intervals(model_sets), on="model", how="left")


def runs_text(model_sets: Sequence[ModelSet]) -> str:
    """How many runs each reported number pools: ``"3 head seeds x 3 trunk trainings = 9 runs"``."""
    seeds = len(model_sets[0].profile.head_seed_list())
    trunks = len(model_sets)
    text = f"{seeds} head seeds" + (f" x {trunks} trunk trainings" if trunks > 1 else " on one frozen trunk")
    return f"{text} = {seeds * trunks} runs per head"


# ----------------------------------------------------------------------------- tables and plots


def history_frame(ms: ModelSet) -> pd.DataFrame:
    """Per-epoch training records of every run: ``model, epoch, train_loss, val_loss, val_acc, seconds``
    (``seconds`` is wall-clock time: keep it out of figure data with :func:`split_timings`)."""
    rows = [{"model": name, **rec} for name, hist in ms.histories.items() for rec in hist]
    return pd.DataFrame(rows)


#: Columns that depend on the machine and on what was cached, not on the numbers computed.
TIMING_COLUMNS: tuple[str, ...] = ("seconds", "train_seconds", "trunk_seconds", "trunk_setup_seconds", "cached")


def split_timings(frame: pd.DataFrame, keys: tuple[str, ...] = ("model", "epoch")) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(numbers, timings)``: ``frame`` without :data:`TIMING_COLUMNS` (figure data, compared
    between runs) and those columns with the ``keys`` present (a separate ``*_timings.csv``)."""
    timing = [c for c in frame.columns if c in TIMING_COLUMNS]
    key_cols = [c for c in keys if c in frame.columns]
    return frame.drop(columns=timing), frame[key_cols + timing].copy()


def shift_frame(result: Any) -> pd.DataFrame:
    """Image-averaged outcome per (head, shift): ``head, dx, dy, accuracy, loss, p_true``
    (the long-table view of :meth:`shiftinv.shifts.sweep_result.SweepResult.per_image`)."""
    s = result.shifts.numpy()
    frames = []
    for h in result.heads:
        frames.append(pd.DataFrame({
            "head": h, "dx": s[:, 0], "dy": s[:, 1],
            "accuracy": result.per_image(h, "accuracy").double().mean(1).numpy(),
            "loss": result.per_image(h, "loss").double().mean(1).numpy(),
            "p_true": result.per_image(h, "p_true").double().mean(1).numpy(),
        }))
    return pd.concat(frames, ignore_index=True)


def robustness_table(result: Any) -> pd.DataFrame:
    """Per head: accuracy unshifted (``acc0``), mean / worst accuracy over the shifts, the accuracy
    lost on average (``acc_loss = acc0 - mean``), and the loss unshifted / mean over shifts."""
    f = shift_frame(result)
    rows = []
    for h, g in f.groupby("head", sort=False):
        zero = g[(g.dx == 0) & (g.dy == 0)]
        if zero.empty:
            raise ValueError("the sweep must contain the zero shift (0, 0)")
        a0, l0 = float(zero.accuracy.iloc[0]), float(zero.loss.iloc[0])
        rows.append({"head": h, "acc0": a0, "acc_mean": g.accuracy.mean(), "acc_min": g.accuracy.min(),
                     "acc_loss": a0 - g.accuracy.mean(), "loss0": l0, "loss_mean": g.loss.mean(),
                     "shifts": len(g)})
    return pd.DataFrame(rows)


# ============================================================================ notebook 03 · training the heads


def heads_split_sizes(splits: datasets.Splits) -> pd.DataFrame:
    """One row per split: ``split``, ``images`` (count), ``image_size`` (px)."""
    return pd.DataFrame([{"split": k, "images": v, "image_size": splits.image_size} for k, v in splits.sizes().items()])


def heads_direct_vs_cached_accuracy(ms: Any, name: str, n: int = 256) -> dict[str, float]:
    """Accuracy of model ``name``'s main run through the trunk against on its cached test features, on the
    first ``n`` test images.

    The trunk runs in the profile's precision (:meth:`ModelSet.predictor`); the cached features were made
    the same way and stored as ``profile.feature_dtype``.

    Returns:
        ``{"direct": ..., "cached": ..., "tolerance": ..., "n": ...}`` (accuracies in [0, 1]).
    Raises:
        ValueError: they differ by more than round-off plus two test images (plus 0.5% of them when the
        profile runs in bf16 or stores float16 features).
    """
    from . import precision

    t, h = name.split("/")
    from torch.utils.data import Subset

    k = min(n, len(ms.splits.test))
    images, labels = datasets.as_tensors(Subset(ms.splits.test, range(k)))  # the first k, in order
    predict = ms.predictor(t)
    correct, bs = [], ms.profile.head_train.eval_batch_size
    for start in range(0, k, bs):
        x = images[start : start + bs].to(runtime.default_device(ms.profile.device))
        correct.append(predict(x)[h].argmax(1).cpu() == labels[start : start + bs])
    direct = float(torch.cat(correct).double().mean())
    cached = float(ms.test_outcomes[f"{name}@{ms.profile.seed}"][:k].double().mean())
    slack = 2 + (0 if precision.is_exact(ms.profile) else 0.005 * k)
    tolerance = 1e-6 + slack / k
    if abs(direct - cached) >= tolerance:
        raise ValueError(f"{name}: cached features disagree with the trunk ({direct:.4f} vs {cached:.4f} on {k} images)")
    return {"direct": direct, "cached": cached, "tolerance": tolerance, "n": k}


# ============================================================================ notebook 04 · translation robustness


def robustness_sweep_text(result: sweep_result.SweepResult) -> str:
    """``"S shifts x N images x H heads"``, with the sweep's wall-clock seconds when recorded."""
    text = f"{result.num_shifts} shifts x {result.num_images} images x {len(result.heads)} heads"
    return text + (f" in {result.meta['seconds']:.1f} s" if "seconds" in result.meta else "")


def describe_maps(maps: pd.DataFrame, lattice: int) -> str:
    """What to see in the accuracy heat maps, from their numbers: per head, the centred accuracy, the mean
    over the grid, and the mean on and off the lattice of shifts that are multiples of ``lattice`` px
    (where a GAP after a stride-``lattice`` pool is nearly unmoved). Markdown bullets."""
    lines = []
    for h, g in maps.groupby("head", sort=False):
        on = (g.dx % lattice == 0) & (g.dy % lattice == 0)
        a0 = float(g[(g.dx == 0) & (g.dy == 0)].accuracy.iloc[0])
        text = f"- `{h}`: {a0:.2f} centred, {g.accuracy.mean():.2f} on average over the grid"
        if on.any() and (~on).any():
            text += (f" ({g[on].accuracy.mean():.2f} on shifts that are multiples of {lattice} px, "
                     f"{g[~on].accuracy.mean():.2f} elsewhere)")
        lines.append(text)
    return "\n".join(lines)


def denominator_text(rel: pd.DataFrame, a: str = "vgg/flatten", b: str = "vgg/final_gap") -> str:
    """Why the average relative loss can mislead, in this table's numbers: it divides by the centred loss
    L(0), so the ratio of two heads' relative losses is partly the inverse ratio of their L(0); the accuracy
    drop has no such denominator."""
    r = rel.set_index("head")
    if a not in r.index or b not in r.index:
        return ""
    ra, rb = r.loc[a], r.loc[b]
    ratio = float(ra["dataset_signed"]) / float(rb["dataset_signed"]) if float(rb["dataset_signed"]) else float("nan")
    l0 = float(rb["loss0"]) / float(ra["loss0"]) if float(ra["loss0"]) else float("nan")
    return (f"`{a}`'s average relative loss is {ratio:.3g} times `{b}`'s, but it divides by a centred loss L(0) of "
            f"{float(ra['loss0']):.3g} nats against {float(rb['loss0']):.3g}: a factor {l0:.3g} of that ratio is the "
            f"denominator alone. The accuracy drop has no denominator: {float(ra['acc_loss']):.3g} against "
            f"{float(rb['acc_loss']):.3g}; the flip rate {float(ra['pred_change']):.3g} against "
            f"{float(rb['pred_change']):.3g}.")

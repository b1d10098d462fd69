"""Tables of the classification study: translation sweeps of the model set, robustness tables, histories.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..shifts import sweep_result, translation
from ..workbook import cache, runtime
from . import datasets, feature_data
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
                      n_images: int | None = None, refresh: bool = False) -> "Any":
    """Sweep the model set over the profile's shifts (:func:`sweep_shifts`), cached and resumable.

    Args:
        ms: the trained :class:`ModelSet`.
        kind: ``"grid"``, ``"profile"`` or ``"diagonal"`` (see :func:`sweep_shifts`).
        mode: shift protocol (default ``profile.shift_mode``; ``"circular"`` for the APS check).
        trunks, heads: restrict to some trunks / head names (default all).
        n_images: test images (default ``profile.n_sweep``).
    Returns:
        :class:`shiftinv.shifts.sweep_result.SweepResult` with heads named ``"<trunk>/<head>"``.
    """
    from ..shifts import sweep, sweep_result

    p = ms.profile
    mode = mode or p.shift_mode
    images, labels = ms.test_tensors(n_images)
    shift_list = sweep_shifts(p, kind)
    chosen = ms.sweep_models(trunks, heads)
    fingerprint = {t: cache.state_fingerprint(trunk, *hs.values()) for t, (trunk, hs) in chosen.items()}
    config = {"profile": p.to_dict(), "kind": kind, "mode": mode, "models": {t: list(hs) for t, (_, hs) in chosen.items()},
              "n": int(images.shape[0]), "fingerprint": fingerprint}
    path = cache.cache_path("sweep", config, ".sweep.pt", code=__name__)
    if path.exists() and not (refresh or cache.refresh_requested(path)):
        try:
            return sweep_result.SweepResult.load(path)
        except ValueError as err:  # truncated / damaged: set aside, sweep again
            cache.set_aside(path, str(err).split("\n")[0])
    with runtime.reproducible():
        result = sweep.sweep_models(chosen, images, labels, shift_list, mode,
                                        out_path=path.with_suffix(".part.pt"), batch_size=p.sweep_batch,
                                        device=p.device, progress=True)
    result.save(path)
    for part in path.parent.glob(path.with_suffix("").name + ".part.*"):
        part.unlink(missing_ok=True)
    return result


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


def heads_direct_vs_cached_accuracy(ms: Any, name: str, summary: pd.DataFrame) -> dict[str, float]:
    """Test accuracy of model ``name`` run end to end (trunk + head) against the one on cached features.

    Args:
        ms: a ``modelset.ModelSet``.
        summary: its summary (``model``, ``test_acc``).
    Returns:
        ``{"direct": ..., "cached": ..., "tolerance": ...}`` (accuracies in [0, 1]).
    Raises:
        ValueError: they differ by more than round-off plus two test images.
    """
    images, labels = datasets.as_tensors(ms.splits.test)
    direct, _ = feature_data.evaluate(ms.classifier(name), datasets.TensorImages(images, labels),
                               batch_size=ms.profile.head_train.eval_batch_size, device=ms.profile.device)
    cached = float(summary.set_index("model").loc[name, "test_acc"])
    tolerance = 1e-6 + 2 / len(labels)
    if abs(direct - cached) >= tolerance:
        raise ValueError(f"{name}: cached features disagree with the trunk ({direct:.4f} vs {cached:.4f})")
    return {"direct": float(direct), "cached": cached, "tolerance": tolerance}


# ============================================================================ notebook 04 · translation robustness


def robustness_sweep_text(result: sweep_result.SweepResult) -> str:
    """``"S shifts x N images x H heads"``, with the sweep's wall-clock seconds when recorded."""
    text = f"{result.num_shifts} shifts x {result.num_images} images x {len(result.heads)} heads"
    return text + (f" in {result.meta['seconds']:.1f} s" if "seconds" in result.meta else "")


def robustness_flatten_vs_gap(rel: pd.DataFrame) -> dict[str, float | bool]:
    """The demo's claim on ``rel`` (one row per ``head``, with ``acc_loss`` and ``dataset_signed``):
    the flatten head loses more accuracy and more relative loss than every GAP head of the plain trunk."""
    r = rel.set_index("head")
    gap_heads = [h for h in r.index if h.split("/")[1] in ("final_gap", "multi_gap")]
    checks: dict[str, float | bool] = {
        "flatten_acc_loss": float(r.loc["vgg/flatten", "acc_loss"]),
        "max_gap_acc_loss": float(r.loc[gap_heads, "acc_loss"].max()),
        "flatten_rel_loss": float(r.loc["vgg/flatten", "dataset_signed"]),
        "max_gap_rel_loss": float(r.loc[gap_heads, "dataset_signed"].max()),
    }
    checks["flatten_loses_more_accuracy"] = checks["flatten_acc_loss"] > checks["max_gap_acc_loss"]
    checks["gap_relative_loss_below_flatten"] = checks["max_gap_rel_loss"] < checks["flatten_rel_loss"]
    return checks

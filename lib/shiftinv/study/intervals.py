"""Intervals for the numbers the workbook reports, over what a rerun changes: seeds and test images.

A reported number is a mean over **runs**: every seed of a head (initial weights and batch order,
:attr:`Profile.head_seeds`) and, where a profile trains its trunk, every retrained trunk
(:attr:`Profile.trunk_seeds`, :mod:`shiftinv.study.replicates`). Its interval covers both sources of
variation a rerun brings:

- **which test images**: a percentile bootstrap (95% by default) that resamples the images with
  replacement, with a seeded generator, so an interval is the same on every run; the same resamples
  serve every run and head (paired);
- **which run**: the bootstrap replicates of every run are pooled (an equal mixture over runs), so
  the interval is that of "a rerun on other images", wider than either source alone.

Beside it: the range over runs (``*_seed_min`` / ``*_seed_max``, each run on all images), the mean
(``<stat>``, what the tables report, inside both) and the run the figures draw (``*_main``, the
profile's own seed). Every statistic is recomputed per resample exactly as the point estimate is.
:mod:`shiftinv.workbook.claims` decides the workbook's claims on these intervals.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..shifts import periodicity

#: Interval level, bootstrap resamples and generator seed used by the notebooks.
LEVEL: float = 0.95


N_BOOT: int = 2000


BOOT_SEED: int = 0


#: Intervals from fewer test images than this are flagged (``few_images``) wherever they are printed.
MIN_IMAGES: int = 30


#: ``(run's result, run's name)``: one run of a head, e.g. ``(sweep, "vgg/final_gap@1")``.
Run = tuple[Any, str]


#: ``statistic(result, name, weights (B, N)) -> {stat: (B,) float64}``: a run's statistics per resample.
Statistic = Callable[[Any, str, Tensor], dict[str, Tensor]]


def bootstrap_weights(n: int, n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> Tensor:
    """(n_boot, n) float64 resampling weights: row b counts how often each of the ``n`` images is
    drawn in resample b (with replacement), divided by ``n``; a weighted mean with a row is the
    mean over that resample. Seeded: the same rows on every run and machine."""
    if n < 1:
        raise ValueError("bootstrap needs at least one image")
    g = torch.Generator().manual_seed(int(seed))
    idx = torch.randint(0, n, (n_boot, n), generator=g)
    counts = torch.zeros(n_boot, n, dtype=torch.float64).scatter_add_(1, idx, torch.ones(n_boot, n, dtype=torch.float64))
    return counts / n


def percentile_interval(replicates: Tensor | np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The (lo, hi) percentile interval of bootstrap ``replicates`` (B,) at ``level``."""
    r = np.asarray(replicates, dtype=np.float64)
    r = r[np.isfinite(r)]
    if r.size == 0:
        return float("nan"), float("nan")
    a = (1 - level) / 2
    lo, hi = np.quantile(r, [a, 1 - a])
    return float(lo), float(hi)


def accuracy_interval(correct: Tensor, n_boot: int = N_BOOT, seed: int = BOOT_SEED,
                      level: float = LEVEL) -> tuple[float, float]:
    """Bootstrap interval of the accuracy of per-image outcomes ``correct`` (N,) (bool or 0/1)."""
    w = bootstrap_weights(int(correct.shape[0]), n_boot, seed)
    return percentile_interval(w @ correct.double(), level)


def relative_loss_replicates(loss: Tensor, zero: int, weights: Tensor) -> Tensor:
    """``dataset_signed`` relative loss for every resample: ``loss`` (S, N) per shift and image,
    ``zero`` the index of the unshifted row, ``weights`` (B, N) from :func:`bootstrap_weights`.
    Returns (B,): ``mean_{s != 0} (Lbar_b(s) - Lbar_b(0)) / Lbar_b(0)``."""
    lbar = weights @ loss.double().T  # (B, S)
    rest = [i for i in range(loss.shape[0]) if i != zero]
    if not rest:
        raise ValueError("relative loss needs at least one non-zero shift")
    l0 = lbar[:, zero : zero + 1]
    return ((lbar[:, rest] - l0) / l0).mean(dim=1)


# ----------------------------------------------------------------------------- statistics of a run


#: What :func:`sweep_statistics` reports, in the order tables show them.
SWEEP_STATISTICS: tuple[str, ...] = ("acc0", "acc_mean", "acc_min", "acc_loss", "loss0", "dataset_signed", "pred_change")


def sweep_statistics(result: Any, run: str, weights: Tensor) -> dict[str, Tensor]:
    """Robustness statistics of run ``run`` of a sweep over a shift grid holding (0, 0), per resample.

    Args:
        result: a :class:`~shiftinv.shifts.sweep_result.SweepResult`; weights: (B, N) image weights.
    Returns:
        ``{stat: (B,)}``: ``acc0`` accuracy unshifted; ``acc_mean`` / ``acc_min`` mean / worst accuracy
        over the shifts (all of them, the unshifted one included); ``acc_loss = acc0 - acc_mean``;
        ``loss0`` the unshifted mean loss L(0); ``dataset_signed`` the average relative loss
        ``mean_{s != 0} (L(s) - L(0)) / L(0)``; ``pred_change`` (the flip rate) the fraction of (shift,
        image) pairs whose top-1 differs from the unshifted image's (``relative_loss``'s ``pred_change``).
    """
    z = result.index(0, 0)
    acc = weights @ result.correct[run].double().T  # (B, S)
    lbar = weights @ result.loss[run].double().T  # (B, S)
    pred = result.pred[run]
    flips = (pred != pred[z]).double().mean(0)  # (N,)
    acc0, acc_mean = acc[:, z], acc.mean(1)
    return {"acc0": acc0, "acc_mean": acc_mean, "acc_min": acc.min(1).values, "acc_loss": acc0 - acc_mean,
            "loss0": lbar[:, z], "dataset_signed": relative_loss_replicates(result.loss[run], z, weights),
            "pred_change": weights @ flips}


def accuracy_statistics(outcomes: Mapping[str, Tensor], run: str, weights: Tensor) -> dict[str, Tensor]:
    """``{"test_acc": (B,)}``: the accuracy of run ``run``'s per-image outcomes ``outcomes[run]`` (N,)."""
    return {"test_acc": weights @ outcomes[run].double()}


def ripple_statistic(period: int, field: str = "true_logit") -> Statistic:
    """The periodicity index of a head's response over an evenly spaced line of shifts, per resample.

    Returns a :data:`Statistic` giving ``fraction`` (the response's non-constant energy at ``period`` px
    and its harmonics, pooled over the resampled images: :func:`shiftinv.shifts.periodicity.harmonic_energy`),
    ``chance`` (what white noise would give) and ``ripple = fraction / chance`` (> 1: more than noise).
    A line sampled every ``k`` px sees the period as ``period / k`` samples; all three are NaN when the
    period is not a whole number of samples or longer than the line.
    """
    from ..shifts import invariance

    def statistic(result: Any, run: str, weights: Tensor) -> dict[str, Tensor]:
        dxs, values = invariance.response_profile(result, run, field, uniform=True)  # (N, L)
        step = int(dxs[1] - dxs[0])
        if period % step or period // step > values.shape[1]:
            nan = torch.full((weights.shape[0],), float("nan"), dtype=torch.float64)
            return {"fraction": nan, "chance": nan, "ripple": nan}
        at, total, chance = periodicity.harmonic_energy(values, period // step)
        fraction = (weights @ torch.from_numpy(at)) / (weights @ torch.from_numpy(total))
        return {"fraction": fraction, "chance": torch.full_like(fraction, chance), "ripple": fraction / chance}

    return statistic


# ----------------------------------------------------------------------------- pooling runs


def run_intervals(runs: Mapping[str, Sequence[Run]], statistic: Statistic, n_boot: int = N_BOOT,
                  seed: int = BOOT_SEED, level: float = LEVEL) -> pd.DataFrame:
    """One row per head of ``runs`` (``{head: [(result, run name), ...]}``, the main run first): for every
    statistic ``stat`` of ``statistic``, the mean over runs ``stat``, the pooled interval ``stat_lo`` /
    ``stat_hi`` (image resamples of every run together), the range over runs ``stat_seed_min`` /
    ``stat_seed_max`` and the main run's value ``stat_main``; ``runs`` (how many), ``n_images`` and
    ``few_images`` (fewer than :data:`MIN_IMAGES`)."""
    rows = []
    for head, pairs in runs.items():
        if not pairs:
            raise ValueError(f"no run of {head!r}")
        n = _images_of(pairs, head)
        w = bootstrap_weights(n, n_boot, seed)
        uniform = torch.full((1, n), 1.0 / n, dtype=torch.float64)
        # round-off below 1e-12 (e.g. an accuracy drop of 2e-17) is printed as 0
        points = [{k: round(float(v[0]), 12) for k, v in statistic(r, name, uniform).items()} for r, name in pairs]
        reps = [statistic(r, name, w) for r, name in pairs]
        row: dict[str, Any] = {"head": head}
        for stat in points[0]:
            values = [p[stat] for p in points]
            lo, hi = percentile_interval(torch.cat([r[stat] for r in reps]), level)
            row.update({stat: float(np.mean(values)), f"{stat}_lo": lo, f"{stat}_hi": hi,
                        f"{stat}_seed_min": min(values), f"{stat}_seed_max": max(values), f"{stat}_main": values[0]})
        rows.append({**row, "runs": len(pairs), "n_images": n, "few_images": n < MIN_IMAGES})
    return pd.DataFrame(rows)


def _images_of(pairs: Sequence[Run], head: str) -> int:
    """The common image count of a head's runs (they must be paired: the same images)."""
    counts = set()
    for result, name in pairs:
        counts.add(int(result.num_images) if hasattr(result, "num_images") else int(result[name].shape[0]))
    if len(counts) != 1:
        raise ValueError(f"the runs of {head!r} cover different numbers of images {sorted(counts)}: pass runs on "
                         "the same images")
    return counts.pop()


def sweep_runs(results: Sequence[Any], names: Mapping[str, Sequence[str]]) -> dict[str, list[Run]]:
    """``{head: [(result, run), ...]}`` for :func:`run_intervals` from sweeps of several model sets (trunk
    replicates, the main one first) on the same images: ``names[head]`` are the run names of a head
    (:meth:`shiftinv.study.modelset.ModelSet.run_names`), looked up in every result that has them."""
    return {h: [(r, n) for r in results for n in ns if n in r.heads] for h, ns in names.items()}


def sweep_intervals(results: Sequence[Any], names: Mapping[str, Sequence[str]], **kwargs: Any) -> pd.DataFrame:
    """:func:`run_intervals` of :func:`sweep_statistics` (one row per head; columns of
    :data:`SWEEP_STATISTICS` with their intervals, ranges and main-run values)."""
    return run_intervals(sweep_runs(results, names), sweep_statistics, **kwargs)


def accuracy_intervals(model_sets: Sequence[Any], **kwargs: Any) -> pd.DataFrame:
    """Test accuracy of every model of ``model_sets`` (the main model set, then its trunk replicates) over
    every run: columns ``model``, ``test_acc`` (mean over runs), ``test_acc_lo/_hi``, ``_seed_min/_max``,
    ``_main``, ``runs``, ``n_images`` (test images)."""
    main = model_sets[0]
    runs: dict[str, list[Run]] = {}
    for name in main.names():
        t, h = name.split("/")
        for ms in model_sets:
            seeds = ms.seed_heads.get(t, {}).get(h, {})
            runs.setdefault(name, []).extend((ms.test_outcomes, f"{name}@{s}") for s in seeds
                                             if f"{name}@{s}" in ms.test_outcomes)
    table = run_intervals(runs, accuracy_statistics, **kwargs)
    return table.rename(columns={"head": "model"})

"""Intervals for the numbers the workbook reports: bootstrap over test images, spread over head seeds.

Two sources of uncertainty, reported separately:

- **which test images** (:func:`bootstrap_weights`): a percentile bootstrap (95% by default) that
  resamples the test images with replacement, with a seeded generator, so an interval is the same
  on every run. The same resamples serve every head of a sweep (paired), and each statistic is
  recomputed exactly as the point estimate is (accuracy; ``dataset_signed`` relative loss
  ``mean_s (Lbar(s) - Lbar(0)) / Lbar(0)`` of :mod:`shiftinv.shifts.invariance`);
- **which training run** (:func:`seed_heads`): the heads retrained with other seeds (initial
  weights and batch order) on the same frozen trunk, cheap because they train on trunk features
  computed once. Seed ``profile.seed`` reproduces the head of the main run.

Notebooks 03 and 04 call :func:`accuracy_intervals` and :func:`relative_loss_intervals`, which add
``*_lo`` / ``*_hi`` (bootstrap) and ``*_seed_min`` / ``*_seed_max`` / ``*_seed_mean`` columns to
their data files; :mod:`shiftinv.workbook.readme` quotes them and checks the claims on them.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..models import vgg
from ..workbook import cache, runtime
from . import datasets, training

#: Interval level, bootstrap resamples, generator seed and head seeds used by the notebooks.
LEVEL: float = 0.95


N_BOOT: int = 2000


BOOT_SEED: int = 0


SEEDS: tuple[int, ...] = (0, 1, 2)


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


# ----------------------------------------------------------------------------- seeds


def seed_heads(ms: Any, seeds: Sequence[int] = SEEDS, trunks: Sequence[str] | None = None
               ) -> dict[str, dict[int, vgg.Head]]:
    """The heads of ``ms`` (a :class:`shiftinv.study.modelset.ModelSet`) retrained with every seed of
    ``seeds``, on trunk features computed once per trunk; cached under ``results/head_seeds``.

    Covers every head built on trunk features (not ``flatten_aug``, trained on shifted copies).
    Seed s seeds the head's initial weights and batch order (``TrainConfig.seed``); the rest of the
    recipe is the profile's (epochs, patience, L2 on ``l2_heads``).
    Returns ``{"<trunk>/<head>": {seed: Head (eval mode)}}``.
    """
    p = ms.profile
    device = runtime.default_device(p.device)
    out: dict[str, dict[int, vgg.Head]] = {}
    for tname in trunks or list(ms.trunks):
        trunk = ms.trunks[tname]
        kinds = [k for k in ms.heads[tname] if k != "flatten_aug"]
        tkey = {"profile": p.name, "smoke": p.smoke, "trunk": tname, "weights": cache.state_fingerprint(trunk),
                "data": ms.splits.sizes(), "classes": p.num_classes, "image_size": p.image_size}
        built: dict[tuple[str, int], vgg.Head] = {}
        for kind in kinds:
            for s in seeds:
                runtime.seed_everything(int(s))
                built[kind, s] = vgg.build_head(kind, trunk, num_classes=p.num_classes, input_size=p.image_size)
        taps = vgg.union_taps({f"{k}@{s}": h for (k, s), h in built.items()})
        flat = {h.flatten_tap for h in built.values() if h.flatten_tap}
        gap_only = tuple(t for t in taps if t not in flat)
        # the model set's own features when they cover these taps (one trunk pass for every seed)
        features = ms.features.get(tname) if hasattr(ms, "features") else None
        if features is None or not set(taps) <= set(features("val").features):
            from .modelset import feature_source

            features = feature_source(trunk, taps, gap_only, ms.splits, p.head_train.eval_batch_size, device,
                                      getattr(torch, p.feature_dtype), tname)

        for (kind, s), head in built.items():
            cfg = dataclasses.replace(p.head_train, device=p.device, seed=int(s),
                                      l2=p.l2 if kind in p.l2_heads else 0.0)
            key = {**tkey, "head": kind, "init_seed": int(s)}
            training.train_or_load("head_seeds", key, head,  # features computed only when (re)trained
                                lambda head=head: features("train").select(head.taps),
                                lambda head=head: features("val").select(head.taps), cfg,
                                desc=f"{tname}/{kind} seed {s}")
            out.setdefault(f"{tname}/{kind}", {})[int(s)] = head.eval()
    return out


def _test_correct(ms: Any, heads: dict[str, dict[str, vgg.Head]]) -> dict[str, Tensor]:
    """Per-image correctness (N_test,) of every ``{trunk: {name: head}}``, on the model set's test
    features when it has them (the same numbers as through the trunk: tested), else through the trunk."""
    device = runtime.default_device(ms.profile.device)
    bs = ms.profile.head_train.eval_batch_size
    out: dict[str, list[Tensor]] = {}
    sources = getattr(ms, "features", {})
    with runtime.reproducible(), torch.no_grad():
        for tname, hs in heads.items():
            if tname in sources:
                test = sources[tname]("test")
                for start in range(0, len(test), bs):
                    feats, y = test.batch(torch.arange(start, min(start + bs, len(test))))
                    feats = {k: v.to(device) for k, v in feats.items()}
                    for name, head in hs.items():
                        pred = head(feats).float().argmax(1).cpu()
                        out.setdefault(name, []).append(pred == y)
                continue
            images, labels = datasets.as_tensors(ms.splits.test)
            for start in range(0, len(labels), bs):
                x = images[start : start + bs].to(device)
                logits = vgg.run_heads(ms.trunks[tname], hs, x)
                for name, lg in logits.items():
                    out.setdefault(name, []).append((lg.float().argmax(1).cpu() == labels[start : start + bs]))
    return {k: torch.cat(v) for k, v in out.items()}


def accuracy_intervals(ms: Any, seeds: Sequence[int] = SEEDS, n_boot: int = N_BOOT,
                       seed: int = BOOT_SEED, level: float = LEVEL) -> pd.DataFrame:
    """Per model of ``ms``: the test accuracy's bootstrap interval over test images
    (``test_acc_lo``, ``test_acc_hi``) and its spread over head seeds (``test_acc_seed_mean``,
    ``test_acc_seed_min``, ``test_acc_seed_max``, ``seeds``; NaN for ``flatten_aug``).
    One row per model, column ``model``; merge into the summary table on it."""
    names = {t: {f"{t}/{h}": m for h, m in hs.items()} for t, hs in ms.heads.items()}
    correct = _test_correct(ms, names)
    reruns = seed_heads(ms, seeds)
    seed_correct = _test_correct(ms, {t: {f"{n}@{s}": h for n, by_seed in reruns.items() if n.startswith(t + "/")
                                          for s, h in by_seed.items()} for t in ms.trunks})
    w = bootstrap_weights(len(next(iter(correct.values()))), n_boot, seed)
    rows = []
    for name, c in correct.items():
        lo, hi = percentile_interval(w @ c.double(), level)
        accs = [float(seed_correct[f"{name}@{s}"].double().mean()) for s in seeds if f"{name}@{s}" in seed_correct]
        rows.append({"model": name, "test_acc_boot": float(c.double().mean()), "test_acc_lo": lo, "test_acc_hi": hi,
                     "test_acc_seed_mean": float(np.mean(accs)) if accs else float("nan"),
                     "test_acc_seed_min": min(accs) if accs else float("nan"),
                     "test_acc_seed_max": max(accs) if accs else float("nan"),
                     "seeds": len(accs), "n_test": int(c.numel())})
    return pd.DataFrame(rows)


def relative_loss_intervals(ms: Any, result: Any, seeds: Sequence[int] = SEEDS, n_boot: int = N_BOOT,
                            seed: int = BOOT_SEED, level: float = LEVEL) -> pd.DataFrame:
    """Per head of the sweep ``result`` (a :class:`shiftinv.shifts.sweep_result.SweepResult` of ``ms`` over a
    shift grid including (0, 0)): the ``dataset_signed`` relative loss's bootstrap interval over the
    sweep's images (``dataset_signed_lo``, ``dataset_signed_hi``; the same resamples for every head)
    and its spread over head seeds (``dataset_signed_seed_mean/min/max``: the retrained heads swept
    over the same shifts and images, cached). One row per head, column ``head``."""
    from ..shifts import sweep, sweep_result

    p = ms.profile
    z = result.index(0, 0)
    w = bootstrap_weights(result.num_images, n_boot, seed)
    trunks = sorted({h.split("/")[0] for h in result.heads})
    reruns = seed_heads(ms, seeds, trunks)
    chosen = {t: (ms.trunks[t], {f"{n.split('/')[1]}@{s}": h for n, by_seed in reruns.items()
                                 if n.startswith(t + "/") and n in result.heads for s, h in by_seed.items()})
              for t in trunks}
    chosen = {t: v for t, v in chosen.items() if v[1]}
    seeded: Any = None
    if chosen:
        images = result_images(ms, result)
        key = {"trunks": {t: cache.state_fingerprint(tr) for t, (tr, _) in chosen.items()},
               "heads": {t: {n: cache.state_fingerprint(h) for n, h in hs.items()} for t, (_, hs) in chosen.items()},
               "shifts": result.shifts.tolist(), "mode": result.mode, "n": result.num_images}

        def run() -> dict[str, Any]:
            with runtime.reproducible():
                r = sweep.sweep_models(chosen, images[0], images[1], result.shifts, result.mode,
                                           batch_size=p.sweep_batch, device=p.device)
            return r.to_state()

        seeded = sweep_result.SweepResult.from_state(cache.cached("seed_sweep", key, run))
    rows = []
    for h in result.heads:
        lo, hi = percentile_interval(relative_loss_replicates(result.loss[h], z, w), level)
        vals = []
        if seeded is not None:
            zs = seeded.index(0, 0)
            for s in seeds:
                if f"{h}@{s}" in seeded.heads:
                    lbar = seeded.loss[f"{h}@{s}"].double().mean(1)
                    rest = [i for i in range(len(lbar)) if i != zs]
                    vals.append(float(((lbar[rest] - lbar[zs]) / lbar[zs]).mean()))
        rows.append({"head": h, "dataset_signed_lo": lo, "dataset_signed_hi": hi,
                     "dataset_signed_seed_mean": float(np.mean(vals)) if vals else float("nan"),
                     "dataset_signed_seed_min": min(vals) if vals else float("nan"),
                     "dataset_signed_seed_max": max(vals) if vals else float("nan"),
                     "seeds": len(vals), "n_images": result.num_images})
    return pd.DataFrame(rows)


def result_images(ms: Any, result: Any) -> tuple[Tensor, Tensor]:
    """The test images and labels a sweep of ``ms`` used (its first ``result.num_images``), checked
    against the labels the sweep recorded."""
    images, labels = ms.test_tensors(result.num_images)
    if not torch.equal(labels.cpu(), result.labels.cpu()):
        raise ValueError("the sweep's labels differ from the model set's test images: pass a sweep of this model set")
    return images, labels

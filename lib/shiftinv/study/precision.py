"""How far a profile's fast arithmetic moves its numbers: bf16 / channels-last trunk passes and float16
feature storage, measured against float32 on the same images (notebook 04, ``04_precision.csv``).

On a CPU with AVX-512 BF16 / AMX, a VGG-16 trunk runs about three times faster in bf16 (autocast, NHWC)
than in float32, with feature maps that agree to about 0.5% (relative); whether that changes the
workbook's numbers is measured here, not assumed: the plain trunk's main heads are swept over the
profile's 1-D line of shifts on a few test images in both precisions, and evaluated on test features
computed and stored both ways.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch

from ..shifts import engine
from ..workbook import cache, runtime
from . import feature_data, intervals


def is_exact(profile: Any) -> bool:
    """Whether ``profile`` runs in plain float32 (nothing to compare)."""
    return profile.precision == "float32" and not profile.channels_last and profile.feature_dtype == "float32"


def precision_agreement(ms: Any, n_sweep: int = 16, n_features: int = 200) -> pd.DataFrame:
    """Per main head of the plain trunk, the profile's precision against float32 (cached).

    Args:
        ms: a :class:`shiftinv.study.modelset.ModelSet`.
        n_sweep: test images of the 1-D line of shifts (``analysis.sweep_shifts(profile, "profile")``).
        n_features: test images whose features are computed both ways.
    Returns:
        rows ``head, measure, float32, profile, difference`` for the measures ``accuracy per shift``
        (largest difference over the shifts), ``relative loss`` (``dataset_signed`` over the line),
        ``top-1 agreement`` (fraction of (shift, image) pairs with the same prediction; ``float32`` = 1) and
        ``test accuracy from cached features``; plus ``precision``, ``channels_last``, ``feature_dtype`` and
        the image counts. Empty when the profile runs in float32.
    """
    p = ms.profile
    if is_exact(p):
        return pd.DataFrame(columns=["head", "measure", "float32", "profile", "difference"])
    chosen = ms.sweep_models(["vgg"])
    config = {"profile": p.to_dict(), "n": [n_sweep, n_features],
              "weights": {t: cache.state_fingerprint(tr, *hs.values()) for t, (tr, hs) in chosen.items()}}
    rows = cache.cached("precision_agreement", config, lambda: _measure(ms, chosen, n_sweep, n_features))
    return pd.DataFrame(rows).assign(precision=p.precision, channels_last=p.channels_last,
                                     feature_dtype=p.feature_dtype, n_sweep=n_sweep, n_features=n_features)


def _measure(ms: Any, chosen: dict, n_sweep: int, n_features: int) -> list[dict[str, Any]]:
    from .analysis import sweep_shifts

    p = ms.profile
    images, labels = ms.test_tensors(n_sweep)
    line = sweep_shifts(p, "profile")
    with runtime.reproducible():
        low = engine.sweep_models(chosen, images, labels, line, p.shift_mode, batch_size=p.sweep_batch,
                                 device=p.device, amp=p.precision, channels_last=p.channels_last, progress=False)
        ref = engine.sweep_models(chosen, images, labels, line, p.shift_mode, batch_size=p.sweep_batch,
                                 device=p.device, amp="float32", channels_last=False, progress=False)
    rows = []
    uniform = torch.full((1, ref.num_images), 1.0 / ref.num_images, dtype=torch.float64)
    for h in ref.heads:
        a_ref, a_low = ref.correct[h].double().mean(1), low.correct[h].double().mean(1)
        r_ref = float(intervals.sweep_statistics(ref, h, uniform)["dataset_signed"][0])
        r_low = float(intervals.sweep_statistics(low, h, uniform)["dataset_signed"][0])
        agree = float((ref.pred[h] == low.pred[h]).double().mean())
        rows += [{"head": h, "measure": "accuracy per shift (largest difference)", "float32": float(a_ref.mean()),
                  "profile": float(a_low.mean()), "difference": float((a_ref - a_low).abs().max())},
                 {"head": h, "measure": "relative loss", "float32": r_ref, "profile": r_low,
                  "difference": r_low - r_ref},
                 {"head": h, "measure": "top-1 agreement", "float32": 1.0, "profile": agree, "difference": agree - 1.0}]
    return rows + _feature_rows(ms, n_features)


def _feature_rows(ms: Any, n: int) -> list[dict[str, Any]]:
    """Test accuracy of the plain trunk's main heads on features computed in float32 and stored as float32,
    against the profile's precision and storage, on the first ``n`` test images."""
    from . import datasets

    p, trunk, heads = ms.profile, ms.trunks["vgg"], ms.heads["vgg"]
    data = datasets.take(ms.splits.test, n, p.seed + 3)
    taps = tuple(dict.fromkeys(t for h in heads.values() for t in h.taps))
    device = runtime.default_device(p.device)
    ways = {"float32": ("float32", torch.float32, False),
            "profile": (p.precision, getattr(torch, p.feature_dtype), p.channels_last)}
    acc: dict[str, dict[str, float]] = {}
    for way, (amp, dtype, cl) in ways.items():
        feats = feature_data.extract_features(lambda x: trunk(x, taps), data, (), p.head_train.eval_batch_size,
                                              device, dtype, amp=amp, channels_last=cl, desc=f"{way} features")
        for name, head in heads.items():
            correct, _ = feature_data.per_item_outcomes(head, feats.select(head.taps), 256, device)
            acc.setdefault(f"vgg/{name}", {})[way] = float(correct.double().mean())
    return [{"head": h, "measure": "test accuracy from cached features", "float32": a["float32"],
             "profile": a["profile"], "difference": a["profile"] - a["float32"]} for h, a in acc.items()]

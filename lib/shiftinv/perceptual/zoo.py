"""The metric zoo of a perceptual profile (:mod:`shiftinv.perceptual.profiles`), and notebook 07's tables
(the family, the parity with the ``lpips`` package, the learned weights).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from .metrics import (
    ClassicalMetric,
    LinearTapMetric,
    PerceptualMetric,
    lpips_reference,
    metric_family,
    metric_trunk,
    random_vgg16_features,
)
from .profiles import PerceptualProfile


def profile_zoo(profile: PerceptualProfile, classical: Sequence[str] = ("psnr", "ssim")) -> dict[str, nn.Module]:
    """:func:`metric_zoo` for a :class:`PerceptualProfile`: its backbone weights, pools and device."""
    return metric_zoo(profile.pools, seed=profile.seed, weights=profile.backbone_weights(), classical=classical,
                      device=profile.torch_device())


def metric_zoo(pools: Sequence[str] = ("max", "blur", "aps"), seed: int = 0, weights: object = None,
               kinds: Sequence[str] = ("lpips", "baseline", "gap"), classical: Sequence[str] = ("psnr", "ssim"),
               lpips_weights: bool = True, device: str | torch.device | None = None) -> dict[str, nn.Module]:
    """Every learned metric on every backbone, plus classical references, learned ones on ``device``.

    Names are ``"<kind>/<pool>"`` (``"gap/blur"``) and the classical names (``"psnr"``). The APS
    trunk uses circular padding (its exact-invariance setting); all trunks share conv weights.
    """
    zoo: dict[str, nn.Module] = {}
    for pool in pools:
        trunk = metric_trunk(pool, seed=seed, weights=weights, circular=(pool == "aps"))
        family = {k: m.to(device or "cpu") for k, m in metric_family(trunk, lpips_weights=lpips_weights).items()}
        for kind in kinds:
            zoo[f"{kind}/{pool}"] = family[kind]
    for name in classical:
        zoo[name] = ClassicalMetric(name)
    return zoo


# ----------------------------------------------------------------------------------------------
# Notebook 07: the family, LPIPS parity, what the metrics respond to


def family_table(zoo: Mapping[str, nn.Module]) -> pd.DataFrame:
    """One row per learned metric: its taps, its trainable weights and its frozen backbone parameters."""
    return pd.DataFrame([
        {"metric": name, "taps": ", ".join(m.taps), "weights": m.num_weights,
         "frozen backbone params": sum(p.numel() for p in m.trunk.parameters())}
        for name, m in zoo.items() if isinstance(m, PerceptualMetric)
    ])


def lpips_parity(profile: PerceptualProfile, metric: LinearTapMetric, x0: Tensor, x1: Tensor,
                 tolerance: float = 1e-5) -> str:
    """Compare ``metric`` (LPIPS on the profile's random-init trunk) with the ``lpips`` package.

    x0, x1: (N, 3, H, W) in [0, 1]. Only for the random-init backbone (the package's network takes
    torchvision-layout weights) outside smoke runs (the unit tests check it there). Returns a report
    of both distances and their largest difference; raises when it exceeds ``tolerance``.
    """
    if profile.weights or profile.smoke:
        return "parity with the lpips package is checked on random weights (demo profile and unit tests)"
    reference = lpips_reference(random_vgg16_features(profile.seed))
    with torch.no_grad():
        ours = metric(x0, x1)
        theirs = reference(x0, x1, normalize=True).flatten()
    parity = float((ours - theirs).abs().max())
    if not parity < tolerance:
        raise AssertionError(f"LPIPS parity with the lpips package failed: max |difference| {parity:.2e}")
    return f"ours   {ours.numpy().round(6)}\nlpips  {theirs.numpy().round(6)}\nmax |difference| = {parity:.2e}"


def lpips_weight_table(metric: LinearTapMetric) -> pd.DataFrame:
    """The metric's weights sorted per tap: rows ``tap, rank, weight`` (rank 0 = largest)."""
    return pd.DataFrame([{"tap": tap, "rank": r, "weight": float(w)}
                         for tap, ws in metric.weights_per_tap().items()
                         for r, w in enumerate(sorted(ws.tolist(), reverse=True))])


def normalised_responses(values: pd.DataFrame, kinds: Mapping[str, str]) -> pd.DataFrame:
    """Long table ``ref, distortion, level, metric, value, normalised``: each metric rescaled to
    [0, 1] over the levels of each distortion (similarities negated first)."""
    long = values.melt(id_vars=["ref", "distortion", "level"], value_vars=list(kinds), var_name="metric")
    long["value"] = np.where(long["metric"].map(kinds) == "similarity", -long["value"], long["value"])
    g = long.groupby(["metric", "distortion"])["value"]
    long["normalised"] = (long["value"] - g.transform("min")) / (g.transform("max") - g.transform("min"))
    return long

"""Heads on a shared frozen trunk: one head seen as a model (:class:`HeadModel`), the same trunk with
other padding or pooling, and GAP heads at every depth (notebook 05's explorer and depth ablation).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn


class HeadModel(nn.Module):
    """One head on a (shared) trunk, seen as a model: ``features`` from the trunk, logits from the head.

    Args:
        trunk: module with ``forward(x, taps) -> {tap: (N, C, h, w)}`` (a ``VGGTrunk``).
        head: module with ``taps`` and ``forward(feats) -> logits (N, K)`` (a ``Head``).
    """

    def __init__(self, trunk: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = head

    def features(self, x: Tensor, taps: Sequence[str]) -> dict[str, Tensor]:
        return dict(self.trunk(x, tuple(taps)))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.trunk(x, tuple(self.head.taps)))


def same_weights_trunk(trunk: Any, *, circular: bool | None = None, pool: str | None = None) -> Any:
    """A copy of a :class:`shiftinv.models.vgg.VGGTrunk` with the same weights (and BatchNorm statistics)
    but other padding (``circular``) or pooling (``pool``): separates boundary effects from
    aliasing without retraining (frozen, eval mode, on the trunk's device)."""
    from ..models import vgg

    new = vgg.build_trunk(
        width=trunk.width, batch_norm=trunk.batch_norm, pool=pool if pool is not None else trunk.pool,
        blur_size=trunk.blur_size, blur_pad=trunk.blur_pad,
        circular=trunk.circular if circular is None else circular, normalize=trunk.normalize,
    )
    new.load_state_dict(trunk.state_dict())
    device = next(trunk.parameters()).device
    return new.to(device).requires_grad_(False).eval()


def depth_head_name(tap: str) -> str:
    """Name of the GAP-depth ablation head reading only ``tap`` (``"gap_pool3"``)."""
    return f"gap_{tap}"


def train_depth_heads(
    trunk: Any, train_data: Any, val_data: Any, num_classes: int, cfg: Any, key: Mapping[str, Any],
    taps: Sequence[str] = ("pool1", "pool2", "pool3", "pool4", "pool5"), test_data: Any = None,
    input_size: int | None = None, seed: int = 0, source: Any = None,
) -> tuple[dict[str, Any], "Any"]:
    """GAP-depth ablation: one linear head on GAP(tap) per tap, trained on features computed once.

    Each head is ``build_head("final_gap", trunk, gap_taps=(tap,))``, trained with
    :func:`shiftinv.study.training.train_or_load` (cached under ``results/head`` by ``key``, the tap
    and ``cfg``); the trunk's spatial means are extracted once for all taps, only when a head
    is not cached yet (or for the test accuracy).

    Args:
        trunk: frozen ``VGGTrunk``; train_data / val_data / test_data: image datasets
            (``shiftinv.study.datasets`` splits); key: JSON-serialisable description of trunk and data.
        cfg: :class:`shiftinv.study.training.TrainConfig` for the heads.
        source: ``split -> FeatureData`` already computed for this trunk and these data
            (``ModelSet.features[trunk]``), used when it holds every tap: no second trunk pass.

    Returns:
        ``({depth_head_name(tap): Head}, DataFrame(head, tap, stride, val_acc, test_acc, epochs))``.
    """
    import pandas as pd

    from ..models import vgg
    from ..workbook import runtime
    from . import feature_data, training

    taps = tuple(taps)
    if not taps:
        raise ValueError("taps is empty: name at least one trunk layer, e.g. ('pool1', 'pool5')")
    device = next(trunk.parameters()).device
    features = _depth_features(trunk, taps, cfg, device, source)
    heads: dict[str, Any] = {}
    rows = []
    for tap in taps:
        runtime.seed_everything(seed)
        head = vgg.build_head("final_gap", trunk, num_classes=num_classes, input_size=input_size or 256,
                                 gap_taps=(tap,))
        hkey = {**dict(key), "depth_head": tap, "classes": num_classes}
        res = training.train_or_load("head", hkey, head,  # features computed only when the head is (re)trained
                                  lambda: features("train", train_data).select((tap,)),
                                  lambda: features("val", val_data).select((tap,)),
                                  cfg, desc=depth_head_name(tap))
        heads[depth_head_name(tap)] = head.eval()
        row = {"head": depth_head_name(tap), "tap": tap, "stride": trunk.stride(tap),
               "val_acc": res.best_val_acc, "epochs": len(res.history), "cached": res.loaded}
        if test_data is not None:
            row["test_acc"], row["test_loss"] = feature_data.evaluate(head, features("test", test_data).select((tap,)),
                                                               device=device, amp=cfg.amp)
        rows.append(row)
    return heads, pd.DataFrame(rows)


def _depth_features(trunk: Any, taps: tuple[str, ...], cfg: Any, device: torch.device, source: Any) -> Any:
    """``features(split, data) -> FeatureData`` of every tap, computed at most once per split (taken
    from ``source`` when it holds every tap, else by :func:`shiftinv.study.feature_data.extract_features`)."""
    from . import feature_data

    feats: dict[str, Any] = {}

    def features(split: str, data: Any) -> Any:
        if split not in feats and source is not None and set(taps) <= set(source(split).features):
            feats[split] = source(split)
        if split not in feats:
            feats[split] = feature_data.extract_features(lambda x: trunk(x, taps), data, taps, cfg.eval_batch_size,
                                                  device, desc=f"depth-head {split} features")
        return feats[split]

    return features

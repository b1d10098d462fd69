"""Parameter accounting of the VGG variants: counts, the per-layer table, headline reductions.

Used by notebook 02.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch
from torch import nn

from . import vgg
from .vgg import HEAD_KINDS, VGGClassifier, VGGTrunk, build_vgg16

# --------------------------------------------------------------------------- accounting


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (elements) of ``module``; ``trainable_only`` counts requires_grad ones."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


HEAD_LABELS = {
    "flatten": "Flatten(pool5) (baseline)",
    "final_gap": "GAP(pool5)",
    "multi_gap": "multi GAP pool1..5 (online)",
    "gap_flatten": "multi GAP + Flatten(pool5)",
    "fc": "stock VGG-16 (3 FC)",
}


def parameter_table(
    num_classes: int = 160, input_size: int = 256, width: float = 1.0, fc_classes: int = 1000
) -> pd.DataFrame:
    """Trainable and total parameters of every head on a frozen VGG-16 trunk.

    Built on the ``meta`` device (no memory, no time). The GAP / flatten heads have
    ``num_classes`` outputs (160 in the paper); the ``fc`` row is torchvision's stock
    model with ``fc_classes`` outputs (1000: VGG-16's 138,357,544 parameters), the
    reference the paper's "138M -> 14M" compares with.

    Returns:
        DataFrame with columns ``head, label, num_classes, head_inputs, trunk, trainable, total``.
    """
    rows = []
    for kind in HEAD_KINDS:
        classes = fc_classes if kind == "fc" else num_classes
        with torch.device("meta"):
            model = build_vgg16(kind, num_classes=classes, input_size=input_size, width=width)
        rows.append({
            "head": kind,
            "label": HEAD_LABELS[kind],
            "num_classes": classes,
            "head_inputs": model.head.in_features,
            "trunk": count_parameters(model.trunk),
            "trainable": count_parameters(model, trainable_only=True),
            "total": count_parameters(model),
        })
    return pd.DataFrame(rows)


def headline_reductions(table: pd.DataFrame) -> dict[str, float]:
    """The paper's two headline ratios from :func:`parameter_table` (fractions, not percent).

    ``trainable``: 1 - trainable(final_gap) / trainable(flatten) ("5.2M -> 82K, -98%");
    ``total``: 1 - total(final_gap) / total(fc) ("138M -> 14M, -90%").
    """
    t = table.set_index("head")
    return {
        "trainable": 1.0 - t.loc["final_gap", "trainable"] / t.loc["flatten", "trainable"],
        "total": 1.0 - t.loc["final_gap", "total"] / t.loc["fc", "total"],
    }


def layer_table(trunk: VGGTrunk, input_size: int = 256) -> pd.DataFrame:
    """Per layer: index, name, type, channels, stride (jump), receptive field (px), output side.

    Receptive fields follow the usual recursion ``rf += (k - 1) * jump``, ``jump *= s``;
    an anti-aliased pool counts its dense 2x2 max and its blur (``blur_size``).
    """
    rows, rf, jump, size = [], 1, 1, int(input_size)
    for i, (name, layer) in enumerate(zip(trunk.layer_names, trunk.features)):
        kind = type(layer).__name__
        if isinstance(layer, nn.Conv2d):
            rf += (layer.kernel_size[0] - 1) * jump
        elif name.startswith("pool"):
            rf += jump  # 2x2 max (stride 2 or dense)
            if trunk.pool == "blur":
                rf += (trunk.blur_size - 1) * jump
            jump *= 2
            size = trunk.out_size(name, input_size)
        rows.append({"index": i, "name": name, "type": kind, "channels": trunk.channels(name),
                     "stride": jump, "receptive_field": rf, "out_size": size})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- description and drawing


def describe_architecture(model: VGGClassifier, input_size: int | None = None) -> pd.DataFrame:
    """One row per stage (input, block1..block5, head) of ``model``, read from the built modules.

    Columns: ``model stage convs channels size pool taps reads in_features``; ``reads``
    says how the head uses the stage's output (``"GAP"``, ``"Flatten"``, ``"GAP+Flatten"``,
    ``"AvgPool7x7+FC"`` or ``""``); for the head row ``in_features`` is the length of its input.
    """
    trunk, head = model.trunk, model.head
    size = int(input_size or model.input_size)
    rows = [{"stage": "input", "convs": 0, "channels": 3, "size": size, "pool": "", "taps": "", "reads": "",
             "in_features": 0}]
    pool_label = {"max": "MaxPool 2x2/2", "blur": f"MaxPool 2x2/1 + Blur{trunk.blur_size}/2", "aps": "MaxPool 2x2/1 + APS/2"}
    for b in range(1, 6):
        names = [n for n in trunk.layer_names if n[len(n.rstrip("0123456789_")):].split("_")[0] == str(b)]
        taps = [n for n in names if n in head.taps]
        reads = []
        gap = [t for t in taps if t in head.gap_taps]
        if gap:
            reads.append("GAP")
        if head.flatten_tap in names:
            reads.append("AvgPool7x7+FC" if head.kind == "fc" else "Flatten")
        contributes = sum(trunk.channels(t) for t in gap)
        if head.flatten_tap in names and head.kind != "fc":
            contributes += math.prod(head.flatten_shape or (0,))
        rows.append({
            "stage": f"block{b}", "convs": sum(n.startswith("conv") for n in names),
            "channels": trunk.channels(f"pool{b}"), "size": trunk.out_size(f"pool{b}", size),
            "pool": pool_label[trunk.pool] + (" (circular)" if trunk.circular else ""),
            "taps": ",".join(taps), "reads": "+".join(reads), "in_features": contributes,
        })
    rows.append({"stage": "head", "convs": 0, "channels": head.num_classes, "size": 1, "pool": "",
                 "taps": ",".join(head.taps), "reads": head.kind, "in_features": head.in_features})
    df = pd.DataFrame(rows)
    df.insert(0, "model", head.kind)
    return df


# ============================================================================ notebook 02 · model zoo


def zoo_meta_models(num_classes: int, input_size: int) -> dict[str, vgg.VGGClassifier]:
    """Every head kind at full width on the ``meta`` device (shapes, no memory), plus a multi-GAP model
    with APS pooling and circular padding. ``fc`` is torchvision's stock 1000-class classifier."""
    with torch.device("meta"):
        full = {kind: vgg.build_vgg16(kind, num_classes=1000 if kind == "fc" else num_classes,
                                         input_size=input_size)
                for kind in vgg.HEAD_KINDS}
        full["multi_gap + APS, circular"] = vgg.build_vgg16("multi_gap", num_classes=num_classes,
                                                              pool="aps", circular=True)
    return full


def zoo_parameter_derivation(model: Any, table: pd.DataFrame, num_classes: int) -> pd.DataFrame:
    """Recompute the parameter table's numbers from the layer shapes and compare.

    Args:
        model: a built VGG-16 (any head; its trunk's 3x3 convs are counted).
        table: ``parameter_table(...)``.
    Returns:
        one row per quantity: ``quantity``, ``formula``, ``computed``, ``table`` (parameter counts).
    Raises:
        ValueError: a computed number differs from the table's (names the quantity).
    """
    convs = [c for c in model.trunk.features if isinstance(c, torch.nn.Conv2d)]
    t = table.set_index("head")
    rows = [{"quantity": "conv trunk", "formula": "sum over the 3x3 convs of 9*C_in*C_out + C_out",
             "computed": sum(9 * c.in_channels * c.out_channels + c.out_channels for c in convs),
             "table": t.loc["flatten", "trunk"]}]
    for kind in ("flatten", "final_gap", "multi_gap", "gap_flatten"):
        inputs = int(t.loc[kind, "head_inputs"])
        rows.append({"quantity": f"{kind} head", "formula": f"{inputs:,} inputs x {num_classes} + {num_classes}",
                     "computed": inputs * num_classes + num_classes, "table": t.loc[kind, "trainable"]})
        rows.append({"quantity": f"{kind} total", "formula": "trunk + head",
                     "computed": t.loc[kind, "trunk"] + t.loc[kind, "trainable"], "table": t.loc[kind, "total"]})
    derivation = pd.DataFrame(rows)
    wrong = derivation[derivation["computed"] != derivation["table"]]
    if len(wrong):
        raise ValueError(f"parameter table disagrees with the layer shapes: {wrong.to_dict('records')}")
    return derivation


def zoo_receptive_field_table(input_size: int, pools: Sequence[str] = ("max", "blur"),
                              width: float = 1 / 64) -> pd.DataFrame:
    """``accounting.layer_table`` (stride and receptive field in px per layer) of a trunk per pooling,
    stacked with a ``pool`` column (``width`` does not change strides or receptive fields)."""
    return pd.concat([layer_table(vgg.build_trunk(width=width, pool=p), input_size).assign(pool=p)
                      for p in pools])

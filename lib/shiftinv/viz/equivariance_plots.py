"""Figures of notebooks 01-02: equivariance of toy networks, the architectures, per-phase equivariance.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from ..models import accounting
from ..models.accounting import count_parameters, describe_architecture
from ..models.vgg import VGGClassifier
from ..shifts.invariance import check_equivariance_table, error_by_phase


def plot_equivariance_by_phase(table: pd.DataFrame, floor: float = 1e-12, title: str = "") -> Any:
    """Draw per-layer, phase-resolved equivariance (shifts along x, ``dy = 0``).

    Left: the error of each tap against the input shift ``dx`` (log scale; values below
    ``floor``, exact zeros included, are drawn at ``floor``; filled markers: phase 0, the
    shifts that are multiples of the tap's stride). Right: ``log10`` of the mean error per tap
    and phase ``dx mod stride`` (blank where the phase does not exist, ``phase >= stride``).

    Args:
        table: the output of :func:`equivariance_error` with shifts ``(dx, 0)``.
        floor: smallest error drawn (> 0).

    Returns:
        The matplotlib figure (two axes).
    """
    import matplotlib.pyplot as plt

    check_equivariance_table(table)
    if floor <= 0:
        raise ValueError(f"floor must be > 0 (it stands for exact zeros on a log axis), got {floor}")
    if (table["dy"] != 0).any():
        raise ValueError("plot_equivariance_by_phase draws shifts along x: pass shifts (dx, 0) only")
    taps = list(dict.fromkeys(table["tap"]))
    fig, (ax, hm) = plt.subplots(1, 2, figsize=(13, 0.45 * len(taps) + 3.2), layout="constrained",
                                 gridspec_kw={"width_ratios": [1.2, 1]})
    for i, t in enumerate(taps):
        g = table[table["tap"] == t].sort_values("dx")
        err = g["error"].clip(lower=floor).to_numpy()
        ax.semilogy(g["dx"], err, "-", color=f"C{i}", lw=1, label=f"{t} (stride {int(g['stride'].iloc[0])})")
        on = (g["phase_x"] == 0).to_numpy()
        ax.semilogy(g["dx"][on], err[on], "o", color=f"C{i}", ms=5)
        ax.semilogy(g["dx"][~on], err[~on], ".", color=f"C{i}", ms=3)
    ax.axhline(floor, color="k", ls=":", lw=0.8)
    ax.set(xlabel="input shift dx (px), dy = 0", ylabel=r"$||F(T_d x) - T_{d/r} F(x)||^2 \,/\, ||F(x)||^2$",
           title=f"error per shift (dotted: {floor:g} and below, i.e. exact up to round-off)")
    ax.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3)
    phases = error_by_phase(table)
    width = int(phases["stride"].max())
    grid = np.full((len(taps), width), np.nan)  # (taps, phases)
    for i, t in enumerate(taps):
        p = phases[phases["tap"] == t]
        grid[i, p["phase_x"].to_numpy(int)] = np.log10(p["mean_error"].clip(lower=floor).to_numpy())
    im = hm.imshow(grid, aspect="auto", cmap="magma", interpolation="nearest")
    hm.set_yticks(range(len(taps)), [f"{t} (r={int(phases[phases['tap'] == t]['stride'].iloc[0])})" for t in taps])
    hm.set(xlabel="phase dx mod stride r", title="log10 mean error by phase (blank: phase >= stride)")
    hm.grid(False)
    fig.colorbar(im, ax=hm, label="log10 error")
    if title:
        fig.suptitle(title)
    return fig


def draw_architectures(
    models_: Mapping[str, VGGClassifier], input_size: int = 256, fig: Any = None
) -> Any:
    """Draw several models side by side (one column each) from :func:`describe_architecture`.

    Each conv block is a box whose width grows with its channel count (log scale) and
    whose label gives convs, channels and output size; the feature maps a head reads are
    marked on the right (GAP / Flatten) and joined to the head box, which shows the
    head's input length, outputs and trainable / total parameters. Returns the figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    n = len(models_)
    if fig is None:
        fig = plt.figure(figsize=(3.3 * n, 7.5))
    axes = fig.subplots(1, n, squeeze=False)[0]
    colors = {"GAP": "#0173b2", "Flatten": "#de8f05", "AvgPool7x7+FC": "#d55e00"}
    for ax, (title, model) in zip(axes, models_.items()):
        d = describe_architecture(model, input_size)
        ax.set_xlim(0, 10)
        ax.set_ylim(-0.6, len(d) + 0.1)
        ax.invert_yaxis()
        ax.axis("off")
        head_y = len(d) - 1
        span = math.log2(max(d["channels"].iloc[1:-1].max(), 4)) - math.log2(3)
        for i, r in d.iterrows():
            y = float(i)
            if r["stage"] == "head":
                break
            w = 2.6 + 2.6 * (math.log2(max(r["channels"], 1)) - math.log2(3)) / span  # wider = more channels
            ax.add_patch(FancyBboxPatch((3.3 - w / 2, y - 0.32), w, 0.64, boxstyle="round,pad=0.02",
                                        fc="#e5e5e5" if r["stage"] == "input" else "#cfe3f2", ec="0.3", lw=0.8))
            label = (f"input 3×{r['size']}×{r['size']}" if r["stage"] == "input"
                     else f"{r['stage']}: {r['convs']}×conv3x3\n→ {r['channels']}×{r['size']}×{r['size']}")
            ax.text(3.3, y, label, ha="center", va="center", fontsize=7.5)
            reads = [x for x in str(r["reads"]).split("+") if x]
            reads = ["7×7 FC" if x in ("AvgPool7x7", "FC") else x for x in reads]
            for read in dict.fromkeys(reads):
                c = colors.get("AvgPool7x7+FC" if read == "7×7 FC" else read, "0.3")
                x0 = 7.6 if read == "GAP" else 9.2
                ax.add_patch(FancyArrowPatch((3.3 + w / 2, y), (x0, y), arrowstyle="-", color=c, lw=1))
                ax.add_patch(FancyArrowPatch((x0, y), (x0, head_y - 0.42), arrowstyle="-|>", mutation_scale=8,
                                             color=c, lw=1))
                size = r["channels"] if read == "GAP" else r["channels"] * r["size"] ** 2
                gap = read == "GAP"
                ax.text((3.3 + w / 2 + x0) / 2 + (0 if gap else 0.4), y - 0.06 if gap else y + 0.08,
                        f"{read} {size:,}" if read != "7×7 FC" else read,
                        ha="center", va="bottom" if gap else "top", fontsize=6.5, color=c)
        hd = d.iloc[-1]
        trainable, total = count_parameters(model, trainable_only=True), count_parameters(model)
        ax.add_patch(FancyBboxPatch((0.4, head_y - 0.4), 9.2, 1.3, boxstyle="round,pad=0.02", fc="#fbe3c9", ec="0.3",
                                    lw=0.8))
        layer = f"3 FC ({model.head.classifier[0].out_features:,} hidden)" if model.head.kind == "fc" else "Linear"
        ax.text(5.0, head_y + 0.25, f"{layer}: {hd['in_features']:,} → {hd['channels']}\n"
                f"trainable {trainable:,}\ntotal {total:,}", ha="center", va="center", fontsize=7.5)
        ax.set_title(f"{title}\n{d['pool'].iloc[1]}", fontsize=8.5)
    return fig


def plot_primer_conv_equivariance(image: torch.Tensor, shifted_out: torch.Tensor, out_shifted: torch.Tensor,
                                  shift: int, shifts: Sequence[int], errors: torch.Tensor) -> plt.Figure:
    """Input, ``f(shift(x))``, ``shift(f(x))`` (channel 0 of ``(1, C, H, W)``), their difference, and
    the relative error against the shift (``errors``: ``(S,)`` for ``shifts``)."""
    fig, axes = plt.subplots(1, 5, figsize=(15, 3.2))
    axes[0].imshow(image[0].permute(1, 2, 0))
    axes[0].set_title("input x")
    axes[1].imshow(shifted_out[0, 0], cmap="magma")
    axes[1].set_title(f"f(shift(x)), s={shift} px")
    axes[2].imshow(out_shifted[0, 0], cmap="magma")
    axes[2].set_title("shift(f(x))")
    axes[3].imshow((shifted_out - out_shifted)[0, 0], cmap="coolwarm", vmin=-1e-3, vmax=1e-3)
    axes[3].set_title("difference (x1e-3 scale)")
    for ax in axes[:4]:
        ax.axis("off")
    axes[4].semilogy(shifts, errors.clamp_min(1e-12), "o-")
    axes[4].set(xlabel="shift (px)", ylabel="relative error", title="equivariance error", ylim=(1e-10, 1))
    fig.suptitle("Convolution is shift-equivariant")
    return fig


def plot_primer_phase(phase: pd.DataFrame, max_shift: int) -> plt.Figure:
    """One panel per depth of :func:`primer_phase_table`, the exact shifts (multiples of ``2**depth``) marked."""
    depths = list(phase.depth.unique())
    fig, axes = plt.subplots(1, len(depths), figsize=(6 * len(depths), 3.6), sharey=True, squeeze=False)
    for ax, depth in zip(axes[0], depths):
        for down, grp in phase[phase.depth == depth].groupby("downsampler", sort=False):
            ax.plot(grp.shift_px, grp.relative_error, "o-", label=down, ms=4)
        for k in range(0, max_shift + 1, 2**depth):
            ax.axvline(k, color="0.8", lw=0.8, zorder=0)
        ax.set(xlabel="shift (px)", title=f"{depth} stride-2 stage(s): exact every {2**depth} px")
    axes[0, 0].set_ylabel("equivariance error")
    axes[0, -1].legend(title="downsampler")
    return fig


def plot_primer_gap(gap: pd.DataFrame) -> plt.Figure:
    """GAP change against the shift, one curve per total stride (:func:`primer_gap_table`)."""
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for stride, grp in gap.groupby("stride"):
        label = "no downsampling" if stride == 1 else f"{int(np.log2(stride))} max-pool(s), stride {stride}"
        ax.plot(grp.shift_px, grp.gap_change, "o-", ms=4, label=label)
    ax.set(xlabel="shift (px)", ylabel="relative change of GAP vector", title="GAP output under circular shifts")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def plot_primer_blur(blur: pd.DataFrame, depth: int) -> plt.Figure:
    """Mean and worst GAP change per blur filter size, against the max-pool mean (:func:`primer_blur_table`)."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(blur.filter_size, blur.mean_gap_change, "o-", label="BlurPool (mean over shifts)")
    ax.plot(blur.filter_size, blur.max_gap_change, "s--", label="BlurPool (worst shift)")
    ax.axhline(float(blur.maxpool_mean_gap_change.iloc[0]), color="k", ls=":", label="max-pool (mean)")
    ax.set(xlabel="blur filter size", ylabel="relative change of GAP vector",
           title=f"{depth} stages: blur vs aliasing", yscale="log")
    ax.legend()
    return fig


def plot_zoo_parameters(table: pd.DataFrame, reductions: Mapping[str, float]) -> plt.Figure:
    """Trainable and total parameters per head on log axes (``table``: ``accounting.parameter_table``;
    ``reductions``: ``accounting.headline_reductions``, fractions)."""
    t = table.set_index("head")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    order = list(t.index)
    for ax, col in zip(axes, ("trainable", "total")):
        vals = t.loc[order, col]
        bars = ax.bar(range(len(order)), vals, color=[f"C{i}" for i in range(len(order))])
        ax.set_yscale("log")
        ax.set_xticks(range(len(order)), [accounting.HEAD_LABELS[k] for k in order], rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(f"{col} parameters")
        for b, v in zip(bars, vals):
            ax.text(b.get_x() + b.get_width() / 2, v * 1.15, f"{v / 1e6:.2f}M" if v >= 1e6 else f"{v / 1e3:.0f}K",
                    ha="center", fontsize=8)
        ax.set_ylim(vals.min() / 3, vals.max() * 6)
    axes[0].set_title(f"trainable: flatten → final GAP = -{100 * reductions['trainable']:.1f}%")
    axes[1].set_title(f"total: stock VGG-16 → final GAP = -{100 * reductions['total']:.1f}%")
    fig.tight_layout()
    return fig


def plot_zoo_receptive_fields(rf: pd.DataFrame) -> plt.Figure:
    """Receptive field per layer for each pooling and the (shared) stride, log2 axis (:func:`zoo_receptive_field_table`)."""
    fig, ax = plt.subplots(figsize=(10, 3.6))
    for p, d in rf.groupby("pool", sort=False):
        ax.plot(d["index"], d["receptive_field"], marker="o", ms=3, label=f"receptive field ({p})")
    first = rf[rf["pool"] == rf["pool"].iloc[0]]
    ax.step(first["index"], first["stride"], where="post", color="0.3", label="stride (both)")
    ax.set_yscale("log", base=2)
    ax.set_xticks(first["index"], first["name"], rotation=90, fontsize=7)
    ax.set_ylabel("pixels")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_zoo_circular_drift(drift: pd.DataFrame, shifts: Sequence[int]) -> plt.Figure:
    """One panel per pooling, one curve per GAP tap (``drift + 1e-17`` so that zeros show on a log axis)."""
    pools = list(drift["pool"].unique())
    fig, axes = plt.subplots(1, len(pools), figsize=(13, 3.6), sharey=True, squeeze=False)
    for ax, (pool, d) in zip(axes[0], drift.groupby("pool", sort=False)):
        for tap, dt in d.groupby("tap", sort=False):
            ax.plot(dt["shift"], dt["drift"] + 1e-17, marker=".", ms=3, label=tap)
        ax.set_yscale("log")
        ax.set_title(f"{pool} pooling, circular padding")
        ax.set_xlabel("diagonal circular shift (px)")
        ax.set_xticks(range(0, max(shifts) + 1, 4))
    axes[0, 0].set_ylabel("relative change of GAP vector\n(+1e-17 to show zeros on a log axis)")
    axes[0, -1].legend(fontsize=7, ncols=2, loc="upper right", title="GAP after")
    fig.tight_layout()
    return fig

"""Figures of notebooks 03, 04 and 06: training, shift maps, relative loss, rotation and scaling.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from matplotlib.ticker import NullFormatter

from ..study import datasets


def plot_shift_maps(frame: pd.DataFrame, field: str = "accuracy", heads: list[str] | None = None,
                    ncols: int = 5, vmin: float | None = None, vmax: float | None = None):
    """Heat maps of ``field`` over (dx, dy) per head (the paper's figure), one panel per head."""
    import matplotlib.pyplot as plt

    heads = heads or list(dict.fromkeys(frame["head"]))
    nrows = (len(heads) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 2.5 * nrows + 0.4), squeeze=False)
    vmin = frame[field].min() if vmin is None else vmin
    vmax = frame[field].max() if vmax is None else vmax
    im = None
    for i, (ax, h) in enumerate(zip(axes.flat, heads)):
        g = frame[frame["head"] == h]
        table = g.pivot(index="dy", columns="dx", values=field).sort_index()
        xs, ys = table.columns.to_numpy(), table.index.to_numpy()
        step_x = (xs[1] - xs[0]) if len(xs) > 1 else 1
        step_y = (ys[1] - ys[0]) if len(ys) > 1 else 1
        im = ax.imshow(table.to_numpy(), origin="lower", vmin=vmin, vmax=vmax, aspect="equal",
                       extent=(xs[0] - step_x / 2, xs[-1] + step_x / 2, ys[0] - step_y / 2, ys[-1] + step_y / 2),
                       cmap="viridis" if field != "loss" else "magma")
        ax.set_title(h, fontsize=9)
        ax.set_xlabel("dx (px)")
        if i % ncols == 0:
            ax.set_ylabel("dy (px)")
        else:
            ax.tick_params(labelleft=False)
        ax.grid(False)
    for ax in list(axes.flat)[len(heads):]:
        ax.axis("off")
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label=field)
    return fig


def plot_heads_data_samples(splits: datasets.Splits, n: int = 8, seed: int = 0) -> plt.Figure:
    """``n`` training images (drawn with ``datasets.take(..., seed)``) with their class names."""
    show, show_labels = datasets.as_tensors(datasets.take(splits.train, n, seed=seed))  # (n, 3, H, W)
    fig, axes = plt.subplots(1, n, figsize=(1.5 * n, 1.9))
    for ax, img, lab in zip(axes, show, show_labels):
        ax.imshow(img.permute(1, 2, 0).numpy())
        ax.set_title(splits.classes[int(lab)][:12], fontsize=8)
        ax.axis("off")
    return fig


#: Line style per trunk: the plain trunk solid, BlurPool dashed, APS dotted.
TRUNK_STYLES = {"vgg": "-", "blur": "--", "aps": ":"}


def model_palette(names: Sequence[str]) -> dict[str, Any]:
    """One distinguishable colour per model name, as many as there are names (a trunk's heads keep the
    colour of their kind across trunks: ``vgg/multi_gap`` and ``blur/multi_gap`` share one)."""
    kinds = list(dict.fromkeys(n.split("/")[-1] for n in names))
    colours = sns.color_palette("tab10" if len(kinds) <= 10 else "husl", len(kinds))
    return {n: colours[kinds.index(n.split("/")[-1])] for n in names}


def plot_heads_training_curves(hist: pd.DataFrame) -> plt.Figure:
    """Validation accuracy and training loss per epoch of every model (``analysis.history_frame``): colour by
    head kind, line style by trunk (:data:`TRUNK_STYLES`), the legend outside the axes."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 4))
    names = list(dict.fromkeys(hist["model"]))
    palette = model_palette(names)
    for name, g in hist.groupby("model", sort=False):
        style = TRUNK_STYLES.get(name.split("/")[0], "-")
        for ax, col in zip(axes, ("val_acc", "train_loss")):
            ax.plot(g.epoch, g[col], style, marker="o", ms=2.5, lw=1.3, color=palette[name], label=name)
    axes[0].set(xlabel="epoch", ylabel="validation accuracy", title="validation accuracy (main seed)")
    axes[1].set(xlabel="epoch", ylabel="training cross-entropy (nats)", title="training loss", yscale="log")
    axes[1].legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left", title="solid: plain, dashed: BlurPool, "
                   "dotted: APS", title_fontsize=7)
    return fig


def plot_heads_accuracy_params(summary: pd.DataFrame) -> plt.Figure:
    """Test accuracy per model (mean over runs, 95% interval over test images and runs as a whisker) and
    against its trainable head parameters (log x); n and the runs per model in the title."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 0.32 * len(summary) + 2.6))
    palette = model_palette(list(summary.model))
    y = np.arange(len(summary))
    has_ci = {"test_acc_lo", "test_acc_hi"} <= set(summary.columns)
    for i, (_, r) in enumerate(summary.iterrows()):
        if has_ci:
            axes[0].plot([r.test_acc_lo, r.test_acc_hi], [i, i], color=palette[r.model], lw=2.5, alpha=0.8)
        axes[0].plot(r.test_acc, i, "o", color=palette[r.model], mec="k", mew=0.5)
        axes[0].annotate(f"{r.test_acc:.3f}", (float(r.test_acc_hi if has_ci else r.test_acc), i), xytext=(4, 0),
                         textcoords="offset points", va="center", fontsize=7)
    axes[0].set_yticks(y, summary.model)
    axes[0].invert_yaxis()
    axes[0].set(xlabel="test accuracy (centred images)", xlim=(0, 1.08), title="accuracy, mean over runs")
    axes[1].scatter(summary.head_params, summary.test_acc, c=[palette[m] for m in summary.model], edgecolors="k",
                    linewidths=0.5)
    for _, r in summary.iterrows():
        axes[1].annotate(r.model, (r.head_params, r.test_acc), fontsize=7, xytext=(3, 3), textcoords="offset points")
    axes[1].set(xscale="log", xlabel="trainable parameters (head)", ylabel="test accuracy",
                title="accuracy vs trainable parameters")
    if {"n_images", "runs"} <= set(summary.columns):
        fig.suptitle(f"{int(summary.n_images.max())} test images; {int(summary.runs.max())} runs per model "
                     "(95% intervals over images and runs)", y=1.02)
    return fig


def plot_robustness_profiles(line: pd.DataFrame) -> plt.Figure:
    """Accuracy and loss along ``dx`` (``dy = 0``) per head (``analysis.shift_frame`` of a profile sweep)."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 4))
    for h, g in line.groupby("head", sort=False):
        style = ":" if h.startswith("aps") else "--" if h.startswith("blur") else "-"
        axes[0].plot(g.dx, g.accuracy, style, marker=".", label=h)
        axes[1].plot(g.dx, g.loss, style, marker=".", label=h)
    axes[0].set(xlabel="horizontal shift dx (px), dy = 0", ylabel="accuracy", ylim=(-0.02, 1.02),
                title="accuracy along a horizontal shift")
    axes[1].set(xlabel="horizontal shift dx (px), dy = 0", ylabel="cross-entropy", yscale="log",
                title="loss along a horizontal shift")
    axes[1].legend(fontsize=7, ncol=2)
    return fig


def _interval_dots(ax: plt.Axes, rel: pd.DataFrame, stat: str, palette: Mapping[str, Any], marker: str = "o",
                   offset: float = 0.0, label: str | None = None) -> None:
    """Each head's ``stat`` (mean over runs) with its 95% interval (``stat_lo`` / ``stat_hi``) as a whisker."""
    y = np.arange(len(rel)) + offset
    lo, hi = rel[f"{stat}_lo"].to_numpy(float), rel[f"{stat}_hi"].to_numpy(float)
    mid = rel[stat].to_numpy(float)
    for i, h in enumerate(rel["head"]):
        ax.plot([lo[i], hi[i]], [y[i], y[i]], color=palette[h], lw=2.2, alpha=0.8)
        ax.plot(mid[i], y[i], marker, color=palette[h], ms=6, mec="k", mew=0.5,
                label=label if i == 0 else None)


def plot_robustness_relative_loss(rel: pd.DataFrame) -> plt.Figure:
    """Four views of robustness under shift per head, each the mean over runs with its 95% interval over
    images and runs (columns of :func:`shiftinv.study.analysis.robustness_intervals`): accuracy centred and
    over the shifts, the accuracy drop, the average relative loss (log axis; L(0), its denominator, printed
    beside each bar) and the flip rate (top-1 differs from the unshifted image's)."""
    palette = model_palette(list(rel["head"]))
    fig, axes = plt.subplots(1, 4, figsize=(16, 0.42 * len(rel) + 2.2), sharey=True)
    _interval_dots(axes[0], rel, "acc0", palette, "o", -0.15, "centred")
    _interval_dots(axes[0], rel, "acc_mean", palette, "s", 0.15, "mean over the shifts")
    axes[0].set(xlim=(0, 1), xlabel="top-1 accuracy", title="accuracy")
    axes[0].legend(fontsize=7, loc="lower left")
    _interval_dots(axes[1], rel, "acc_loss", palette)
    axes[1].set(xlabel="centred - mean over shifts", title="accuracy drop")
    _interval_dots(axes[2], rel, "dataset_signed", palette)
    positive = rel["dataset_signed_lo"].to_numpy(float) > 0
    if positive.all():
        axes[2].set_xscale("log")
    for i, (_, r) in enumerate(rel.iterrows()):
        axes[2].annotate(f"L(0) = {r['loss0']:.2g}", (float(r["dataset_signed_hi"]), i), xytext=(4, 0),
                         textcoords="offset points", va="center", fontsize=7, color="0.3")
    axes[2].set(xlabel="mean_s (L(s) - L(0)) / L(0)", title="average relative loss")
    _interval_dots(axes[3], rel, "pred_change", palette)
    axes[3].set(xlim=(0, 1), xlabel="P(top-1 differs from unshifted)", title="flip rate")
    axes[0].set_yticks(range(len(rel)), rel["head"])
    axes[0].invert_yaxis()
    n, runs = int(rel["n_images"].iloc[0]), int(rel["runs"].max())
    fig.suptitle(f"robustness under shift: mean over {runs} runs per head, 95% intervals over {n} test images and "
                 "the runs", y=1.02)
    return fig


def _definition_panel(ax: plt.Axes, part: pd.DataFrame, heads: Sequence[str], title: str) -> None:
    """One heat map of ``value`` (head x definition), each column scaled by its largest |value|: a sequential
    map (0 white) where a column is one-signed, a diverging one where signs mix; every value written with
    three significant digits."""
    table = part.pivot(index="head", columns="definition", values="value").loc[list(heads),
                                                                              part["definition"].unique()]
    values = table.to_numpy(dtype=float)
    scale = np.nanmax(np.abs(values), axis=0, keepdims=True)
    scaled = values / np.where(scale > 0, scale, 1)
    mixed = bool((np.nanmin(values) < 0) and (np.nanmax(values) > 0))
    ax.imshow(scaled if mixed else np.abs(scaled), cmap="RdBu_r" if mixed else "Blues", vmin=-1 if mixed else 0,
              vmax=1, aspect="auto")
    for (i, j), v in np.ndenumerate(values):
        ax.text(j, i, "n/a" if np.isnan(v) else f"{v:.3g}", ha="center", va="center", fontsize=7,
                color="white" if abs(scaled[i, j]) > 0.6 else "black")
    ax.set_xticks(range(table.shape[1]), table.columns, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(table)), table.index, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.grid(False)


def plot_robustness_definitions(long: pd.DataFrame, definitions: pd.DataFrame, heads: Sequence[str]) -> plt.Figure:
    """Every relative-loss definition per head, split into the dataset-level ones and the per-image ones.

    Args:
        long: ``relative_loss.relative_loss_long`` (``head``, ``definition``, ``value``,
            ``computable_from_authors_outputs``).
        definitions: ``invariance.relative_loss_definitions()``.
        heads: row order.
    """
    computable = definitions.computable_from_authors_outputs
    fig, axes = plt.subplots(1, 2, figsize=(13, 0.35 * len(heads) + 1.8), sharey=True,
                             gridspec_kw={"width_ratios": [int(computable.sum()), int((~computable).sum())]})
    for ax, flag, title in ((axes[0], True, "computable from the authors' outputs"),
                            (axes[1], False, "workbook additions (per-image)")):
        _definition_panel(ax, long[long["computable_from_authors_outputs"] == flag], heads, title)
    fig.suptitle("average relative loss: every definition, main run (colour: |value| / largest |value| of its column)",
                 y=1.03)
    return fig


def plot_robustness_one_pixel(frag: pd.DataFrame) -> plt.Figure:
    """P(top-1 changes) and mean |change of p(true)| per 1-px diagonal step, per head."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
    axes[0].barh(frag["head"], frag["p_top1_change"])
    axes[0].invert_yaxis()
    axes[0].set(xlabel="P(top-1 changes) per 1-px diagonal step", title="one-pixel fragility")
    axes[1].barh(frag["head"], frag["mean_abs_change"])
    axes[1].invert_yaxis()
    axes[1].set(xlabel="mean |change of p(true class)| per step", title="probability jitter")
    return fig


def plot_rotscale_examples(panels: Sequence[tuple[str, torch.Tensor]], title: str) -> plt.Figure:
    """The images of :func:`rotscale_examples` side by side (clamped to [0, 1])."""
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.9))
    for ax, (name, img) in zip(axes, panels):
        ax.imshow(img[0].permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
        ax.set_title(name)
        ax.axis("off")
    fig.suptitle(title)
    return fig


def rotscale_palette(names: Sequence[str]) -> dict[str, Any]:
    """One colour-blind-safe colour per model name (seaborn's ``colorblind`` palette)."""
    return dict(zip(names, sns.color_palette("colorblind", len(names))))


def plot_rotscale_curves(table: pd.DataFrame, names: Sequence[str], palette: Mapping[str, Any],
                         title: str) -> plt.Figure:
    """Accuracy against angle and against scale (log axis) for each model ``names`` (colours: ``palette``)."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.3), sharey=True)
    for ax, kind, xlabel in ((axes[0], "rotation", "rotation angle (degrees)"), (axes[1], "scale", "scale factor")):
        part = table[table["kind"] == kind]
        for name in names:
            rows = part[part["head"] == name].sort_values("value")
            style = "--" if name.startswith("blur/") else (":" if name.startswith("aps/") else "-")
            ax.plot(rows["value"], rows["accuracy"], style, marker="o", ms=3, color=palette[name], label=name)
        ax.set(xlabel=xlabel, title=f"accuracy vs {kind}")
    axes[1].axvline(1.0, color="k", lw=0.5)
    axes[1].set_xscale("log")
    axes[1].set_xticks([0.125, 0.25, 0.5, 1, 2], ["1/8", "1/4", "1/2", "1", "2"])
    axes[1].xaxis.set_minor_formatter(NullFormatter())
    axes[0].set_ylabel("test accuracy")
    axes[1].legend(fontsize="small", bbox_to_anchor=(1.02, 1), loc="upper left")
    fig.suptitle(title)
    return fig


def plot_rotscale_summary(summary: pd.DataFrame, names: Sequence[str], palette: Mapping[str, Any]) -> plt.Figure:
    """Mean relative accuracy drop per model, rotation and scale (``summary``: ``geometric.robustness_summary``
    with ``head`` renamed ``model``)."""
    wide = summary.pivot(index="model", columns="kind", values=["accuracy_mean", "relative_drop"]).loc[list(names)]
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.45 * len(names) + 1.6), sharey=True)
    for ax, kind in zip(axes, ("rotation", "scale")):
        vals = wide[("relative_drop", kind)]
        ax.barh(range(len(vals)), vals.values, color=[palette[m] for m in vals.index])
        ax.set(title=f"mean relative accuracy drop, {kind}", xlabel="1 - mean acc / acc(identity)")
    axes[0].set_yticks(range(len(names)), names)
    axes[0].invert_yaxis()
    return fig


def plot_precision_agreement(agreement: pd.DataFrame) -> plt.Figure:
    """The profile's precision against float32 (``precision.precision_agreement``): per measure, each head's
    value in float32 and in the profile's precision side by side, the difference written beside them."""
    measures = list(dict.fromkeys(agreement["measure"]))
    fig, axes = plt.subplots(1, len(measures), figsize=(4.2 * len(measures), 0.4 * agreement["head"].nunique() + 2),
                             sharey=True)
    axes = np.atleast_1d(axes)
    for ax, m in zip(axes, measures):
        part = agreement[agreement["measure"] == m].reset_index(drop=True)
        y = np.arange(len(part))
        ax.barh(y - 0.18, part["float32"], 0.36, color="0.6", label="float32")
        ax.barh(y + 0.18, part["profile"], 0.36, color="C0", label=str(agreement["precision"].iloc[0]))
        for i, d in enumerate(part["difference"]):
            ax.annotate(f"{d:+.2g}", (max(part.loc[i, ["float32", "profile"]]), i), xytext=(3, 0),
                        textcoords="offset points", va="center", fontsize=7)
        ax.set_title(m, fontsize=9)
    axes[0].set_yticks(range(agreement["head"].nunique()), list(dict.fromkeys(agreement["head"])))
    axes[0].invert_yaxis()
    axes[0].legend(fontsize=7, loc="lower right")
    r = agreement.iloc[0]
    fig.suptitle(f"{r['precision']} trunk passes{' (channels-last)' if r['channels_last'] else ''}, "
                 f"{r['feature_dtype']} features, against float32 ({int(r['n_sweep'])} images on the 1-D line, "
                 f"{int(r['n_features'])} for the features)", y=1.03)
    return fig

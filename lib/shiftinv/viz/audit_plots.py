"""Figures of an audit (notebook 11 and the ``shiftinv-audit`` report): each draws one table of
:class:`shiftinv.audit.run.AuditResult`.
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns


def _models(frame: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(frame["model"]))


def plot_accuracy_consistency(summary: pd.DataFrame) -> plt.Figure:
    """Consistency (x) against accuracy on the unshifted images (y), one point per model and protocol,
    with 95% intervals; without labels, consistency per model and protocol as bars."""
    cons = summary[summary.measure == "consistency"]
    acc = summary[summary.measure == "correct_unshifted"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colours = dict(zip(_models(summary), sns.color_palette(n_colors=len(_models(summary)))))
    markers = dict(zip(dict.fromkeys(summary.protocol), "osD^v"))
    if acc.empty:
        data = cons.assign(label=cons.model + " / " + cons.protocol)
        ax.barh(data.label, data.value, xerr=[data.value - data.lo, data.hi - data.value],
                color=[colours[m] for m in data.model])
        ax.set_xlabel("consistency (P(top-1 agrees) for two offsets)")
        ax.set_xlim(0, 1.02)
        return fig
    both = cons.merge(acc, on=["model", "protocol"], suffixes=("_c", "_a"))
    for _, r in both.iterrows():
        ax.errorbar(r.value_c, r.value_a, xerr=[[r.value_c - r.lo_c], [r.hi_c - r.value_c]],
                    yerr=[[r.value_a - r.lo_a], [r.hi_a - r.value_a]], fmt=markers[r.protocol],
                    color=colours[r.model], label=f"{r.model} ({r.protocol})", capsize=2)
    ax.set_xlabel("consistency (P(top-1 agrees) for two offsets)")
    ax.set_ylabel("accuracy, unshifted")
    ax.legend(fontsize=7, loc="best")
    ax.set_title("accuracy is not invariance")
    return fig


def plot_diagonal_curves(diagonal: pd.DataFrame) -> plt.Figure:
    """Mean probability of the reference class along the diagonal ``(d, d)``, per model; one panel per protocol."""
    protocols = list(dict.fromkeys(diagonal.protocol))
    fig, axes = plt.subplots(1, len(protocols), figsize=(4.2 * len(protocols), 3.3), squeeze=False, sharey=True)
    for ax, p in zip(axes[0], protocols):
        sns.lineplot(diagonal[diagonal.protocol == p], x="d", y="p_reference", hue="model", marker="o", ax=ax,
                     markersize=3)
        ax.set_title(f"{p}: diagonal shift (d, d)")
        ax.set_xlabel("d (px)")
        ax.set_ylabel("probability of the reference class")
    return fig


def plot_agreement_maps(maps: pd.DataFrame) -> plt.Figure:
    """Share of images whose top-1 equals the unshifted one over the (dx, dy) grid: rows = models,
    columns = protocols; one colour scale from the lowest share (rounded down to 0.1) to 1."""
    models, protocols = _models(maps), list(dict.fromkeys(maps.protocol))
    low = min(0.9, float(np.floor(maps.agree.min() * 10) / 10))
    fig, axes = plt.subplots(len(models), len(protocols), figsize=(2.9 * len(protocols), 2.6 * len(models)),
                             squeeze=False, constrained_layout=True)
    for i, m in enumerate(models):
        for j, p in enumerate(protocols):
            f = maps[(maps.model == m) & (maps.protocol == p)].pivot(index="dy", columns="dx", values="agree")
            ax = axes[i, j]
            im = ax.imshow(f.to_numpy(), vmin=low, vmax=1, cmap="viridis", origin="lower",
                           extent=(f.columns.min(), f.columns.max(), f.index.min(), f.index.max()))
            ax.grid(False)
            ax.set_title(f"{m}\n{p}", fontsize=8)
            ax.set_xlabel("dx (px)", fontsize=8)
            ax.set_ylabel("dy (px)", fontsize=8)
    fig.colorbar(im, ax=axes, shrink=0.8, label="same top-1 as unshifted")
    return fig


def plot_spectra(spectra: pd.DataFrame, periodicity: pd.DataFrame) -> plt.Figure:
    """Power spectrum of the reference-class output over the 1-px line, per model (rows) and protocol
    (colour), with the periods the model's strides predict (dotted at ``1/P``)."""
    models = _models(spectra)
    fig, axes = plt.subplots(len(models), 1, figsize=(6.4, 2.4 * len(models)), squeeze=False, sharex=True)
    for ax, m in zip(axes[:, 0], models):
        sns.lineplot(spectra[spectra.model == m], x="frequency", y="power", hue="protocol", marker="o",
                     markersize=3, ax=ax)
        per = periodicity[periodicity.model == m]
        for period in sorted(set(per.period)):
            ax.axvline(1.0 / period, color="grey", ls=":", lw=0.8)
        source = per.source.iloc[0] if not per.empty else ""
        ax.set_title(f"{m}: periods {sorted(set(per.period))} ({source})", fontsize=9)
        ax.set_ylabel("share of energy")
    axes[-1, 0].set_xlabel("frequency over dx (cycles / px)")
    return fig


def plot_layer_equivariance(layers: pd.DataFrame) -> plt.Figure:
    """Per-layer equivariance error by phase (log10 of the mean relative error), one heat map per
    torch model; rows = conv / pool layers in order, columns = the shift's phase within the layer's stride."""
    models = _models(layers) if not layers.empty else []
    fig, axes = plt.subplots(1, max(1, len(models)), figsize=(3.6 * max(1, len(models)) + 1.5, 5.0), squeeze=False,
                             constrained_layout=True)
    if not models:
        axes[0, 0].text(0.5, 0.5, "no hookable torch model: per-layer equivariance needs its layers", ha="center")
        axes[0, 0].set_axis_off()
        return fig
    shown: list[str] = []
    for ax, m in zip(axes[0], models):
        f = layers[layers.model == m]
        table = f.pivot_table(index=["order", "layer", "stride"], columns="phase", values="mean_error").sort_index()
        values = np.log10(table.to_numpy().astype(float).clip(1e-12))
        im = ax.imshow(values, aspect="auto", cmap="magma", vmin=-12, vmax=max(0.0, float(np.nanmax(values))))
        ax.grid(False)
        labels = [f"{layer} (/{s})" for _, layer, s in table.index]
        step = max(1, len(labels) // 24)
        same = labels == shown  # the same layers as the panel on the left: its labels serve
        ax.set_yticks(range(0, len(labels), step), [] if same else labels[::step], fontsize=6)
        shown = labels
        ax.set_xlabel("phase within the layer's stride (px)", fontsize=8)
        ax.set_title(m, fontsize=9)
    fig.colorbar(im, ax=axes, shrink=0.8, label="log10 equivariance error")
    return fig


def plot_gallery(result: Any, protocol: str, k: int) -> plt.Figure:
    """For every model of an :class:`~shiftinv.audit.run.AuditResult`, the ``k`` images whose top-1
    changes most under ``protocol``: the unshifted view, and below it the predicted class over the
    grid of offsets (each colour one class; a single colour = invariant). Two rows per model."""
    from ..audit import measures

    models = list(result.models)
    fig, axes = plt.subplots(2 * len(models), k, figsize=(1.7 * k, 3.6 * len(models)), squeeze=False)
    centre = result.images.centre()
    for i, model in enumerate(models):
        frame = result.per_image[(result.per_image.model == model) & (result.per_image.protocol == protocol)]
        g = result.grids[model, protocol].select_shifts(result.preset.grid())
        for j, (_, r) in enumerate(measures.most_unstable(frame, k).iterrows()):
            axes[2 * i, j].imshow(centre[int(r.image)].permute(1, 2, 0).clamp(0, 1).float().numpy())
            axes[2 * i, j].set_title(f"{str(r['name'])[:14]}\nconsistency {r.consistency:.2f}", fontsize=6)
            _class_map(axes[2 * i + 1, j], g.shifts.numpy(), g.pred[model][:, int(r.image)].numpy())
        axes[2 * i, 0].set_ylabel(model, fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{protocol}: the images whose answer changes most, per model", fontsize=9)
    return fig


def _class_map(ax: plt.Axes, shifts: np.ndarray, pred: np.ndarray) -> None:
    """The top-1 class over a grid of offsets ``shifts`` (S, 2), coloured by class (first seen = 0)."""
    xs, ys = np.unique(shifts[:, 0]), np.unique(shifts[:, 1])
    codes = {c: i for i, c in enumerate(dict.fromkeys(pred.tolist()))}
    img = np.full((len(ys), len(xs)), np.nan)
    img[np.searchsorted(ys, shifts[:, 1]), np.searchsorted(xs, shifts[:, 0])] = [codes[c] for c in pred.tolist()]
    ax.imshow(img, cmap="tab20", vmin=0, vmax=19, origin="lower")
    ax.grid(False)
    ax.set_xlabel(f"{len(codes)} classes over the grid", fontsize=6)


def audit_figures(result: Any) -> dict[str, plt.Figure]:
    """Every figure of an :class:`~shiftinv.audit.run.AuditResult`, by name (the report's order)."""
    main = result.preset.protocols[0]
    figs = {
        "accuracy_consistency": plot_accuracy_consistency(result.summary),
        "diagonal": plot_diagonal_curves(result.diagonal),
        "maps": plot_agreement_maps(result.maps),
        "spectra": plot_spectra(result.spectra, result.periodicity),
        "layers": plot_layer_equivariance(result.layers),
        "gallery": plot_gallery(result, main, result.preset.gallery),
    }
    return figs


def save_report(result: Any, figs: dict[str, plt.Figure], stem: str, title: str = "Shift audit") -> list[str]:
    """Publish an audit beside the notebook's figures (:func:`shiftinv.viz.figures.output_dir`):
    ``<stem>.html`` (the self-contained report), ``<stem>.json`` (its numbers, no timings) and
    ``<stem>_per_image.csv``, through the figures' atomic, manifest-keeping path. Returns the names."""
    from ..audit import report
    from . import figures

    folder = figures.output_dir()
    page = report.audit_html(result, figs, title).encode()
    figures.publish_files(folder, {f"{stem}.html": page}, figures.run_info())
    json_path = figures.save_data(report.audit_json(result, timings=False), folder / stem)
    csv_path = figures.save_data(result.per_image, folder / f"{stem}_per_image")
    return [f"{stem}.html", json_path.name, csv_path.name]

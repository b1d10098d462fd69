"""Figures of notebooks 07-10: LPIPS weights, distance against level, metric training,
monotonicity and SRCC tables, RAID responses, SRCC under shifts; one colour per metric.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from torch import Tensor

from ..perceptual.raid import raid_metric_order


def metric_colors(names: Sequence[str]) -> dict[str, tuple[float, float, float, float]]:
    """One colour per metric name, the same in every notebook: a colour family per metric kind
    (lpips, baseline, gap, classical), a shade per backbone (max, blur, aps)."""
    import matplotlib

    families = {"lpips": "Blues", "baseline": "Oranges", "gap": "Greens"}
    shades = {"max": 0.85, "blur": 0.65, "aps": 0.45}
    classical = {"psnr": (0.45, 0.45, 0.45, 1.0), "ssim": (0.6, 0.3, 0.6, 1.0), "mse": (0.3, 0.3, 0.3, 1.0)}
    out = {}
    for name in names:
        kind, _, pool = name.partition("/")
        if kind in families:
            out[name] = matplotlib.colormaps[families[kind]](shades.get(pool, 0.75))
        else:
            out[name] = classical.get(name, (0.2, 0.2, 0.2, 1.0))
    return out


def plot_lpips_weights(weights_df: pd.DataFrame, note: str = ""):
    """Sorted weights per tap (left) and each tap's share of the total weight (right).

    Returns ``(figure, share per tap (Series))``.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for tap, sub in weights_df.groupby("tap", sort=False):
        axes[0].plot(sub["rank"] / sub["rank"].max(), sub["weight"], label=f"{tap} ({len(sub)} ch)")
    axes[0].set(xlabel="channel rank (fraction of the tap)", ylabel="weight",
                title="LPIPS v0.1 weights, sorted per tap")
    if note:
        fig.suptitle(note, fontsize="small")
    axes[0].legend(fontsize="small")
    share = weights_df.groupby("tap", sort=False)["weight"].sum()
    axes[1].bar(share.index, share.values / share.sum())
    axes[1].set(ylabel="share of total weight", title="weight per tap")
    return fig, share


def plot_distance_vs_level(long: pd.DataFrame, title: str):
    """One panel per distortion: every metric's normalised distance against the level."""
    import matplotlib.pyplot as plt

    groups = list(long.groupby("distortion"))
    fig, axes = plt.subplots(1, len(groups), figsize=(15, 3.4), sharey=True)
    for ax, (dist, sub) in zip(axes, groups):
        for metric, s in sub.groupby("metric"):
            ax.plot(s["level"], s["normalised"], marker="o", label=metric, lw=2.2 if metric.startswith("gap") else 1.2,
                    color=metric_colors([metric])[metric])
        ax.set(title=dist, xlabel="level", xticks=range(1, 6))
    axes[0].set_ylabel("normalised distance")
    axes[-1].legend(fontsize="x-small", bbox_to_anchor=(1.02, 1), loc="upper left")
    fig.suptitle(title, fontsize="small")
    return fig


def plot_training(history: pd.DataFrame, title: str, pseudo_scores: bool):
    """Pearson loss (left) and selection SRCC (right) per epoch, one line per metric."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
    for name, h in history.groupby("metric"):
        axes[0].plot(h["epoch"], h["train_loss"], label=name)
        axes[1].plot(h["epoch"], h["val_srcc"], label=name)
    axes[0].set(xlabel="epoch", ylabel="1 - r (training)", title="Pearson loss")
    axes[1].set(xlabel="epoch", ylabel="SRCC", title="selection SRCC" + (" (pseudo-scores)" if pseudo_scores else ""))
    fig.suptitle(title, fontsize="small")
    axes[1].legend(fontsize="x-small")
    return fig


def plot_monotonicity(summary: pd.DataFrame, per_distortion: pd.DataFrame):
    """Mean monotonicity per metric with its interval (left), per distortion as a heat map (right)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 0.35 * len(summary) + 2), gridspec_kw={"width_ratios": [1, 1.4]})
    y = np.arange(len(summary))
    axes[0].errorbar(summary["monotonicity"], y, xerr=np.clip([summary["monotonicity"] - summary["low"],
                                                              summary["high"] - summary["monotonicity"]], 0, None),
                     fmt="o", capsize=3)
    axes[0].set(yticks=y, yticklabels=summary["metric"], xlabel="SRCC with distortion level (mean, 95% CI)",
                title="monotonicity (not agreement with humans)")
    heat = per_distortion.pivot(index="metric", columns="distortion", values="monotonicity").loc[summary["metric"]]
    im = axes[1].imshow(heat.to_numpy(), vmin=-1, vmax=1, cmap="coolwarm", aspect="auto", origin="lower")
    axes[1].set(yticks=y, yticklabels=[], xticks=range(heat.shape[1]), title="per distortion (same rows)")
    axes[1].grid(False)
    axes[1].set_xticklabels(heat.columns, rotation=45, ha="right")
    fig.colorbar(im, ax=axes[1], shrink=0.8)
    return fig


def plot_srcc_table(result: pd.DataFrame, title: str):
    """SRCC per metric with its interval (rows of :func:`stats.evaluation_table`, in order)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.35 * len(result) + 1.5))
    y = np.arange(len(result))
    err = np.clip([result["srcc"] - result["srcc_low"], result["srcc_high"] - result["srcc"]], 0, None)
    ax.errorbar(result["srcc"], y, xerr=err, fmt="o", capsize=3)
    ax.set(yticks=y, yticklabels=result["metric"], xlabel="SRCC with KADID-10k scores (95% CI over references)",
           title=title)
    return fig


def iqa_figure(result: pd.DataFrame, per_distortion: pd.DataFrame | None, n_pairs: int):
    """Notebook 08's results figure: ``(figure, name, data)`` for :func:`figures.save_figure`
    (``08_monotonicity`` without human scores, ``08_kadid_table`` with them)."""
    if per_distortion is not None:
        return (plot_monotonicity(result, per_distortion), "08_monotonicity",
                {"summary": result.to_dict("records"), "per_distortion": per_distortion.to_dict("records")})
    return plot_srcc_table(result, f"KADID-10k, {n_pairs} pairs"), "08_kadid_table", result


def plot_raid_examples(images: Tensor, table: pd.DataFrame):
    """The strongest level of each transform on the first image (images: (M, 3, H, W))."""
    import matplotlib.pyplot as plt

    from ..perceptual import iqa

    fig, axes = plt.subplots(1, len(iqa.RAID_TRANSFORMS), figsize=(12, 3.2))
    for ax, t in zip(axes, iqa.RAID_TRANSFORMS):
        row = table[(table["transform"] == t) & (table["ref"] == table["ref"].iloc[0])].iloc[-1]
        ax.imshow(images[int(row["index"])].permute(1, 2, 0).numpy())
        ax.set_title(f"{t}, level {int(row['level'])}")
        ax.axis("off")
    return fig


def plot_response_curves(curves: pd.DataFrame):
    """Mean normalised response per level (shaded: standard error), one panel per transform."""
    import matplotlib.pyplot as plt

    groups = list(curves.groupby("transform"))
    fig, axes = plt.subplots(1, len(groups), figsize=(16, 3.8), sharey=True)
    for ax, (t, sub) in zip(axes, groups):
        for src, s in sub.groupby("source", sort=False):
            style = dict(color="black", lw=3) if src == "human" else dict(lw=1.5, color=metric_colors([src])[src])
            (line,) = ax.plot(s["level"], s["mean"], marker="o", ms=3, label=src, **style)
            ax.fill_between(s["level"], s["mean"] - s["sem"], s["mean"] + s["sem"], alpha=0.12, color=line.get_color())
        ax.set(title=t, xlabel="level")
    axes[0].set_ylabel("normalised response")
    axes[-1].legend(fontsize="x-small", bbox_to_anchor=(1.02, 1), loc="upper left")
    return fig


def plot_raid_srcc(srcc_table: pd.DataFrame, protocols: Sequence[str], source: str, title: str):
    """Bars of SRCC per metric and transform with intervals, one panel per anchor protocol."""
    import matplotlib.pyplot as plt

    from ..perceptual import iqa

    order, columns = raid_metric_order(srcc_table), list(iqa.RAID_TRANSFORMS) + ["pooled"]
    fig, axes = plt.subplots(1, len(protocols), figsize=(10 * len(protocols), 4), squeeze=False, sharey=True)
    width = 0.8 / len(columns)
    for ax, protocol in zip(axes[0], protocols):
        mine = srcc_table[srcc_table["anchors"] == protocol]
        for j, t in enumerate(columns):
            sub = mine[mine["transform"] == t].set_index("metric").loc[order]
            err = np.clip([sub["srcc"] - sub["srcc_low"], sub["srcc_high"] - sub["srcc"]], 0, None)
            ax.bar(np.arange(len(sub)) + (j - 2) * width, sub["srcc"], width, label=t, yerr=err, capsize=2)
        ax.set_xticks(range(len(order)), order, rotation=30, ha="right")
        n_rows = int(mine.loc[mine["transform"] == "pooled", "n_pairs"].max())
        ax.set(title=f"RAID ({source}), anchors {protocol} ({n_rows} rows pooled)")
        ax.legend(fontsize="small", ncol=len(columns))
    axes[0][0].set_ylabel("SRCC with human response")
    fig.suptitle(title, fontsize="small")
    return fig


def plot_srcc_vs_shift(summary: pd.DataFrame, kinds: Mapping[str, str], measure: str, human: bool, title: str):
    """Agreement (``measure``: ``srcc`` or ``monotonicity``) per shift (left) and the mean distance
    relative to shift 0 (right, distances only), one line per metric."""
    import matplotlib.pyplot as plt

    ratio = summary.pivot(index="shift", columns="metric", values="mean_distance")
    ratio = ratio / ratio.loc[0]
    fig, axes = plt.subplots(1, 2, figsize=(14, 4))
    colors = metric_colors(list(kinds))
    for name, sub in summary.groupby("metric", sort=False):
        style = dict(lw=2.5) if name.startswith("gap") else dict(lw=1.2, ls="--" if name in ("psnr", "ssim") else "-")
        axes[0].plot(sub["shift"], sub[measure], marker="o", label=name, color=colors[name], **style)
    axes[0].set(xlabel="shift of the distorted image (px, diagonal)",
                ylabel="SRCC with KADID-10k scores" if human else "SRCC with level (within groups)",
                title="agreement under shifts" if human else "monotonicity under shifts (no human data)")
    for name in ratio.columns:
        if kinds[name] == "distance":
            axes[1].plot(ratio.index, ratio[name], marker="o", label=name, lw=2.5 if name.startswith("gap") else 1.2,
                         color=colors[name])
    axes[1].set(xlabel="shift of the distorted image (px, diagonal)", ylabel="mean distance / at shift 0",
                yscale="log", title="how much the shift adds to the distance")
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    axes[1].yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axes[1].yaxis.set_major_formatter(ScalarFormatter())
    axes[1].yaxis.set_minor_formatter(NullFormatter())
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="x-small", title="metric")
    fig.suptitle(title, fontsize="small")
    fig.tight_layout()
    return fig

"""Figures of notebook 05: response spectra, periodicity, the border check.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..shifts import invariance, sweep_result
from ..study.aliasing import ALIASING_BOUNDARY_CURVES


def _spectrum_panel(ax: plt.Axes, power: pd.DataFrame, period: int | None, color: str) -> None:
    """Power against frequency (without the constant term; exact zeros left out of the log axis), ``m/P`` dotted."""
    freqs, pooled = power["x"].to_numpy()[1:], power["value"].to_numpy()[1:]
    ax.semilogy(freqs, np.where(pooled > 0, pooled, np.nan), ".-", color=color, ms=3, lw=0.8)
    if period:
        for m in range(1, period // 2 + 1):
            ax.axvline(m / period, color="k", ls=":", lw=0.6)


def plot_aliasing_spectra(curves: pd.DataFrame, periods: Mapping[str, int | None], title: str) -> plt.Figure:
    """One row per head of :func:`aliasing_spectra_curves`: the response minus its mean along dx (both
    settings), and one spectrum per setting with the predicted harmonics ``m/P`` (``periods``: head -> P)."""
    heads, settings = list(curves["head"].unique()), list(curves["setting"].unique())
    fig, axes = plt.subplots(len(heads), 1 + len(settings), figsize=(15, 2.1 * len(heads) + 1), layout="constrained",
                             gridspec_kw={"width_ratios": [1.4] + [1] * len(settings)}, sharex="col", squeeze=False)
    for row, h in enumerate(heads):
        for col, name in enumerate(settings, start=1):
            part = curves[(curves["head"] == h) & (curves["setting"] == name)]
            response = part[part["what"] == "response"]
            axes[row, 0].plot(response["x"], response["value"] - response["value"].mean(), color=f"C{col - 1}",
                              lw=1.2, label=name)
            _spectrum_panel(axes[row, col], part[part["what"] == "power"], periods[h], f"C{col - 1}")
            if row == 0:
                axes[row, col].set_title(f"spectrum, {name} (dotted: m/P)")
        axes[row, 0].set_ylabel(f"{h}\nP = {periods[h] or '-'}", rotation=0, ha="right", va="center")
    axes[0, 0].set_title("true-class logit - mean, along dx")
    axes[0, 0].legend(fontsize="small", loc="upper right")
    axes[-1, 0].set_xlabel("dx (px), dy = 0")
    for col in range(1, 1 + len(settings)):
        axes[-1, col].set_xlabel("frequency (cycles / px)")
        axes[-1, col].set_xticks([1 / 16, 1 / 8, 1 / 4, 3 / 8, 1 / 2], ["1/16", "1/8", "1/4", "3/8", "1/2"])
    fig.suptitle(title)
    return fig


def _periodicity_panel(ax: plt.Axes, part: pd.DataFrame, title: str) -> None:
    """Periodicity index per head (bars), the white-noise level (ticks), and in words beside each bar: the
    predicted period, whether the response repeats exactly with it, and the period holding 90% of its energy."""
    y = np.arange(len(part))
    ax.barh(y, part["fraction"], color="C0", label="periodicity index")
    ax.plot(part["chance"], y, "k|", ms=12, label="white-noise level")
    for yi, (_, r) in zip(y, part.iterrows()):
        p = int(r["predicted_period"])
        exact = ("repeats exactly" if r["exact_period"] == p else
                 "no exact period" if np.isnan(r["exact_period"]) else f"exact period {r['exact_period']:g} px")
        fund = "" if np.isnan(r["fundamental_period"]) else f"; 90% of energy at {r['fundamental_period']:g} px"
        ax.text(1.01, yi, f"predicted {p} px: {exact}{fund}", va="center", fontsize="x-small")
    ax.set_yticks(y, part["head"], fontsize="small")
    ax.invert_yaxis()
    ax.set(xlim=(0, 1.75), xticks=[0, 0.25, 0.5, 0.75, 1.0],
           xlabel="energy at the predicted period and harmonics / non-constant energy", title=title)


def plot_aliasing_periodicity(period_table: pd.DataFrame, settings: Sequence[str] = ("protocol", "circular"),
                              field: str = "true_logit") -> plt.Figure:
    """Periodicity index of ``field`` per head with a predicted period > 1, one panel per setting."""
    logit = period_table[(period_table["field"] == field) & period_table["predicted_period"].notna()
                         & (period_table["predicted_period"] > 1)]
    fig, axes = plt.subplots(1, len(settings), figsize=(15, 5), layout="constrained", squeeze=False)
    for ax, name in zip(axes[0], settings):
        _periodicity_panel(ax, logit[logit["setting"] == name], name)
    axes[0, 0].legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize="small")
    n = ", ".join(f"{name}: {int(logit[logit['setting'] == name]['n_images'].iloc[0])} images" for name in settings
                  if "n_images" in logit and (logit["setting"] == name).any())
    fig.suptitle("periodicity index of the true-class logit (1 = exactly periodic with the predicted period)"
                 + (f"; {n}" if n else ""))
    return fig


def plot_aliasing_boundary(results: Mapping[str, sweep_result.SweepResult],
                           curves: Sequence[tuple[str, str, str]] = ALIASING_BOUNDARY_CURVES) -> plt.Figure:
    """Image-mean true-class logit along dx for each ``(setting, head, line style)`` of ``curves``."""
    fig, ax = plt.subplots(figsize=(10, 4))
    for name, head, style in curves:
        dxs, vals = invariance.response_profile(results[name], head, "true_logit")
        ax.plot(dxs, vals.mean(0), style, lw=1.5, label=f"{head} [{name}]")
    ax.set(xlabel="dx (px), dy = 0", ylabel="true-class logit (mean over images)",
           title="borders + aliasing (protocol) vs aliasing only (circular) vs APS (invariant)")
    ax.legend(fontsize="small")
    return fig


def plot_ripple(ripple: pd.DataFrame) -> plt.Figure:
    """The period ripple of each head (``aliasing.ripple_table``): energy at the predicted period and its
    harmonics over the white-noise share, mean over runs with its 95% interval; 1 (dashed) = noise."""
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(ripple) + 1.6))
    y = np.arange(len(ripple))
    ax.hlines(y, ripple["ripple_lo"], ripple["ripple_hi"], color="C0", lw=3, alpha=0.7, label="95% interval")
    ax.plot(ripple["ripple"], y, "o", color="C0", mec="k", label="mean over runs")
    ax.axvline(1.0, color="k", ls="--", lw=1, label="white noise")
    ax.set_yticks(y, [f"{h}  (period {int(p)} px)" for h, p in zip(ripple["head"], ripple["predicted_period"])])
    ax.invert_yaxis()
    ax.set_xscale("log")
    r = ripple.iloc[0]
    ax.set(xlabel="energy at the period and its harmonics / white-noise share",
           title=f"ripple of the {r['field'].replace('_', '-')} over 1-px shifts ({int(r['n_images'])} images, "
                 f"{int(ripple['runs'].max())} runs per head)")
    ax.legend(fontsize=8, loc="lower right")
    return fig

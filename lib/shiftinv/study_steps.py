"""The steps of notebooks 01-06, lifted out of the notebooks (a temporary home).

Each function is one step of one notebook: it builds a table from runs, or draws a figure from
such a table. The notebooks set parameters and call these; the lead engineer redistributes the
functions by name into the sub-packages later, so every name says which notebook it serves:

- ``primer_*`` / ``plot_primer_*``: notebook 01 (equivariance, aliasing, GAP, BlurPool on toy nets);
- ``zoo_*`` / ``plot_zoo_*``: notebook 02 (architectures, parameter accounting, circular drift);
- ``heads_*`` / ``plot_heads_*``: notebook 03 (training the heads);
- ``robustness_*`` / ``plot_robustness_*``: notebook 04 (translation robustness);
- ``aliasing_*`` / ``plot_aliasing_*``: notebook 05 (aliasing periodicity, explorer models);
- ``rotscale_*`` / ``plot_rotscale_*``: notebook 06 (rotation and scaling).

Every computation is the one the notebook ran (same calls, same order, same dtypes), so the
figures' data files are unchanged.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from matplotlib.ticker import NullFormatter

from . import data, explorer, invariance, models, primer, spectra, sweep, train, transforms, utils

# ============================================================================ notebook 01 · primer

PRIMER_DOWNSAMPLERS = ("stride", "maxpool", "blurpool")
PRIMER_CHANNELS = 8  # channels of every toy network of notebook 01


def primer_phase_table(image: torch.Tensor, shifts: Sequence[int], seed: int, depths: Sequence[int] = (1, 3),
                       downsamplers: Sequence[str] = PRIMER_DOWNSAMPLERS) -> pd.DataFrame:
    """Equivariance error of toy networks with ``depth`` stride-2 stages, per downsampler and shift.

    Args:
        image: ``(1, 3, H, W)`` in [0, 1].
        shifts: circular shifts in pixels.
        seed: seed of the toy networks' weights.
    Returns:
        one row per (depth, downsampler, shift): ``depth``, ``downsampler``, ``shift_px``,
        ``relative_error`` (``primer.toy_equivariance_error`` with stride ``2**depth``, unitless).
    """
    rows = []
    for depth in depths:
        for down in downsamplers:
            net = primer.toy_cnn(depth=depth, down=down, channels=PRIMER_CHANNELS, seed=seed)
            err = primer.toy_equivariance_error(net, image, shifts, stride=2**depth)
            rows += [{"depth": depth, "downsampler": down, "shift_px": sft, "relative_error": float(e)}
                     for sft, e in zip(shifts, err)]
    return pd.DataFrame(rows)


def primer_gap_table(image: torch.Tensor, shifts: Sequence[int], seed: int,
                     depths: Sequence[int] = (0, 1, 2, 3)) -> pd.DataFrame:
    """Relative change of the GAP vector of toy max-pool networks (depth 0: no downsampling).

    Returns:
        one row per (total stride ``2**depth``, shift): ``stride``, ``shift_px``, ``gap_change`` (unitless).
    """
    rows = []
    for depth in depths:
        net = primer.toy_cnn(depth=max(depth, 1), down="none" if depth == 0 else "maxpool",
                             channels=PRIMER_CHANNELS, seed=seed)
        err = primer.invariance_error(net, image, shifts)
        rows += [{"stride": 2**depth, "shift_px": sft, "gap_change": float(e)} for sft, e in zip(shifts, err)]
    return pd.DataFrame(rows)


def primer_blur_table(image: torch.Tensor, shifts: Sequence[int], seed: int, gap: pd.DataFrame, depth: int = 3,
                      filter_sizes: Sequence[int] = (1, 2, 3, 5, 7)) -> pd.DataFrame:
    """Mean and worst GAP change of a ``depth``-stage BlurPool toy network per blur filter size.

    Args:
        gap: the table of :func:`primer_gap_table`, for the max-pool reference at stride ``2**depth``.
    Returns:
        one row per filter size: ``filter_size``, ``mean_gap_change``, ``max_gap_change`` and the
        max-pool reference ``maxpool_mean_gap_change`` (the same in every row).
    """
    rows = []
    for size_k in filter_sizes:
        net = primer.toy_cnn(depth=depth, down="blurpool", blur_size=size_k, channels=PRIMER_CHANNELS, seed=seed)
        err = primer.invariance_error(net, image, shifts)
        rows.append({"filter_size": size_k, "mean_gap_change": float(err.mean()), "max_gap_change": float(err.max())})
    maxpool_mean = float(gap[gap.stride == 2**depth].gap_change.mean())
    return pd.DataFrame(rows).assign(maxpool_mean_gap_change=maxpool_mean)


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


# ============================================================================ notebook 02 · model zoo


def zoo_meta_models(num_classes: int, input_size: int) -> dict[str, models.VGGClassifier]:
    """Every head kind at full width on the ``meta`` device (shapes, no memory), plus a multi-GAP model
    with APS pooling and circular padding. ``fc`` is torchvision's stock 1000-class classifier."""
    with torch.device("meta"):
        full = {kind: models.build_vgg16(kind, num_classes=1000 if kind == "fc" else num_classes,
                                         input_size=input_size)
                for kind in models.HEAD_KINDS}
        full["multi_gap + APS, circular"] = models.build_vgg16("multi_gap", num_classes=num_classes,
                                                              pool="aps", circular=True)
    return full


def zoo_parameter_derivation(model: Any, table: pd.DataFrame, num_classes: int) -> pd.DataFrame:
    """Recompute the parameter table's numbers from the layer shapes and compare.

    Args:
        model: a built VGG-16 (any head; its trunk's 3x3 convs are counted).
        table: ``models.parameter_table(...)``.
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


def plot_zoo_parameters(table: pd.DataFrame, reductions: Mapping[str, float]) -> plt.Figure:
    """Trainable and total parameters per head on log axes (``table``: ``models.parameter_table``;
    ``reductions``: ``models.headline_reductions``, fractions)."""
    t = table.set_index("head")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    order = list(t.index)
    for ax, col in zip(axes, ("trainable", "total")):
        vals = t.loc[order, col]
        bars = ax.bar(range(len(order)), vals, color=[f"C{i}" for i in range(len(order))])
        ax.set_yscale("log")
        ax.set_xticks(range(len(order)), [models.HEAD_LABELS[k] for k in order], rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(f"{col} parameters")
        for b, v in zip(bars, vals):
            ax.text(b.get_x() + b.get_width() / 2, v * 1.15, f"{v / 1e6:.2f}M" if v >= 1e6 else f"{v / 1e3:.0f}K",
                    ha="center", fontsize=8)
        ax.set_ylim(vals.min() / 3, vals.max() * 6)
    axes[0].set_title(f"trainable: flatten → final GAP = -{100 * reductions['trainable']:.1f}%")
    axes[1].set_title(f"total: stock VGG-16 → final GAP = -{100 * reductions['total']:.1f}%")
    fig.tight_layout()
    return fig


def zoo_receptive_field_table(input_size: int, pools: Sequence[str] = ("max", "blur"),
                              width: float = 1 / 64) -> pd.DataFrame:
    """``models.layer_table`` (stride and receptive field in px per layer) of a trunk per pooling,
    stacked with a ``pool`` column (``width`` does not change strides or receptive fields)."""
    return pd.concat([models.layer_table(models.build_trunk(width=width, pool=p), input_size).assign(pool=p)
                      for p in pools])


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


def zoo_circular_drift(x: torch.Tensor, shifts: Sequence[int], width: float, seed: int,
                       pools: Sequence[str] = ("max", "blur", "aps")) -> pd.DataFrame:
    """GAP drift per tap under diagonal circular shifts, for circular-padding trunks that share conv weights.

    Args:
        x: ``(N, 3, S, S)`` float64 images.
        shifts: diagonal shifts in pixels.
        width: channel width factor of the trunks.
        seed: ``torch.manual_seed`` before building each trunk (same conv weights in all of them).
    Returns:
        ``models.gap_drift_under_circular_shift`` rows (``tap``, ``shift``, ``drift``) with a ``pool`` column.
    """
    drift = []
    for pool in pools:
        torch.manual_seed(seed)
        trunk = models.build_trunk(width=width, pool=pool, circular=True).double().eval()
        drift.append(models.gap_drift_under_circular_shift(trunk, x, shifts).assign(pool=pool))
    return pd.concat(drift, ignore_index=True)


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


def zoo_exact_shifts(drift: pd.DataFrame, tol: float = 1e-12) -> pd.DataFrame:
    """The shifts at which each tap's GAP is exact (``drift < tol``: float64 rounding), tap x pool, as text."""
    exact = (drift.assign(exact=drift["drift"] < tol)
             .groupby(["pool", "tap"], sort=False)
             .apply(lambda d: ", ".join(str(s) for s in d.loc[d["exact"], "shift"]) or "-", include_groups=False))
    return exact.unstack("pool")


# ============================================================================ notebook 03 · training the heads


def heads_split_sizes(splits: data.Splits) -> pd.DataFrame:
    """One row per split: ``split``, ``images`` (count), ``image_size`` (px)."""
    return pd.DataFrame([{"split": k, "images": v, "image_size": splits.image_size} for k, v in splits.sizes().items()])


def plot_heads_data_samples(splits: data.Splits, n: int = 8, seed: int = 0) -> plt.Figure:
    """``n`` training images (drawn with ``data.take(..., seed)``) with their class names."""
    show, show_labels = data.as_tensors(data.take(splits.train, n, seed=seed))  # (n, 3, H, W)
    fig, axes = plt.subplots(1, n, figsize=(1.5 * n, 1.9))
    for ax, img, lab in zip(axes, show, show_labels):
        ax.imshow(img.permute(1, 2, 0).numpy())
        ax.set_title(splits.classes[int(lab)][:12], fontsize=8)
        ax.axis("off")
    return fig


def plot_heads_training_curves(hist: pd.DataFrame) -> plt.Figure:
    """Validation accuracy and training loss per epoch of every model (``classify.history_frame``)."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    for name, g in hist.groupby("model", sort=False):
        style = "-" if name.endswith("/trunk") else "--" if name.startswith(("blur", "aps")) else "-"
        axes[0].plot(g.epoch, g.val_acc, style, marker="o", ms=3, label=name)
        axes[1].plot(g.epoch, g.train_loss, style, marker="o", ms=3, label=name)
    axes[0].set(xlabel="epoch", ylabel="validation accuracy", title="validation accuracy (early stopping)")
    axes[1].set(xlabel="epoch", ylabel="training cross-entropy", title="training loss", yscale="log")
    axes[1].legend(fontsize=7, ncol=2)
    return fig


def plot_heads_accuracy_params(summary: pd.DataFrame) -> plt.Figure:
    """Test accuracy per model (bars) and against its trainable head parameters (log x)."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    colors = dict(zip(summary.model, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 3))
    axes[0].barh(summary.model, summary.test_acc, color=[colors[m] for m in summary.model])
    axes[0].invert_yaxis()
    axes[0].set(xlabel="test accuracy (centred images)", xlim=(0, 1), title="accuracy")
    for m, a in zip(summary.model, summary.test_acc):
        axes[0].text(min(a, 0.9), m, f" {a:.3f}", va="center", fontsize=8)
    axes[1].scatter(summary.head_params, summary.test_acc, c=[colors[m] for m in summary.model])
    for _, r in summary.iterrows():
        axes[1].annotate(r.model, (r.head_params, r.test_acc), fontsize=7, xytext=(3, 3), textcoords="offset points")
    axes[1].set(xscale="log", xlabel="trainable parameters (head)", ylabel="test accuracy",
                title="accuracy vs trainable parameters")
    return fig


def heads_direct_vs_cached_accuracy(ms: Any, name: str, summary: pd.DataFrame) -> dict[str, float]:
    """Test accuracy of model ``name`` run end to end (trunk + head) against the one on cached features.

    Args:
        ms: a ``classify.ModelSet``.
        summary: its summary (``model``, ``test_acc``).
    Returns:
        ``{"direct": ..., "cached": ..., "tolerance": ...}`` (accuracies in [0, 1]).
    Raises:
        ValueError: they differ by more than round-off plus two test images.
    """
    images, labels = data.as_tensors(ms.splits.test)
    direct, _ = train.evaluate(ms.classifier(name), data.TensorImages(images, labels),
                               batch_size=ms.profile.head_train.eval_batch_size, device=ms.profile.device)
    cached = float(summary.set_index("model").loc[name, "test_acc"])
    tolerance = 1e-6 + 2 / len(labels)
    if abs(direct - cached) >= tolerance:
        raise ValueError(f"{name}: cached features disagree with the trunk ({direct:.4f} vs {cached:.4f})")
    return {"direct": float(direct), "cached": cached, "tolerance": tolerance}


# ============================================================================ notebook 04 · translation robustness


def robustness_sweep_text(result: sweep.SweepResult) -> str:
    """``"S shifts x N images x H heads"``, with the sweep's wall-clock seconds when recorded."""
    text = f"{result.num_shifts} shifts x {result.num_images} images x {len(result.heads)} heads"
    return text + (f" in {result.meta['seconds']:.1f} s" if "seconds" in result.meta else "")


def plot_robustness_profiles(line: pd.DataFrame) -> plt.Figure:
    """Accuracy and loss along ``dx`` (``dy = 0``) per head (``classify.shift_frame`` of a profile sweep)."""
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


def plot_robustness_relative_loss(rel: pd.DataFrame) -> plt.Figure:
    """``dataset_signed`` per head, and accuracy unshifted vs mean over the grid (columns of ``rel``)."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 3.8))
    axes[0].barh(rel["head"], rel["dataset_signed"])
    axes[0].set(xlabel="mean_s (L(s) - L(0)) / L(0)", title="average relative loss (dataset_signed)")
    axes[0].invert_yaxis()
    x = np.arange(len(rel))
    axes[1].bar(x - 0.2, rel["acc0"], 0.4, label="unshifted")
    axes[1].bar(x + 0.2, rel["acc_mean"], 0.4, label="mean over the shift grid")
    axes[1].set_xticks(x, rel["head"], rotation=30, ha="right", fontsize=8)
    axes[1].set(ylabel="accuracy", ylim=(0, 1), title="accuracy: centred vs shifted")
    axes[1].legend(fontsize=8)
    return fig


def _definition_panel(ax: plt.Axes, part: pd.DataFrame, heads: Sequence[str], title: str) -> None:
    """One heat map of ``value`` (head x definition), each column scaled by its largest |value|."""
    table = part.pivot(index="head", columns="definition", values="value").loc[list(heads),
                                                                              part["definition"].unique()]
    values = table.to_numpy(dtype=float)
    scale = np.nanmax(np.abs(values), axis=0, keepdims=True)
    ax.imshow(values / np.where(scale > 0, scale, 1), cmap="coolwarm", vmin=-1, vmax=1, aspect="auto")
    for (i, j), v in np.ndenumerate(values):
        ax.text(j, i, f"{v:.2g}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(table.shape[1]), table.columns, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(table)), table.index, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.grid(False)


def plot_robustness_definitions(long: pd.DataFrame, definitions: pd.DataFrame, heads: Sequence[str]) -> plt.Figure:
    """Every relative-loss definition per head, split into the dataset-level ones and the per-image ones.

    Args:
        long: ``invariance.relative_loss_long`` (``head``, ``definition``, ``value``,
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
    fig.suptitle("average relative loss: every definition (colour: value / largest |value| of its column)", y=1.03)
    return fig


def robustness_flatten_vs_gap(rel: pd.DataFrame) -> dict[str, float | bool]:
    """The demo's claim on ``rel`` (one row per ``head``, with ``acc_loss`` and ``dataset_signed``):
    the flatten head loses more accuracy and more relative loss than every GAP head of the plain trunk."""
    r = rel.set_index("head")
    gap_heads = [h for h in r.index if h.split("/")[1] in ("final_gap", "multi_gap")]
    checks: dict[str, float | bool] = {
        "flatten_acc_loss": float(r.loc["vgg/flatten", "acc_loss"]),
        "max_gap_acc_loss": float(r.loc[gap_heads, "acc_loss"].max()),
        "flatten_rel_loss": float(r.loc["vgg/flatten", "dataset_signed"]),
        "max_gap_rel_loss": float(r.loc[gap_heads, "dataset_signed"].max()),
    }
    checks["flatten_loses_more_accuracy"] = checks["flatten_acc_loss"] > checks["max_gap_acc_loss"]
    checks["gap_relative_loss_below_flatten"] = checks["max_gap_rel_loss"] < checks["flatten_rel_loss"]
    return checks


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


# ============================================================================ notebook 05 · aliasing periodicity


def aliasing_settings(ms: Any, vgg_heads: Mapping[str, Any], circ: Any, shift_mode: str) -> dict[str, tuple[dict, str]]:
    """The three settings of notebook 05: ``{name: ({trunk: (trunk, {head: Head})}, shift mode)}``.

    ``protocol``: the plain and BlurPool trunks as trained, the profile's ``shift_mode``;
    ``circular``: ``circ`` (the plain weights with circular padding) under circular shifts;
    ``aps``: the APS trunk under circular shifts.
    """
    return {
        "protocol": ({"vgg": (ms.trunks["vgg"], vgg_heads), "blur": (ms.trunks["blur"], ms.heads["blur"])},
                     shift_mode),
        "circular": ({"vgg": (circ, vgg_heads)}, "circular"),
        "aps": ({"aps": (ms.trunks["aps"], ms.heads["aps"])}, "circular"),
    }


def aliasing_run_setting(name: str, setting: tuple[dict, str], images: torch.Tensor, labels: torch.Tensor,
                         max_shift: int, key: Mapping[str, Any], *, batch_size: int,
                         device: str | torch.device | None) -> sweep.SweepResult:
    """Sweep one setting of :func:`aliasing_settings` over ``dx = -max_shift .. max_shift - 1`` at ``dy = 0``
    (every integer), logits kept; cached by ``key`` (profile, trunk fingerprint), the setting and the heads' weights.

    Args:
        images: ``(N, 3, H, W)`` in [0, 1]; labels: ``(N,)``.
    """
    chosen, mode = setting
    line = [(dx, 0) for dx in range(-max_shift, max_shift)]
    config = {**key, "setting": name, "mode": mode, "line": [max_shift], "n": int(images.shape[0]),
              "heads": {t: {h: utils.state_fingerprint(m) for h, m in hs.items()} for t, (_, hs) in chosen.items()}}
    state = utils.cached("aliasing_sweep", config, lambda: sweep.sweep_models(
        chosen, images, labels, line, mode, batch_size=batch_size, device=device,
        keep_logits=True, progress=True).to_state())
    return sweep.SweepResult.from_state(state)


def aliasing_spectra_curves(results: Mapping[str, sweep.SweepResult], heads: Sequence[str],
                            settings: Sequence[str] = ("protocol", "circular"),
                            field: str = "true_logit") -> pd.DataFrame:
    """Image-mean response along ``dx`` and its image-pooled power spectrum, per setting and plain-trunk head.

    Returns:
        rows ``setting``, ``head``, ``what`` (``"response"``: ``x`` = dx in px, ``value`` = mean
        response; ``"power"``: ``x`` = frequency in cycles/px, ``value`` = power summed over images).
    """
    curves = []
    for h in heads:
        for name in settings:
            dxs, vals = invariance.response_profile(results[name], f"vgg/{h}", field)  # (S,), (N, S)
            mean = vals.mean(0)
            freqs, power = spectra.spectrum_1d(vals)  # (F,), (N, F)
            pooled = power.sum(0)
            curves += [{"setting": name, "head": h, "what": "response", "x": float(x), "value": float(v)}
                       for x, v in zip(dxs, mean)]
            curves += [{"setting": name, "head": h, "what": "power", "x": float(f), "value": float(p)}
                       for f, p in zip(freqs, pooled)]
    return pd.DataFrame(curves)


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


def aliasing_period_table(results: Mapping[str, sweep.SweepResult], trunks: Mapping[str, Any],
                          heads: Mapping[str, Mapping[str, Any]], circ: Any,
                          fields: Sequence[str] = ("loss", "true_logit", "accuracy")) -> pd.DataFrame:
    """``spectra.periodicity_summary`` of every setting and head, with the predicted periods and
    ``exact_is_predicted`` (exact period found == predicted).

    Args:
        trunks: ``{trunk name: trunk}``; heads: ``{trunk name: {head name: Head}}``.
        circ: the circular-padding trunk, whose periods the ``circular`` setting predicts.
    """
    tables = []
    for name, res in results.items():
        predicted = {}
        for h in res.heads:
            t, head = h.split("/")
            predicted[h] = explorer.predicted_period(circ if name == "circular" else trunks[t], heads[t][head])
        tables.append(spectra.periodicity_summary(res, predicted, fields=fields, label=name))
    period_table = pd.concat(tables, ignore_index=True)
    period_table["exact_is_predicted"] = period_table["exact_period"] == period_table["predicted_period"]
    return period_table


def _periodicity_panel(ax: plt.Axes, part: pd.DataFrame, title: str) -> None:
    """Periodicity index per head (bars), the white-noise level (ticks), exact / 90 % periods as text."""
    y = np.arange(len(part))
    ax.barh(y, part["fraction"], color="C0", label="periodicity index")
    ax.plot(part["chance"], y, "k|", ms=12, label="white-noise level")
    for yi, (_, r) in zip(y, part.iterrows()):
        exact = "-" if np.isnan(r["exact_period"]) else f"{r['exact_period']:g}"
        fund = "-" if np.isnan(r["fundamental_period"]) else f"{r['fundamental_period']:g}"
        ax.text(1.01, yi, f"P={int(r['predicted_period'])}: exact {exact}, 90% {fund}", va="center", fontsize="x-small")
    ax.set_yticks(y, part["head"], fontsize="small")
    ax.invert_yaxis()
    ax.set(xlim=(0, 1.45), xlabel="energy at predicted period / non-constant energy", title=title)


def plot_aliasing_periodicity(period_table: pd.DataFrame, settings: Sequence[str] = ("protocol", "circular"),
                              field: str = "true_logit") -> plt.Figure:
    """Periodicity index of ``field`` per head with a predicted period > 1, one panel per setting."""
    logit = period_table[(period_table["field"] == field) & period_table["predicted_period"].notna()
                         & (period_table["predicted_period"] > 1)]
    fig, axes = plt.subplots(1, len(settings), figsize=(15, 5), layout="constrained", squeeze=False)
    for ax, name in zip(axes[0], settings):
        _periodicity_panel(ax, logit[logit["setting"] == name], name)
    axes[0, 0].legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize="small")
    fig.suptitle("periodicity index of the true-class logit (1 = exactly periodic with the predicted period)")
    return fig


ALIASING_BOUNDARY_CURVES = (("protocol", "vgg/multi_gap", "-"), ("circular", "vgg/multi_gap", "--"),
                            ("aps", "aps/multi_gap", "-"), ("aps", "aps/final_gap", ":"))


def aliasing_boundary_check(period_table: pd.DataFrame,
                            curves: Sequence[tuple[str, str, str]] = ALIASING_BOUNDARY_CURVES) -> pd.DataFrame:
    """Predicted period, periodic and invariance deviation of the true-class logit for each
    ``(setting, head, line style)`` of ``curves`` (rows of :func:`aliasing_period_table`)."""
    check = []
    for name, head, _ in curves:
        row = period_table[(period_table["setting"] == name) & (period_table["head"] == head)
                           & (period_table["field"] == "true_logit")].iloc[0]
        check.append({"setting": name, "head": head, "predicted_period": row["predicted_period"],
                      "periodic_deviation": row["periodic_deviation"],
                      "invariance_deviation": row["invariance_deviation"]})
    return pd.DataFrame(check)


def plot_aliasing_boundary(results: Mapping[str, sweep.SweepResult],
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


def aliasing_explorer_models(ms: Any, vgg_heads: Mapping[str, Any], circ: Any) -> dict[str, explorer.HeadModel]:
    """The explorer's models: ``vgg/<head>``, ``vgg+circular/<head>`` (same weights, circular padding),
    and every head of the ``blur`` and ``aps`` trunks."""
    vgg = ms.trunks["vgg"]
    chosen = {f"vgg/{h}": explorer.HeadModel(vgg, m) for h, m in vgg_heads.items()}
    chosen.update({f"vgg+circular/{h}": explorer.HeadModel(circ, m) for h, m in vgg_heads.items()})
    chosen.update({f"{t}/{h}": explorer.HeadModel(ms.trunks[t], m) for t in ("blur", "aps")
                   for h, m in ms.heads[t].items()})
    return chosen


# ============================================================================ notebook 06 · rotation and scaling


def rotscale_run_protocol(ms: Any, images: torch.Tensor, labels: torch.Tensor, angles: Sequence[float],
                          scales: Sequence[float], *, batch_size: int, device: str | torch.device,
                          resize: str = "tf") -> dict[str, list]:
    """Accuracy and loss of every head of every trunk under each rotation (degrees) and scale factor.

    Args:
        ms: a ``classify.ModelSet``; images: ``(N, 3, H, W)`` in [0, 1]; labels: ``(N,)``.
        resize: ``transforms.rescale``'s resize rule.
    Returns:
        ``transforms.evaluate_transforms`` rows with ``head`` = ``"<trunk>/<head>"``, as a dict of lists
        (``pd.DataFrame(...)`` gives the table; the dict is what ``utils.cached`` stores).
    """
    tables = []
    for trunk_name in ms.trunks:
        predict = ms.predictor(trunk_name)
        for kind, values in (("rotation", angles), ("scale", scales)):
            t = transforms.evaluate_transforms(predict, images, labels, kind, values, batch_size=batch_size,
                                               device=device, progress=True, resize=resize)
            t["head"] = trunk_name + "/" + t["head"]
            tables.append(t)
    return pd.concat(tables, ignore_index=True).to_dict("list")


def rotscale_table(ms: Any, images: torch.Tensor, labels: torch.Tensor, angles: Sequence[float],
                   scales: Sequence[float], *, device: str | torch.device, resize: str = "tf") -> pd.DataFrame:
    """:func:`rotscale_run_protocol`, cached by the profile, the protocol and the models' weights."""
    config = {"profile": ms.profile.to_dict(), "n": int(images.shape[0]), "angles": list(angles),
              "scales": list(scales), "resize": resize, "models": ms.names(),
              "weights": {t: utils.state_fingerprint(ms.trunks[t], *ms.heads[t].values()) for t in ms.trunks}}
    return pd.DataFrame(utils.cached("rotation_scaling", config, lambda: rotscale_run_protocol(
        ms, images, labels, angles, scales, batch_size=ms.profile.sweep_batch, device=device, resize=resize)))


def rotscale_examples(image: torch.Tensor, angles: Sequence[float], scales: Sequence[float],
                      resize: str = "tf") -> list[tuple[str, torch.Tensor]]:
    """``(title, (1, 3, H, W) image)`` for ``image`` (``(1, 3, H, W)``) under each angle, then each scale."""
    panels = [(f"rotation {a:g} deg", transforms.rotate(image, a)) for a in angles]
    return panels + [(f"scale {s:g}", transforms.rescale(image, s, resize)) for s in scales]


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
    """Mean relative accuracy drop per model, rotation and scale (``summary``: ``transforms.robustness_summary``
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


def rotscale_rescale_zero_canvas(x: torch.Tensor, factor: float, resize: str = "tf") -> torch.Tensor:
    """``transforms.rescale`` with everything outside the centre copy set to zero when ``factor < 1``
    (a zero canvas instead of mirrored copies); ``(N, C, H, W)`` in, same shape out."""
    out = transforms.rescale(x, factor, resize)
    top, left, nh, nw = transforms.scaled_box(tuple(x.shape[-2:]), factor, resize)
    mask = torch.zeros_like(out)
    mask[..., top:top + nh, left:left + nw] = 1
    return out * mask if factor < 1 else out


def rotscale_zero_canvas_table(predict: Any, images: torch.Tensor, labels: torch.Tensor, scales: Sequence[float],
                               device: str | torch.device, resize: str = "tf") -> pd.DataFrame:
    """Accuracy of each head of ``predict`` (``images -> {head: logits (B, K)}``) on zero-canvas
    rescaled images (:func:`rotscale_rescale_zero_canvas`): rows ``scale``, ``head``, ``accuracy_zero_canvas``."""
    rows = []
    for s in scales:
        for name, logits in predict(rotscale_rescale_zero_canvas(images.to(device), s, resize)).items():
            rows.append({"scale": s, "head": name,
                         "accuracy_zero_canvas": float((logits.argmax(1).cpu() == labels).float().mean())})
    return pd.DataFrame(rows)

"""What to see in each figure, in this run's numbers.

A notebook shows, after each figure, the paragraph :func:`what_to_see` writes from the very table the figure
was drawn from, so a reader holding the figure beside its text never finds the two disagreeing: the sentences
quote numbers, never a typed-in finding. Verdicts between heads (which holds, which is undecided) are
:mod:`shiftinv.workbook.claims`'s, with their intervals; this module only reads a figure aloud.

Each reader takes the figure's data frame (the columns its ``save_figure`` call writes) and returns markdown.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: Errors below this are float32 rounding (relative, unitless).
ROUNDING = 1e-5

_READERS: dict[str, Callable[..., str]] = {}


def what_to_see(figure: str, data: pd.DataFrame, **context: Any) -> str:
    """The "what to see" paragraph of ``figure`` (e.g. ``"04_shift_profiles"``) from its data, as markdown.

    Raises:
        KeyError: ``figure`` has no reader (the message lists those that do).
    """
    if figure not in _READERS:
        raise KeyError(f"no 'what to see' reader for figure {figure!r}; known: {', '.join(sorted(_READERS))}")
    if len(data) == 0:
        return "**What to see.** Nothing: this run produced no rows for this figure."
    return "**What to see.** " + _READERS[figure](data, **context)


def show(figure: str, folder: Path, **context: Any) -> None:
    """Display :func:`what_to_see` for ``figure`` from its data file ``folder/<figure>.csv`` (the one
    ``figures.save_figure`` just wrote; pass ``figures.output_dir()``), as markdown in a notebook, as text
    elsewhere."""
    try:
        text = what_to_see(figure, pd.read_csv(Path(folder) / f"{figure}.csv"), **context)
    except Exception as err:  # noqa: BLE001 - a sentence must never cost a run its figures; tests call what_to_see
        text = f"*(no 'what to see' for {figure}: {type(err).__name__}: {err})*"
    show_markdown(text)


def show_markdown(text: str) -> None:
    """``text`` as Markdown in a notebook, printed elsewhere (what :func:`show` and ``claims.show`` display)."""
    try:
        from IPython.display import Markdown, display

        display(Markdown(text))
    except ImportError:  # pragma: no cover - IPython ships with the workbook
        print(text)


def figures_with_readers() -> list[str]:
    """Names of the figures :func:`what_to_see` can read."""
    return sorted(_READERS)


def _reader(name: str) -> Callable[[Callable[..., str]], Callable[..., str]]:
    def register(fn: Callable[..., str]) -> Callable[..., str]:
        _READERS[name] = fn
        return fn
    return register


def _zero_shifts(df: pd.DataFrame, value: str, shift: str = "shift_px", tol: float = ROUNDING) -> list[int]:
    """Positive shifts at which ``value`` is below ``tol``."""
    return sorted(int(s) for s in df.loc[(df[value] < tol) & (df[shift] > 0), shift])


def _period(zeros: list[int]) -> int | None:
    """Greatest common divisor of the shifts with zero error (their period), ``None`` when there are none."""
    return int(np.gcd.reduce(zeros)) if zeros else None


def _runs(g: pd.DataFrame) -> str:
    """``"3 runs"`` or ``"3-9 runs"`` from a ``runs`` column."""
    lo, hi = int(g.runs.min()), int(g.runs.max())
    return f"{lo} runs" if lo == hi else f"{lo}-{hi} runs"


def _between(g: pd.DataFrame, col: str) -> str:
    """``"min (row) to max (row)"`` of ``col`` over rows indexed by name."""
    lo, hi = g[col].idxmin(), g[col].idxmax()
    return f"{g.loc[lo, col]:.3g} (`{lo}`) to {g.loc[hi, col]:.3g} (`{hi}`)"


# ----------------------------------------------------------------------------- 01 primer


@_reader("01_conv_equivariance")
def _conv(df: pd.DataFrame) -> str:
    worst = float(df.relative_error.max())
    verdict = ("float32 rounding: the convolution commutes with every shift" if worst < ROUNDING
               else "above float32 rounding: something in this network is not a plain convolution")
    return (f"the largest relative error over shifts {int(df.shift_px.min())}..{int(df.shift_px.max())} px is "
            f"{worst:.1e}, {verdict}.")


@_reader("01_downsampling_phase")
def _phase(df: pd.DataFrame) -> str:
    lines = []
    for (depth, down), g in df.groupby(["depth", "downsampler"], sort=False):
        zeros = _zero_shifts(g, "relative_error")
        nonzero = g[g.relative_error >= ROUNDING]
        where = (f"exact at shifts that are multiples of {_period(zeros)} px" if zeros
                 else "exact at no shift but 0")
        peak = f", up to {nonzero.relative_error.max():.2f} in between" if len(nonzero) else ""
        lines.append(f"- {depth} stage(s) of `{down}` (stride {2 ** int(depth)}): {where}{peak}")
    return "where the error is zero, per network:\n\n" + "\n".join(lines)


@_reader("01_gap_invariance")
def _gap(df: pd.DataFrame) -> str:
    lines = []
    for stride, g in df.groupby("stride", sort=True):
        zeros = _zero_shifts(g, "gap_change")
        period = _period(zeros)
        where = f"unchanged every {period} px" if period else "changed at every non-zero shift"
        lines.append(f"- total stride {int(stride)}: {where}; largest change {g.gap_change.max():.3g}")
    return "where the GAP vector is unchanged, per total stride:\n\n" + "\n".join(lines)


@_reader("01_blurpool")
def _blur(df: pd.DataFrame) -> str:
    d = df.sort_values("filter_size")
    first, last = d.iloc[0], d.iloc[-1]
    falls = bool((np.diff(d.mean_gap_change.to_numpy()) <= 0).all())
    return (f"the mean change of the GAP vector over the shifts goes from {first.mean_gap_change:.3g} "
            f"(filter {int(first.filter_size)}) to {last.mean_gap_change:.3g} (filter {int(last.filter_size)}), "
            f"{'falling with every larger filter' if falls else 'not falling monotonically'}; "
            f"{'never' if last.mean_gap_change > ROUNDING else 'reaching'} zero.")


# ----------------------------------------------------------------------------- 02 model zoo


@_reader("02_params")
def _params(df: pd.DataFrame, reference: str = "flatten") -> str:
    g = df.set_index("head")
    if reference not in g.index:
        reference = g.trainable.idxmax()
    ref = int(g.loc[reference, "trainable"])
    lines = [f"- `{h}`: {int(r.trainable):,} ({ref / r.trainable:.3g}x {'fewer' if r.trainable < ref else 'more'})"
             if r.trainable < ref else f"- `{h}`: {int(r.trainable):,} ({r.trainable / ref:.3g}x more)"
             for h, r in g.iterrows() if h != reference]
    return (f"trainable parameters against `{reference}`'s {ref:,} (the trunk, frozen, is the same "
            f"{int(g.trunk.iloc[0]):,} for all):\n\n" + "\n".join(lines))


@_reader("02_receptive_field")
def _rf(df: pd.DataFrame) -> str:
    pools = df[df.name.str.startswith("pool")]
    last = pools.iloc[-1] if len(pools) else df.iloc[-1]
    return (f"the stride doubles at every pool and reaches {int(last.stride)} px at `{last['name']}`, whose "
            f"receptive field is {int(last.receptive_field)} px: one step of its map is {int(last.stride)} px "
            "of input, so only shifts by that much move it by a whole cell.")


@_reader("02_architectures")
def _arch(df: pd.DataFrame) -> str:
    reads = df[df.stage == "head"].drop_duplicates("model").set_index("model")
    return "the heads differ only in what they read from the trunk: " + "; ".join(
        f"`{m}` reads {int(r.in_features):,} numbers ({r.reads})" for m, r in reads.iterrows()) + "."


@_reader("02_circular_shift_drift")
def _drift(df: pd.DataFrame) -> str:
    lines = []
    for (tap, pool), g in df.groupby(["tap", "pool"], sort=False):
        zeros = _zero_shifts(g, "drift", "shift", tol=1e-9)  # float64 maps: zero is ~1e-16
        period = _period(zeros)
        where = ("zero at every shift" if period == 1 else f"back to zero every {period} px" if period
                 else "never back to zero")
        lines.append(f"- `{tap}` ({pool}): {where}, largest drift {g.drift.max():.3g}")
    return "where the drift of each tap returns to zero, and its largest value:\n\n" + "\n".join(lines)


# ----------------------------------------------------------------------------- 03 heads


@_reader("03_data_samples")
def _data(df: pd.DataFrame) -> str:
    parts = ", ".join(f"{int(r.images):,} {r.split}" for r in df.itertuples())
    return f"{parts} images at {int(df.image_size.iloc[0])} px, every one centred (unshifted) while training."


@_reader("03_training_curves")
def _curves(df: pd.DataFrame) -> str:
    last = df.groupby("model").epoch.max()
    best = df.loc[df.groupby("model").val_acc.idxmax()].set_index("model")
    return (f"the runs stopped after {int(last.min())} to {int(last.max())} epochs; the best validation accuracy "
            f"of each ranges from {_between(best, 'val_acc')}. A curve still rising at its last epoch would have "
            "gained from more epochs.")


@_reader("03_accuracy_params")
def _acc_params(df: pd.DataFrame) -> str:
    g = df.set_index("model")
    n = f", n = {int(g.n_images.iloc[0])} test images" if "n_images" in g else ""
    runs = f" and {_runs(g)} per model" if "runs" in g else ""
    lines = [f"- `{m}`: {r.test_acc:.3f} [{r.test_acc_lo:.3f}, {r.test_acc_hi:.3f}] with {int(r.head_params):,} "
             "head parameters" for m, r in g.sort_values("test_acc", ascending=False).iterrows()]
    return f"centred test accuracy, mean with 95% interval{n}{runs}:\n\n" + "\n".join(lines)


# ----------------------------------------------------------------------------- 04 translation


@_reader("04_shift_maps_loss")
def _loss_maps(df: pd.DataFrame) -> str:
    lines = []
    for h, g in df.groupby("head", sort=False):
        l0 = float(g[(g.dx == 0) & (g.dy == 0)].loss.iloc[0])
        far = g.loc[g.loss.idxmax()]
        lines.append(f"- `{h}`: {l0:.3g} nats centred, {g.loss.mean():.3g} on average, at most {far.loss:.3g} "
                     f"at ({int(far.dx)}, {int(far.dy)})")
    return "the cross-entropy (lower is better) centred, on average over the grid, and where it is worst:\n\n" + \
        "\n".join(lines)


@_reader("04_shift_profiles")
def _profiles(df: pd.DataFrame, period: int | None = None) -> str:
    lines = []
    for h, g in df.groupby("head", sort=False):
        g = g.sort_values("dx")
        a0 = float(g[g.dx == 0].accuracy.iloc[0])
        half = g[g.accuracy < a0 / 2]
        edge = g[g.dx.abs() == g.dx.abs().max()].accuracy.mean()
        text = (f"- `{h}`: {a0:.2f} at dx = 0, {edge:.2f} at the ends (|dx| = {int(g.dx.abs().max())}); "
                + (f"below half its centred accuracy from |dx| = {int(half.dx.abs().min())}" if len(half)
                   else "never below half its centred accuracy"))
        if period and len(g) > period:
            on = g[g.dx % period == 0].accuracy.mean()
            text += f"; {on:.2f} on average at multiples of {period} px against {g.accuracy.mean():.2f} overall"
        lines.append(text)
    return "where each curve falls, from this run's main seed:\n\n" + "\n".join(lines)


@_reader("04_relative_loss")
def _relative_loss(df: pd.DataFrame) -> str:
    g = df.set_index("head")
    lines = [f"- `{h}`: accuracy drop {r.acc_loss:.3f} [{r.acc_loss_lo:.3f}, {r.acc_loss_hi:.3f}], relative loss "
             f"{r.dataset_signed:.3g} [{r.dataset_signed_lo:.3g}, {r.dataset_signed_hi:.3g}] on L(0) = {r.loss0:.3g}, "
             f"flip rate {r.pred_change:.3f}" for h, r in g.iterrows()]
    n = f" (n = {int(g.n_images.iloc[0])} images, {_runs(g)})" if "runs" in g else ""
    return f"three measures of the damage per head, mean and 95% interval{n}:\n\n" + "\n".join(lines)


@_reader("04_relative_loss_definitions")
def _definitions(df: pd.DataFrame) -> str:
    wide = df.pivot_table(index="definition", columns="head", values="value")
    top = wide.idxmax(axis=1).value_counts()
    lead, count = top.index[0], int(top.iloc[0])
    return (f"`{lead}` has the largest value under {count} of the {len(wide)} readings"
            + (f"; {', '.join(f'`{h}` under {int(c)}' for h, c in top.iloc[1:].items())}" if len(top) > 1 else "")
            + ". An order between heads that changes from one reading to the next is the reading's, not the heads'."
            + (" The paper's likely reading (`dataset_signed`): "
               + ", ".join(f"`{h}` {v:.3g}" for h, v in wide.loc["dataset_signed"].items()) + "."
               if "dataset_signed" in wide.index else ""))


@_reader("04_precision")
def _precision(df: pd.DataFrame) -> str:
    worst = df.loc[df.difference.abs().groupby(df.measure).idxmax()]
    lines = [f"- {r.measure}: largest |difference| {abs(r.difference):.3g} (`{r.head}`)" for r in worst.itertuples()]
    return (f"the {df.precision.iloc[0]} trunk against float32 on the same images:\n\n" + "\n".join(lines))


@_reader("04_one_pixel")
def _one_pixel(df: pd.DataFrame) -> str:
    g = df.set_index("head")
    n = f" ({int(g.pairs.iloc[0]):,} pairs of neighbouring shifts)" if "pairs" in g else ""
    never = [h for h, r in g.iterrows() if r.p_top1_change == 0]
    return (f"the share of 1-px diagonal steps that change the answer ranges from {_between(g, 'p_top1_change')}{n}"
            + (f"; never for {', '.join(f'`{h}`' for h in never)}" if never else "; every head changes its answer "
               "somewhere") + ".")


# ----------------------------------------------------------------------------- 05 aliasing


@_reader("05_periodicity")
def _periodicity(df: pd.DataFrame) -> str:
    lines = []
    rows = df.dropna(subset=["predicted_period"]).drop_duplicates(["setting", "head"])
    for r in rows.itertuples():
        if not np.isfinite(r.fraction):
            lines.append(f"- {r.setting}, `{r.head}`: flat, no ripple to split into periods")
            continue
        lines.append(f"- {r.setting}, `{r.head}`: {r.fraction:.3g} of the ripple's energy at the predicted period "
                     f"{r.predicted_period:g} px and its harmonics, against {r.chance:.3g} for white noise "
                     f"(strongest single period {r.dominant_period:g} px)")
    return ("the share of each response's ripple at the period its strides predict; heads with a flatten part "
            "see positions and have none:\n\n" + "\n".join(lines))


@_reader("05_ripple")
def _ripple(df: pd.DataFrame) -> str:
    lines = [f"- `{r.head}`: {r.ripple:.3g} [{r.ripple_lo:.3g}, {r.ripple_hi:.3g}] times chance at period "
             f"{int(r.predicted_period)} px" for r in df.itertuples()]
    return ("the response's energy at the predicted period and its harmonics, as a multiple of what white noise "
            "would put there (above 1: a ripple at that period; at or below 1: none beyond noise), mean and 95% "
            f"interval over {int(df.n_images.iloc[0])} images and {_runs(df)}:\n\n" + "\n".join(lines))


@_reader("05_boundary_vs_aliasing")
def _boundary(df: pd.DataFrame) -> str:
    lines = [f"- {r.setting}, `{r.head}`: periodic deviation {r.periodic_deviation:.3g}, deviation from invariance "
             f"{r.invariance_deviation:.3g}" for r in df.itertuples()]
    return ("a response that only aliasing moves repeats exactly (periodic deviation 0); the image border adds a "
            "part that does not repeat:\n\n" + "\n".join(lines))


@_reader("05_phase_equivariance")
def _phase_equiv(df: pd.DataFrame) -> str:
    lines = []
    for (tap, stride), g in df.groupby(["tap", "stride"], sort=False):
        exact = g[g.error < ROUNDING]
        lines.append(f"- `{tap}` (stride {int(stride)}): exact at {len(exact)} of {len(g)} shifts, largest error "
                     f"{g.error.max():.3g}")
    return "at how many shifts each tap is exactly equivariant:\n\n" + "\n".join(lines)


# ----------------------------------------------------------------------------- 06 rotation and scaling


@_reader("06_summary")
def _transform(df: pd.DataFrame) -> str:
    lines = []
    for kind, g in df.groupby("kind", sort=False):
        g = g.set_index("model")
        gains = [f"`{m}`" for m, r in g.iterrows() if r.accuracy_mean > r.accuracy_identity]
        lines.append(f"- {kind}: relative accuracy drop from {_between(g, 'relative_drop')}"
                     + (f"; {', '.join(gains)} gain on average" if gains else ""))
    return "the mean accuracy over the transformations against the untransformed one:\n\n" + "\n".join(lines)


@_reader("06_rotation_scaling")
def _rot(df: pd.DataFrame) -> str:
    n = int(df.n.iloc[0]) if "n" in df else None
    lines = []
    for kind, g in df.groupby("kind", sort=False):
        worst = g.loc[g.accuracy.idxmin()]
        lines.append(f"- {kind}: the lowest accuracy is {worst.accuracy:.2f} (`{worst['head']}` at {worst.value:g})")
    return (f"accuracy over each transformation{f' on {n} images (steps of {1 / n:.2g})' if n else ''}:\n\n"
            + "\n".join(lines))


# ----------------------------------------------------------------------------- 07-10 perceptual metrics


@_reader("07_distance_vs_level")
def _distance_levels(df: pd.DataFrame) -> str:
    from scipy.stats import spearmanr

    def rho(g: pd.DataFrame) -> float:
        return float(spearmanr(g.level, g.value).statistic) if g.level.nunique() > 1 else float("nan")

    groups = df.groupby(["metric", "ref", "distortion"]).apply(rho, include_groups=False)
    per_metric = groups.groupby(level="metric").mean().sort_values(ascending=False)
    n = groups.groupby(level="metric").size().iloc[0]
    return (f"how consistently each distance grows with the distortion level (Spearman correlation of level and "
            f"distance, mean over {n} reference x distortion pairs; 1 = always grows): "
            + ", ".join(f"`{m}` {v:.3g}" for m, v in per_metric.items()) + ".")


@_reader("09_raid_srcc")
def _raid(df: pd.DataFrame) -> str:
    if "anchors" in df:
        df = df[df.anchors == df.anchors.iloc[0]]
    lines = []
    for t, g in df.groupby("transform", sort=False):
        best, worst = g.loc[g.srcc.idxmax()], g.loc[g.srcc.idxmin()]
        lines.append(f"- {t} ({int(best.n_pairs)} pairs): best `{best.metric}` {best.srcc:.3f} "
                     f"[{best.srcc_low:.3f}, {best.srcc_high:.3f}], worst `{worst.metric}` {worst.srcc:.3f} "
                     f"[{worst.srcc_low:.3f}, {worst.srcc_high:.3f}]")
    return ("agreement with the human responses (Spearman correlation, 95% interval), per transformation"
            + (f", anchors {df.anchors.iloc[0]}" if "anchors" in df else "") + ":\n\n" + "\n".join(lines)
            + "\n\nBest and worst are point estimates: two metrics are ordered only where their intervals do not "
            "overlap (section 6 compares them on the same pairs).")


@_reader("10_srcc_vs_shift")
def _srcc_shift(df: pd.DataFrame) -> str:
    lo, hi = df["shift"].min(), df["shift"].max()
    a, b = df[df["shift"] == lo].set_index("metric").srcc, df[df["shift"] == hi].set_index("metric").srcc
    change = (b - a).sort_values()
    return (f"the change of each metric's agreement with the scores when the distorted image is also shifted by "
            f"{hi:g} px instead of {lo:g}: " + ", ".join(f"`{m}` {a[m]:.3g} → {b[m]:.3g}" for m in change.index)
            + " (largest loss first).")

"""Write the README's results from the data files, with intervals, and check its claims on them.

The README holds marked blocks, one per profile::

    <!-- results:demo:begin -->
    ... (everything here is rewritten) ...
    <!-- results:demo:end -->

``python -m shiftinv.workbook.readme --profile demo`` fills the block from the data files the notebooks
wrote into ``figures/<profile>/`` (``03_accuracy_params.csv``, ``04_relative_loss.csv``, ``05_ripple.csv``,
``04_precision.csv``, ``06_summary.csv``, ...): every number is the mean over runs (head seeds, and retrained
trunks where the profile trains one) with its 95% interval over images and runs and its range over runs
(:mod:`shiftinv.study.intervals`), with n stated; then the verdict of every claim of
:mod:`shiftinv.workbook.claims` on those intervals (holds / does not hold / undecided). Nothing in the
block is typed by hand. ``--check`` writes nothing and exits 1 when the README's block is not what the
data files give (the functional test tier runs it for every profile).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Sequence

import pandas as pd

from . import cache, claims, paths

from .claims import fmt as _fmt
from .claims import interval as _interval


def _read(folder: Path, name: str) -> pd.DataFrame | None:
    path = folder / name
    return pd.read_csv(path) if path.is_file() else None


def figures_folder(profile: str, figures: Path | None = None) -> Path:
    """``figures`` if given, else ``<repo>/figures/<profile>`` (error naming it when absent)."""
    folder = Path(figures) if figures is not None else paths.ROOT / "figures" / profile
    if not folder.is_dir():
        raise FileNotFoundError(f"no figure folder '{folder}' for profile {profile!r}: run "
                                f"`make figures PROFILE={profile}` first, or pass --figures")
    return folder


# ----------------------------------------------------------------------------- the block


def _with_interval(r: pd.Series, stat: str) -> str:
    if f"{stat}_lo" not in r:
        return _fmt(float(r[stat]))
    return f"{_fmt(float(r[stat]))} {_interval(float(r[stat + '_lo']), float(r[stat + '_hi']))}"


def _range(r: pd.Series, stat: str) -> str:
    if f"{stat}_seed_min" not in r or r[f"{stat}_seed_min"] != r[f"{stat}_seed_min"]:
        return "n/a"
    return f"{_fmt(float(r[stat + '_seed_min']))} to {_fmt(float(r[stat + '_seed_max']))}"


def _n_line(frame: pd.DataFrame, what: str = "test images") -> str:
    n = int(frame["n_images"].iloc[0]) if "n_images" in frame else None
    runs = int(frame["runs"].max()) if "runs" in frame else None
    text = f"{n} {what}" if n is not None else ""
    text += f", {runs} runs per head" if runs else ""
    return text + (" (fewer than 30 images: wide intervals)" if n is not None and n < 30 else "")


def _accuracy_table(acc: pd.DataFrame) -> list[str]:
    lines = ["| model | test accuracy (mean over runs) | 95% interval (images and runs) | range over runs | "
             "main run (figures) |", "|---|---|---|---|---|"]
    for _, r in acc.iterrows():
        main = _fmt(float(r["test_acc_main"])) if "test_acc_main" in r else "n/a"
        lines.append(f"| `{r['model']}` | {_fmt(float(r['test_acc']))} | "
                     f"{_interval(float(r['test_acc_lo']), float(r['test_acc_hi'])) if 'test_acc_lo' in r else 'n/a'} | "
                     f"{_range(r, 'test_acc')} | {main} |")
    return lines


def _relative_table(rel: pd.DataFrame) -> list[str]:
    lines = ["| head | accuracy centred | mean accuracy over shifts | accuracy drop | relative loss "
             "(`dataset_signed`) | L(0) (nats) | flip rate | relative loss, range over runs |",
             "|---|---|---|---|---|---|---|---|"]
    for _, r in rel.iterrows():
        lines.append(f"| `{r['head']}` | {_with_interval(r, 'acc0')} | {_with_interval(r, 'acc_mean')} | "
                     f"{_with_interval(r, 'acc_loss')} | {_with_interval(r, 'dataset_signed')} | "
                     f"{_fmt(float(r['loss0']))} | {_with_interval(r, 'pred_change')} | {_range(r, 'dataset_signed')} |")
    return lines


def _ripple_table(ripple: pd.DataFrame) -> list[str]:
    lines = ["| head | period (px) | energy at the period and harmonics | white-noise share | ratio (mean over runs) "
             "[95% interval] |", "|---|---|---|---|---|"]
    for _, r in ripple.iterrows():
        lines.append(f"| `{r['head']}` | {int(r['predicted_period'])} | {_fmt(float(r['fraction']))} | "
                     f"{_fmt(float(r['chance']))} | {_with_interval(r, 'ripple')} |")
    return lines


def _precision_lines(agreement: pd.DataFrame) -> list[str]:
    r0 = agreement.iloc[0]
    worst = agreement.assign(size=agreement["difference"].abs()).groupby("measure")["size"].max()
    parts = [f"{m}: {_fmt(float(v))}" for m, v in worst.items()]
    return [f"Precision (`04_precision.csv`): {r0['precision']} trunk passes"
            f"{' (channels-last)' if str(r0['channels_last']).lower() == 'true' else ''}, {r0['feature_dtype']} "
            f"features, against float32 on the same images ({int(r0['n_sweep'])} on the 1-D line, "
            f"{int(r0['n_features'])} for the features); largest difference over the plain trunk's heads, "
            + "; ".join(parts) + "."]


def _params_table(params: pd.DataFrame) -> list[str]:
    lines = ["| head | trainable | total |", "|---|---|---|"]
    lines += [f"| {r['label']} | {int(r['trainable']):,} | {int(r['total']):,} |" for _, r in params.iterrows()]
    r0 = params.iloc[0]
    lines += ["", f"Trainable parameters fall by {100 * float(r0['reduction_trainable']):.1f}% (flatten to final GAP), "
              f"the total size by {100 * float(r0['reduction_total']):.1f}% (stock VGG-16 to final GAP)."]
    return lines


def _transform_table(summary: pd.DataFrame) -> list[str]:
    wide = summary.pivot_table(index="model", columns="kind", values="relative_drop", sort=False)
    lines = ["| model | " + " | ".join(f"mean relative accuracy drop, {k}" for k in wide.columns) + " |",
             "|---|" + "---|" * len(wide.columns)]
    lines += [f"| `{m}` | " + " | ".join(_fmt(float(v)) for v in row) + " |" for m, row in wide.iterrows()]
    return lines


def _raid_table(raid: pd.DataFrame) -> list[str]:
    """SRCC with RAID's human responses per metric: pooled (both anchor protocols) and per transform."""
    pooled = raid[raid["transform"] == "pooled"]
    per = raid[(raid["transform"] != "pooled") & (raid.get("anchors", "excluded") == "excluded")]
    kinds = [t for t in ("rot", "trans", "scale", "gn") if t in set(per["transform"])]
    head = ["| metric | pooled, anchors excluded | pooled, anchors included | " + " | ".join(kinds) + " |",
            "|---|---|---|" + "---|" * len(kinds)]
    rows = []
    for m in dict.fromkeys(raid["metric"]):
        cells = []
        for anchors in ("excluded", "included"):
            r = pooled[(pooled["metric"] == m) & (pooled.get("anchors", "excluded") == anchors)]
            cells.append(f"{_fmt(float(r['srcc'].iloc[0]))} {_interval(float(r['srcc_low'].iloc[0]), float(r['srcc_high'].iloc[0]))}"
                         if len(r) else "n/a")
        for k in kinds:
            r = per[(per["metric"] == m) & (per["transform"] == k)]
            cells.append(_fmt(float(r["srcc"].iloc[0])) if len(r) else "n/a")
        rows.append(f"| `{m}` | " + " | ".join(cells) + " |")
    return head + rows


def _shift_table(frame: pd.DataFrame) -> list[str]:
    """Monotonicity with distortion level per metric, unshifted and at the largest shift."""
    top = frame["shift"].max()
    a, b = frame[frame["shift"] == 0].set_index("metric"), frame[frame["shift"] == top].set_index("metric")
    lines = [f"| metric | monotonicity, unshifted | monotonicity, distorted image shifted {top} px |", "|---|---|---|"]
    lines += [f"| `{m}` | {_fmt(float(a.loc[m, 'monotonicity']))} | {_fmt(float(b.loc[m, 'monotonicity']))} |"
              for m in a.index if m in b.index]
    return lines


def results_block(profile: str, folder: Path) -> str:
    """The Markdown of the ``results:<profile>`` block, from the data files in ``folder``."""
    try:
        shown = folder.resolve().relative_to(paths.ROOT)
    except ValueError:
        shown = folder
    out = [f"<!-- written by `python -m shiftinv.workbook.readme --profile {profile}` from {shown}/; "
           "do not edit by hand -->", ""]
    differences = _read(folder, "03_paper_differences.csv")
    if differences is not None and {"aspect", "authors", "this run"} <= set(differences):
        out += ["What this profile runs against the authors' code (`03_paper_differences.csv`, written from the "
                "profile's settings):", "", "| | authors | this profile |", "|---|---|---|",
                *[f"| {r['aspect']} | {r['authors']} | {r['this run']} |" for _, r in differences.iterrows()], ""]
    params = _read(folder, "02_params.csv")
    if params is not None and {"label", "trainable", "total", "reduction_trainable"} <= set(params):
        out += ["Parameters of the full-size models, 160 classes (`02_params.csv`, computed from the built modules):",
                "", *_params_table(params), ""]
    acc = _read(folder, "03_accuracy_params.csv")
    if acc is not None and "test_acc_lo" in acc:
        out += [f"Accuracy on the centred test images (`03_accuracy_params.csv`, {_n_line(acc)}):", "",
                *_accuracy_table(acc), ""]
    rel = _read(folder, "04_relative_loss.csv")
    if rel is not None and "acc_loss_lo" in rel:
        out += [f"Translation over the 2-D shift grid (`04_relative_loss.csv`, {_n_line(rel)}; every number is the "
                "mean over runs with its 95% interval over images and runs; relative loss = mean over shifts of "
                "(L(s) - L(0)) / L(0), so it divides by the centred loss L(0); flip rate = P(top-1 differs from the "
                "unshifted image's)):", "", *_relative_table(rel), ""]
    ripple = _read(folder, "05_ripple.csv")
    if ripple is not None and "ripple_lo" in ripple:
        out += [f"Ripple over 1-px shifts (`05_ripple.csv`, {_n_line(ripple)}; true-class logit, the profile's own "
                "shift protocol):", "", *_ripple_table(ripple), ""]
    agreement = _read(folder, "04_precision.csv")
    if agreement is not None and len(agreement):
        out += [*_precision_lines(agreement), ""]
    transforms = _read(folder, "06_summary.csv")
    if transforms is not None and {"kind", "model", "relative_drop"} <= set(transforms):
        n = f", {int(transforms['n'].iloc[0])} test images" if "n" in transforms else ""
        out += [f"Rotation (0-20 degrees) and scaling (`06_summary.csv`{n}, main seed, no intervals; relative drop = "
                "1 - mean accuracy / accuracy untransformed):", "", *_transform_table(transforms), ""]
    raid = _read(folder, "09_raid_srcc.csv")
    if raid is not None and {"metric", "srcc", "srcc_low", "srcc_high", "transform"} <= set(raid):
        src = f", stimuli: {raid['source'].iloc[0]}" if "source" in raid else ""
        back = f", backbone: {raid['backbone'].iloc[0]}" if "backbone" in raid else ""
        out += [f"Perceptual metrics against RAID's human responses (`09_raid_srcc.csv`{src}{back}; SRCC with "
                "95% bootstrap intervals over reference images; per transform with anchors excluded):", "",
                *_raid_table(raid), ""]
    moved = _read(folder, "10_srcc_vs_shift.csv")
    if moved is not None and {"shift", "metric", "monotonicity"} <= set(moved):
        out += ["A shift of the distorted image (`10_srcc_vs_shift.csv`; monotonicity of distance with "
                "distortion level):", "", *_shift_table(moved), ""]
    out += ["Verdicts (`shiftinv.workbook.claims`): an order holds when the two 95% intervals do not overlap, "
            "is reversed (does not hold) when they do not overlap the other way, and is **undecided** when they "
            "overlap; the exact checks are theorems up to float32 round-off.", ""]
    out += [v.line() for v in claims.evaluate(folder)]
    return "\n".join(out) + "\n"


def update_readme(readme: Path, profile: str, folder: Path) -> tuple[str, list[claims.Verdict]]:
    """Rewrite the ``results:<profile>`` block of ``readme`` atomically; return (block, verdicts).

    Raises ``ValueError`` naming the markers when the block is absent or malformed."""
    text = Path(readme).read_text()
    begin, end = f"<!-- results:{profile}:begin -->", f"<!-- results:{profile}:end -->"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if len(pattern.findall(text)) != 1:
        raise ValueError(f"'{readme}' needs exactly one block '{begin}' ... '{end}' (on lines of their own); "
                         "add the two markers where the results go")
    block = results_block(profile, folder)
    new = pattern.sub(lambda _: f"{begin}\n{block}{end}", text)
    if new != text:
        cache.atomic_write_bytes(readme, new.encode())
    return block, claims.evaluate(folder)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="demo", help="profile whose block to write (default demo)")
    parser.add_argument("--readme", type=Path, default=paths.ROOT / "README.md")
    parser.add_argument("--figures", type=Path, default=None, help="data folder (default figures/<profile>)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 when the README's block differs from what the data give")
    args = parser.parse_args(argv)
    try:
        folder = figures_folder(args.profile, args.figures)
        if args.check:
            return _check(args.readme, args.profile, folder)
        _, verdicts = update_readme(args.readme, args.profile, folder)
    except (FileNotFoundError, ValueError) as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 2
    print(f"{args.readme}: results:{args.profile} block written from {folder}")
    for v in verdicts:
        print(v.line())
    return 0


def _check(readme: Path, profile: str, folder: Path) -> int:
    """Exit status 1 (with a message) when the README's block is not what :func:`results_block` gives."""
    text = Path(readme).read_text()
    begin, end = f"<!-- results:{profile}:begin -->", f"<!-- results:{profile}:end -->"
    m = re.search(re.escape(begin) + r"\n(.*?)" + re.escape(end), text, re.S)
    if m is None:
        raise ValueError(f"'{readme}' has no block '{begin}' ... '{end}'")
    if m.group(1) != results_block(profile, folder):
        print(f"{readme}: the results:{profile} block differs from {folder}'s data files; rewrite it with "
              f"`python -m shiftinv.workbook.readme --profile {profile}`", file=sys.stderr)
        return 1
    print(f"{readme}: the results:{profile} block matches {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Write the README's results from the data files, with intervals, and check its claims on them.

The README holds marked blocks, one per profile::

    <!-- results:demo:begin -->
    ... (everything here is rewritten) ...
    <!-- results:demo:end -->

``python -m shiftinv.workbook.readme --profile demo`` fills the block from the data files that notebooks
03-05 wrote into ``figures/<profile>/`` (``03_accuracy_params.csv``, ``04_relative_loss.csv``,
``04_one_pixel.csv``, ``05_periodicity.csv``): tables of the numbers with their 95% bootstrap
intervals over test images and their range over head seeds (:mod:`shiftinv.study.intervals`), and the
workbook's functional claims, each checked on the intervals and printed as *holds* or
*does not hold*. Nothing in the block is typed by hand. ``--strict`` exits 1 when a claim does
not hold (or cannot be checked).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from . import cache, paths

#: Tolerance below which a deviation counts as float round-off (float32 losses and logits; a trunk fed
#: caffe-normalised 0-255 inputs, as in `natural`, has logits whose round-off reaches about 1e-5).
EXACT_TOL = 1e-4


GAP_KINDS = ("final_gap", "multi_gap")


@dataclass
class Claim:
    """A functional claim: its statement, whether it holds on the data (None: not checkable) and why."""

    statement: str
    holds: bool | None
    evidence: str

    def line(self) -> str:
        verdict = {True: "holds", False: "does not hold", None: "not checked"}[self.holds]
        return f"- {self.statement}: **{verdict}** ({self.evidence})"


def _fmt(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    ax = abs(x)
    if ax != 0 and (ax < 1e-3 or ax >= 1e4):
        return f"{x:.2g}"
    return f"{x:.3g}" if ax < 1 else f"{x:.3g}" if ax < 100 else f"{x:.0f}"


def _interval(lo: float, hi: float) -> str:
    return f"[{_fmt(lo)}, {_fmt(hi)}]"


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


# ----------------------------------------------------------------------------- claims


def _claim_flatten_vs_gap(rel: pd.DataFrame | None) -> list[Claim]:
    statement = "the flatten head's average relative loss (`dataset_signed`) exceeds every GAP head's"
    if rel is None or "dataset_signed_lo" not in rel:
        return [Claim(statement, None, "`04_relative_loss.csv` with interval columns is missing")]
    r = rel.set_index("head")
    gaps = [h for h in r.index if h.startswith("vgg/") and h.split("/")[1] in GAP_KINDS]
    if "vgg/flatten" not in r.index or not gaps:
        return [Claim(statement, None, "no vgg/flatten or GAP head in `04_relative_loss.csv`")]
    f = r.loc["vgg/flatten"]
    gap_hi = max(float(r.loc[h, "dataset_signed_hi"]) for h in gaps)
    boot = float(f["dataset_signed_lo"]) > gap_hi
    seeds_ok = True
    seed_text = ""
    if "dataset_signed_seed_min" in r and not math.isnan(float(f["dataset_signed_seed_min"])):
        gap_seed_max = max(float(r.loc[h, "dataset_signed_seed_max"]) for h in gaps)
        seeds_ok = float(f["dataset_signed_seed_min"]) > gap_seed_max
        seed_text = (f"; over head seeds flatten's lowest {_fmt(float(f['dataset_signed_seed_min']))} vs the "
                     f"GAP heads' highest {_fmt(gap_seed_max)}")
    evidence = (f"flatten {_fmt(float(f['dataset_signed']))} "
                f"{_interval(float(f['dataset_signed_lo']), float(f['dataset_signed_hi']))} lies above every GAP "
                f"head's 95% interval (highest upper bound {_fmt(gap_hi)})" if boot else
                f"flatten's interval {_interval(float(f['dataset_signed_lo']), float(f['dataset_signed_hi']))} "
                f"overlaps a GAP head's (highest upper bound {_fmt(gap_hi)})") + seed_text
    claims = [Claim(statement, boot and seeds_ok, evidence)]
    if len(gaps) == 2:
        a, b = (r.loc[h] for h in gaps)
        apart = float(a["dataset_signed_lo"]) > float(b["dataset_signed_hi"]) or \
            float(b["dataset_signed_lo"]) > float(a["dataset_signed_hi"])
        lower = gaps[0] if float(a["dataset_signed"]) < float(b["dataset_signed"]) else gaps[1]
        claims.append(Claim(f"the order of the two GAP heads ({lower} the lower relative loss) is established",
                            apart, f"{gaps[0]} {_interval(float(a['dataset_signed_lo']), float(a['dataset_signed_hi']))}, "
                            f"{gaps[1]} {_interval(float(b['dataset_signed_lo']), float(b['dataset_signed_hi']))}"
                            + ("" if apart else ": the intervals overlap, so the README states no order")))
    return claims


def _claim_aps(period: pd.DataFrame | None, one_pixel: pd.DataFrame | None) -> Claim:
    statement = (f"the APS GAP heads are invariant to circular shifts (deviation below {EXACT_TOL:g}) and never "
                 "change their answer under 1-px steps")
    if period is None or "setting" not in period:
        return Claim(statement, None, "`05_periodicity.csv` is missing")
    aps = period[(period["setting"] == "aps") & period["field"].isin(["loss", "true_logit"])
                 & ~period["head"].astype(str).str.contains("flatten")]
    if aps.empty:
        return Claim(statement, None, "no APS rows in `05_periodicity.csv`")
    dev = float(aps["invariance_deviation"].max())
    ok = dev < EXACT_TOL
    text = f"largest deviation of loss / true logit {_fmt(dev)}"
    if one_pixel is not None:
        p = one_pixel[one_pixel["head"].str.startswith("aps/")
                      & ~one_pixel["head"].str.contains("flatten")]["p_top1_change"]
        if not p.empty:
            ok = ok and float(p.max()) == 0.0
            text += f"; P(top-1 change) per 1-px step {_fmt(float(p.max()))} (`04_one_pixel.csv`)"
    return Claim(statement, ok, text)


def _claim_periods(period: pd.DataFrame | None) -> Claim:
    statement = ("with circular padding and circular shifts, the response of a GAP after pool k repeats with "
                 "exactly the predicted period 2^k")
    if period is None or "setting" not in period:
        return Claim(statement, None, "`05_periodicity.csv` is missing")
    rows = period[(period["setting"] == "circular") & period["field"].isin(["loss", "true_logit"])
                  & period["predicted_period"].notna()]
    if rows.empty:
        return Claim(statement, None, "no circular rows with a predicted period in `05_periodicity.csv`")
    exact = rows["exact_is_predicted"].astype(str).str.lower() == "true"
    small = rows["periodic_deviation"].astype(float) < EXACT_TOL
    ok = bool((exact & small).all())
    found = sorted({int(p) for p in rows.loc[exact, "exact_period"].dropna()})
    bad = sorted(set(rows.loc[~(exact & small), "head"]))
    return Claim(statement, ok, f"periods {', '.join(map(str, found))} found, largest deviation "
                 f"{_fmt(float(rows['periodic_deviation'].max()))}" + (f"; not for {', '.join(bad)}" if bad else ""))


def _claim_protocol_periods(period: pd.DataFrame | None) -> Claim:
    statement = ("with the profile's own shifts (borders included) over a 1-px line, the true-class logit of every "
                 "GAP head on the max-pool trunk carries more energy at its predicted period 2^k and harmonics than "
                 "white noise would")
    if period is None or "setting" not in period or "fraction" not in period:
        return Claim(statement, None, "`05_periodicity.csv` is missing")
    rows = period[(period["setting"] == "protocol") & (period["field"] == "true_logit")
                  & period["predicted_period"].notna() & period["fraction"].notna()
                  & period["head"].astype(str).str.startswith("vgg/")]
    if rows.empty:
        return Claim(statement, None, "no protocol rows with a predicted period in `05_periodicity.csv`")
    ratio = rows["fraction"].astype(float) / rows["chance"].astype(float)
    ok = bool((ratio > 1).all())
    worst = rows.loc[ratio.idxmin()]
    return Claim(statement, ok, f"{len(rows)} heads; fraction at the predicted period / white-noise share from "
                 f"{_fmt(float(ratio.min()))}x (`{worst['head']}`, period {int(worst['predicted_period'])}) to "
                 f"{_fmt(float(ratio.max()))}x")


def check_claims(folder: Path) -> list[Claim]:
    """Every functional claim of the README, checked on the data files in ``folder``."""
    rel = _read(folder, "04_relative_loss.csv")
    period = _read(folder, "05_periodicity.csv")
    one_pixel = _read(folder, "04_one_pixel.csv")
    return [*_claim_flatten_vs_gap(rel), _claim_aps(period, one_pixel), _claim_periods(period),
            _claim_protocol_periods(period)]


# ----------------------------------------------------------------------------- the block


def _accuracy_table(acc: pd.DataFrame) -> list[str]:
    lines = ["| model | test accuracy | 95% interval (test images) | range over head seeds |",
             "|---|---|---|---|"]
    for _, r in acc.iterrows():
        seeds = (f"{_fmt(r['test_acc_seed_min'])} to {_fmt(r['test_acc_seed_max'])} ({int(r['seeds'])} seeds)"
                 if "seeds" in r and r["seeds"] == r["seeds"] and int(r["seeds"]) > 0 else "n/a")
        lo_hi = _interval(r["test_acc_lo"], r["test_acc_hi"]) if "test_acc_lo" in r else "n/a"
        lines.append(f"| `{r['model']}` | {_fmt(r['test_acc'])} | {lo_hi} | {seeds} |")
    return lines


def _relative_table(rel: pd.DataFrame) -> list[str]:
    lines = ["| head | accuracy centred | mean accuracy over shifts | relative loss (`dataset_signed`) "
             "| 95% interval (images) | range over head seeds |", "|---|---|---|---|---|---|"]
    for _, r in rel.iterrows():
        seeds = (f"{_fmt(r['dataset_signed_seed_min'])} to {_fmt(r['dataset_signed_seed_max'])}"
                 if "seeds" in r and r["seeds"] == r["seeds"] and int(r["seeds"]) > 0 else "n/a")
        lo_hi = _interval(r["dataset_signed_lo"], r["dataset_signed_hi"]) if "dataset_signed_lo" in r else "n/a"
        lines.append(f"| `{r['head']}` | {_fmt(r['acc0'])} | {_fmt(r['acc_mean'])} | {_fmt(r['dataset_signed'])} "
                     f"| {lo_hi} | {seeds} |")
    return lines


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
    params = _read(folder, "02_params.csv")
    if params is not None and {"label", "trainable", "total", "reduction_trainable"} <= set(params):
        out += ["Parameters of the full-size models, 160 classes (`02_params.csv`, computed from the built modules):",
                "", *_params_table(params), ""]
    acc = _read(folder, "03_accuracy_params.csv")
    if acc is not None:
        n = int(acc["n_test"].iloc[0]) if "n_test" in acc else None
        out += [f"Accuracy on the centred test images (`03_accuracy_params.csv`{f', {n} test images' if n else ''}):",
                "", *_accuracy_table(acc), ""]
    rel = _read(folder, "04_relative_loss.csv")
    if rel is not None:
        n = int(rel["n_images"].iloc[0]) if "n_images" in rel else None
        shifts = int(rel["shifts"].iloc[0]) if "shifts" in rel else None
        out += [f"Translation (`04_relative_loss.csv`{f', {n} test images' if n else ''}"
                f"{f', {shifts} shifts' if shifts else ''}; relative loss = mean over shifts of (L(s) - L(0)) / L(0)):",
                "", *_relative_table(rel), ""]
    transforms = _read(folder, "06_summary.csv")
    if transforms is not None and {"kind", "model", "relative_drop"} <= set(transforms):
        out += ["Rotation (0-20 degrees) and scaling (`06_summary.csv`; relative drop = 1 - mean accuracy / "
                "accuracy untransformed): GAP removes position, not appearance.", "", *_transform_table(transforms), ""]
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
    out += ["Claims, checked on these intervals (bootstrap intervals must not overlap, and the ranges over "
            "head seeds must agree):", ""]
    out += [c.line() for c in check_claims(folder)]
    return "\n".join(out) + "\n"


def update_readme(readme: Path, profile: str, folder: Path) -> tuple[str, list[Claim]]:
    """Rewrite the ``results:<profile>`` block of ``readme`` atomically; return (block, claims).

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
    return block, check_claims(folder)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="demo", help="profile whose block to write (default demo)")
    parser.add_argument("--readme", type=Path, default=paths.ROOT / "README.md")
    parser.add_argument("--figures", type=Path, default=None, help="data folder (default figures/<profile>)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a claim does not hold or is not checked")
    args = parser.parse_args(argv)
    try:
        folder = figures_folder(args.profile, args.figures)
        _, claims = update_readme(args.readme, args.profile, folder)
    except (FileNotFoundError, ValueError) as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 2
    print(f"{args.readme}: results:{args.profile} block written from {folder}")
    for c in claims:
        print(c.line())
    return 1 if args.strict and not all(c.holds for c in claims) else 0


if __name__ == "__main__":
    sys.exit(main())

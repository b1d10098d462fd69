"""The workbook's scientific claims: each a statement, the data it reads, and a test with a verdict.

One home for every result sentence: the notebooks print the verdicts of their profile's own data
(:func:`show`), the README's results blocks list them (:mod:`shiftinv.workbook.readme`), and the
functional test tier checks them on every profile's committed data, as it checks that no notebook's
prose asserts a verdict the data do not give (:func:`tagged_sentences`).

A verdict is one of :data:`VERDICTS`:

- an **order** claim ("A's statistic is higher than B's") **holds** when A's 95% interval lies
  entirely above B's, **does not hold** when it lies entirely below, and is **undecided** when the
  intervals overlap: the data cannot tell the order;
- a **threshold** claim ("A's statistic exceeds t") holds / does not hold when A's interval lies
  above / below ``t``, undecided otherwise;
- a **theorem** check (exact invariance, exact periods, up to float round-off) holds or does not;
- **not checked**: the profile has not produced the data file (yet).

The intervals are those of :mod:`shiftinv.study.intervals`: image resamples pooled over every run
a rerun could give (head seeds, and retrained trunks where the profile trains one), so a verdict
survives a rerun on another machine. Evidence always states ``n`` (images, runs); an interval from
fewer than 30 images is flagged.

Prose may state a verdict only with a tag that names the claim, e.g.
``GAP heads lose less accuracy under shift. <!-- claim: flatten_vs_final_gap_accuracy_drop holds -->``
(the tag is invisible in JupyterLab); the functional tier fails when any profile's data disagree.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

#: The possible verdicts.
VERDICTS: tuple[str, ...] = ("holds", "does not hold", "undecided", "not checked")


#: Deviation counted as float round-off in the theorem checks (float32 losses and logits; caffe-scale
#: inputs reach about 1e-5).
EXACT_TOL: float = 1e-4


#: Fewer images than this make an interval flagged in the evidence.
MIN_IMAGES: int = 30


@dataclass(frozen=True)
class Verdict:
    """A claim's verdict on one folder of data files, with the numbers that decided it."""

    claim: "Claim"
    verdict: str
    evidence: str

    def line(self) -> str:
        """One Markdown bullet: statement, **verdict**, evidence."""
        return f"- {self.claim.statement}: **{self.verdict}** ({self.evidence})"


@dataclass(frozen=True)
class Claim:
    """A statement about the data, where it is discussed, what it reads and how it is decided."""

    id: str
    notebook: str  # "03", "04", "05"
    statement: str
    data: str  # data file name in figures/<profile>/
    columns: tuple[str, ...]
    decide: Callable[[pd.DataFrame], tuple[str, str]]  # data -> (verdict, evidence)

    def evaluate(self, folder: Path) -> Verdict:
        path = Path(folder) / self.data
        if not path.is_file():
            return Verdict(self, "not checked", f"`{self.data}` is absent")
        frame = pd.read_csv(path)
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            return Verdict(self, "not checked", f"`{self.data}` lacks columns {missing}")
        verdict, evidence = self.decide(frame)
        return Verdict(self, verdict, evidence)


# ----------------------------------------------------------------------------- formatting


def fmt(x: float) -> str:
    """A number as the workbook prints it: 3 significant digits, scientific when tiny or huge."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    ax = abs(x)
    if ax != 0 and (ax < 1e-3 or ax >= 1e4):
        return f"{x:.2g}"
    return f"{x:.3g}" if ax < 100 else f"{x:.0f}"


def interval(lo: float, hi: float) -> str:
    return f"[{fmt(lo)}, {fmt(hi)}]"


def _n_text(row: pd.Series) -> str:
    n = int(row["n_images"]) if "n_images" in row and row["n_images"] == row["n_images"] else None
    runs = int(row["runs"]) if "runs" in row and row["runs"] == row["runs"] else None
    text = ", ".join(p for p in (f"n = {n} images" if n is not None else "",
                                 f"{runs} runs" if runs is not None else "") if p)
    return text + (" (fewer than 30 images: a wide interval)" if n is not None and n < MIN_IMAGES else "")


def _value(row: pd.Series, stat: str) -> str:
    return f"{fmt(float(row[stat]))} {interval(float(row[stat + '_lo']), float(row[stat + '_hi']))}"


# ----------------------------------------------------------------------------- kinds of claims


def order(key: str, a: str, b: str, stat: str) -> Callable[[pd.DataFrame], tuple[str, str]]:
    """Decide "``a``'s ``stat`` is higher than ``b``'s" on rows keyed by column ``key`` (non-overlapping
    95% intervals ``stat_lo`` / ``stat_hi``)."""

    def decide(frame: pd.DataFrame) -> tuple[str, str]:
        rows = frame.set_index(key)
        if a not in rows.index or b not in rows.index:
            return "not checked", f"no row for {a if a not in rows.index else b}"
        ra, rb = rows.loc[a], rows.loc[b]
        if float(ra[stat + "_lo"]) > float(rb[stat + "_hi"]):
            verdict = "holds"
        elif float(ra[stat + "_hi"]) < float(rb[stat + "_lo"]):
            verdict = "does not hold"
        else:
            verdict = "undecided"
        why = {"holds": "the intervals do not overlap", "does not hold": "the order is the reverse",
               "undecided": "the intervals overlap: the data cannot tell the order"}[verdict]
        return verdict, f"`{a}` {_value(ra, stat)} vs `{b}` {_value(rb, stat)}; {_n_text(ra)}; {why}"

    return decide


def above(key: str, a: str, stat: str, threshold: float) -> Callable[[pd.DataFrame], tuple[str, str]]:
    """Decide "``a``'s ``stat`` exceeds ``threshold``" on its 95% interval."""

    def decide(frame: pd.DataFrame) -> tuple[str, str]:
        rows = frame.set_index(key)
        if a not in rows.index:
            return "not checked", f"no row for {a}"
        r = rows.loc[a]
        lo, hi = float(r[stat + "_lo"]), float(r[stat + "_hi"])
        verdict = "holds" if lo > threshold else "does not hold" if hi < threshold else "undecided"
        return verdict, f"`{a}` {_value(r, stat)} against {fmt(threshold)}; {_n_text(r)}"

    return decide


def _aps_invariance(frame: pd.DataFrame) -> tuple[str, str]:
    aps = frame[(frame["setting"] == "aps") & frame["field"].isin(["loss", "true_logit"])
                & ~frame["head"].astype(str).str.contains("flatten")]
    if aps.empty:
        return "not checked", "no APS GAP rows"
    dev = float(aps["invariance_deviation"].max())
    return ("holds" if dev < EXACT_TOL else "does not hold"), f"largest deviation of loss / true logit {fmt(dev)}"


def _circular_periods(frame: pd.DataFrame) -> tuple[str, str]:
    rows = frame[(frame["setting"] == "circular") & frame["field"].isin(["loss", "true_logit"])
                 & frame["predicted_period"].notna()]
    if rows.empty:
        return "not checked", "no circular rows with a predicted period"
    exact = rows["exact_is_predicted"].astype(str).str.lower() == "true"
    ok = exact & (rows["periodic_deviation"].astype(float) < EXACT_TOL)
    found = sorted({int(p) for p in rows.loc[exact, "exact_period"].dropna()})
    bad = sorted(set(rows.loc[~ok, "head"]))
    return ("holds" if bool(ok.all()) else "does not hold"), (
        f"periods {', '.join(map(str, found))} found, largest deviation {fmt(float(rows['periodic_deviation'].max()))}"
        + (f"; not for {', '.join(bad)}" if bad else ""))


# ----------------------------------------------------------------------------- the claims


_NAMES = {"final_gap": "final GAP", "multi_gap": "multi GAP"}


def _claims() -> tuple[Claim, ...]:
    rel, acc, ripple = "04_relative_loss.csv", "03_accuracy_params.csv", "05_ripple.csv"
    out: list[Claim] = []
    for gap in ("final_gap", "multi_gap"):
        name = _NAMES[gap]
        for stat, what in (("dataset_signed", "average relative loss under shifts"),
                           ("acc_loss", "accuracy drop under shifts")):
            short = "relative_loss" if stat == "dataset_signed" else "accuracy_drop"
            out.append(Claim(f"flatten_vs_{gap}_{short}", "04",
                             f"the flatten head's {what} is higher than the {name} head's", rel,
                             ("head", stat, stat + "_lo", stat + "_hi"), order("head", "vgg/flatten", f"vgg/{gap}", stat)))
    for stat, what in (("dataset_signed", "average relative loss"), ("acc_loss", "accuracy drop")):
        short = "relative_loss" if stat == "dataset_signed" else "accuracy_drop"
        out.append(Claim(f"final_vs_multi_gap_{short}", "04",
                         f"the final GAP head's {what} under shifts is higher than the multi GAP head's", rel,
                         ("head", stat, stat + "_lo", stat + "_hi"), order("head", "vgg/final_gap", "vgg/multi_gap", stat)))
    for gap in ("final_gap", "multi_gap"):
        name = _NAMES[gap]
        out.append(Claim(f"{gap}_vs_augmentation_mean_accuracy", "04",
                         f"the {name} head keeps a higher mean accuracy over the shifts than the flatten head trained "
                         "with shift augmentation", rel, ("head", "acc_mean", "acc_mean_lo", "acc_mean_hi"),
                         order("head", f"vgg/{gap}", "vgg/flatten_aug", "acc_mean")))
        out.append(Claim(f"augmentation_vs_{gap}_accuracy_drop", "04",
                         f"the augmented flatten head's accuracy drop under shifts is higher than the {name} head's",
                         rel, ("head", "acc_loss", "acc_loss_lo", "acc_loss_hi"),
                         order("head", "vgg/flatten_aug", f"vgg/{gap}", "acc_loss")))
        out.append(Claim(f"flatten_vs_{gap}_centred_accuracy", "03",
                         f"on centred test images the flatten head is more accurate than the {name} head", acc,
                         ("model", "test_acc", "test_acc_lo", "test_acc_hi"),
                         order("model", "vgg/flatten", f"vgg/{gap}", "test_acc")))
        out.append(Claim(f"{gap}_ripple", "05",
                         f"over 1-px shifts with the profile's own protocol, the {name} head's true-class logit "
                         "carries more energy at period 32 and its harmonics than white noise would", ripple,
                         ("head", "ripple", "ripple_lo", "ripple_hi"), above("head", f"vgg/{gap}", "ripple", 1.0)))
    out.append(Claim("aps_exact_invariance", "05",
                     f"the APS GAP heads are invariant to circular shifts (deviation below {EXACT_TOL:g})",
                     "05_periodicity.csv", ("setting", "head", "field", "invariance_deviation"), _aps_invariance))
    out.append(Claim("circular_exact_periods", "05",
                     "with circular padding and circular shifts, the response of a GAP after pool k repeats with "
                     "exactly the predicted period 2^k", "05_periodicity.csv",
                     ("setting", "head", "field", "predicted_period", "exact_period", "periodic_deviation",
                      "exact_is_predicted"), _circular_periods))
    return tuple(out)


#: Every claim of the workbook, in the order the notebooks reach them.
CLAIMS: tuple[Claim, ...] = _claims()


def get(claim_id: str) -> Claim:
    """The claim named ``claim_id`` (an error lists the names when it is unknown)."""
    for c in CLAIMS:
        if c.id == claim_id:
            return c
    raise KeyError(f"no claim {claim_id!r}; claims: {', '.join(c.id for c in CLAIMS)}")


def evaluate(folder: Path, notebook: str | None = None) -> list[Verdict]:
    """The verdict of every claim (of ``notebook``, e.g. ``"04"``, when given) on the data files in ``folder``."""
    return [c.evaluate(Path(folder)) for c in CLAIMS if notebook is None or c.notebook == notebook]


def markdown(folder: Path, notebook: str | None = None) -> str:
    """The verdicts as Markdown bullets (what a notebook displays after its figures)."""
    lines = [v.line() for v in evaluate(folder, notebook)]
    return "\n".join(lines) if lines else "(no claims)"


def show(notebook: str, folder: Path) -> None:
    """Display the verdicts of ``notebook``'s claims on the data just written to ``folder``
    (``figures.output_dir()``), as Markdown in a notebook, as text elsewhere."""
    from .see import show_markdown

    show_markdown("**What this profile's data decide** (95% intervals over images and runs):\n\n"
                  + markdown(folder, notebook))


# ----------------------------------------------------------------------------- prose


_TAG = re.compile(r"<!--\s*claim:\s*([A-Za-z0-9_]+)\s+(holds|does not hold|undecided)\s*-->")


def tagged_sentences(text: str) -> list[tuple[str, str, str]]:
    """``(claim id, verdict, the sentence before the tag)`` for every claim tag in Markdown ``text``."""
    out = []
    for m in _TAG.finditer(text):
        before = text[: m.start()].rstrip()
        sentence = re.split(r"(?<=[.!?])\s+|\n\s*[-*]\s+|\n\n", before)[-1].strip().lstrip("-* ")
        sentence = " ".join(sentence.split())
        out.append((m.group(1), m.group(2), sentence))
    return out


def check_prose(texts: Sequence[tuple[str, str]], folders: Sequence[tuple[str, Path]]) -> list[str]:
    """Every disagreement between tagged sentences and data: ``texts`` are ``(where, markdown)``, ``folders``
    are ``(profile, figures folder)``. A tag naming an unknown claim is a disagreement too; a profile without
    the claim's data file is skipped (its verdict is "not checked")."""
    problems = []
    for where, text in texts:
        for claim_id, said, sentence in tagged_sentences(text):
            try:
                claim = get(claim_id)
            except KeyError as err:
                problems.append(f"{where}: {err}")
                continue
            for profile, folder in folders:
                v = claim.evaluate(folder)
                if v.verdict != "not checked" and v.verdict != said:
                    problems.append(f"{where}: \"{sentence}\" says {claim_id} {said}, but on profile {profile} it "
                                    f"{v.verdict} ({v.evidence})")
    return problems

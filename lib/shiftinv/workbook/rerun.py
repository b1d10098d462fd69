"""Does a rerun land inside the ranges a profile printed? Compare two figure folders of the same profile.

The workbook promises that a rerun elsewhere (another machine, instruction set or thread count) lands inside
the interval printed beside each number, and that its verdicts stay. This command checks it::

    python -m shiftinv.workbook.rerun figures/demo /elsewhere/figures/demo

For every data file of the first folder with interval columns (``X``, ``X_lo``, ``X_hi``; one row per
``head`` or ``model``), it reads the rerun's ``X`` and says whether it lies inside the first run's 95%
interval; then it lists both folders' claim verdicts (:mod:`shiftinv.workbook.claims`). Exit status 1 when a
verdict that was decided (holds / does not hold) flips to its opposite.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from . import claims

_KEYS = ("head", "model")


def _interval_stats(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if f"{c}_lo" in frame.columns and f"{c}_hi" in frame.columns]


def compare_numbers(first: Path, second: Path) -> pd.DataFrame:
    """One row per (file, row key, statistic) with an interval in ``first``: ``value`` and its ``lo`` / ``hi``
    there, the ``rerun`` value from ``second``, and ``inside`` (lo <= rerun <= hi). Files or rows missing
    from ``second`` are left out."""
    rows = []
    for path in sorted(Path(first).glob("*.csv")):
        other = Path(second) / path.name
        a = pd.read_csv(path)
        key = next((k for k in _KEYS if k in a.columns), None)
        stats = _interval_stats(a)
        if key is None or not stats or not other.exists():
            continue
        b = pd.read_csv(other).drop_duplicates(key).set_index(key)
        for _, r in a.drop_duplicates(key).iterrows():
            if r[key] not in b.index:
                continue
            for s in stats:
                if s not in b.columns or pd.isna(r[s]):
                    continue
                rerun = float(b.loc[r[key], s])
                rows.append({"file": path.name, "head": r[key], "stat": s,
                             "value": float(r[s]), "lo": float(r[f"{s}_lo"]), "hi": float(r[f"{s}_hi"]),
                             "rerun": rerun, "inside": float(r[f"{s}_lo"]) <= rerun <= float(r[f"{s}_hi"])})
    return pd.DataFrame(rows, columns=["file", "head", "stat", "value", "lo", "hi", "rerun", "inside"])


def compare_verdicts(first: Path, second: Path) -> pd.DataFrame:
    """Every claim's verdict on both folders, and whether a decided verdict flipped to its opposite."""
    a, b = claims.evaluate(Path(first)), claims.evaluate(Path(second))
    decided = {"holds", "does not hold"}
    return pd.DataFrame([{"claim": x.claim.id, "first": x.verdict, "rerun": y.verdict,
                          "flipped": x.verdict in decided and y.verdict in decided and x.verdict != y.verdict}
                         for x, y in zip(a, b)])


def report(first: Path, second: Path) -> tuple[str, bool]:
    """A text report of both comparisons, and whether no decided verdict flipped."""
    numbers, verdicts = compare_numbers(first, second), compare_verdicts(first, second)
    out = [f"{int(numbers.inside.sum())} of {len(numbers)} rerun numbers lie inside the first run's 95% "
           f"interval ({first} against {second})"]
    misses = numbers[~numbers.inside]
    if len(misses):
        out += ["outside:", misses.to_string(index=False)]
    out += ["", "verdicts:", verdicts.to_string(index=False)]
    return "\n".join(out), not bool(verdicts.flipped.any())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("first", type=Path, help="a profile's figures folder (e.g. figures/demo)")
    parser.add_argument("rerun", type=Path, help="the same profile's figures from a rerun")
    args = parser.parse_args(argv)
    for folder in (args.first, args.rerun):
        if not folder.is_dir():
            parser.error(f"{folder} is not a folder; pass two figures/<profile> folders of the same profile")
    text, ok = report(args.first, args.rerun)
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

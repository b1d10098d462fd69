"""Functional tier: the workbook's claims and result sentences, checked on the committed figure data files.

Each test reads the numbers the notebooks recorded in ``figures/<profile>/`` (CSV only, no model is run).
The claims themselves live in :mod:`shiftinv.workbook.claims`; here every profile's committed data must
let each claim be decided, the theorems must hold, every printed range must contain its number, the
README's results blocks must be exactly what the data give, and no notebook sentence may assert a verdict
that some profile's data contradict (a deliberately wrong sentence is shown to fail). A profile whose
folder is absent is skipped, as is a data file that profile has not produced yet.

Run: ``python -m pytest -m functional``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shiftinv.study import profiles
from shiftinv.workbook import claims, paths, readme

pytestmark = pytest.mark.functional

#: GAP heads (no flatten part) and heads with a flatten part, by the head's kind (``"vgg/final_gap"`` -> ``final_gap``).
#: float32 round-off allowance for quantities that are exactly 0 in exact arithmetic.
ROUND_OFF = 1e-4


@pytest.fixture(params=profiles.PROFILES)
def profile_dir(request: pytest.FixtureRequest) -> Path:
    """``figures/<profile>/`` of the committed figures (never ``$SHIFTINV_FIGURES``); skips when absent."""
    folder = paths.profile_figures_dir(request.param)
    if not folder.is_dir():
        pytest.skip(f"no committed figures for profile {request.param!r} ({folder} is absent)")
    return folder


def read_data(folder: Path, name: str) -> pd.DataFrame:
    """The data file ``<name>.csv`` of a figure; skips when that profile has not produced it."""
    path = folder / f"{name}.csv"
    if not path.is_file():
        pytest.skip(f"{path} is absent (figure not produced for this profile yet)")
    frame = pd.read_csv(path)
    assert not frame.empty, f"{path} has no rows"
    return frame


def require_columns(frame: pd.DataFrame, columns: set[str], name: str) -> None:
    missing = columns - set(frame.columns)
    assert not missing, f"{name} lacks columns {sorted(missing)} (has {list(frame.columns)})"


def bounds(frame: pd.DataFrame, column: str) -> tuple[pd.Series, pd.Series]:
    """``(lower, upper)`` of ``column``: its interval columns ``<column>_lo/_hi`` when present, else the values."""
    lo, hi = f"{column}_lo", f"{column}_hi"
    if lo in frame.columns and hi in frame.columns:
        return frame[lo].astype(float), frame[hi].astype(float)
    return frame[column].astype(float), frame[column].astype(float)


# --------------------------------------------------------------------------- claims, README and prose


def test_every_claim_finds_its_columns(profile_dir: Path) -> None:
    """Every claim whose data file the profile produced can be decided (no missing column)."""
    for v in claims.evaluate(profile_dir):
        if (profile_dir / v.claim.data).is_file():
            assert v.verdict != "not checked", f"{v.claim.id}: {v.evidence}"


def test_the_theorems_hold(profile_dir: Path) -> None:
    """The exact checks hold on any weights (up to float32 round-off)."""
    for claim_id in ("aps_exact_invariance", "circular_exact_periods"):
        v = claims.get(claim_id).evaluate(profile_dir)
        if v.verdict == "not checked":
            pytest.skip(f"{claim_id}: {v.evidence}")
        assert v.verdict == "holds", f"{claim_id}: {v.evidence}"


def test_every_printed_range_contains_its_number(profile_dir: Path) -> None:
    """A mean over runs lies inside its 95% interval and inside its range over runs, in every data file."""
    for path in sorted(profile_dir.glob("*.csv")):
        frame = pd.read_csv(path)
        for col in [c for c in frame.columns if f"{c}_lo" in frame.columns and f"{c}_hi" in frame.columns]:
            for lo, hi in ((f"{col}_lo", f"{col}_hi"), (f"{col}_seed_min", f"{col}_seed_max")):
                if lo not in frame.columns:
                    continue
                rows = frame[[col, lo, hi]].astype(float).dropna()
                bad = rows[(rows[col] < rows[lo] - 1e-9) | (rows[col] > rows[hi] + 1e-9)]
                assert bad.empty, f"{path.name}: {col} outside [{lo}, {hi}]:\n{bad}"


def test_readme_block_is_what_the_committed_data_give(profile_dir: Path) -> None:
    """The README's results block of the profile is exactly what its data files give (nothing typed)."""
    profile = profile_dir.name
    if f"<!-- results:{profile}:begin -->" not in (paths.ROOT / "README.md").read_text():
        pytest.skip(f"the README has no results block for {profile}")
    assert readme.main(["--profile", profile, "--check"]) == 0


def _notebook_markdown() -> list[tuple[str, str]]:
    import jupytext

    out = []
    for path in sorted(paths.NOTEBOOKS.glob("[0-9][0-9]_*.py")):
        nb = jupytext.read(path)
        out += [(f"{path.name} cell {i}", c.source) for i, c in enumerate(nb.cells) if c.cell_type == "markdown"]
    return out


def _committed_folders() -> list[tuple[str, Path]]:
    return [(p, paths.profile_figures_dir(p)) for p in profiles.PROFILES if paths.profile_figures_dir(p).is_dir()]


def test_no_notebook_sentence_contradicts_any_profiles_data() -> None:
    """A result sentence in a notebook's prose carries a claim tag (``<!-- claim: ID verdict -->``); it must agree
    with the verdict on every profile's committed data."""
    problems = claims.check_prose(_notebook_markdown(), _committed_folders())
    assert not problems, "\n".join(problems)


def test_a_wrong_result_sentence_is_caught(tmp_path: Path) -> None:
    """The check above fails on a sentence whose tag the data contradict (the deliberately wrong case)."""
    from test_readme import write_data

    write_data(tmp_path / "demo", flatten_lo=0.5, gap_hi=0.6)  # flatten vs final GAP relative loss: undecided
    folders = [("demo", tmp_path / "demo")]
    wrong = "The flatten head loses more than final GAP. <!-- claim: flatten_vs_final_gap_relative_loss holds -->"
    problems = claims.check_prose([("04 cell 9", wrong)], folders)
    assert len(problems) == 1 and "04 cell 9" in problems[0] and "undecided" in problems[0]
    assert "The flatten head loses more than final GAP." in problems[0]
    right = wrong.replace("holds -->", "undecided -->")
    assert claims.check_prose([("04", right)], folders) == []
    assert "no claim" in claims.check_prose([("04", "X. <!-- claim: nonsense holds -->")], folders)[0]


# --------------------------------------------------------------------------- notebook 05: periods


def test_circular_shifts_give_exactly_the_predicted_periods(profile_dir: Path) -> None:
    """05: with circular padding and shifts, each GAP head repeats with exactly the period ``2**k`` of its
    deepest tap (accuracy may be constant, period 1, which divides it); heads with a flatten part have none."""
    table = read_data(profile_dir, "05_periodicity")
    require_columns(table, {"setting", "head", "field", "predicted_period", "exact_period", "periodic_deviation"},
                    "05_periodicity")
    circ = table[table["setting"] == "circular"]
    assert len(circ), "05_periodicity has no 'circular' setting"
    periodic = circ[circ["predicted_period"].notna()]
    assert len(periodic), "no head with a predicted period in the circular setting"
    assert set(periodic["predicted_period"].astype(int)) >= {32}, "the GAP(pool5) period 32 is not among the predictions"
    smooth = periodic[periodic["field"].isin(["loss", "true_logit"])]
    assert len(smooth), "no loss / true_logit rows in the circular setting"
    wrong = smooth[smooth["exact_period"] != smooth["predicted_period"]]
    assert wrong.empty, f"found period differs from the predicted one:\n{wrong[['head', 'field', 'predicted_period', 'exact_period']]}"
    acc = periodic[periodic["field"] == "accuracy"]
    assert (acc["exact_period"].notna() & (acc["predicted_period"] % acc["exact_period"] == 0)).all(), acc
    assert (periodic["periodic_deviation"].abs() < ROUND_OFF).all(), periodic[["head", "field", "periodic_deviation"]]
    flatten = circ[circ["predicted_period"].isna() & circ["field"].isin(["loss", "true_logit"])]
    assert flatten["exact_period"].isna().all(), f"a head with a flatten part shows a period:\n{flatten}"


# --------------------------------------------------------------------------- APS: exact invariance


def _one_pixel_is_circular_in_float32(profile_dir: Path) -> bool:
    """Whether notebook 04's 1-px steps are circular shifts in float32 arithmetic: a zero canvas (a digit that
    stays inside moves as under a circular shift) and a float32 trunk (``04_precision.csv`` absent, or saying
    float32: channels-last alone keeps float32). A mirror mosaic is not a circular shift, and bf16 rounding can
    tip APS between two components of nearly equal norm, so elsewhere the theorem is checked on notebook 05's
    circular sweep (float64) only."""
    precision_file = profile_dir / "04_precision.csv"
    if precision_file.exists() and (pd.read_csv(precision_file)["precision"].astype(str) != "float32").any():
        return False
    diffs = profile_dir / "03_paper_differences.csv"
    if not diffs.exists():
        return True
    table = pd.read_csv(diffs)
    ours = table[table.iloc[:, 0] == "shifts"].iloc[:, 2].astype(str)  # columns: what, authors, this profile
    return not ours.str.contains("mosaic").any()


def test_aps_is_invariant(profile_dir: Path) -> None:
    """04 and 05: APS GAP heads never change their top-1 over 1-px diagonal steps and their response is flat
    under circular shifts (float round-off), while some plain head does change its mind. (A flatten head on
    the APS trunk sees positions, so it is not invariant: left out.)"""
    if _one_pixel_is_circular_in_float32(profile_dir):
        frag = read_data(profile_dir, "04_one_pixel")
        require_columns(frag, {"head", "p_top1_change", "mean_abs_change"}, "04_one_pixel")
        aps = frag[frag["head"].str.startswith("aps/") & ~frag["head"].str.contains("flatten")]
        assert len(aps), f"no APS head in 04_one_pixel: {list(frag['head'])}"
        _, p_hi = bounds(aps, "p_top1_change")
        assert (p_hi == 0).all(), aps
        assert (aps["mean_abs_change"].abs() < ROUND_OFF).all(), aps
        others_lo, _ = bounds(frag[~frag["head"].str.startswith("aps/")], "p_top1_change")
        assert others_lo.max() > 0, "no plain head changes its prediction under 1-px shifts"

    table = read_data(profile_dir, "05_periodicity")
    require_columns(table, {"setting", "head", "invariance_deviation"}, "05_periodicity")
    aps_rows = table[(table["setting"] == "aps") & ~table["head"].str.contains("flatten")]
    assert len(aps_rows), "05_periodicity has no 'aps' setting"
    assert (aps_rows["invariance_deviation"].abs() < ROUND_OFF).all(), aps_rows


# --------------------------------------------------------------------------- notebook 05: phase-resolved equivariance


def check_phase_equivariance(table: pd.DataFrame) -> None:
    """Phase 0 (shifts that are multiples of a tap's stride) is exact up to round-off; every other phase of
    a strided tap aliases: its error is at least 1000 times the tap's phase-0 error (and above 1e-12).

    How large the off-phase error is depends on how much a map varies over its few pixels (deep maps of
    small images are nearly constant: ~1e-7 at pool5 of the smoke trunk), so only the contrast is checked.
    """
    require_columns(table, {"tap", "stride", "phase_x", "phase_y", "error"}, "05_phase_equivariance")
    on = (table["phase_x"] == 0) & (table["phase_y"] == 0)
    assert on.any() and (~on).any(), "need shifts on and off phase 0"
    assert (table.loc[on, "error"] < 1e-8).all(), table[on & (table["error"] >= 1e-8)]
    for tap, g in table[table["stride"] > 1].groupby("tap"):
        g_on = (g["phase_x"] == 0) & (g["phase_y"] == 0)
        floor = max(1e3 * float(g.loc[g_on, "error"].max()) if g_on.any() else 0.0, 1e-12)
        low = g[~g_on & ~(g["error"] > floor)]
        assert low.empty, f"{tap}: off-phase shifts without aliasing (error <= {floor:g}):\n{low}"
    deepest = table[table["stride"] == table["stride"].max()]
    assert set(np.unique(deepest["phase_x"])) == set(range(int(deepest["stride"].iloc[0]))), "not every phase of the deepest tap"


def test_feature_maps_are_equivariant_exactly_at_phase_zero(profile_dir: Path) -> None:
    """05: per-layer, phase-resolved equivariance of the circular trunk."""
    check_phase_equivariance(read_data(profile_dir, "05_phase_equivariance"))


# --------------------------------------------------------------------------- the checks themselves


def test_the_phase_check_fails_on_a_violation() -> None:
    """The phase-equivariance check fails on data that contradict it."""
    phases = pd.DataFrame({"tap": ["pool1"] * 3, "stride": [2] * 3, "phase_x": [0, 1, 0], "phase_y": [0] * 3,
                           "error": [0.0, 0.2, 0.0]})
    check_phase_equivariance(phases)
    with pytest.raises(AssertionError):
        check_phase_equivariance(phases.assign(error=[0.0, 0.2, 1e-3]))  # phase 0 not exact
    with pytest.raises(AssertionError, match="without aliasing"):
        check_phase_equivariance(phases.assign(error=[1e-10, 1e-9, 0.0]))  # off phase no worse than phase 0

"""Functional tier: the workbook's scientific claims, checked on the committed figure data files.

Each test reads the numbers a notebook recorded in ``figures/<profile>/`` (CSV only, no model
is run) and checks one claim the notebooks' text makes. A profile whose folder is absent is
skipped (``figures/natural/`` exists only once ``make figures PROFILE=natural`` has been run
and committed), as is a data file that profile has not produced yet.

Values may be rounded (significant digits) and may carry interval columns ``<col>_lo`` /
``<col>_hi``: where they exist, a comparison "A above B" is checked on A's lower bound against
B's upper bound; otherwise on the point values.

Run: ``python -m pytest -m functional``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shiftinv.study import profiles
from shiftinv.workbook import paths

pytestmark = pytest.mark.functional

#: GAP heads (no flatten part) and heads with a flatten part, by the head's kind (``"vgg/final_gap"`` -> ``final_gap``).
GAP_KINDS = ("final_gap", "multi_gap")
FLATTEN_KINDS = ("flatten",)
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


def head_kind(head: str) -> str:
    return str(head).rsplit("/", 1)[-1]


# --------------------------------------------------------------------------- notebook 04: flatten vs GAP


def check_flatten_above_gap(frame: pd.DataFrame, column: str) -> None:
    """Every flatten head's ``column`` lies above every GAP head's (lower bound over upper bound)."""
    require_columns(frame, {"head", column}, "04_relative_loss")
    kinds = frame["head"].map(head_kind)
    flatten, gap = frame[kinds.isin(FLATTEN_KINDS)], frame[kinds.isin(GAP_KINDS)]
    assert len(flatten) and len(gap), f"need flatten and GAP heads, got {list(frame['head'])}"
    flatten_lo, _ = bounds(flatten, column)
    _, gap_hi = bounds(gap, column)
    assert flatten_lo.min() > gap_hi.max(), (
        f"{column}: flatten {dict(zip(flatten['head'], flatten_lo))} not above GAP {dict(zip(gap['head'], gap_hi))}")


def test_flatten_head_loses_more_under_shift_than_every_gap_head(profile_dir: Path) -> None:
    """04: the flatten head's dataset-level relative loss (and its accuracy loss) exceed every GAP head's."""
    rel = read_data(profile_dir, "04_relative_loss")
    check_flatten_above_gap(rel, "dataset_signed")
    check_flatten_above_gap(rel, "acc_loss")


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


def test_aps_is_invariant(profile_dir: Path) -> None:
    """04 and 05: APS GAP heads never change their top-1 over 1-px diagonal steps and their response is flat
    under circular shifts (float round-off), while some plain head does change its mind. (A flatten head on
    the APS trunk sees positions, so it is not invariant: left out.)"""
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


def test_interval_columns_are_preferred_and_a_violation_fails() -> None:
    """The helpers read ``_lo/_hi`` when present, and a data file contradicting a claim fails."""
    rel = pd.DataFrame({"head": ["vgg/flatten", "vgg/final_gap", "vgg/multi_gap"], "dataset_signed": [2.0, 0.5, 0.4]})
    check_flatten_above_gap(rel, "dataset_signed")
    overlapping = rel.assign(dataset_signed_lo=[0.3, 0.4, 0.3], dataset_signed_hi=[3.0, 0.6, 0.5])
    with pytest.raises(AssertionError, match="not above GAP"):
        check_flatten_above_gap(overlapping, "dataset_signed")
    with pytest.raises(AssertionError, match="lacks columns"):
        check_flatten_above_gap(rel.drop(columns="dataset_signed"), "dataset_signed")
    phases = pd.DataFrame({"tap": ["pool1"] * 3, "stride": [2] * 3, "phase_x": [0, 1, 0], "phase_y": [0] * 3,
                           "error": [0.0, 0.2, 0.0]})
    check_phase_equivariance(phases)
    with pytest.raises(AssertionError):
        check_phase_equivariance(phases.assign(error=[0.0, 0.2, 1e-3]))  # phase 0 not exact
    with pytest.raises(AssertionError, match="without aliasing"):
        check_phase_equivariance(phases.assign(error=[1e-10, 1e-9, 0.0]))  # off phase no worse than phase 0

"""Functional tier for notebook 11: the audit's claims, checked on its committed summary
(``figures/<profile>/11_accuracy_consistency.csv``: ``measure, value, lo, hi, n, model, protocol``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from shiftinv.study import profiles
from shiftinv.workbook import paths

pytestmark = pytest.mark.functional


@pytest.fixture(params=profiles.PROFILES)
def summary(request: pytest.FixtureRequest) -> pd.DataFrame:
    path = paths.profile_figures_dir(request.param) / "11_accuracy_consistency.csv"
    if not path.is_file():
        pytest.skip(f"{path} is absent (notebook 11 not run for this profile)")
    frame = pd.read_csv(path)
    assert {"measure", "value", "lo", "hi", "model", "protocol"} <= set(frame.columns)
    return frame


def _rows(frame: pd.DataFrame, measure: str, protocol: str) -> pd.DataFrame:
    return frame[(frame.measure == measure) & (frame.protocol == protocol)]


def test_aps_heads_never_change_their_answer_under_circular_shifts(summary: pd.DataFrame) -> None:
    aps = _rows(summary, "consistency", "circular")
    aps = aps[aps.model.str.startswith("aps/")]
    if aps.empty:
        pytest.skip("no APS model in this audit")
    assert (aps.value == 1.0).all(), aps


def test_a_real_classifier_changes_its_mind_under_a_one_pixel_shift(summary: pd.DataFrame) -> None:
    """The workbook's opening sentence on a network trained elsewhere: some answers change when the
    photo moves by one pixel (interval above 0), and two shifted views do not always agree."""
    real = summary[summary.model.str.contains("LiteRT")]
    if real.empty:
        pytest.skip("no LiteRT model in this audit")
    one_px = _rows(real, "changes_within_1px", "crop")
    assert (one_px.lo > 0).all(), one_px
    assert (_rows(real, "consistency", "crop").hi < 1).all()

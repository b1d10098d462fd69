"""The "what to see" paragraphs: read from the figure's own data, so they follow it when it changes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shiftinv.workbook import see

FIGURES = Path(__file__).resolve().parents[1] / "figures"


def test_unknown_figure_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="04_shift_profiles"):
        see.what_to_see("99_nothing", pd.DataFrame({"a": [1]}))


def test_conv_equivariance_sentence_follows_the_error() -> None:
    exact = pd.DataFrame({"shift_px": [0, 1, 2], "relative_error": [0.0, 2e-7, 1e-7]})
    broken = exact.assign(relative_error=[0.0, 0.3, 0.1])
    assert "commutes with every shift" in see.what_to_see("01_conv_equivariance", exact)
    text = see.what_to_see("01_conv_equivariance", broken)
    assert "above float32 rounding" in text and "3.0e-01" in text


def test_zeros_of_a_periodic_error_give_its_period() -> None:
    shifts = np.arange(0, 17)
    df = pd.DataFrame({"depth": 2, "downsampler": "maxpool", "shift_px": shifts,
                       "relative_error": np.where(shifts % 4 == 0, 0.0, 0.2)})
    assert "multiples of 4 px" in see.what_to_see("01_downsampling_phase", df)
    df["relative_error"] = np.where(shifts == 0, 0.0, 0.2)
    assert "exact at no shift but 0" in see.what_to_see("01_downsampling_phase", df)


def test_shift_profile_reports_where_accuracy_halves() -> None:
    dx = np.arange(-8, 9)
    df = pd.DataFrame({"head": "vgg/flatten", "dx": dx, "dy": 0, "accuracy": np.where(abs(dx) <= 3, 0.9, 0.1),
                       "loss": 1.0, "p_true": 0.5})
    text = see.what_to_see("04_shift_profiles", df)
    assert "0.90 at dx = 0" in text and "from |dx| = 4" in text
    flat = df.assign(accuracy=0.8)
    assert "never below half" in see.what_to_see("04_shift_profiles", flat)


def test_a_gain_under_rotation_is_said_as_a_gain() -> None:
    df = pd.DataFrame({"kind": "rotation", "model": ["vgg/flatten", "vgg/final_gap"], "accuracy_identity": [0.8, 0.8],
                       "accuracy_mean": [0.82, 0.6], "accuracy_worst": [0.7, 0.5], "relative_drop": [-0.025, 0.25]})
    text = see.what_to_see("06_summary", df)
    assert "`vgg/flatten` gain on average" in text and "-0.025" in text


def test_show_reads_the_data_file_and_never_raises(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pd.DataFrame({"shift_px": [0, 1], "relative_error": [0.0, 0.5]}).to_csv(tmp_path / "01_conv_equivariance.csv",
                                                                            index=False)
    see.show("01_conv_equivariance", tmp_path)
    pd.DataFrame({"x": [1]}).to_csv(tmp_path / "01_blurpool.csv", index=False)
    see.show("01_blurpool", tmp_path)  # a reader that fails says so instead of stopping the notebook


def _committed() -> list[tuple[str, str]]:
    return [(folder.name, name) for folder in sorted(FIGURES.iterdir()) if folder.is_dir()
            for name in see.figures_with_readers() if (folder / f"{name}.csv").exists()]


@pytest.mark.functional
@pytest.mark.parametrize(("profile", "figure"), _committed())
def test_every_reader_reads_the_committed_data(profile: str, figure: str) -> None:
    """Every reader runs on every profile's committed table and quotes at least one of its numbers."""
    data = pd.read_csv(FIGURES / profile / f"{figure}.csv")
    text = see.what_to_see(figure, data)
    assert text.startswith("**What to see.**") and "nan" not in text.replace("nan)", ""), text
    numbers = data.select_dtypes("number").to_numpy().ravel()
    numbers = numbers[np.isfinite(numbers)]
    quoted = any(f"{v:.3g}" in text or f"{v:.2f}" in text or f"{int(v):,}" in text for v in numbers[:5000])
    assert quoted, f"{profile}/{figure}: the paragraph quotes none of its data's numbers:\n{text}"

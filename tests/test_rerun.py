"""The rerun check: which numbers of a second run lie inside the first run's printed intervals."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from shiftinv.workbook import rerun


def _table(folder: Path, values: dict[str, float]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([{"model": m, "test_acc": v, "test_acc_lo": v - 0.05, "test_acc_hi": v + 0.05}
                  for m, v in values.items()]).to_csv(folder / "03_accuracy_params.csv", index=False)


def test_numbers_inside_and_outside(tmp_path: Path) -> None:
    _table(tmp_path / "a", {"vgg/flatten": 0.80, "vgg/final_gap": 0.60})
    _table(tmp_path / "b", {"vgg/flatten": 0.82, "vgg/final_gap": 0.40})
    table = rerun.compare_numbers(tmp_path / "a", tmp_path / "b")
    assert table.set_index("head").inside.to_dict() == {"vgg/flatten": True, "vgg/final_gap": False}
    text, ok = rerun.report(tmp_path / "a", tmp_path / "b")
    assert text.startswith("1 of 2 rerun numbers") and "vgg/final_gap" in text and ok


def test_command_refuses_a_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        rerun.main([str(tmp_path), str(tmp_path / "nowhere")])
    assert "is not a folder" in capsys.readouterr().err


@pytest.mark.skipif(not (Path(__file__).resolve().parents[1] / "figures" / "demo").is_dir(), reason="no demo figures")
def test_a_folder_against_itself_is_all_inside() -> None:
    demo = Path(__file__).resolve().parents[1] / "figures" / "demo"
    table = rerun.compare_numbers(demo, demo)
    assert len(table) > 0 and table.inside.all()
    assert rerun.main([str(demo), str(demo)]) == 0

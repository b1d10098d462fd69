"""`python -m shiftinv.workbook.readme`: the results block written from data files, claims checked on intervals."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from shiftinv.workbook import readme

README = """# Title

Intro text that stays.

<!-- results:demo:begin -->
old typed numbers 13.7
<!-- results:demo:end -->

## After
kept
"""


def write_data(folder: Path, flatten_lo: float = 10.0, gap_hi: float = 0.6, aps_dev: float = 2e-7) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([
        {"model": "vgg/flatten", "test_acc": 0.97, "test_acc_lo": 0.95, "test_acc_hi": 0.99,
         "test_acc_seed_min": 0.96, "test_acc_seed_max": 0.98, "seeds": 3, "n_test": 450},
        {"model": "vgg/final_gap", "test_acc": 0.95, "test_acc_lo": 0.93, "test_acc_hi": 0.97,
         "test_acc_seed_min": 0.94, "test_acc_seed_max": 0.96, "seeds": 3, "n_test": 450},
    ]).to_csv(folder / "03_accuracy_params.csv", index=False)
    rows = []
    for head, v, lo, hi in (("vgg/flatten", 13.7, flatten_lo, 17.0), ("vgg/final_gap", 0.47, 0.30, gap_hi),
                            ("vgg/multi_gap", 0.41, 0.28, 0.55)):
        rows.append({"head": head, "acc0": 0.9, "acc_mean": 0.5, "dataset_signed": v, "dataset_signed_lo": lo,
                     "dataset_signed_hi": hi, "dataset_signed_seed_min": lo, "dataset_signed_seed_max": hi,
                     "seeds": 3, "n_images": 64, "shifts": 121})
    pd.DataFrame(rows).to_csv(folder / "04_relative_loss.csv", index=False)
    pd.DataFrame([{"head": "aps/final_gap", "p_top1_change": 0.0}, {"head": "vgg/flatten", "p_top1_change": 0.4}]
                 ).to_csv(folder / "04_one_pixel.csv", index=False)
    per = []
    for k in range(1, 6):
        per.append({"setting": "circular", "head": f"vgg/gap_pool{k}", "field": "loss", "predicted_period": 2 ** k,
                    "exact_period": 2 ** k, "periodic_deviation": 3e-7, "invariance_deviation": 0.1,
                    "exact_is_predicted": True})
    per.append({"setting": "circular", "head": "vgg/flatten", "field": "loss", "predicted_period": None,
                "exact_period": None, "periodic_deviation": None, "invariance_deviation": 5.0,
                "exact_is_predicted": False})
    per.append({"setting": "aps", "head": "aps/final_gap", "field": "loss", "predicted_period": 1, "exact_period": 1,
                "periodic_deviation": aps_dev, "invariance_deviation": aps_dev, "exact_is_predicted": True})
    pd.DataFrame(per).to_csv(folder / "05_periodicity.csv", index=False)


def test_block_is_rewritten_from_data_files_and_claims_hold(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path, folder = tmp_path / "README.md", tmp_path / "figures" / "demo"
    path.write_text(README)
    write_data(folder)
    assert readme.main(["--readme", str(path), "--figures", str(folder), "--strict"]) == 1  # GAP order not established
    text = path.read_text()
    assert "old typed numbers" not in text and text.startswith("# Title\n\nIntro text that stays.")
    assert text.endswith("<!-- results:demo:end -->\n\n## After\nkept\n")
    assert "| `vgg/flatten` | 0.97 | [0.95, 0.99] | 0.96 to 0.98 (3 seeds) |" in text
    assert "| `vgg/flatten` | 0.9 | 0.5 | 13.7 | [10, 17] | 10 to 17 |" in text
    out = capsys.readouterr().out
    assert "exceeds every GAP head's: **holds**" in out
    assert "order of the two GAP heads" in out and "**does not hold**" in out and "the intervals overlap" in out
    assert "APS GAP heads are invariant" in out and "periods 2, 4, 8, 16, 32 found" in out
    # idempotent: a second run leaves the file as it is
    before = path.read_text()
    readme.main(["--readme", str(path), "--figures", str(folder)])
    assert path.read_text() == before


def test_claims_fail_when_the_intervals_overlap_or_aps_drifts(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    write_data(folder, flatten_lo=0.5, gap_hi=0.6, aps_dev=1e-3)
    claims = {c.statement.split(" (")[0][:40]: c for c in readme.check_claims(folder)}
    flatten = next(c for c in claims.values() if "exceeds every GAP" in c.statement)
    aps = next(c for c in claims.values() if "APS" in c.statement)
    periods = next(c for c in claims.values() if "period 2^k" in c.statement)
    assert flatten.holds is False and "overlaps" in flatten.evidence
    assert aps.holds is False and periods.holds is True


def test_missing_markers_and_missing_files_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "README.md"
    path.write_text("# no markers\n")
    write_data(tmp_path / "f")
    assert readme.main(["--readme", str(path), "--figures", str(tmp_path / "f")]) == 2
    assert "<!-- results:demo:begin -->" in capsys.readouterr().err
    assert readme.main(["--readme", str(path), "--figures", str(tmp_path / "absent")]) == 2
    assert "make figures PROFILE=demo" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert all(c.holds is None for c in readme.check_claims(empty))

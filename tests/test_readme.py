"""`python -m shiftinv.workbook.readme`: the results block written from data files, verdicts from the claims."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from shiftinv.workbook import claims, readme

README = """# Title

Intro text that stays.

<!-- results:demo:begin -->
old typed numbers 13.7
<!-- results:demo:end -->

## After
kept
"""


def _stats(row: dict, stat: str, value: float, lo: float, hi: float) -> dict:
    row.update({stat: value, f"{stat}_lo": lo, f"{stat}_hi": hi, f"{stat}_seed_min": value * 0.95,
                f"{stat}_seed_max": value * 1.05, f"{stat}_main": value})
    return row


def write_data(folder: Path, flatten_lo: float = 10.0, gap_hi: float = 0.6, aps_dev: float = 2e-7, n: int = 64) -> None:
    """Data files as notebooks 03-05 write them (columns of ``shiftinv.study.intervals.run_intervals``)."""
    folder.mkdir(parents=True, exist_ok=True)
    acc = [_stats({"model": m, "runs": 9, "n_images": 450}, "test_acc", a, a - 0.02, a + 0.02)
           for m, a in (("vgg/flatten", 0.97), ("vgg/final_gap", 0.80), ("vgg/multi_gap", 0.95))]
    pd.DataFrame(acc).to_csv(folder / "03_accuracy_params.csv", index=False)
    rows = []
    for head, v, lo, hi, drop in (("vgg/flatten", 13.7, flatten_lo, 17.0, 0.7), ("vgg/final_gap", 0.47, 0.30, gap_hi, 0.3),
                                  ("vgg/multi_gap", 0.41, 0.28, 0.55, 0.35), ("vgg/flatten_aug", 1.4, 0.7, 3.0, 0.1)):
        row = {"head": head, "runs": 9, "n_images": n, "loss0": 0.2}
        _stats(row, "dataset_signed", v, lo, hi)
        _stats(row, "acc_loss", drop, drop - 0.05, drop + 0.05)
        for stat, x in (("acc0", 0.9), ("acc_mean", 0.9 - drop), ("pred_change", drop / 2)):
            _stats(row, stat, x, x - 0.05, x + 0.05)
        rows.append(row)
    pd.DataFrame(rows).to_csv(folder / "04_relative_loss.csv", index=False)
    ripple = [_stats({"head": h, "predicted_period": 32, "fraction": f, "chance": 0.49, "runs": 9, "n_images": 300,
                      "field": "true_logit"}, "ripple", f / 0.49, f / 0.49 - 0.2, f / 0.49 + 0.2)
              for h, f in (("vgg/final_gap", 0.8), ("vgg/multi_gap", 0.5))]
    pd.DataFrame(ripple).to_csv(folder / "05_ripple.csv", index=False)
    per = [{"setting": "circular", "head": f"vgg/gap_pool{k}", "field": "loss", "predicted_period": 2 ** k,
            "exact_period": 2 ** k, "periodic_deviation": 3e-7, "invariance_deviation": 0.1, "exact_is_predicted": True}
           for k in range(1, 6)]
    per.append({"setting": "aps", "head": "aps/final_gap", "field": "loss", "predicted_period": 1, "exact_period": 1,
                "periodic_deviation": aps_dev, "invariance_deviation": aps_dev, "exact_is_predicted": True})
    pd.DataFrame(per).to_csv(folder / "05_periodicity.csv", index=False)


def test_block_is_rewritten_from_data_files_with_verdicts(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path, folder = tmp_path / "README.md", tmp_path / "figures" / "demo"
    path.write_text(README)
    write_data(folder)
    assert readme.main(["--readme", str(path), "--figures", str(folder), "--check"]) == 1  # old typed numbers
    assert readme.main(["--readme", str(path), "--figures", str(folder)]) == 0
    text = path.read_text()
    assert "old typed numbers" not in text and text.startswith("# Title\n\nIntro text that stays.")
    assert text.endswith("<!-- results:demo:end -->\n\n## After\nkept\n")
    assert "| `vgg/flatten` | 0.97 | [0.95, 0.99] | 0.921 to 1.02 | 0.97 |" in text
    assert "450 test images, 9 runs per head" in text and "64 test images, 9 runs per head" in text
    assert "| `vgg/flatten` | 0.9 [0.85, 0.95] | 0.2 [0.15, 0.25] | 0.7 [0.65, 0.75] | 13.7 [10, 17] | 0.2 |" in text
    assert "| `vgg/final_gap` | 32 | 0.8 | 0.49 | 1.63 [1.43, 1.83] |" in text
    out = capsys.readouterr().out
    assert "the flatten head's average relative loss under shifts is higher than the final GAP head's: **holds**" in out
    assert "final GAP head's average relative loss under shifts is higher than the multi GAP head's: **undecided**" in out
    assert "on centred test images the flatten head is more accurate than the final GAP head: **holds**" in out
    assert "multi GAP head's true-class logit carries more energy at period 32" in out and "APS GAP heads" in out
    assert readme.main(["--readme", str(path), "--figures", str(folder), "--check"]) == 0
    before = path.read_text()
    readme.main(["--readme", str(path), "--figures", str(folder)])  # idempotent
    assert path.read_text() == before


def test_verdicts_follow_the_intervals(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    write_data(folder, flatten_lo=0.5, gap_hi=0.6, aps_dev=1e-3, n=12)
    v = {x.claim.id: x for x in claims.evaluate(folder)}
    assert v["flatten_vs_final_gap_relative_loss"].verdict == "undecided"
    assert "fewer than 30 images" in v["flatten_vs_final_gap_relative_loss"].evidence
    assert v["flatten_vs_final_gap_accuracy_drop"].verdict == "holds"
    assert v["augmentation_vs_final_gap_accuracy_drop"].verdict == "does not hold"  # the augmented head drops less
    assert v["aps_exact_invariance"].verdict == "does not hold" and v["circular_exact_periods"].verdict == "holds"
    assert v["multi_gap_ripple"].verdict == "undecided" and v["final_gap_ripple"].verdict == "holds"


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
    assert {v.verdict for v in claims.evaluate(empty)} == {"not checked"}

"""The `paper` profile of notebooks 07-10 runs end to end (SMOKE=True) on stand-in data.

The stand-ins are tiny datasets in the official layouts of KADID-10k, TID2008, TID2013 and RAID
(written by :func:`shiftinv.iqa.write_standins`) and a VGG-16 weights file in torchvision's layout
(random weights standing in for the ImageNet ones). A user with the real folders and weights runs
the same code with ``make figures PROFILE=paper`` and the folder parameters.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from shiftinv import iqa, notebooks, paths
from shiftinv import perceptual as P


@pytest.fixture(scope="module")
def paper_params(tmp_path_factory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("paper_standins")
    dirs = iqa.write_standins(root, torch.Generator().manual_seed(0), n_refs=3, size=48)
    weights = root / "vgg16_standin.pth"
    state = {f"features.{k}": v for k, v in P.random_vgg16_features(seed=5).state_dict().items()}
    torch.save(state, weights)
    return {"PROFILE": "paper", "SMOKE": True, "KADID_DIR": str(dirs["kadid"]), "TID2008_DIR": str(dirs["tid2008"]),
            "TID2013_DIR": str(dirs["tid2013"]), "RAID_DIR": str(dirs["raid"]), "VGG_WEIGHTS": str(weights)}


def _params_for(source: Path, params: dict[str, object]) -> dict[str, object]:
    """Only the parameters a notebook declares (papermill would warn about the others)."""
    text = source.read_text()
    return {k: v for k, v in params.items() if f"\n{k}: " in text}


@pytest.mark.notebooks
@pytest.mark.parametrize("prefix", ["07", "08", "09", "10"])
def test_paper_profile_runs_on_standins(prefix: str, paper_params, session_tmp: Path) -> None:
    (source,) = notebooks.list_notebooks([prefix])
    executed = notebooks.run_notebook(source, _params_for(source, paper_params), session_tmp / "executed-paper")
    assert executed.exists()
    figs = paths.figures_dir()
    if prefix == "08":
        table = pd.read_csv(figs / "08_kadid_table.csv")
        assert {"srcc", "srcc_low", "srcc_high", "krcc", "plcc", "plcc_logistic"} <= set(table.columns)
        n_pairs = table.set_index("metric")["n_pairs"]
        # the planted pair identical to its reference has PSNR = inf and is left out of PSNR's row only
        assert n_pairs.pop("psnr") == 3 * 4 * 5 - 1
        assert (n_pairs == 3 * 4 * 5).all() and (table["n_refs"] == 3).all()
        assert table["srcc"].between(-1, 1).all()
    if prefix == "09":
        table = pd.read_csv(figs / "09_raid_srcc.csv")
        assert set(table["transform"]) == {"rot", "trans", "scale", "gn", "pooled"}
        assert (table.loc[table["transform"] == "pooled", "n_pairs"] == 3 * 4 * 9).all()  # anchors excluded
    if prefix == "10":
        summary = pd.read_csv(figs / "10_srcc_vs_shift.csv")
        assert set(summary["shift"]) == {0, 2} and summary["srcc"].notna().all()

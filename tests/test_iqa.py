"""IQA loaders on stand-ins in the official layouts, hygiene checks, embedded demo stimuli."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from reference import standins as reference_standins
from shiftinv.perceptual import images, iqa
from shiftinv.perceptual import stimuli as perceptual_stimuli


@pytest.fixture(scope="module")
def standins(tmp_path_factory) -> dict[str, Path]:
    return reference_standins.write_standins(tmp_path_factory.mktemp("iqa"), torch.Generator().manual_seed(0), n_refs=3, size=40)


def test_kadid_loader(standins) -> None:
    table = iqa.load_kadid10k(standins["kadid"])
    assert len(table) == 3 * 4 * 5 and table.attrs["score_kind"] == "quality"
    assert set(table["ref"]) == {"I01", "I02", "I03"}
    assert table.loc[0, "distortion"] == "gaussian_blur" and table.loc[0, "level"] == 1
    assert all(Path(p).is_file() for p in table["dist_path"])
    batches = list(images.pair_batches(table, batch_size=7))
    # native size, centrally cropped to multiples of 32 for the APS backbone (40 -> 32)
    assert batches[0][0].shape == (7, 3, 32, 32) and sum(len(b[0]) for b in batches) == len(table)


def test_kadid_real_scores(shared_data) -> None:
    path = shared_data / "iqa_scores" / "kadid10k.DMOS.csv"
    if not path.is_file():
        pytest.skip(f"{path} absent")
    scores = iqa.read_kadid_scores(path)
    assert len(scores) == 10125 and scores["ref"].nunique() == 81
    assert scores.groupby("ref").size().eq(125).all()
    assert set(scores["level"]) == {1, 2, 3, 4, 5} and scores["distortion"].nunique() == 25
    assert scores["score"].between(1, 5).all()
    # quality score: within a reference and distortion, stronger levels score lower on average
    slope = scores.groupby("level")["score"].mean().diff().dropna()
    assert (slope < 0).all()


def test_missing_folders_name_the_folder_and_the_source(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"KADID-10k folder.*database.mmsp-kn.de"):
        iqa.load_kadid10k(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="TID2013"):
        iqa.load_tid(tmp_path / "nowhere", "2013")
    with pytest.raises(FileNotFoundError, match="huggingface"):
        iqa.load_raid(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="'2008' or '2013'"):
        iqa.load_tid(tmp_path, "2011")


def test_missing_images_are_reported(standins, tmp_path) -> None:
    import shutil

    broken = tmp_path / "kadid"
    shutil.copytree(standins["kadid"], broken)
    (broken / "images" / "I02_02_03.png").unlink()
    with pytest.raises(FileNotFoundError, match="1 image file"):
        iqa.load_kadid10k(broken)
    (broken / "dmos.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a KADID-10k dmos.csv"):
        iqa.load_kadid10k(broken)


def test_tid_loaders_case_insensitive(standins) -> None:
    t13 = iqa.load_tid(standins["tid2013"], "2013")
    t08 = iqa.load_tid(standins["tid2008"], "2008")
    assert len(t13) == 3 * 4 * 5 and len(t08) == 3 * 4 * 4
    assert t13["ref"].iloc[0] == "I01" and t13["dist"].iloc[0].startswith("i01")
    assert all(Path(p).is_file() for p in t13["ref_path"])


def test_raid_loader_anchor_switch(standins) -> None:
    without = iqa.load_raid(standins["raid"])
    with_anchors = iqa.load_raid(standins["raid"], include_anchors=True)
    assert len(with_anchors) == 3 * 4 * 10 and len(without) == 3 * 4 * 9
    assert (without["level"] > 1).all() and without.attrs["score_kind"] == "distortion"
    anchors = with_anchors[with_anchors["level"] == 1]
    assert (anchors["score"] == 0).all()
    # the reference of a pair is its transform's level_01 anchor
    assert without["ref_path"].iloc[0].endswith("rot_img_01_level_01.png")


def test_raid_real_responses(shared_data) -> None:
    path = shared_data / "raid" / "responses.csv"
    if not path.is_file():
        pytest.skip(f"{path} absent")
    resp = iqa.read_raid_responses(path)
    assert len(resp) == 960 and resp["ref"].nunique() == 24
    assert set(resp["transform"]) == set(iqa.RAID_TRANSFORMS)
    assert (resp.loc[resp["level"] == 1, "response"] == 0).all()
    np.testing.assert_allclose(resp.groupby(["ref", "transform"])["curve"].max(), 1.0)


def test_bapps_loader(standins) -> None:
    table = iqa.load_bapps(standins["bapps"], "val")
    assert len(table) == 6 and table["judge"].between(0, 1).all()
    with pytest.raises(FileNotFoundError, match="BAPPS"):
        iqa.load_bapps(standins["bapps"], "train")


def test_hygiene_finds_planted_duplicates(standins) -> None:
    table = iqa.load_kadid10k(standins["kadid"])
    same = iqa.find_identical_pairs(table)
    assert same["dist"].tolist() == ["I01_01_01.png"]
    shared = iqa.shared_references(iqa.load_tid(standins["tid2008"], "2008"), iqa.load_tid(standins["tid2013"], "2013"))
    assert len(shared) == 3  # same pictures, found by pixel hash although files differ in name case
    assert iqa.shared_references(table.iloc[:20], table.iloc[-20:]).empty


def test_image_hash_ignores_file_format(tmp_path) -> None:
    img = torch.rand(3, 16, 16)
    a = images.save_image(img, tmp_path / "a.png")
    b = images.save_image(img, tmp_path / "b.bmp")
    c = images.save_image(img.flip(2), tmp_path / "c.png")
    assert iqa.image_hash(a) == iqa.image_hash(b) != iqa.image_hash(c)


def test_kadid_style_monotone_in_pixel_error() -> None:
    refs, names = perceptual_stimuli.demo_references(48, perceptual_stimuli.DEMO_IMAGES[:2])
    assert refs.shape == (2, 3, 48, 48) and 0 <= refs.min() and refs.max() <= 1
    imgs, table = perceptual_stimuli.make_kadid_style(refs, names, torch.Generator().manual_seed(0))
    assert len(table) == 2 * len(perceptual_stimuli.KADID_STYLE) * 5 and imgs.shape[0] == len(table)
    mse = ((imgs - refs[torch.tensor(table["ref_index"].to_numpy())]) ** 2).mean((1, 2, 3)).numpy()
    table["mse"] = mse
    for (_, d), sub in table.groupby(["ref", "distortion"]):
        assert sub["mse"].iloc[-1] > sub["mse"].iloc[0], d  # level 5 is further than level 1
    again, _ = perceptual_stimuli.make_kadid_style(refs, names, torch.Generator().manual_seed(0))
    assert torch.equal(imgs, again)
    with pytest.raises(ValueError, match="unknown KADID-style"):
        perceptual_stimuli.make_kadid_style(refs, names, torch.Generator(), distortions=["vignette"])


def test_raid_style_levels() -> None:
    refs, names = perceptual_stimuli.demo_references(48, perceptual_stimuli.DEMO_IMAGES[:1])
    imgs, table = perceptual_stimuli.make_raid_style(refs, names, torch.Generator().manual_seed(0))
    assert len(table) == 40
    anchors = imgs[torch.tensor(table.index[table["level"] == 1].to_numpy())]
    for a in anchors:
        torch.testing.assert_close(a, refs[0])  # level 1 leaves the image unchanged
    err = ((imgs - refs[0]) ** 2).mean((1, 2, 3)).numpy()
    table["err"] = err
    for t, sub in table.groupby("transform"):
        assert sub["err"].iloc[9] > sub["err"].iloc[1] > 0, t
    with pytest.raises(ValueError, match="1 \\(anchor\\) to 10"):
        perceptual_stimuli.raid_transform(refs, "rot", 11)


def test_raid_approx_joins_real_responses(shared_data) -> None:
    if not (shared_data / "kodak").is_dir():
        pytest.skip("kodak images absent")
    refs, stimuli, table = perceptual_stimuli.raid_approx_table(shared_data / "raid" / "responses.csv", shared_data / "kodak", 32,
                                                 torch.Generator().manual_seed(0), images=(1, 2))
    assert refs.shape == (2, 3, 32, 32) and stimuli.shape == (2 * 4 * 9, 3, 32, 32)
    assert table["response"].notna().all() and (table["level"] > 1).all()
    batches = list(images.tensor_pair_batches(refs, stimuli, table, batch_size=20))
    assert sum(len(a) for a, _ in batches) == len(table)


def test_truncated_image_is_named_when_the_table_is_loaded(standins, tmp_path) -> None:
    import shutil

    broken = tmp_path / "kadid"
    shutil.copytree(standins["kadid"], broken)
    victim = broken / "images" / "I03_04_05.png"
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])  # truncated, as a broken download leaves it
    iqa.load_kadid10k(broken)  # listing alone does not decode
    with pytest.raises(ValueError, match=r"I03_04_05\.png.*cannot be decoded.*Re-extract"):
        iqa.load_kadid10k(broken, decode=True)
    good = iqa.load_kadid10k(standins["kadid"], decode=True)
    assert good["dist_hash"].notna().all()
    assert list(iqa.find_identical_pairs(good)["dist"]) == ["I01_01_01.png"]


def test_empty_folder_parameters_name_the_parameter() -> None:
    with pytest.raises(ValueError, match="Set the notebook parameter TID2013_DIR"):
        iqa.load_tid("", "2013")
    with pytest.raises(ValueError, match="Set the notebook parameter TID2008_DIR"):
        iqa.load_tid("  ", "2008")
    with pytest.raises(ValueError, match="Set the notebook parameter RAID_DIR"):
        iqa.load_raid("")
    with pytest.raises(ValueError, match="Set the notebook parameter KADID_DIR"):
        iqa.load_kadid10k("")


def test_raid_responses_without_response_name_the_column(standins, tmp_path) -> None:
    raw = pd.read_csv(standins["raid"] / "responses.csv").drop(columns=["Response"])
    path = tmp_path / "responses.csv"
    raw.to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"\['Response'\] missing"):
        iqa.read_raid_responses(path)


def test_native_size_crops_to_multiples_of_32(tmp_path) -> None:
    img = torch.rand(3, 454, 454)
    crop = images.center_crop_multiple(img)
    assert crop.shape == (3, 448, 448) and torch.equal(crop, img[:, 3:451, 3:451])
    frame = torch.rand(3, 384, 512)
    assert torch.equal(images.center_crop_multiple(frame), frame)  # KADID/TID frames pass unchanged
    images.save_image(frame, tmp_path / "a.png")
    assert images.read_for_metrics(tmp_path / "a.png", 0).shape == (3, 384, 512)
    assert images.read_for_metrics(tmp_path / "a.png", 64).shape == (3, 64, 64)


def test_first_pairs_per_ref_and_raid_source(standins, tmp_path) -> None:
    table = iqa.load_kadid10k(standins["kadid"])
    first = iqa.first_pairs_per_ref(table, 2)
    assert len(first) == 3 * 2 and first.groupby("ref").size().eq(2).all() and first.attrs == table.attrs
    assert iqa.first_pairs_per_ref(table, 0) is table
    raid = iqa.first_pairs_per_ref(iqa.load_raid(standins["raid"], include_anchors=True), 3, by=("ref", "transform"))
    assert len(raid) == 3 * 4 * 3 and set(raid["level"]) == {1, 2, 3}
    # a source is checked, never swapped for another: missing data names the folder, the files and the fix
    assert iqa.require_raid_source("embedded", "", tmp_path, tmp_path / "none.csv") == "embedded"
    assert iqa.require_raid_source("raid", standins["raid"], "", "") == "raid"
    with pytest.raises(FileNotFoundError, match=r"kodim01\.png.*none\.csv.*RAID_SOURCE=embedded"):
        iqa.require_raid_source("raid-approx", "", tmp_path, tmp_path / "none.csv")
    with pytest.raises(ValueError, match="RAID_DIR"):
        iqa.require_raid_source("raid", "", "", "")
    with pytest.raises(ValueError, match="RAID_SOURCE"):
        iqa.require_raid_source("kodak", "", "", "")


def test_raid_anchor_is_the_reference_and_draws_no_noise() -> None:
    x = torch.rand(2, 3, 32, 32)
    for t in iqa.RAID_TRANSFORMS:
        g = torch.Generator().manual_seed(0)
        assert torch.equal(perceptual_stimuli.raid_transform(x, t, 1, g), x)
        assert torch.equal(torch.rand(1, generator=g), torch.rand(1, generator=torch.Generator().manual_seed(0)))

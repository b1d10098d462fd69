"""The authors' result files: shift keys against translation.translate, the safe pickle reader, TF resize of ImageNet."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from shiftinv.shifts import geometric, sweep, translation  # sweep: the engine's function
from shiftinv.study import analysis, authors


def _mosaic_nhwc(x: np.ndarray) -> np.ndarray:
    """The authors' crear_mosaico: tf.pad(mode="SYMMETRIC") by the image size on every side (NHWC)."""
    h, w = x.shape[1:3]
    return np.pad(x, ((0, 0), (h, h), (w, w), (0, 0)), mode="symmetric")


def _trasladar2(mosaic: np.ndarray, size: int, desp_h: int, desp_v: int) -> np.ndarray:
    """Their window X[:, 256+desp_h : 512+desp_h, 256+desp_v : 512+desp_v] (offset = size for a 3x3 mosaic)."""
    return mosaic[:, size + desp_h:2 * size + desp_h, size + desp_v:2 * size + desp_v, :]


@pytest.mark.parametrize("key", [(0, 0), (3, 0), (0, 5), (-7, 2), (50, -50), (-16, -31)])
def test_authors_key_round_trips_against_translate(key: tuple[int, int]) -> None:
    size = 64
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    theirs = _trasladar2(_mosaic_nhwc(x.permute(0, 2, 3, 1).numpy()), size, *key)  # (N, H, W, C)
    dx, dy = authors.to_workbook_shift(*key)
    ours = translation.translate(x, dx, dy, "mosaic").permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(ours, theirs)
    assert authors.to_authors_key(dx, dy) == key
    if (dx, dy) != key:  # the naive reading (dx, dy) = key is wrong
        assert not np.array_equal(translation.translate(x, *key, "mosaic").permute(0, 2, 3, 1).numpy(), theirs)


def _trasladar_mnist(data: np.ndarray, size: tuple[int, int], desp_h: int, desp_v: int) -> np.ndarray:
    """The authors' MNIST helper (utils.trasladar_MNIST), re-implemented: the digit pasted at rows
    c + desp_v, columns c + desp_h of a zero canvas (N, H, W, 1)."""
    big = np.zeros((data.shape[0], *size, 1))
    x, y = data.shape[1:3]
    big[:, size[0] // 2 - x // 2 + desp_v:size[0] // 2 - x // 2 + x + desp_v,
        size[1] // 2 - y // 2 + desp_h:size[1] // 2 - y // 2 + y + desp_h] = data
    return big


@pytest.mark.parametrize("key", [(0, 0), (3, 0), (0, 5), (-7, 2), (9, -11)])
def test_mnist_key_is_the_workbook_shift_against_their_helper(key: tuple[int, int]) -> None:
    """Their MNIST files key (desp_h, desp_v) = (dx, dy): the content moves right / down, unlike their
    ImageNet keys (-dy, -dx)."""
    rng = np.random.default_rng(0)
    digits = rng.random((2, 8, 8, 1))
    theirs = _trasladar_mnist(digits, (32, 32), *key)
    centred = torch.from_numpy(_trasladar_mnist(digits, (32, 32), 0, 0)).permute(0, 3, 1, 2)
    dx, dy = authors.to_workbook_shift(*key, convention="mnist")
    ours = translation.translate(centred, dx, dy, "zero").permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(ours, theirs)
    assert authors.to_authors_key(dx, dy, convention="mnist") == key
    if key[0] != key[1] or key[0] != 0:  # the ImageNet reading of an MNIST key moves the digit elsewhere
        wrong = authors.to_workbook_shift(*key, convention="imagenet")
        assert not np.array_equal(translation.translate(centred, *wrong, "zero").permute(0, 2, 3, 1).numpy(), theirs)


def test_the_convention_comes_from_the_file_name_or_is_asked_for(tmp_path: Path) -> None:
    res = {(2, 0): {"loss": 1.0, "accuracy": 0.5}, (0, 0): {"loss": 0.5, "accuracy": 0.9}}
    for name in ("met_VGG16GAP_128.pkl", "met_VGGGAP_IMA.pkl", "results.pkl"):
        with open(tmp_path / name, "wb") as f:
            pickle.dump(res, f)
    mnist = authors.read_results(tmp_path / "met_VGG16GAP_128.pkl")
    imagenet = authors.read_results(tmp_path / "met_VGGGAP_IMA.pkl")
    assert set(zip(mnist.dx, mnist.dy)) == {(2, 0), (0, 0)} and set(zip(imagenet.dx, imagenet.dy)) == {(0, -2), (0, 0)}
    with pytest.raises(ValueError, match="convention='imagenet' or convention='mnist'"):
        authors.read_results(tmp_path / "results.pkl")
    assert set(authors.read_results(tmp_path / "results.pkl", convention="mnist").dx) == {2, 0}
    with pytest.raises(ValueError, match="unknown shift convention"):
        authors.to_workbook_shift(1, 2, convention="keras")


def _translation_results(radius: int = 2) -> dict:
    rng = np.random.default_rng(0)
    return {(h, v): {"loss": float(rng.random() + 1), "accuracy": float(rng.random())}
            for h in range(-radius, radius + 1) for v in range(-radius, radius + 1)}


def test_read_translation_pickle_matches_shift_frame(tmp_path: Path) -> None:
    res = _translation_results()
    path = tmp_path / "met_VGGGAP_IMA.pkl"
    with open(path, "wb") as f:
        pickle.dump(res, f)
    frame = authors.read_results(path)
    # same columns as the workbook's own per-shift table
    images = torch.rand(2, 3, 8, 8)
    head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 64, 4))
    own = analysis.shift_frame(sweep(head, None, images, torch.tensor([0, 1]), translation.shift_grid(1),
                                           device="cpu", progress=False))
    assert list(frame.columns) == list(own.columns)
    assert len(frame) == 25 and set(frame["head"]) == {"met_VGGGAP_IMA"}
    for (h, v), m in res.items():
        row = frame[(frame.dx == -v) & (frame.dy == -h)]
        assert len(row) == 1
        assert row["loss"].iloc[0] == m["loss"] and row["accuracy"].iloc[0] == m["accuracy"]
    assert frame["p_true"].isna().all()


def test_read_rotation_and_scale_pickles_with_numpy_values(tmp_path: Path) -> None:
    rot = {int(a): {"loss": np.float32(0.5 + a / 10), "accuracy": np.float64(1 - a / 40)} for a in np.arange(0, 21)}
    esc = {s: {"loss": np.float64(s), "accuracy": np.array(0.5), "compile_metrics": 1.0}
           for s in geometric.PAPER_SCALES}
    for name, obj in (("met_VGG_rot.pkl", rot), ("met_VGG_esc.pkl", esc)):
        with open(tmp_path / name, "wb") as f:
            pickle.dump(obj, f)
    r = authors.read_results(tmp_path / "met_VGG_rot.pkl", head="authors/flatten", n=8000)
    assert list(r.columns) == ["kind", "value", "head", "accuracy", "loss", "n"]
    assert r["kind"].eq("rotation").all() and r["value"].tolist() == list(range(21))
    assert r["loss"].iloc[20] == pytest.approx(2.5) and r["n"].eq(8000).all()
    s = authors.read_results(tmp_path / "met_VGG_esc.pkl")
    assert s["kind"].eq("scale").all() and tuple(s["value"]) == geometric.PAPER_SCALES
    assert s["accuracy"].eq(0.5).all()
    with pytest.raises(ValueError, match="angles or scale factors"):
        (tmp_path / "x.pkl").write_bytes(pickle.dumps(rot))
        authors.read_results(tmp_path / "x.pkl")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_malicious_pickle_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "met_evil.pkl"
    path.write_bytes(pickle.dumps({(0, 0): {"loss": _Evil(), "accuracy": 1.0}}))
    with pytest.raises(authors.UnsafePickleError, match=r"refusing to load .*system"):
        authors.read_results(path)
    with pytest.raises(authors.UnsafePickleError, match="refusing"):
        authors.safe_load_pickle(pickle.dumps(torch.nn.Linear(1, 1)))


def test_bad_result_files_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        authors.read_results(tmp_path / "missing.pkl")
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle at all")
    with pytest.raises(ValueError, match="not a readable pickle"):
        authors.read_results(tmp_path / "junk.pkl")
    (tmp_path / "bad.pkl").write_bytes(pickle.dumps({(0, 0): {"acc": 1.0}}))
    with pytest.raises(ValueError, match="'loss' and 'accuracy'"):
        authors.read_results(tmp_path / "bad.pkl", convention="imagenet")


def test_imagenet_tf_resize_has_no_antialiasing(tmp_path: Path) -> None:
    from PIL import Image

    from shiftinv.study import datasets

    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (100, 140, 3), dtype=np.uint8)
    im = Image.fromarray(arr)
    tf_x = datasets.resize_transform(32, "tf")(im)
    ref = geometric.tf_resize(torch.from_numpy(arr).permute(2, 0, 1)[None].double() / 255, (32, 32))[0]
    torch.testing.assert_close(tf_x.double(), ref, atol=1e-6, rtol=0)
    aa_x = datasets.resize_transform(32, "antialias")(im)
    assert tf_x.shape == aa_x.shape == (3, 32, 32)
    assert (tf_x - aa_x).abs().mean() > 0.02  # antialiasing smooths the noise, the TF rule does not
    with pytest.raises(ValueError, match="unknown resize rule"):
        datasets.resize_transform(32, "nearest")

"""shiftinv.workbook.imageio: every bad image file gives one error naming it; a folder keeps its good files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import damage
from shiftinv.workbook import imageio


def test_read_image_matches_pil(tmp_path):
    path = damage.photo(tmp_path / "a.png", (20, 30))
    img = imageio.read_image(path)
    assert img.shape == (3, 20, 30) and img.dtype == torch.float32
    expected = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255
    assert torch.equal(img, torch.from_numpy(expected).permute(2, 0, 1))


@pytest.mark.parametrize("make, cause", [
    (lambda p: damage.truncated_image(p / "t.jpg"), "truncated"),
    (lambda p: damage.truncated_image(p / "t.png"), "truncated"),
    (lambda p: damage.random_bytes(p / "r.jpg"), "not an image"),
    (lambda p: damage.random_bytes(p / "e.jpg", n=0), "not an image"),
    (lambda p: damage.bomb_png(p / "b.png", 20000), "decompression bomb"),
    (lambda p: damage.bomb_png(p / "w.png", 10000), "decompression bomb"),  # PIL only warns: an error here
])
def test_bad_file_is_named(tmp_path, make, cause):
    path = make(tmp_path)
    with pytest.raises(imageio.ImageReadError) as info:
        imageio.read_image(path)
    text = str(info.value)
    assert f"'{path}'" in text and cause in text and "good copy" in text
    assert isinstance(info.value, ValueError) and info.value.path == path


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.png"):
        imageio.read_image(tmp_path / "nothere.png")


def test_read_folder_keeps_good_files_and_lists_bad(tmp_path):
    (tmp_path / "cat").mkdir()
    (tmp_path / "dog").mkdir()
    damage.photo(tmp_path / "cat" / "1.png", (8, 8))
    damage.photo(tmp_path / "dog" / "2.JPG", (8, 12))
    bad1 = damage.truncated_image(tmp_path / "cat" / "3.jpg")
    bad2 = damage.random_bytes(tmp_path / "dog" / "4.png")
    (tmp_path / "notes.txt").write_text("not an image, ignored")
    images, names, bad = imageio.read_folder(tmp_path)
    assert names == ["cat/1.png", "dog/2.JPG"]
    assert [tuple(i.shape) for i in images] == [(3, 8, 8), (3, 8, 12)]
    assert [p for p, _ in bad] == [bad1, bad2]
    message = imageio.bad_files_message(bad, "test")
    assert "2 test file(s)" in message and str(bad1) in message and str(bad2) in message


def test_read_folder_transform_and_bad_folder(tmp_path):
    damage.photo(tmp_path / "a.png", (8, 16))
    images, names, bad = imageio.read_folder(tmp_path, transform=lambda im: torch.tensor(im.size))
    assert names == ["a.png"] and images[0].tolist() == [16, 8] and bad == []
    with pytest.raises(NotADirectoryError, match="a.png"):
        imageio.read_folder(tmp_path / "a.png")
    with pytest.raises(FileNotFoundError, match="missing"):
        imageio.read_folder(tmp_path / "missing")

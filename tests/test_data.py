"""Datasets: digits canvas, ImageNet-160 list and loader, CIFAR-10/ImageFolder, MNIST, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from shiftinv.study import datasets, digits


def test_digits_canvas_centres_digits_on_zero_canvas() -> None:
    splits = digits.digits_canvas(canvas=64, digit_size=16, seed=0)
    assert splits.num_classes == 10 and splits.background == "zero"
    sizes = splits.sizes()
    assert sum(sizes.values()) == 1797
    x = splits.train.images  # type: ignore[attr-defined]
    assert x.dtype == torch.uint8 and x.shape[1:] == (1, 64, 64)
    inside = torch.zeros(64, 64, dtype=torch.bool)
    inside[24:40, 24:40] = True
    assert int(x[:, :, ~inside].max()) == 0  # nothing outside the centred 16 px box
    assert int(x[:, :, inside].max()) == 255
    # deterministic and stratified
    again = digits.digits_canvas(canvas=64, digit_size=16, seed=0)
    assert torch.equal(again.test.labels, splits.test.labels)  # type: ignore[attr-defined]
    counts = torch.bincount(splits.val.labels, minlength=10)  # type: ignore[attr-defined]
    assert int(counts.min()) >= 25
    other = digits.digits_canvas(canvas=64, digit_size=16, seed=1)
    assert not torch.equal(other.test.images, splits.test.images)  # type: ignore[attr-defined]


def test_split_indices_are_disjoint_and_cover_everything() -> None:
    labels = np.repeat(np.arange(4), 25)
    parts = datasets.stratified_split(labels, (0.6, 0.2, 0.2), seed=0)
    joined = np.concatenate(parts)
    assert len(joined) == 100 and len(np.unique(joined)) == 100
    assert [len(p) for p in parts] == [60, 20, 20]
    with pytest.raises(ValueError, match="sum to 1"):
        datasets.stratified_split(labels, (0.5, 0.2), seed=0)


def test_tensor_images_batches_are_float_rgb_and_resized() -> None:
    imgs = datasets.TensorImages(torch.full((5, 1, 8, 8), 255, dtype=torch.uint8), torch.arange(5), size=16)
    x, y = imgs.batch(torch.tensor([0, 3]))
    assert x.shape == (2, 3, 16, 16) and x.dtype == torch.float32
    assert torch.allclose(x, torch.ones_like(x)) and y.tolist() == [0, 3]
    with pytest.raises(ValueError, match="labels"):
        datasets.TensorImages(torch.zeros(3, 1, 4, 4), torch.zeros(2))
    sub = datasets.take(imgs, 3, seed=0)
    assert len(sub) == 3 and isinstance(sub, datasets.TensorImages)


def test_imagenet160_list_follows_the_published_rule() -> None:
    classes = datasets.imagenet160_classes()
    wnids = [w for w, _ in classes]
    assert len(wnids) == 160 == len(set(wnids))
    assert wnids == sorted(wnids)
    assert classes[0] == ("n01440764", "tench")  # index 0 of the sorted 1000
    assert all(w.startswith("n") and len(w) == 9 for w in wnids)


def _write_images(folder: Path, n: int, size: int = 20, seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size + 5, 3), dtype=np.uint8)).save(folder / f"img{i}.JPEG")


def test_imagenet160_reads_a_standin_folder(tmp_path: Path) -> None:
    wnids = [w for w, _ in datasets.imagenet160_classes()]
    chosen = [wnids[0], wnids[7], wnids[100]]
    for split, n in (("train", 6), ("val", 2)):
        for w in chosen:
            _write_images(tmp_path / split / w, n)
    (tmp_path / "train" / "n99999999").mkdir()  # a class outside the list is ignored
    _write_images(tmp_path / "train" / "n99999999", 2)
    with pytest.raises(FileNotFoundError, match="157 of the 160"):
        datasets.imagenet160(tmp_path)
    with pytest.warns(UserWarning, match="157 of the 160"):
        splits = datasets.imagenet160(tmp_path, image_size=32, val_fraction=0.34, allow_missing=True)
    assert splits.num_classes == 160
    assert len(splits.train) + len(splits.val) == 18 and len(splits.test) == 6
    x, y = splits.test[0]
    assert x.shape == (3, 32, 32) and 0 <= float(x.min()) and float(x.max()) <= 1
    labels = sorted({int(splits.test[i][1]) for i in range(6)})
    assert labels == [0, 7, 100]  # labels are rows of imagenet160.txt
    images, targets = datasets.as_tensors(splits.val)
    assert images.shape[1:] == (3, 32, 32) and len(targets) == len(splits.val)


def test_missing_folders_say_where_to_get_the_data(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="image-net.org") as info:
        datasets.imagenet160(tmp_path / "nowhere")
    assert "nowhere" in str(info.value)
    with pytest.raises(FileNotFoundError, match="cifar"):
        datasets.cifar10(tmp_path / "nocifar")
    with pytest.raises(FileNotFoundError, match="MNIST test split not found"):
        digits.mnist_canvas(tmp_path / "nomnist")
    with pytest.raises(FileNotFoundError, match="image folder"):
        datasets.image_folder(tmp_path / "nofolder")


def test_cifar10_from_an_image_folder_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIFTINV_RESULTS", str(tmp_path / "results"))
    for split, n in (("train", 10), ("test", 3)):
        for cls in ("cat", "dog"):
            _write_images(tmp_path / "cifar" / split / cls, n, size=32)
    splits = datasets.cifar10(tmp_path / "cifar", image_size=64, val_fraction=0.2)
    assert splits.sizes() == {"train": 16, "val": 4, "test": 6}
    assert splits.classes == ["cat", "dog"]
    x, _ = splits.train.batch(torch.arange(2))  # type: ignore[attr-defined]
    assert x.shape == (2, 3, 64, 64)
    folder = datasets.image_folder(tmp_path / "cifar" / "test", image_size=48)
    assert folder[0][0].shape == (3, 48, 48)


def test_mnist_canvas_on_the_real_test_split(shared_data: Path) -> None:
    if not (shared_data / "mnist" / "MNIST" / "raw").is_dir():
        pytest.skip("no MNIST copy under the shared data folder")
    mnist = digits.mnist_canvas(shared_data / "mnist", canvas=56, digit_size=28)
    assert len(mnist) == 10000 and mnist.images.shape[1:] == (1, 56, 56)
    assert int(mnist.images[:, :, :14].max()) == 0  # the zero border above the digit
    assert set(mnist.labels.unique().tolist()) == set(range(10))


def test_shifted_copies_are_seeded_translations() -> None:
    splits = digits.digits_canvas(canvas=48, digit_size=12, seed=0)
    small = datasets.take(splits.train, 5, seed=0)
    pool = datasets.shifted_copies(small, copies=3, max_shift=6, mode="zero", seed=1)  # type: ignore[arg-type]
    assert len(pool) == 15 and pool.images.dtype == torch.uint8
    assert torch.equal(pool.labels, small.labels.repeat(3))  # type: ignore[attr-defined]
    again = datasets.shifted_copies(small, copies=3, max_shift=6, mode="zero", seed=1)  # type: ignore[arg-type]
    assert torch.equal(pool.images, again.images)
    # each copy is the original digit moved: same ink, different place (for most images)
    ink = pool.images.float().sum(dim=(1, 2, 3)).view(3, 5)
    torch.testing.assert_close(ink, small.images.float().sum(dim=(1, 2, 3)).expand(3, 5))  # type: ignore[attr-defined]
    assert not torch.equal(pool.images[:5], small.images)  # type: ignore[attr-defined]

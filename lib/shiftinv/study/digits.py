"""Digits on a canvas: scikit-learn's 8x8 digits (the embedded demo) and MNIST digits centred on a zero canvas
(the authors' MNIST-canvas experiment), with train / validation / test splits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..workbook import paths
from .datasets import Splits, TensorImages, stratified_split


def _paste_centre(small: Tensor, canvas: int) -> Tensor:
    """Paste (N, 1, s, s) images at the centre of a zero (N, 1, canvas, canvas) canvas."""
    n, c, s, _ = small.shape
    if s > canvas:
        raise ValueError(f"digit size {s} px does not fit in a {canvas} px canvas")
    out = torch.zeros(n, c, canvas, canvas, dtype=small.dtype)
    top = (canvas - s) // 2
    out[:, :, top : top + s, top : top + s] = small
    return out


def digits_canvas(
    canvas: int = 128,
    digit_size: int = 24,
    fractions: tuple[float, float, float] = (0.6, 0.15, 0.25),
    seed: int = 0,
) -> Splits:
    """scikit-learn's handwritten digits (1,797 images of 8x8) on a zero canvas.

    Each digit is upscaled to ``digit_size`` px (bilinear) and pasted at the centre of a
    ``canvas`` x ``canvas`` zero image; splits are stratified and seeded (train/val/test
    ``fractions``). Images are stored as uint8 (N, 1, canvas, canvas).
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0)[:, None]  # (1797, 1, 8, 8) in [0, 1]
    x = F.interpolate(x, size=(digit_size, digit_size), mode="bilinear", align_corners=False).clamp(0, 1)
    x = (_paste_centre(x, canvas) * 255.0).round().to(torch.uint8)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    parts = stratified_split(bunch.target, fractions, seed)
    train, val, test = (TensorImages(x[torch.from_numpy(p)], y[torch.from_numpy(p)]) for p in parts)
    return Splits(
        name="digits_canvas",
        train=train,
        val=val,
        test=test,
        classes=[str(d) for d in range(10)],
        image_size=canvas,
        background="zero",
        info={"canvas": canvas, "digit_size": digit_size, "seed": seed},
    )


MNIST_HELP = (
    "MNIST: torchvision downloads it (https://yann.lecun.com/exdb/mnist/ mirrors) on a machine with internet; "
    "or point the notebook parameter MNIST_DIR (data_root) at a folder holding MNIST/raw/*-idx*-ubyte(.gz)."
)


def read_mnist(root: Path | str | None = None, train: bool = False, download: bool = False) -> tuple[Tensor, Tensor]:
    """One MNIST split: uint8 digits (N, 28, 28) and labels (N,) int64.

    ``root`` is torchvision's MNIST root (holding ``MNIST/raw``); default ``$SHIFTINV_DATA/mnist``.
    The official idx files are read directly (plain or .gz), so one split suffices;
    ``download=True`` fetches them with torchvision (needs internet).
    """
    from torchvision.datasets import MNIST
    from torchvision.datasets.mnist import read_image_file, read_label_file

    root = Path(root).expanduser() if root else paths.data_dir() / "mnist"
    if download:
        ds = MNIST(str(root), train=train, download=True)
        return ds.data, ds.targets.long()
    prefix = "train" if train else "t10k"
    raw = root / "MNIST" / "raw"
    files = []
    for kind in ("images-idx3", "labels-idx1"):
        found = [f for f in (raw / f"{prefix}-{kind}-ubyte{ext}" for ext in ("", ".gz")) if f.is_file()]
        if not found:
            split = "train" if train else "test"
            raise FileNotFoundError(f"MNIST {split} split not found: no '{prefix}-{kind}-ubyte(.gz)' in '{raw}'. "
                                    "Pass download=True on a machine with internet. " + MNIST_HELP)
        if found[0].suffix == ".gz":  # torchvision's reader wants the plain file: unpack once
            import gzip

            from ..workbook.cache import atomic_write_bytes

            plain = paths.results_dir() / "mnist_raw" / found[0].stem
            packed = found[0].read_bytes()
            size = int.from_bytes(packed[-4:], "little")  # gzip's trailer: the unpacked size (mod 2**32)
            if not plain.is_file() or plain.stat().st_size % 2**32 != size:  # absent, or cut short: unpack again
                atomic_write_bytes(plain, gzip.decompress(packed))
            found[0] = plain
        files.append(str(found[0]))
    return read_image_file(files[0]), read_label_file(files[1]).long()


def _digits_on_canvas(digits: Tensor, canvas: int, digit_size: int = 28) -> Tensor:
    """uint8 digits (N, 28, 28) -> uint8 (N, 1, canvas, canvas), resized to ``digit_size`` and centred on zeros."""
    x = digits[:, None].float() / 255.0  # (N, 1, 28, 28)
    if digit_size != x.shape[-1]:
        x = F.interpolate(x, size=(digit_size, digit_size), mode="bilinear", align_corners=False).clamp(0, 1)
    return (_paste_centre(x, canvas) * 255.0).round().to(torch.uint8)


def mnist_canvas(
    root: Path | str | None = None,
    canvas: int = 128,
    digit_size: int = 28,
    train: bool = False,
    download: bool = False,
) -> TensorImages:
    """MNIST digits (28x28, resized to ``digit_size``) at the centre of a zero canvas (see :func:`read_mnist`)."""
    images, labels = read_mnist(root, train, download)
    return TensorImages(_digits_on_canvas(images, canvas, digit_size), labels)


def mnist_splits(
    root: Path | str | None = None,
    canvas: int = 128,
    sizes: tuple[int | None, int | None, int | None] = (None, None, None),
    seed: int = 0,
    download: bool = False,
) -> Splits:
    """The authors' MNIST-canvas experiment: 28 px digits at the centre of a zero ``canvas``.

    With MNIST's training split at hand (``root``, or ``download=True``), train / validation come from
    it (5:1, stratified) and test from the test split. When only the test split exists (as in
    ``$SHIFTINV_DATA/mnist``), it is split deterministically into train / validation / test
    (0.6 / 0.15 / 0.25, stratified, seeded); ``info["source"]`` says which. ``sizes`` caps each split
    (seeded subsets, taken before the canvas is built, so memory follows the caps).
    """
    try:
        tr_x, tr_y = read_mnist(root, train=True, download=download)
        te_x, te_y = read_mnist(root, train=False, download=download)
        tr, va = stratified_split(tr_y.numpy(), (5 / 6, 1 / 6), seed)
        parts = [(tr_x, tr_y, tr), (tr_x, tr_y, va), (te_x, te_y, np.arange(len(te_y)))]
        source = "MNIST train split -> train/val (5:1), test split -> test"
    except FileNotFoundError:
        te_x, te_y = read_mnist(root, train=False, download=False)
        parts = [(te_x, te_y, p) for p in stratified_split(te_y.numpy(), (0.6, 0.15, 0.25), seed)]
        source = "MNIST test split only, divided 0.6/0.15/0.25 (stratified, seeded) into train/val/test"
    made = []
    for (x, y, idx), cap, s in zip(parts, sizes, (seed, seed + 1, seed + 2)):
        if cap is not None and cap < len(idx):
            idx = np.sort(np.random.default_rng(s).permutation(idx)[:cap])
        t = torch.from_numpy(np.asarray(idx))
        made.append(TensorImages(_digits_on_canvas(x[t], canvas), y[t]))
    return Splits(name="mnist_canvas", train=made[0], val=made[1], test=made[2],
                  classes=[str(d) for d in range(10)], image_size=canvas, background="zero",
                  info={"canvas": canvas, "digit_size": 28, "seed": seed, "source": source,
                        "caps": list(sizes)})

"""Datasets for the classification experiments, each with train / validation / test splits.

- digits on a canvas (the embedded default and the authors' MNIST-canvas experiment) are in
  :mod:`shiftinv.study.digits`;
- :func:`cifar10`        CIFAR-10 (torchvision's python archive, or an ImageFolder copy).
- :func:`image_folder`   any ``<root>/<class>/<image>`` tree.
- :func:`imagenet160`    the paper's 160-class ImageNet subset (list in ``imagenet160.txt``)
  from a user-given ImageNet folder (``train/<wnid>/*.JPEG`` and ``val/<wnid>/*.JPEG``), resized
  to 256x256 without cropping, as in the paper (by default as the authors' ``tf.image.resize``:
  bilinear without antialiasing; ``resize="antialias"`` keeps the workbook's earlier rule).

Small datasets live in memory as :class:`TensorImages` (uint8, converted to float in [0, 1]
per batch); ImageNet stays on disk as a torchvision ``ImageFolder``. Every split is
deterministic (seeded), and a missing folder raises an error naming it and where to get the data.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset, Subset

from ..shifts.geometric import RESIZE_RULES
from ..workbook import imageio, paths


@dataclass
class TensorImages(Dataset):
    """Images held in memory.

    Attributes:
        images: (N, C, H, W), uint8 in [0, 255] or float in [0, 1]; C is 1 or 3.
        labels: (N,) int64 class indices.
        size: output side in pixels; images are resized (bilinear) per batch when it
            differs from H (e.g. CIFAR-10 upscaled from 32 px). ``None`` keeps H.
    Items and batches are float32 (3, size, size) in [0, 1] (grey images repeated to RGB).
    """

    images: Tensor
    labels: Tensor
    size: int | None = None

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[1] not in (1, 3):
            raise ValueError(f"images must be (N, 1 or 3, H, W), got {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"labels must be ({self.images.shape[0]},), got {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        x, y = self.batch(torch.tensor([index]))
        return x[0], int(y[0])

    def batch(self, index: Tensor) -> tuple[Tensor, Tensor]:
        """Images (B, 3, S, S) float32 in [0, 1] and labels (B,) for the given indices (B,)."""
        x = self.images[index]
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.size is not None and self.size != x.shape[-1]:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
            x = x.clamp(0.0, 1.0)
        return x.contiguous(), self.labels[index]


@dataclass
class Splits:
    """Train / validation / test splits of one dataset.

    ``background`` says how the images should be extended when shifted: ``"zero"`` for digits on
    a zero canvas, ``"mirror"`` for natural images (the paper's mirror mosaic).
    """

    name: str
    train: Dataset
    val: Dataset
    test: Dataset
    classes: list[str]
    image_size: int
    background: str = "mirror"
    info: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}  # type: ignore[arg-type]


def stratified_split(labels: np.ndarray, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Split indices into groups of the given fractions (summing to 1), per class, seeded.

    Returns one sorted index array per fraction; every class is split in the same proportions.
    """
    if not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must sum to 1, got {list(fractions)}")
    rng = np.random.default_rng(seed)
    groups: list[list[np.ndarray]] = [[] for _ in fractions]
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        idx = idx[rng.permutation(len(idx))]
        bounds = np.round(np.cumsum([0.0, *fractions]) * len(idx)).astype(int)
        for g in range(len(fractions)):
            groups[g].append(idx[bounds[g] : bounds[g + 1]])
    return [np.sort(np.concatenate(g)) for g in groups]


def _load_folder_to_tensor(folder: Path) -> tuple[Tensor, Tensor, list[str]]:
    """Read every image of an ImageFolder tree into uint8 (N, 3, H, W) (all images the same size).

    Files that cannot be decoded are named together at the end (:func:`shiftinv.workbook.imageio.raise_for_bad`).
    """
    from torchvision.transforms.functional import pil_to_tensor

    ds = image_folder_dataset(folder)
    images, bad = [], []
    for path, _ in ds.samples:
        try:
            images.append(pil_to_tensor(imageio.open_rgb(path)))
        except imageio.ImageReadError as err:
            bad.append((Path(path), err.reason))
    imageio.raise_for_bad(bad, f"Replace or remove them in '{folder}'.")
    return torch.stack(images), torch.tensor(ds.targets, dtype=torch.int64), list(ds.classes)


def image_folder_dataset(root: Path | str, transform: Callable | None = None) -> Dataset:
    """A torchvision ``ImageFolder`` over ``<root>/<class>/<image>`` whose loader is
    :func:`shiftinv.workbook.imageio.open_rgb`: a file that cannot be decoded raises an
    :class:`~shiftinv.workbook.imageio.ImageReadError` naming it (not PIL's bare ``OSError``)."""
    from torchvision.datasets import ImageFolder

    return ImageFolder(str(root), transform=transform, loader=imageio.open_rgb)


def image_folder_tensors(folder: Path | str, image_size: int, resize: str = "antialias") -> tuple[Tensor, Tensor]:
    """Every image of an ImageFolder tree resized whole to ``image_size`` squares (:func:`resize_transform`):
    ``(images (N, 3, S, S) float in [0, 1], labels (N,))``. Every file that cannot be decoded is read
    past and all of them are named together at the end in one ``ImageReadError`` (for the sweep
    command's ``--images``)."""
    folder = paths.require_dir(folder, "image folder", "Pass a folder laid out as <root>/<class>/<image files>.")
    ds = image_folder_dataset(folder)
    transform = resize_transform(image_size, resize)
    images, labels, bad = [], [], []
    for path, label in ds.samples:
        try:
            images.append(transform(imageio.open_rgb(path)))
            labels.append(label)
        except imageio.ImageReadError as err:
            bad.append((Path(path), err.reason))
    imageio.raise_for_bad(bad, f"Replace or remove them in '{folder}'.")
    if not images:
        raise FileNotFoundError(f"no image files in the class folders of '{folder}'")
    return torch.stack(images), torch.tensor(labels, dtype=torch.int64)


CIFAR_HELP = (
    "Either download it once with torchvision (163 MB, from https://www.cs.toronto.edu/~kriz/cifar.html):\n"
    "    python -c \"import torchvision; torchvision.datasets.CIFAR10('/data/cifar10', download=True)\"\n"
    "and run with the notebook parameter CIFAR_DIR=/data/cifar10 (make figures PROFILE=cifar "
    "PARAMS=CIFAR_DIR=/data/cifar10), or point it at an ImageFolder copy with train/<class>/*.png|jpg and "
    "test/<class>/*.png|jpg (the one shipped here: $SHIFTINV_DATA/cifar10_jpg)."
)


def cifar10(
    root: Path | str | None = None,
    image_size: int = 32,
    val_fraction: float = 0.1,
    seed: int = 0,
    download: bool = False,
) -> Splits:
    """CIFAR-10 upscaled to ``image_size`` px; validation carved (stratified, seeded) from train.

    ``root`` may hold torchvision's ``cifar-10-batches-py`` or an ImageFolder copy
    (``train/<class>/``, ``test/<class>/``); default ``$SHIFTINV_DATA/cifar10_jpg``.
    The ImageFolder copy is decoded once and cached in ``results/`` as uint8 tensors.
    """
    from ..workbook import cache

    root = Path(root) if root is not None else paths.data_dir() / "cifar10_jpg"
    if (root / "cifar-10-batches-py").is_dir() or download:
        from torchvision.datasets import CIFAR10

        root.mkdir(parents=True, exist_ok=True) if download else None
        parts = []
        for is_train in (True, False):
            ds = CIFAR10(str(root), train=is_train, download=download)
            parts.append((torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(ds.targets)))
        classes = list(ds.classes)
        (xtr, ytr), (xte, yte) = parts
    elif (root / "train").is_dir() and (root / "test").is_dir():

        def load() -> dict:
            xtr, ytr, classes = _load_folder_to_tensor(root / "train")
            xte, yte, _ = _load_folder_to_tensor(root / "test")
            return {"xtr": xtr, "ytr": ytr, "xte": xte, "yte": yte, "classes": classes}

        blob = cache.cached("cifar10_tensors", {"root": str(root.resolve())}, load)
        xtr, ytr, xte, yte, classes = blob["xtr"], blob["ytr"], blob["xte"], blob["yte"], blob["classes"]
    else:
        raise FileNotFoundError(f"CIFAR-10 not found under '{root}'. {CIFAR_HELP}")
    tr, va = stratified_split(ytr.numpy(), (1 - val_fraction, val_fraction), seed)
    tr_t, va_t = torch.from_numpy(tr), torch.from_numpy(va)
    return Splits(
        name="cifar10",
        train=TensorImages(xtr[tr_t], ytr[tr_t].long(), image_size),
        val=TensorImages(xtr[va_t], ytr[va_t].long(), image_size),
        test=TensorImages(xte, yte.long(), image_size),
        classes=classes,
        image_size=image_size,
        background="mirror",
        info={"root": str(root), "seed": seed},
    )


#: Rules for resizing whole images to the network's square input (see :func:`resize_transform`).


def resize_transform(image_size: int, resize: str = "antialias"):
    """PIL image -> (3, image_size, image_size) float in [0, 1], the whole image without cropping.

    ``resize="antialias"``: torchvision ``Resize`` on the PIL image (bilinear, antialiased).
    ``resize="tf"``: as the authors' preprocessing (``decode_jpeg``, ``convert_image_dtype`` to [0, 1],
    then ``tf.image.resize((256, 256))``): bilinear without antialiasing at half-pixel centres
    (:func:`shiftinv.shifts.geometric.tf_resize`). JPEG decoding is PIL's, which may differ from
    TensorFlow's ``decode_jpeg`` in the rounding of some pixels.
    """
    from torchvision import transforms

    if resize not in RESIZE_RULES:
        raise ValueError(f"unknown resize rule {resize!r}; choose one of {RESIZE_RULES}")
    to_rgb = transforms.Lambda(lambda im: im.convert("RGB"))
    if resize == "tf":
        from ..shifts.geometric import tf_resize

        size = (image_size, image_size)
        return transforms.Compose([to_rgb, transforms.ToTensor(),
                                   transforms.Lambda(lambda x: tf_resize(x[None], size)[0].clamp(0, 1))])
    # Resize the whole image to a square without cropping (the paper's preprocessing).
    return transforms.Compose([to_rgb, transforms.Resize((image_size, image_size), antialias=True),
                               transforms.ToTensor()])


def image_folder(root: Path | str, image_size: int = 256) -> Dataset:
    """Any ``<root>/<class>/<image>`` tree, images resized to ``image_size`` squares (float [0, 1])."""
    root = paths.require_dir(root, "image folder", "Pass a folder laid out as <root>/<class>/<image files>.")
    return image_folder_dataset(root, resize_transform(image_size))


def imagenet160_classes() -> list[tuple[str, str]]:
    """The 160 (wnid, name) pairs of the workbook's ImageNet subset, in label order.

    Rule (deterministic, published in ``imagenet160.txt``): sort the 1000 ILSVRC-2012 wnids and keep
    index ``floor(i * 1000 / 160)`` for i = 0..159.
    """
    text = resources.files(__package__).joinpath("imagenet160.txt").read_text()
    rows = [line.split("\t") for line in text.splitlines() if line and not line.startswith("#")]
    return [(r[2], r[3]) for r in rows]


IMAGENET_HELP = (
    "Pass the folder of an ILSVRC-2012 copy (from https://image-net.org/) laid out as train/<wnid>/*.JPEG "
    "and val/<wnid>/*.JPEG (the validation images sorted into class folders, e.g. with the common "
    "valprep.sh script); the notebooks take it as the IMAGENET_DIR parameter."
)


def _restricted_folder(folder: Path, wnids: list[str], image_size: int, resize: str = "antialias") -> Dataset:
    from torchvision.datasets import ImageFolder

    label = {w: i for i, w in enumerate(wnids)}

    class _Subset(ImageFolder):
        def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
            present = [w for w in wnids if (Path(directory) / w).is_dir()]
            return present, {w: label[w] for w in present}

    return _Subset(str(folder), transform=resize_transform(image_size, resize), loader=imageio.open_rgb)


def imagenet160(
    root: Path | str,
    image_size: int = 256,
    val_fraction: float = 0.05,
    seed: int = 666,
    allow_missing: bool = False,
    resize: str = "tf",
) -> Splits:
    """The paper's ImageNet-160 subset from a user-given ImageNet folder.

    Labels are the row numbers of ``imagenet160.txt`` (0..159, always 160 classes). Train and
    validation come from ``train/`` (validation: ``val_fraction`` per class, seeded); the test split
    is ``val/``. Images are resized to ``image_size`` squares without cropping, float in [0, 1],
    by ``resize`` (:data:`RESIZE_RULES`): ``"tf"`` as the authors' ``tf.image.resize`` (bilinear,
    no antialiasing), ``"antialias"`` the workbook's earlier antialiased resize.
    ``allow_missing=True`` accepts a folder with only some of the 160 classes (stand-in data).
    """
    root = paths.require_dir(root, "ImageNet folder", IMAGENET_HELP)
    classes = imagenet160_classes()
    wnids = [w for w, _ in classes]
    for split in ("train", "val"):
        paths.require_dir(root / split, f"ImageNet '{split}' split", IMAGENET_HELP)
        missing = [w for w in wnids if not (root / split / w).is_dir()]
        if missing:
            msg = (
                f"{len(missing)} of the 160 ImageNet-160 classes are missing under '{root / split}' "
                f"(e.g. {missing[:3]}; the list is lib/shiftinv/study/imagenet160.txt)."
            )
            if not allow_missing:
                raise FileNotFoundError(msg + " " + IMAGENET_HELP)
            warnings.warn(msg + " Continuing with the classes present (allow_missing=True).", stacklevel=2)
    if resize not in RESIZE_RULES:
        raise ValueError(f"unknown resize rule {resize!r}; choose one of {RESIZE_RULES}")
    full_train = _restricted_folder(root / "train", wnids, image_size, resize)
    test = _restricted_folder(root / "val", wnids, image_size, resize)
    if len(full_train) == 0 or len(test) == 0:
        raise FileNotFoundError(f"no ImageNet-160 images found under '{root}'. {IMAGENET_HELP}")
    targets = np.asarray(full_train.targets)  # type: ignore[attr-defined]
    tr, va = stratified_split(targets, (1 - val_fraction, val_fraction), seed)
    return Splits(
        name="imagenet160",
        train=Subset(full_train, tr.tolist()),
        val=Subset(full_train, va.tolist()),
        test=test,
        classes=[name for _, name in classes],
        image_size=image_size,
        background="mirror",
        info={"root": str(root), "seed": seed, "resize": resize},
    )


def take(ds: Dataset, n: int | None, seed: int = 0) -> Dataset:
    """A seeded subset of ``n`` items of ``ds`` (all of it when ``n`` is None or >= len)."""
    total = len(ds)  # type: ignore[arg-type]
    if n is None or n >= total:
        return ds
    idx = np.sort(np.random.default_rng(seed).permutation(total)[:n])
    if isinstance(ds, TensorImages):
        t = torch.from_numpy(idx)
        return TensorImages(ds.images[t], ds.labels[t], ds.size)
    return Subset(ds, idx.tolist())


def shifted_copies(ds: TensorImages, copies: int, max_shift: int, mode: str = "zero", seed: int = 0) -> TensorImages:
    """``copies`` randomly shifted versions of every image: a fixed augmentation pool.

    Image ``n`` of copy ``c`` is ``ds`` image ``n`` translated (:func:`shiftinv.shifts.translation.translate`,
    protocol ``mode``) by ``(dx, dy)`` drawn uniformly from ``[-max_shift, max_shift]`` with a
    generator seeded by ``seed``. Returns (copies * N, C, H, W) images of ``ds``'s dtype, copy-major.
    """
    from ..shifts import translation

    if copies < 1 or max_shift < 0:
        raise ValueError(f"copies must be >= 1 and max_shift >= 0, got {copies}, {max_shift}")
    gen = torch.Generator().manual_seed(seed)
    n = len(ds)
    offsets = torch.randint(-max_shift, max_shift + 1, (copies, n, 2), generator=gen)
    out = torch.empty((copies * n, *ds.images.shape[1:]), dtype=ds.images.dtype)
    for c in range(copies):
        for i in range(n):
            x = ds.images[i : i + 1].float()
            y = translation.translate(x, int(offsets[c, i, 0]), int(offsets[c, i, 1]), mode)
            out[c * n + i] = y[0].round().to(ds.images.dtype) if ds.images.dtype == torch.uint8 else y[0]
    return TensorImages(out, ds.labels.repeat(copies), ds.size)


def as_tensors(ds: Dataset, batch_size: int = 64) -> tuple[Tensor, Tensor]:
    """The whole dataset as float images (N, 3, H, W) in [0, 1] and labels (N,) (for small test sets)."""
    if isinstance(ds, TensorImages):
        return ds.batch(torch.arange(len(ds)))
    from torch.utils.data import DataLoader

    xs, ys = [], []
    for x, y in DataLoader(ds, batch_size=batch_size, shuffle=False):
        xs.append(x)
        ys.append(torch.as_tensor(y))
    return torch.cat(xs), torch.cat(ys).long()

"""The images of an audit: a folder, an ImageFolder (class sub-folders) or a folder with a labels file.

Each image becomes a square **source** of ``input + 2 * margin`` px (``margin``: the preset's
radius), from which the crop protocol takes its windows; the other protocols shift the centre
``input``-px view (:meth:`AuditImages.centre`). ``resize="shorter"`` scales the shorter side to the
source size and keeps the centre square (torchvision's ``Resize(256)`` + centre crop for 224 px and
a 16 px margin); ``resize="none"`` keeps native pixels, so an image smaller than the source is
**too small for the shift radius**. A file that cannot be used is reported in ``bad`` with the
reason, and the others are kept (:func:`shiftinv.workbook.imageio.read_folder`).
With labels the accuracy-based measures are computed; without, every measure is label-free.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ..workbook import imageio

#: How images become sources: scale the shorter side (``shorter``) or keep native pixels (``none``).
RESIZES: tuple[str, ...] = ("shorter", "none")


#: Images whose shorter side is below this are refused even with ``resize="shorter"`` (px).
MIN_SIDE = 16


@dataclass
class AuditImages:
    """Sources of the audited images.

    Attributes:
        sources: (N, 3, S, S) float in [0, 1], ``S = input + 2 * margin``.
        names: file names (or ``image_<n>``), N.
        margin: px around the centre view on each side.
        labels: (N,) int64 class indices into the model's outputs, or ``None`` (label-free).
        classes: class names by index when known (ImageFolder sub-folders), else ``[]``.
        bad: ``(file, reason)`` of every file left out.
        origin: how the sources were made, in words (the report's protocol block).
    """

    sources: Tensor
    names: list[str]
    margin: int
    labels: Tensor | None = None
    classes: list[str] = field(default_factory=list)
    bad: list[tuple[str, str]] = field(default_factory=list)
    origin: str = ""

    def __post_init__(self) -> None:
        if self.sources.dim() != 4 or self.sources.shape[0] == 0:
            raise ValueError(f"no usable image (sources of shape {tuple(self.sources.shape)}); "
                             f"files left out: {self.bad[:5]}")
        if self.labels is not None and self.labels.shape[0] != self.sources.shape[0]:
            raise ValueError(f"{self.sources.shape[0]} images but {self.labels.shape[0]} labels")

    def __len__(self) -> int:
        return int(self.sources.shape[0])

    @property
    def labelled(self) -> bool:
        return self.labels is not None

    def centre(self) -> Tensor:
        """(N, 3, S - 2 margin, S - 2 margin): the unshifted view of every image."""
        m = self.margin
        return self.sources[..., m: self.sources.shape[-2] - m, m: self.sources.shape[-1] - m]

    def take(self, n: int | None) -> "AuditImages":
        """The first ``n`` images (all when ``n`` is None or larger)."""
        if n is None or n >= len(self):
            return self
        return AuditImages(self.sources[:n], self.names[:n], self.margin,
                           None if self.labels is None else self.labels[:n], self.classes, self.bad, self.origin)


def make_source(image: Tensor, side: int, resize: str = "shorter", name: str = "image") -> Tensor:
    """One (3, H, W) image as a (3, side, side) source: shorter side scaled to ``side`` (antialiased
    bilinear) or native pixels (``resize="none"``), then the centre square. Raises ``ValueError``
    naming the image when it is too small."""
    if resize not in RESIZES:
        raise ValueError(f"resize must be one of {RESIZES}, got {resize!r}")
    h, w = image.shape[-2:]
    if min(h, w) < MIN_SIDE:
        raise ValueError(f"'{name}' is {w}x{h} px, smaller than {MIN_SIDE} px: too small to audit")
    if resize == "none":
        if min(h, w) < side:
            raise ValueError(f"'{name}' is {w}x{h} px: too small for the shift radius (the sources must be "
                             f"{side} px, the input plus the radius on each side); use resize='shorter' or a "
                             "smaller radius")
    else:
        scale = side / min(h, w)
        size = (max(side, round(h * scale)), max(side, round(w * scale)))
        image = F.interpolate(image[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
        h, w = size
    top, left = (h - side) // 2, (w - side) // 2
    return image[:, top: top + side, left: left + side].clamp(0.0, 1.0).contiguous()


def _labels_file(path: Path) -> dict[str, int]:
    """A CSV with columns ``file,label`` (label: an integer output index) -> ``{file: label}``."""
    if not path.is_file():
        raise FileNotFoundError(f"labels file '{path}' not found; give a CSV with columns file,label")
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or not {"file", "label"} <= set(rows[0]):
        raise ValueError(f"'{path}' must be a CSV with a header 'file,label' (label: the model's output index)")
    out = {}
    for i, row in enumerate(rows, start=2):
        try:
            out[row["file"]] = int(row["label"])
        except (TypeError, ValueError):
            raise ValueError(f"'{path}' line {i}: label {row['label']!r} is not an integer output index") from None
    return out


def load_images(folder: Path | str, input_size: int, margin: int, *, labels: Path | str | dict[str, int] | None = None,
                resize: str = "shorter", max_images: int | None = None) -> AuditImages:
    """Images of ``folder`` as :class:`AuditImages` with sources of ``input_size + 2 * margin`` px.

    ``folder`` holds image files (label-free, or labelled by ``labels``: a ``file,label`` CSV or a
    dict) or class sub-folders (ImageFolder: label = index of the sub-folder in sorted order, names
    ``class/file``). ``max_images`` keeps the first images in sorted order. Bad files are listed in
    ``bad`` (:func:`shiftinv.workbook.imageio.read_folder`); each image is made a source as it is read.
    """
    folder = Path(folder)
    side = input_size + 2 * margin
    images, names, bad = imageio.read_folder(folder, recursive=False, transform=_source_maker(side, resize))
    classes: list[str] = []
    by_file: dict[str, int] | None = None
    if not images and not bad:  # no image files at the top: an ImageFolder tree
        images, names, bad = imageio.read_folder(folder, recursive=True, transform=_source_maker(side, resize))
        classes = sorted({n.split("/")[0] for n in names if "/" in n})
        if not classes:
            raise ValueError(f"'{folder}' holds no image files, nor class sub-folders of image files")
        by_file = {n: classes.index(n.split("/")[0]) for n in names if "/" in n}
        images, names = zip(*[(im, n) for im, n in zip(images, names) if n in by_file]) if by_file else ([], [])
    elif labels is not None:
        by_file = labels if isinstance(labels, dict) else _labels_file(Path(labels))
        unlabelled = [n for n in names if n not in by_file]
        if unlabelled:
            raise ValueError(f"{len(unlabelled)} images have no label in the labels file, e.g. {unlabelled[:3]}; "
                             "label every image or remove the labels file for a label-free audit")
    bad_named = [(Path(p).relative_to(folder).as_posix(), why) for p, why in bad]
    return _assemble(list(images), list(names), bad_named, classes, by_file, side, margin, resize, max_images)


def _source_maker(side: int, resize: str):  # noqa: ANN202
    """``read_folder``'s transform: the (3, side, side) source of a decoded image as it is read, or the
    full image when it cannot be one (too small: :func:`_assemble` names it), so that a folder of
    large photos never sits in memory at full size."""
    def make(pil_image: object) -> Tensor:
        image = imageio.pil_to_tensor(pil_image)
        try:
            return make_source(image, side, resize)
        except ValueError:
            return image
    return make


def _assemble(images: list[Tensor], names: list[str], bad: list[tuple[str, str]], classes: list[str],
              by_file: dict[str, int] | None, side: int, margin: int, resize: str,
              max_images: int | None) -> AuditImages:
    sources, kept = [], []
    for image, name in zip(images, names):
        if max_images is not None and len(kept) >= max_images:
            break
        try:
            done = tuple(image.shape) == (3, side, side)  # made while reading (_source_maker)
            sources.append(image if done else make_source(image, side, resize, name))
            kept.append(name)
        except ValueError as err:
            bad.append((name, str(err)))
    labels = torch.tensor([by_file[n] for n in kept], dtype=torch.long) if by_file is not None and kept else None
    stacked = torch.stack(sources) if sources else torch.zeros(0, 3, side, side)
    origin = (f"shorter side resized to {side} px (antialiased bilinear), centre square" if resize == "shorter"
              else f"native pixels, centre {side} px square")
    return AuditImages(stacked, kept, margin, labels, classes, bad, origin)


def from_tensors(images: Tensor, margin: int, *, labels: Tensor | None = None, names: list[str] | None = None,
                 pad: str = "constant", classes: list[str] | None = None) -> AuditImages:
    """Images already at the input size, (N, 3, H, W) in [0, 1], as :class:`AuditImages`: the sources
    are the images padded by ``margin`` (``pad="constant"``: zeros, e.g. digits on a zero canvas,
    where a larger canvas is exactly that; ``"reflect"``: mirrored borders)."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (N, 3, H, W) in [0, 1], got {tuple(images.shape)}")
    sources = F.pad(images if images.is_floating_point() else images.float(), (margin,) * 4, mode=pad)
    names = names or [f"image_{i:04d}" for i in range(images.shape[0])]
    fill = "zeros" if pad == "constant" else f"{pad} padding"
    return AuditImages(sources, list(names), margin, None if labels is None else labels.long().cpu(), classes or [],
                       [], f"the {images.shape[-1]} px images extended by {margin} px of {fill} on each side")


def imagenet_sample_labels(folder: Path | str) -> dict[str, int]:
    """``{file: ImageNet class index}`` for a folder of ``nXXXXXXXX_name.JPEG`` files with a
    ``gallery.md`` that lists every class as ``**name (index)** ... `wnid` `` (the imagenet-sample-images
    layout). Index k is ImageNet's k-th class in sorted-wnid order (torchvision's, and a 1001-output
    model's k+1)."""
    folder = Path(folder)
    gallery = folder / "gallery.md"
    if not gallery.is_file():
        raise FileNotFoundError(f"'{gallery}' not found: it maps the wnids of the file names to class indices")
    index = {wnid: int(k) for k, wnid in re.findall(r"\((\d+)\)\*\*\s*<br/>\s*`(n\d{8})`", gallery.read_text())}
    out = {}
    for path in sorted(folder.iterdir()):
        match = re.match(r"(n\d{8})_", path.name)
        if match and match.group(1) in index:
            out[path.name] = index[match.group(1)]
    return out

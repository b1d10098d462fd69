"""Reading and batching images for the metrics: load/save, centre crops, pair batches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from ..workbook import imageio

# ----------------------------------------------------------------------------------------------
# Images


def load_image(path: Path | str, size: int | None = None) -> Tensor:
    """Read an image file as (3, H, W) float in [0, 1] (RGB); ``size`` resizes the *shorter* side.

    Decoded by :func:`shiftinv.workbook.imageio.open_rgb`: a file that cannot be decoded raises an
    :class:`~shiftinv.workbook.imageio.ImageReadError` naming it.
    """
    from PIL import Image

    img = imageio.open_rgb(path)
    if size is not None and min(img.size) != size:
        w, h = img.size
        scale = size / min(w, h)
        img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BICUBIC)
    return imageio.pil_to_tensor(img)


def save_image(image: Tensor, path: Path | str) -> Path:
    """Write (3, H, W) in [0, 1] as an 8-bit PNG/BMP (format from the suffix)."""
    from PIL import Image

    arr = (image.clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def center_square(image: Tensor, size: int) -> Tensor:
    """Central square crop of (3, H, W), resized to (3, size, size) (bicubic, antialiased)."""
    _, h, w = image.shape
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    crop = image[:, top:top + s, left:left + s][None]
    if s != size:
        crop = F.interpolate(crop, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
    return crop[0].clamp(0, 1)


#: Every backbone (APS included: five stride-2 polyphase pools) needs sides that are multiples of 32.
SIDE_MULTIPLE = 32


def center_crop_multiple(image: Tensor, multiple: int = SIDE_MULTIPLE) -> Tensor:
    """Central crop of (3, H, W) to the largest sides that are multiples of ``multiple`` (no resampling).

    Native-size runs use it: KADID-10k and TID (384x512) pass unchanged; RAID's 454x454 becomes
    448x448 (3 px dropped at each border). Cropping invents no pixels, where reflect-padding to 480
    would add mirrored borders that a metric compares as if they were image content.
    """
    _, h, w = image.shape
    nh, nw = (h // multiple) * multiple, (w // multiple) * multiple
    if nh == 0 or nw == 0:
        raise ValueError(f"image {h}x{w} is smaller than {multiple} px: pass a size (IMAGE_SIZE) instead")
    top, left = (h - nh) // 2, (w - nw) // 2
    return image[:, top:top + nh, left:left + nw]


def read_for_metrics(path: Path | str, size: int | None = None, square: bool = True) -> Tensor:
    """One dataset image as the metrics get it, (3, H, W) in [0, 1].

    ``size`` 0 or ``None``: the native frame, centrally cropped to multiples of 32
    (:func:`center_crop_multiple`); else ``square=True``: central square resized to ``size``;
    ``square=False``: the shorter side resized to ``size``.
    """
    if not size:
        return center_crop_multiple(load_image(path))
    if square:
        return center_square(load_image(path), size)
    return load_image(path, size)


def pair_batches(table: pd.DataFrame, size: int | None = None, batch_size: int = 16,
                 square: bool = False, progress: str | None = None) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield ``(ref, dist)`` batches (N, 3, H, W) for the rows of ``table`` in order.

    Reference images are read once per reference. Sizes as in :func:`read_for_metrics`
    (``size`` 0/None = native frame cropped to multiples of 32). ``progress``: a label for a
    progress bar over the pairs (None: no bar).
    """
    from ..workbook import runtime

    cache: dict[str, Tensor] = {}

    def read(path: str) -> Tensor:
        return read_for_metrics(path, size, square)

    bar = runtime.progress(total=len(table), desc=progress, unit="pair") if progress else None

    refs, dists = [], []
    for ref_path, dist_path in zip(table["ref_path"], table["dist_path"]):
        if ref_path not in cache:
            cache = {ref_path: read(ref_path)}  # rows are grouped by reference: keep one
        refs.append(cache[ref_path])
        dists.append(read(dist_path))
        if len(refs) == batch_size:
            if bar is not None:
                bar.update(len(refs))
            yield torch.stack(refs), torch.stack(dists)
            refs, dists = [], []
    if refs:
        if bar is not None:
            bar.update(len(refs))
        yield torch.stack(refs), torch.stack(dists)
    if bar is not None:
        bar.close()


def tensor_pair_batches(refs: Tensor, images: Tensor, table: pd.DataFrame, batch_size: int = 16,
                        transform: Callable[[Tensor], Tensor] | None = None) -> Iterator[tuple[Tensor, Tensor]]:
    """Batches ``(refs[ref_index], images[index])`` over the rows of ``table`` (in-memory stimuli).

    ``transform`` (e.g. a shift) is applied to the distorted batch only.
    """
    ri = torch.tensor(np.ascontiguousarray(table["ref_index"].to_numpy()), dtype=torch.long)
    ii = torch.tensor(np.ascontiguousarray(table["index"].to_numpy()), dtype=torch.long)
    for start in range(0, len(table), batch_size):
        a, b = refs[ri[start:start + batch_size]], images[ii[start:start + batch_size]]
        yield a, (transform(b) if transform is not None else b)

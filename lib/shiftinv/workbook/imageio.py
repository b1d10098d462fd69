"""Reading image files: one image, or a folder, where one bad file is reported and the rest are kept.

Stand-in written against the API of engineer A's ``shiftinv.workbook.imageio`` (branch ``faults``):
``read_image(path) -> (3, H, W)`` float in [0, 1], ``read_folder(folder) -> (images, names, bad)``,
:class:`ImageReadError` naming the file. When that module is merged, it replaces this one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

#: File suffixes read as images (lower case).
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")


class ImageReadError(ValueError):
    """An image file that cannot be read; the message names the file and what is wrong."""


def read_image(path: Path | str) -> Tensor:
    """One image file as a ``(3, H, W)`` float32 tensor in [0, 1] (grey and RGBA become RGB).

    Raises :class:`ImageReadError` naming the file when it is missing, not an image, or truncated.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"'{path}': no such file")
    try:
        with Image.open(path) as im:
            im.load()  # decodes the whole file: a truncated file fails here, not later
            rgb = im.convert("RGB")
    except UnidentifiedImageError:
        raise ImageReadError(f"'{path}': not an image file PIL can read") from None
    except (OSError, SyntaxError) as err:
        raise ImageReadError(f"'{path}': unreadable or truncated image ({err})") from None
    array = np.asarray(rgb, dtype=np.uint8)  # (H, W, 3)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 255.0


def read_folder(folder: Path | str) -> tuple[list[Tensor], list[str], list[tuple[str, str]]]:
    """Every image file directly in ``folder`` (sorted by name).

    Returns:
        ``(images, names, bad)``: the images read (each (3, H, W) in [0, 1]), their file names, and
        ``(file name, reason)`` for each file that could not be read (the others are kept).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder '{folder}' does not exist; give a folder of image files")
    images, names, bad = [], [], []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
        try:
            images.append(read_image(path))
            names.append(path.name)
        except ImageReadError as err:
            bad.append((path.name, str(err)))
    return images, names, bad

"""Reading image files: one home for decoding, so every reader names the file it cannot decode.

- :func:`open_rgb`     a decoded RGB ``PIL.Image`` (also the ``loader=`` of a torchvision ``ImageFolder``)
- :func:`read_image`   one file -> (3, H, W) float tensor in [0, 1]
- :func:`read_folder`  every image under a folder; a bad file is listed, the others are kept
- :func:`pil_to_tensor`  a decoded RGB ``PIL.Image`` -> (3, H, W) float tensor in [0, 1]
- :func:`raise_for_bad`, :func:`bad_files_message`  one error listing every bad file (for a caller that needs them all)

A file that cannot be decoded (truncated, random bytes under an image suffix, a decompression
bomb, a format PIL does not know) raises :class:`ImageReadError`, a ``ValueError`` naming the file,
the cause and what to do, instead of PIL's bare ``OSError: image file is truncated``.
"""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

#: Suffixes (lower case) :func:`read_folder` reads; other files are ignored (a README, a CSV).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")

DEFAULT_HOW = "Replace it with a good copy (download or export it again), or remove it from the folder."


class ImageReadError(ValueError):
    """Image files that cannot be decoded: ``path`` and ``reason`` say which and why (the first one),
    ``bad`` lists every ``(path, reason)`` when several files of a folder or table failed."""

    def __init__(self, path: Path | str, reason: str, how: str = DEFAULT_HOW,
                 bad: list[tuple[Path, str]] | None = None):
        self.path = Path(path)
        self.reason = reason
        self.bad = [(Path(p), r) for p, r in bad] if bad else [(self.path, reason)]
        if len(self.bad) == 1:
            super().__init__(f"image file '{self.path}' cannot be decoded: {reason}. {how}".rstrip())
        else:
            super().__init__(bad_files_message(self.bad, "image", how))


def raise_for_bad(bad: list[tuple[Path, str]], how: str = DEFAULT_HOW) -> None:
    """Raise one :class:`ImageReadError` listing every ``(path, reason)`` of ``bad`` (nothing when empty):
    for a caller that needs every file of a folder or a dataset table."""
    if bad:
        raise ImageReadError(bad[0][0], bad[0][1], how, bad)


def _decode_errors() -> tuple[type[BaseException], ...]:
    """What PIL's decoders raise on a bad file (a truncated stream, bad headers, a bomb)."""
    from PIL import Image

    return (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError,
            Image.DecompressionBombError, Image.DecompressionBombWarning)


def _reason(exc: BaseException) -> str:
    """A short cause for an :class:`ImageReadError` message."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return (f"it is a possible decompression bomb ({exc}); if the picture is genuine, raise "
                "PIL.Image.MAX_IMAGE_PIXELS before reading it")
    if isinstance(exc, UnidentifiedImageError):
        return "it is not an image PIL can identify (random bytes, another format, or an empty file)"
    if "truncated" in str(exc):
        return f"the file is truncated ({exc})"
    return f"{type(exc).__name__}: {exc}"


def open_rgb(path: Path | str, how: str = DEFAULT_HOW):
    """Decode ``path`` fully and return it as an RGB ``PIL.Image.Image`` (a usable ImageFolder ``loader``).

    Raises ``FileNotFoundError`` naming a missing file and :class:`ImageReadError` (naming the file,
    the cause and ``how`` to fix it) for a file that cannot be decoded. PIL's decompression-bomb
    warning (an image above ``PIL.Image.MAX_IMAGE_PIXELS``) is an error here, not a warning.
    """
    from PIL import Image

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image file '{path}' not found. Check the path (and the folder it was listed in).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()  # decode now: a truncated stream fails here, inside the try
                return img.convert("RGB")
    except _decode_errors() as exc:
        raise ImageReadError(path, _reason(exc), how) from exc


def pil_to_tensor(img) -> Tensor:
    """A decoded RGB ``PIL.Image`` as a (3, H, W) float32 tensor in [0, 1]."""
    arr = np.asarray(img, dtype=np.float32) / 255.0  # (H, W, 3)
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def read_image(path: Path | str, how: str = DEFAULT_HOW) -> Tensor:
    """One image file as a (3, H, W) float32 tensor in [0, 1] (RGB; errors as :func:`open_rgb`)."""
    return pil_to_tensor(open_rgb(path, how))


def list_images(folder: Path | str, recursive: bool = True) -> list[Path]:
    """Image files (by :data:`IMAGE_SUFFIXES`) under ``folder``, sorted; hidden files are skipped.

    Raises ``FileNotFoundError``/``NotADirectoryError`` naming ``folder`` when it is not a folder.
    """
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"image folder '{folder}' not found. Pass the folder that holds the images.")
    if not folder.is_dir():
        raise NotADirectoryError(f"'{folder}' is a file, not a folder of images. Pass the folder that holds it.")
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def read_folder(folder: Path | str, recursive: bool = True,
                transform: Callable[[object], Tensor] | None = None,
                ) -> tuple[list[Tensor], list[str], list[tuple[Path, str]]]:
    """Read every image under ``folder``; a file that cannot be decoded is listed, not fatal.

    Returns ``(images, names, bad)``: ``images`` the decoded files in sorted order, each (3, H, W)
    float in [0, 1] (or ``transform(pil_rgb_image)`` when given, e.g. a resize to a common size);
    ``names`` their paths relative to ``folder`` (POSIX, so ``names[i].split("/")[0]`` is the class
    folder of an ImageFolder tree); ``bad`` the ``(path, reason)`` of every file that failed.
    A caller that needs every file calls :func:`raise_for_bad` (one error listing them all).
    """
    folder = Path(folder)
    images, names, bad = [], [], []
    for path in list_images(folder, recursive):
        try:
            img = open_rgb(path)
            images.append(transform(img) if transform is not None else pil_to_tensor(img))
        except ImageReadError as err:
            bad.append((path, err.reason))
            continue
        names.append(path.relative_to(folder).as_posix())
    return images, names, bad


def bad_files_message(bad: list[tuple[Path, str]], what: str = "images", how: str = DEFAULT_HOW) -> str:
    """One message listing every ``(path, reason)`` of :func:`read_folder`'s ``bad`` (for an error)."""
    lines = [f"{len(bad)} {what} file(s) cannot be decoded:"] + [f"  - '{p}': {r}" for p, r in bad]
    return "\n".join(lines + [how])

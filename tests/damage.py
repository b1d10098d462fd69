"""Damaged and hostile files for the fault tests, made for real in a test's folder (never committed).

Every helper writes one file and returns its path.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np


def photo(path: Path, size: tuple[int, int] = (48, 64), seed: int = 0) -> Path:
    """A good RGB image of ``size`` (H, W) with random pixels (format from the suffix)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
    return path


def cut_in_half(path: Path) -> Path:
    """Truncate an existing file to half its bytes (a download or a write that stopped midway)."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) // 2])
    return path


def truncated_image(path: Path, size: tuple[int, int] = (48, 64)) -> Path:
    """A JPEG/PNG whose header is intact but whose pixel data stops midway."""
    return cut_in_half(photo(path, size))


def random_bytes(path: Path, n: int = 4096, seed: int = 1) -> Path:
    """``n`` random bytes under any name (e.g. ``x.jpg``: not an image at all)."""
    Path(path).write_bytes(np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes())
    return path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(path: Path, side: int = 20000) -> Path:
    """A tiny PNG that declares ``side`` x ``side`` pixels (a decompression bomb; 20000: 400 M pixels,
    above PIL's error limit; 10000: 100 M, above its warning limit). No pixel data follows."""
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)  # 8-bit RGB
    idat = zlib.compress(b"\x00" * 64)
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat)
                           + _chunk(b"IEND", b""))
    return path

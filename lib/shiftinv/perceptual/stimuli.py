"""Synthetic stimuli: KADID-style distortions, RAID-style transforms, demo frames from real photographs.

Embedded (demo profile, no download): reference images that ship with scikit-image, distorted
with KADID-style distortions at 5 levels (:func:`make_kadid_style`) and RAID-style rotations,
translations, scalings and Gaussian noise at 9 levels plus the anchor (:func:`make_raid_style`).
``raid-approx`` (:func:`raid_approx_table`) rebuilds RAID-like stimuli from the Kodak images and
pairs them with the real RAID human responses; the transform amplitudes per level are *our
approximation* (:data:`RAID_APPROX_LEVELS`): the published ranges (rotation up to 18 degrees,
translation up to 0.63 degrees of visual angle, scaling up to 9 %, noise at TID2013-like levels)
spaced linearly, not the exact RAID parameters.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from ..workbook import imageio, paths
from .images import center_square, load_image
from .iqa import RAID_TRANSFORMS, read_raid_responses

# ----------------------------------------------------------------------------------------------
# Embedded demo stimuli

#: Colour photographs shipped inside scikit-image (no download), and grey ones (replicated to RGB).
DEMO_IMAGES: tuple[str, ...] = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "retina",
                                "camera", "brick", "grass", "gravel")


def demo_references(size: int = 128, names: Sequence[str] = DEMO_IMAGES) -> tuple[Tensor, list[str]]:
    """Reference images from ``skimage.data``: (R, 3, size, size) in [0, 1] and their names."""
    import skimage.data

    images = []
    for name in names:
        arr = getattr(skimage.data, name)()
        arr = np.stack([arr] * 3, -1) if arr.ndim == 2 else arr[..., :3]
        images.append(center_square(torch.from_numpy(arr.astype(np.float32) / 255).permute(2, 0, 1), size))
    return torch.stack(images), list(names)


def _gaussian_kernel(sigma: float) -> Tensor:
    radius = max(1, int(3 * sigma + 0.5))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur with reflect borders, (N, 3, H, W) -> same."""
    k = _gaussian_kernel(sigma)
    r = k.numel() // 2
    c = x.shape[1]
    y = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(y, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def _jpeg(x: Tensor, quality: int) -> Tensor:
    from PIL import Image

    out = []
    for img in x:
        arr = (img.clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=int(quality))
        buf.seek(0)
        with Image.open(buf) as dec:
            out.append(torch.from_numpy(np.asarray(dec.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1))
    return torch.stack(out)


def _saturation(x: Tensor, factor: float) -> Tensor:
    grey = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]
    return grey + factor * (x - grey)


def _pixelate(x: Tensor, factor: int) -> Tensor:
    h, w = x.shape[-2:]
    small = F.interpolate(x, size=(max(1, h // factor), max(1, w // factor)), mode="area")
    return F.interpolate(small, size=(h, w), mode="nearest")


#: KADID-style distortions: ``name -> f(images (N,3,H,W), level 1..5, generator) -> images``.
#: Parameters grow with the level; they follow KADID-10k's kinds, not its exact settings.
KADID_STYLE: dict[str, Callable[[Tensor, int, torch.Generator], Tensor]] = {
    "gaussian_blur": lambda x, k, g: gaussian_blur(x, (0.5, 1.0, 1.5, 2.5, 4.0)[k - 1]),
    "white_noise": lambda x, k, g: x + (0.02, 0.04, 0.07, 0.11, 0.16)[k - 1] * torch.randn(x.shape, generator=g),
    "impulse_noise": lambda x, k, g: _impulse(x, (0.01, 0.03, 0.06, 0.10, 0.16)[k - 1], g),
    "jpeg": lambda x, k, g: _jpeg(x, (60, 35, 20, 10, 4)[k - 1]),
    "contrast_change": lambda x, k, g: 0.5 + (0.85, 0.7, 0.55, 0.4, 0.25)[k - 1] * (x - 0.5),
    "brighten": lambda x, k, g: x ** (1 / (1.1, 1.25, 1.45, 1.7, 2.0)[k - 1]),
    "color_saturation": lambda x, k, g: _saturation(x, (0.8, 0.6, 0.4, 0.2, 0.0)[k - 1]),
    "pixelate": lambda x, k, g: _pixelate(x, (2, 3, 4, 6, 8)[k - 1]),
}


def _impulse(x: Tensor, p: float, g: torch.Generator) -> Tensor:
    u = torch.rand(x.shape[0], 1, *x.shape[2:], generator=g)
    salt = torch.rand(u.shape, generator=g) < 0.5
    out = x.clone()
    hit = (u < p).expand_as(x)
    return torch.where(hit, salt.expand_as(x).float(), out)


def make_kadid_style(refs: Tensor, ref_names: Sequence[str], generator: torch.Generator,
                     distortions: Sequence[str] | None = None, levels: Sequence[int] = (1, 2, 3, 4, 5)
                     ) -> tuple[Tensor, pd.DataFrame]:
    """Distort each reference with each KADID-style distortion at each level.

    Returns ``(images (M, 3, H, W), table)`` with table columns ``ref, ref_index, distortion,
    level, index`` (``index`` = row in ``images``), grouped by reference. Noise draws come only
    from ``generator``.
    """
    names = list(distortions or KADID_STYLE)
    unknown = [d for d in names if d not in KADID_STYLE]
    if unknown:
        raise ValueError(f"unknown KADID-style distortions {unknown}; choose from {sorted(KADID_STYLE)}")
    out, rows = [], []
    for r, name in enumerate(ref_names):
        for d in names:
            for k in levels:
                if not 1 <= k <= 5:
                    raise ValueError(f"levels run from 1 to 5, got {k}")
                out.append(KADID_STYLE[d](refs[r:r + 1], k, generator).clamp(0, 1)[0])
                rows.append({"ref": name, "ref_index": r, "distortion": d, "level": k, "index": len(rows)})
    table = pd.DataFrame(rows)
    table.attrs.update(dataset="demo-kadid-style", score_kind=None)
    return torch.stack(out), table


#: RAID-like amplitudes per level (level 1 = the undistorted anchor, then 9 levels spaced linearly
#: up to the published maxima). Translation is in fractions of the image side: 0.63 degrees of
#: visual angle is taken as 6.5 % of a 454-px image (our assumption about the viewing geometry);
#: noise is a standard deviation in [0, 1] units (TID2013-like range, our choice).
RAID_APPROX_LEVELS: dict[str, tuple[float, ...]] = {
    "rot": tuple(2.0 * i for i in range(10)),                 # degrees, 0 .. 18
    "trans": tuple(0.065 * i / 9 for i in range(10)),         # fraction of the side, 0 .. 0.065
    "scale": tuple(1.0 + 0.01 * i for i in range(10)),        # zoom factor, 1.00 .. 1.09
    "gn": tuple(0.0125 * i for i in range(10)),               # noise std, 0 .. 0.1125
}


def zoom(x: Tensor, factor: float) -> Tensor:
    """Magnify (N, C, H, W) by ``factor`` about the centre, same frame, bilinear, mirror padding."""
    if factor == 1.0:
        return x.clone()
    theta = torch.tensor([[1 / factor, 0.0, 0.0], [0.0, 1 / factor, 0.0]], dtype=x.dtype).expand(x.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def raid_transform(x: Tensor, transform: str, level: int, generator: torch.Generator | None = None) -> Tensor:
    """Apply RAID-like ``transform`` at ``level`` (1..10, 1 = identity) to (N, 3, H, W) images.

    Rotation uses :func:`shiftinv.shifts.geometric.rotate` (mirror padding, frame size kept); scaling is a
    continuous zoom about the centre (bilinear ``grid_sample``, mirror padding) so that 1 % steps
    exist at any image size; translation is a horizontal shift by a fraction of the side (Fourier
    sub-pixel shift on the mirror mosaic, :func:`translation.translate`); Gaussian noise needs ``generator``.
    """
    from ..shifts import geometric, translation

    if transform not in RAID_APPROX_LEVELS:
        raise ValueError(f"unknown RAID transform {transform!r}; choose from {RAID_TRANSFORMS}")
    if not 1 <= level <= 10:
        raise ValueError(f"RAID levels run from 1 (anchor) to 10, got {level}")
    if level == 1:  # the undistorted anchor: the image itself (no resampling, no noise drawn)
        return x.clone()
    value = RAID_APPROX_LEVELS[transform][level - 1]
    if transform == "rot":
        return geometric.rotate(x, value)
    if transform == "scale":
        return zoom(x, value)
    if transform == "trans":
        return translation.translate(x, value * x.shape[-1], 0.0, mode="mosaic") if value else x.clone()
    if generator is None:
        raise ValueError("Gaussian noise needs a torch.Generator (pass generator=...)")
    return (x + value * torch.randn(x.shape, generator=generator)).clamp(0, 1)


def make_raid_style(refs: Tensor, ref_names: Sequence[str], generator: torch.Generator,
                    transforms: Sequence[str] = RAID_TRANSFORMS, levels: Sequence[int] = tuple(range(1, 11))
                    ) -> tuple[Tensor, pd.DataFrame]:
    """RAID-like stimuli for each reference, transform and level (level 1 = anchor).

    Returns ``(images (M, 3, H, W), table)`` with columns ``ref, ref_index, transform,
    distortion, level, index, dist``; ``dist`` follows RAID's file naming.
    """
    out, rows = [], []
    for r, name in enumerate(ref_names):
        for t in transforms:
            for k in levels:
                out.append(raid_transform(refs[r:r + 1], t, k, generator)[0])
                rows.append({"ref": name, "ref_index": r, "transform": t, "distortion": t, "level": k,
                             "index": len(rows), "dist": f"{t}_{name}_level_{k:02d}.png"})
    table = pd.DataFrame(rows)
    table.attrs.update(dataset="demo-raid-style", score_kind=None)
    return torch.stack(out), table


#: Where the Kodak images come from (the references of RAID and of TID2008/TID2013).
KODAK_HOW = ("Point KODAK_DIR at a folder with kodim01.png .. kodim24.png (the Kodak PhotoCD set, "
             "http://r0k.us/graphics/kodak/; here ../shared/data/kodak).")


def kodak_references(kodak_dir: Path | str, size: int, images: Sequence[int] = tuple(range(1, 25))
                     ) -> tuple[Tensor, list[str]]:
    """Kodak images ``kodimXX.png`` as RAID references ``img_XX``: central square, resized to ``size``."""
    kodak_dir = paths.require_dir(kodak_dir, "Kodak images folder", KODAK_HOW)
    files = [Path(kodak_dir) / f"kodim{i:02d}.png" for i in images]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"Kodak image(s) missing: {missing[:4]}{' ...' if len(missing) > 4 else ''}. "
                                f"{KODAK_HOW}")
    out, bad = [], []
    for path in files:
        try:
            out.append(center_square(load_image(path), size))
        except imageio.ImageReadError as err:  # collected: every bad file is named at the end
            bad.append((path, err.reason))
    imageio.raise_for_bad(bad, KODAK_HOW)
    return torch.stack(out), [f"img_{i:02d}" for i in images]


def raid_approx_table(responses_csv: Path | str, kodak_dir: Path | str, size: int, generator: torch.Generator,
                      images: Sequence[int] = tuple(range(1, 25)), include_anchors: bool = False
                      ) -> tuple[Tensor, Tensor, pd.DataFrame]:
    """``raid-approx``: RAID-like stimuli rebuilt from Kodak, joined with the real RAID responses.

    Returns ``(refs (R, 3, S, S), stimuli (M, 3, S, S), table)`` where ``table`` has one row per
    stimulus with ``ref_index``, ``index`` and the human ``response``/``curve``/``score``
    (``attrs["score_kind"] = "distortion"``). Approximations: the stimuli are central squares of
    the Kodak images (RAID shows 454-px crops), resized to ``size``, and the transform amplitudes
    are :data:`RAID_APPROX_LEVELS`, not RAID's exact parameters.
    """
    responses = read_raid_responses(responses_csv)
    refs, names = kodak_references(kodak_dir, size, images)
    levels = tuple(range(1, 11)) if include_anchors else tuple(range(2, 11))
    stimuli, table = make_raid_style(refs, names, generator, levels=levels)
    merged = table.merge(responses[["dist", "curve", "response", "score"]], on="dist", how="left")
    if merged["score"].isna().any():
        raise ValueError(f"RAID responses missing for {merged['dist'][merged['score'].isna()].head(3).tolist()}")
    merged.attrs.update(dataset="raid-approx", score_kind="distortion", include_anchors=include_anchors)
    return refs, stimuli, merged


# ----------------------------------------------------------------------------------------------
# Stand-ins in the official layouts (tests and smoke runs of the `paper` profile)


def demo_frames(height: int, width: int, names: Sequence[str] = DEMO_IMAGES) -> Tensor:
    """Embedded photographs as (R, 3, height, width) frames: central square resized to the longer
    side, then the central rows/columns kept (stand-ins for 384x512 KADID/TID frames)."""
    squares, _ = demo_references(max(height, width), names)
    top, left = (squares.shape[-2] - height) // 2, (squares.shape[-1] - width) // 2
    return squares[:, :, top:top + height, left:left + width].contiguous()

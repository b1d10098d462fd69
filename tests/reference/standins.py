"""Stand-in IQA datasets the tests write (the real KADID/TID/RAID image sets are not on this machine).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from shiftinv.perceptual.images import save_image
from shiftinv.perceptual.iqa import RAID_TRANSFORMS
from shiftinv.perceptual.stimuli import DEMO_IMAGES, KADID_STYLE, demo_frames, demo_references, raid_transform


def write_standins(root: Path | str, generator: torch.Generator, n_refs: int = 3, size: int = 48,
                   frame: tuple[int, int] | None = None, raid_size: int | None = None) -> dict[str, Path]:
    """Write tiny KADID-10k, TID2008, TID2013, RAID and BAPPS stand-ins in their official layouts.

    Images are ``size x size`` unless ``frame=(H, W)`` (KADID/TID images, e.g. the native
    384x512) and ``raid_size`` (RAID images, e.g. the native 454) are given.

    Images are demo references (scikit-image) with KADID-style distortions / RAID-like transforms;
    scores are *synthetic* (a decreasing function of the level plus noise), only there to exercise
    loaders and pipelines. Planted for the hygiene checks: KADID pair ``I01_01_01`` is a copy of its
    reference, and TID2008/TID2013 share their references (as the real ones do).

    Returns ``{"kadid": dir, "tid2008": dir, "tid2013": dir, "raid": dir, "bapps": dir}``.
    """
    root = Path(root)
    refs = demo_frames(*frame, DEMO_IMAGES[:n_refs]) if frame else demo_references(size, DEMO_IMAGES[:n_refs])[0]
    raid_refs = demo_references(raid_size, DEMO_IMAGES[:n_refs])[0] if raid_size else refs
    dists = list(KADID_STYLE)[:4]
    out = {k: root / k for k in ("kadid", "tid2008", "tid2013", "raid", "bapps")}
    # one generator, drawn in this order: KADID, TID2008, TID2013, RAID, BAPPS
    _write_kadid_standin(out["kadid"], refs, dists, generator)
    for version, n_levels in (("tid2008", 4), ("tid2013", 5)):
        _write_tid_standin(out[version], version, n_levels, refs, dists, generator)
    _write_raid_standin(out["raid"], raid_refs, generator)
    _write_bapps_standin(out["bapps"], refs, generator)
    return out


def _write_kadid_standin(folder: Path, refs: Tensor, dists: Sequence[str], generator: torch.Generator) -> None:
    """KADID-10k layout: ``images/I01.png``, ``images/I01_DD_LL.png``, ``dmos.csv`` (refs: (R, 3, H, W))."""
    rows = []
    for r in range(len(refs)):
        ref = f"I{r + 1:02d}"
        save_image(refs[r], folder / "images" / f"{ref}.png")
        for d, name in enumerate(dists, start=1):
            for k in range(1, 6):
                img = KADID_STYLE[name](refs[r:r + 1], k, generator).clamp(0, 1)[0]
                if (r, d, k) == (0, 1, 1):
                    img = refs[r]  # planted: identical to the reference
                fname = f"{ref}_{d:02d}_{k:02d}.png"
                save_image(img, folder / "images" / fname)
                score = 5.0 - 0.7 * k + 0.3 * float(torch.randn(1, generator=generator))
                rows.append(f"{fname},{ref}.png,{score:.3f},0.5")
    (folder / "dmos.csv").write_text("dist_img,ref_img,dmos,var\n" + "\n".join(rows) + "\n")


def _write_tid_standin(folder: Path, version: str, n_levels: int, refs: Tensor, dists: Sequence[str],
                       generator: torch.Generator) -> None:
    """TID layout: ``reference_images/``, ``distorted_images/``, ``mos_with_names.txt``."""
    lines = []
    for r in range(len(refs)):
        ref = f"I{r + 1:02d}"
        save_image(refs[r], folder / "reference_images" / f"{ref}.BMP")
        for d, name in enumerate(dists, start=1):
            for k in range(1, n_levels + 1):
                img = KADID_STYLE[name](refs[r:r + 1], k, generator).clamp(0, 1)[0]
                fname = f"{ref.lower() if version == 'tid2013' else ref}_{d:02d}_{k}.bmp"
                save_image(img, folder / "distorted_images" / fname)
                mos = 6.5 - 1.0 * k + 0.4 * float(torch.randn(1, generator=generator))
                lines.append(f"{mos:.5f} {fname}")
    (folder / "mos_with_names.txt").write_text("\n".join(lines) + "\n")


def _write_raid_standin(folder: Path, raid_refs: Tensor, generator: torch.Generator) -> None:
    """RAID layout: ``imagenes_bd/<t>_img_RR_level_LL.png`` (10 levels) and ``responses.csv``."""
    rows = ["Reference,Distorted,Curve_Value,Sigmas,Response,Estimated_MOS"]
    for r in range(len(raid_refs)):
        name = f"img_{r + 1:02d}"
        for t in RAID_TRANSFORMS:
            for k in range(1, 11):
                img = raid_transform(raid_refs[r:r + 1], t, k, generator)[0]
                save_image(img, folder / "imagenes_bd" / f"{t}_{name}_level_{k:02d}.png")
                resp = 0.0 if k == 1 else (k - 1) * 0.5 + 0.2 * float(torch.rand(1, generator=generator))
                rows.append(f"{name}.png,{t}_{name}_level_{k:02d}.png,{resp / 4.7:.4f},0.2,{resp:.4f},{5.4 - resp / 2:.4f}")
    (folder / "responses.csv").write_text("\n".join(rows) + "\n")


def _write_bapps_standin(folder: Path, refs: Tensor, generator: torch.Generator) -> None:
    """BAPPS 2AFC layout: ``2afc/val/traditional/{ref,p0,p1,judge}/NNNNNN``, two triplets per reference."""
    n_refs = len(refs)
    for i in range(2 * n_refs):
        base = folder / "2afc" / "val" / "traditional"
        ref = refs[i % n_refs]
        p0 = KADID_STYLE["gaussian_blur"](ref[None], 1 + i % 3, generator).clamp(0, 1)[0]
        p1 = KADID_STYLE["white_noise"](ref[None], 3, generator).clamp(0, 1)[0]
        for kind, img in (("ref", ref), ("p0", p0), ("p1", p1)):
            save_image(img, base / kind / f"{i:06d}.png")
        (base / "judge").mkdir(parents=True, exist_ok=True)
        np.save(base / "judge" / f"{i:06d}.npy", np.array([float(torch.rand(1, generator=generator))]))

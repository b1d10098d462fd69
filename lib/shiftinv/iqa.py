"""Image-quality datasets in their official layouts, hygiene checks, and embedded demo stimuli.

Every loader returns a *pair table* (``pandas.DataFrame``, one row per distorted image) with
columns ``ref`` (reference id, e.g. ``"I01"``), ``ref_path``, ``dist_path``, ``distortion``,
``level`` and ``score``, and ``table.attrs`` holding ``dataset`` and ``score_kind``
(``"quality"``: higher = better, e.g. MOS; ``"distortion"``: higher = worse, e.g. RAID's MLDS
responses; see :mod:`shiftinv.stats` for the sign convention).

Official layouts (a user downloads them; nothing here is fetched automatically):

- KADID-10k (http://database.mmsp-kn.de/kadid-10k-database.html, ~3 GB): ``<root>/images/I01.png``,
  ``<root>/images/I01_01_01.png`` ... and ``<root>/dmos.csv`` (``dist_img,ref_img,dmos,var``;
  ``dmos`` is a quality score despite its name: higher = better).
- TID2008 / TID2013 (https://www.ponomarenko.info/tid2013.htm): ``<root>/reference_images/I01.BMP``,
  ``<root>/distorted_images/i01_01_1.bmp`` (case varies), ``<root>/mos_with_names.txt``
  (``<mos> <file name>`` per line).
- RAID (Hugging Face ``paudauo/Affine_Transformation_Database``, Zenodo 10.5281/zenodo.15341729):
  ``<root>/imagenes_bd/{rot,trans,scale,gn}_img_XX_level_YY.png`` and ``<root>/responses.csv``
  (``Reference,Distorted,Curve_Value,Sigmas,Response,Estimated_MOS``). ``level_01`` is the
  undistorted anchor; :func:`load_raid` keeps or drops it explicitly (``include_anchors``).
- BAPPS 2AFC (https://github.com/richzhang/PerceptualSimilarity, ``scripts/download_dataset.sh``):
  ``<root>/2afc/<split>/<subset>/{ref,p0,p1,judge}/NNNNNN.{png,npy}``.

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

import hashlib
import io
import re
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from . import paths

KADID_DISTORTIONS: tuple[str, ...] = (
    "gaussian_blur", "lens_blur", "motion_blur", "color_diffusion", "color_shift", "color_quantization",
    "color_saturation_hsv", "color_saturation_lab", "jpeg2000", "jpeg", "white_noise", "white_noise_ycbcr",
    "impulse_noise", "multiplicative_noise", "denoise", "brighten", "darken", "mean_shift", "jitter",
    "non_eccentricity_patch", "pixelate", "quantization", "color_block", "high_sharpen", "contrast_change",
)
RAID_TRANSFORMS: tuple[str, ...] = ("rot", "trans", "scale", "gn")
KADID_URL = "http://database.mmsp-kn.de/kadid-10k-database.html"
TID_URL = "https://www.ponomarenko.info/tid2013.htm (TID2013) / https://www.ponomarenko.info/tid2008.htm (TID2008)"
RAID_URL = "https://huggingface.co/datasets/paudauo/Affine_Transformation_Database or doi:10.5281/zenodo.15341729"
BAPPS_URL = "https://github.com/richzhang/PerceptualSimilarity (scripts/download_dataset.sh)"


# ----------------------------------------------------------------------------------------------
# Images


def load_image(path: Path | str, size: int | None = None) -> Tensor:
    """Read an image file as (3, H, W) float in [0, 1] (RGB); ``size`` resizes the *shorter* side."""
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("RGB")
        if size is not None and min(img.size) != size:
            w, h = img.size
            scale = size / min(w, h)
            img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BICUBIC)
        arr = np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


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
    from . import utils

    cache: dict[str, Tensor] = {}

    def read(path: str) -> Tensor:
        return read_for_metrics(path, size, square)

    bar = utils.progress(total=len(table), desc=progress, unit="pair") if progress else None

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


def _find_case_insensitive(folder: Path, name: str, index: dict[str, Path] | None = None) -> Path | None:
    if index is None:
        index = {p.name.lower(): p for p in folder.iterdir()}
    return index.get(name.lower())


def _require_root(root: Path | str | None, what: str, param: str, how: str) -> Path:
    """The dataset folder given by notebook parameter ``param``; an empty value names the parameter."""
    if root is None or not str(root).strip():
        raise ValueError(f"{what}: no folder given. Set the notebook parameter {param} to the folder ({how})")
    return paths.require_dir(root, what, f"{how} (notebook parameter {param}).")


def decode_check(paths_: Sequence[str], what: str, how: str, desc: str | None = None) -> dict[str, str]:
    """Decode every image file once (with a progress bar) and return ``{path: pixel hash}``.

    A file that cannot be decoded (truncated, corrupt, not an image) raises a ``ValueError``
    naming it and saying ``how`` to get a good copy, instead of PIL's bare ``OSError: image file
    is truncated`` in the middle of a scoring run. The hashes are :func:`image_hash`'s.
    """
    from . import utils

    out: dict[str, str] = {}
    for path in utils.progress(list(dict.fromkeys(paths_)), desc=desc or f"checking {what} images", unit="img"):
        try:
            out[path] = image_hash(path)
        except (OSError, SyntaxError, ValueError) as exc:
            raise ValueError(f"{what}: image file '{path}' cannot be decoded ({type(exc).__name__}: {exc}). "
                             f"{how}") from exc
    return out


def decode_check_table(table: pd.DataFrame, what: str, how: str) -> pd.DataFrame:
    """:func:`decode_check` of a pair table's images; adds ``ref_hash`` and ``dist_hash``."""
    return _add_hashes(table.copy(), what, how)


def _add_hashes(table: pd.DataFrame, what: str, how: str) -> pd.DataFrame:
    hashes = decode_check(list(table["ref_path"]) + list(table["dist_path"]), what, how)
    table["ref_hash"] = table["ref_path"].map(hashes)
    table["dist_hash"] = table["dist_path"].map(hashes)
    return table


def _require_files(table: pd.DataFrame, what: str, how: str) -> None:
    missing = [p for p in list(table["dist_path"]) + list(table["ref_path"].unique()) if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"{what}: {len(missing)} image file(s) listed in the scores are missing, e.g. "
                                f"{missing[:3]}. {how}")


# ----------------------------------------------------------------------------------------------
# Loaders


def read_kadid_scores(csv_path: Path | str) -> pd.DataFrame:
    """Parse a KADID-10k ``dmos.csv`` into ``ref, dist, distortion, level, score, var`` (no images needed)."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"KADID-10k score file '{csv_path}' not found. Get KADID-10k from {KADID_URL}")
    raw = pd.read_csv(csv_path)
    need = {"dist_img", "ref_img", "dmos"}
    if not need <= set(raw.columns):
        raise ValueError(f"'{csv_path}' is not a KADID-10k dmos.csv: columns {list(raw.columns)}, need {sorted(need)}")
    parts = raw["dist_img"].str.extract(r"^(I\d+)_(\d+)_(\d+)\.\w+$", flags=re.IGNORECASE)
    if parts.isna().any().any():
        bad = raw["dist_img"][parts.isna().any(axis=1)].head(3).tolist()
        raise ValueError(f"unexpected KADID-10k file names (want I01_01_01.png): {bad}")
    dist_idx = parts[1].astype(int)
    out = pd.DataFrame({
        "ref": parts[0].str.upper(), "dist": raw["dist_img"], "ref_img": raw["ref_img"],
        "distortion": [KADID_DISTORTIONS[i - 1] if 1 <= i <= 25 else f"d{i:02d}" for i in dist_idx],
        "level": parts[2].astype(int), "score": raw["dmos"].astype(float),
        "var": raw["var"].astype(float) if "var" in raw else np.nan,
    })
    out.attrs.update(dataset="KADID-10k", score_kind="quality")
    return out


def load_kadid10k(root: Path | str, check_files: bool = True, decode: bool = False,
                  param: str = "KADID_DIR") -> pd.DataFrame:
    """KADID-10k pair table from ``<root>/images`` and ``<root>/dmos.csv`` (10,125 pairs when complete).

    ``decode=True`` decodes every image once (progress bar; about a minute for the 10k files) so
    that a truncated file is named here, and adds ``ref_hash``/``dist_hash`` pixel hashes (used by
    :func:`find_identical_pairs`). ``param`` is the notebook parameter named in errors.
    """
    root = _require_root(root, "KADID-10k folder", param, f"download and unzip KADID-10k from {KADID_URL}; "
                         "the folder holds images/ and dmos.csv")
    images = paths.require_dir(root / "images", "KADID-10k images/ folder", f"Expected {root}/images/I01.png ...")
    table = read_kadid_scores(root / "dmos.csv")
    table["ref_path"] = [str(images / r) for r in table["ref_img"]]
    table["dist_path"] = [str(images / d) for d in table["dist"]]
    if check_files:
        _require_files(table, f"KADID-10k in '{root}'", f"Re-extract the archive from {KADID_URL}.")
    table = table.drop(columns=["ref_img"])
    if decode:
        table = _add_hashes(table, "KADID-10k", f"Re-extract it from the archive ({KADID_URL}).")
    return table


def load_tid(root: Path | str, version: str = "2013", check_files: bool = True, decode: bool = False,
             param: str | None = None) -> pd.DataFrame:
    """TID2008 / TID2013 pair table (``mos_with_names.txt``; file names matched case-insensitively).

    ``decode`` and ``param`` (default ``TID2008_DIR`` / ``TID2013_DIR``) as in :func:`load_kadid10k`.
    """
    if version not in ("2008", "2013"):
        raise ValueError(f"TID version must be '2008' or '2013', got {version!r}")
    what = f"TID{version} folder"
    param = param or f"TID{version}_DIR"
    root = _require_root(root, what, param, f"download TID{version} from {TID_URL}; the folder holds "
                         "reference_images/, distorted_images/ and mos_with_names.txt")
    ref_dir = paths.require_dir(root / "reference_images", f"TID{version} reference_images/",
                                f"Expected in {root}: set {param} to the folder that holds it.")
    dist_dir = paths.require_dir(root / "distorted_images", f"TID{version} distorted_images/",
                                 f"Expected in {root}: set {param} to the folder that holds it.")
    mos_file = root / "mos_with_names.txt"
    if not mos_file.is_file():
        raise FileNotFoundError(f"TID{version} scores '{mos_file}' not found (lines '<mos> <image name>'); "
                                f"it ships with the official archive ({TID_URL}).")
    ref_index = {p.name.lower(): p for p in ref_dir.iterdir()}
    dist_index = {p.name.lower(): p for p in dist_dir.iterdir()}
    rows = []
    for line_no, line in enumerate(mos_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            mos_text, name = line.split()
            mos = float(mos_text)
        except ValueError:
            raise ValueError(f"{mos_file}:{line_no}: expected '<mos> <image name>', got {line!r}") from None
        m = re.match(r"^i(\d+)_(\d+)_(\d+)\.bmp$", name, flags=re.IGNORECASE)
        if not m:
            raise ValueError(f"{mos_file}:{line_no}: unexpected TID image name {name!r} (want i01_01_1.bmp)")
        ref = f"I{int(m.group(1)):02d}"
        dist_path = dist_index.get(name.lower())
        ref_path = ref_index.get(f"{ref.lower()}.bmp")
        if check_files and (dist_path is None or ref_path is None):
            raise FileNotFoundError(f"TID{version}: image for '{name}' or its reference {ref}.bmp missing in {root}")
        rows.append({"ref": ref, "dist": name, "distortion": f"tid{int(m.group(2)):02d}", "level": int(m.group(3)),
                     "score": mos, "ref_path": str(ref_path or ref_dir / f"{ref}.BMP"),
                     "dist_path": str(dist_path or dist_dir / name)})
    table = pd.DataFrame(rows)
    if decode:
        table = _add_hashes(table, f"TID{version}", f"Re-extract it from the official archive ({TID_URL}).")
    table.attrs.update(dataset=f"TID{version}", score_kind="quality")
    return table


def read_raid_responses(csv_path: Path | str) -> pd.DataFrame:
    """Parse RAID ``responses.csv``: ``ref, transform, level, dist, curve, response, sigma, estimated_mos``.

    ``response`` is the MLDS perceptual scale (0 at the anchor, higher = more different);
    ``curve`` is the same curve normalised to [0, 1] per image and transform.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"RAID responses '{csv_path}' not found. Get RAID from {RAID_URL}")
    raw = pd.read_csv(csv_path)
    need = ["Reference", "Distorted", "Curve_Value", "Response"]
    missing = [c for c in need if c not in raw.columns]
    if missing:
        raise ValueError(f"'{csv_path}' is not a RAID responses.csv: column(s) {missing} missing "
                         f"(found {list(raw.columns)}). Use the responses.csv from {RAID_URL}.")
    parts = raw["Distorted"].str.extract(r"^(rot|trans|scale|gn)_img_(\d+)_level_(\d+)\.\w+$")
    if parts.isna().any().any():
        raise ValueError(f"unexpected RAID names: {raw['Distorted'][parts.isna().any(axis=1)].head(3).tolist()}")
    out = pd.DataFrame({
        "ref": [f"img_{int(i):02d}" for i in parts[1]], "transform": parts[0], "level": parts[2].astype(int),
        "dist": raw["Distorted"], "curve": raw["Curve_Value"].astype(float), "response": raw["Response"].astype(float),
        "sigma": raw.get("Sigmas", np.nan), "estimated_mos": raw.get("Estimated_MOS", np.nan),
        "score": raw["Response"].astype(float),
    })
    out["distortion"] = out["transform"]
    out.attrs.update(dataset="RAID", score_kind="distortion")
    return out


def load_raid(root: Path | str, include_anchors: bool = False, check_files: bool = True,
              param: str = "RAID_DIR") -> pd.DataFrame:
    """RAID pair table from ``<root>/imagenes_bd`` and ``<root>/responses.csv``.

    The reference of each pair is the undistorted ``level_01`` image of the same transform
    (the anchor shown to observers); ``img_XX.png`` is used instead when it exists in
    ``imagenes_bd/`` or ``<root>``. ``include_anchors=False`` drops the level_01 rows
    (distance 0 by construction, response 0 by definition: they inflate correlations).
    """
    root = _require_root(root, "RAID folder", param, f"download RAID from {RAID_URL}; the folder holds "
                         "imagenes_bd/ and responses.csv")
    img_dir = paths.require_dir(root / "imagenes_bd", "RAID imagenes_bd/ folder",
                                f"Expected in {root}: set {param} to the folder that holds it.")
    table = read_raid_responses(root / "responses.csv")
    index = {p.name.lower(): p for p in img_dir.iterdir()}
    top = {p.name.lower(): p for p in root.iterdir() if p.is_file()}
    ref_paths = []
    for ref, tr in zip(table["ref"], table["transform"]):
        own = index.get(f"{ref}.png") or top.get(f"{ref}.png")
        ref_paths.append(str(own if own is not None else img_dir / f"{tr}_{ref}_level_01.png"))
    table["ref_path"] = ref_paths
    table["dist_path"] = [str(index.get(d.lower(), img_dir / d)) for d in table["dist"]]
    if not include_anchors:
        table = table[table["level"] > 1].reset_index(drop=True)
    table.attrs.update(dataset="RAID", score_kind="distortion", include_anchors=include_anchors)
    if check_files:
        _require_files(table, f"RAID in '{root}'", f"Download the images from {RAID_URL}.")
    return table


def load_bapps(root: Path | str, split: str = "val", subsets: Sequence[str] | None = None) -> pd.DataFrame:
    """BAPPS 2AFC triplets: ``ref_path, p0_path, p1_path, judge`` (fraction of humans preferring p1)."""
    base = paths.require_dir(Path(root) / "2afc" / split, f"BAPPS 2afc/{split} folder",
                             f"Download BAPPS from {BAPPS_URL} and pass the folder that holds 2afc/.")
    rows = []
    chosen = subsets or sorted(p.name for p in base.iterdir() if p.is_dir())
    for subset in chosen:
        folder = paths.require_dir(base / subset, f"BAPPS subset {subset}", f"Expected in {base}.")
        for judge in sorted((folder / "judge").glob("*.npy")):
            stem = judge.stem
            trip = {k: folder / k / f"{stem}.png" for k in ("ref", "p0", "p1")}
            missing = [str(p) for p in trip.values() if not p.is_file()]
            if missing:
                raise FileNotFoundError(f"BAPPS triplet {subset}/{stem} incomplete: missing {missing}")
            value = float(np.load(judge, allow_pickle=False).reshape(-1)[0])
            rows.append({"subset": subset, "id": stem, "ref_path": str(trip["ref"]), "p0_path": str(trip["p0"]),
                         "p1_path": str(trip["p1"]), "judge": value})
    if not rows:
        raise FileNotFoundError(f"no BAPPS triplets (judge/*.npy) under {base}")
    table = pd.DataFrame(rows)
    table.attrs.update(dataset=f"BAPPS-2afc-{split}")
    return table


# ----------------------------------------------------------------------------------------------
# Hygiene


def image_hash(path: Path | str) -> str:
    """SHA-1 of the decoded RGB pixels and their shape (identical pictures in different files/formats match)."""
    from PIL import Image

    with Image.open(path) as img:
        arr = np.ascontiguousarray(np.asarray(img.convert("RGB")))
    return hashlib.sha1(str(arr.shape).encode() + arr.tobytes()).hexdigest()


def find_identical_pairs(table: pd.DataFrame) -> pd.DataFrame:
    """Rows whose distorted image is pixel-identical to its reference (by hash).

    Such pairs have distance 0 for every metric but a human score that is not the maximum: they
    are ties that no metric can order, and should be reported (KADID-10k has some).
    """
    if {"ref_hash", "dist_hash"} <= set(table.columns):  # decoded when loaded (decode=True)
        return table[(table["ref_hash"] == table["dist_hash"]).to_numpy()]
    hashes = decode_check(list(table["ref_path"]) + list(table["dist_path"]), "pair table", "",
                          desc="hashing images")
    same = [hashes[d] == hashes[r] for r, d in zip(table["ref_path"], table["dist_path"])]
    return table[np.asarray(same, dtype=bool)]


def shared_references(train: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """Reference images used by both tables (by pixel hash, so renamed copies are found).

    Returns one row per shared picture with its ids in each table. TID2008 and TID2013 share all
    25 references: a model selected on TID2013 after training on TID2008 is not held out.
    """
    def hashes(table: pd.DataFrame) -> dict[str, str]:
        return {image_hash(p): ref for ref, p in table.groupby("ref")["ref_path"].first().items()}

    a, b = hashes(train), hashes(test)
    rows = [{"hash": h, "ref_train": a[h], "ref_test": b[h]} for h in sorted(set(a) & set(b))]
    return pd.DataFrame(rows, columns=["hash", "ref_train", "ref_test"])


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

    Rotation uses :func:`shiftinv.transforms.rotate` (mirror padding, frame size kept); scaling is a
    continuous zoom about the centre (bilinear ``grid_sample``, mirror padding) so that 1 % steps
    exist at any image size; translation is a horizontal shift by a fraction of the side (Fourier
    sub-pixel shift on the mirror mosaic, :func:`shifts.translate`); Gaussian noise needs ``generator``.
    """
    from . import shifts, transforms

    if transform not in RAID_APPROX_LEVELS:
        raise ValueError(f"unknown RAID transform {transform!r}; choose from {RAID_TRANSFORMS}")
    if not 1 <= level <= 10:
        raise ValueError(f"RAID levels run from 1 (anchor) to 10, got {level}")
    if level == 1:  # the undistorted anchor: the image itself (no resampling, no noise drawn)
        return x.clone()
    value = RAID_APPROX_LEVELS[transform][level - 1]
    if transform == "rot":
        return transforms.rotate(x, value)
    if transform == "scale":
        return zoom(x, value)
    if transform == "trans":
        return shifts.translate(x, value * x.shape[-1], 0.0, mode="mosaic") if value else x.clone()
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


def kodak_references(kodak_dir: Path | str, size: int, images: Sequence[int] = tuple(range(1, 25))
                     ) -> tuple[Tensor, list[str]]:
    """Kodak images ``kodimXX.png`` as RAID references ``img_XX``: central square, resized to ``size``."""
    kodak_dir = paths.require_dir(kodak_dir, "Kodak images folder",
                                  "Point KODAK_DIR at a folder with kodim01.png .. kodim24.png "
                                  "(http://r0k.us/graphics/kodak/; here ../shared/data/kodak).")
    out, names = [], []
    for i in images:
        path = Path(kodak_dir) / f"kodim{i:02d}.png"
        if not path.is_file():
            raise FileNotFoundError(f"Kodak image '{path}' is missing")
        out.append(center_square(load_image(path), size))
        names.append(f"img_{i:02d}")
    return torch.stack(out), names


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


def resolve_raid_source(source: str, kodak_dir: Path | str, responses_csv: Path | str) -> str:
    """``auto`` -> ``raid-approx`` when the Kodak images and RAID responses are there, else
    ``embedded``; ``raid``, ``raid-approx`` and ``embedded`` pass (anything else is an error)."""
    if source == "auto":
        ok = (Path(kodak_dir) / "kodim01.png").is_file() and Path(responses_csv).is_file()
        return "raid-approx" if ok else "embedded"
    if source not in ("raid", "raid-approx", "embedded"):
        raise ValueError(f"RAID_SOURCE must be auto, raid, raid-approx or embedded, got {source!r}")
    return source


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


# ----------------------------------------------------------------------------------------------
# Stand-ins in the official layouts (tests and smoke runs of the `paper` profile)


def demo_frames(height: int, width: int, names: Sequence[str] = DEMO_IMAGES) -> Tensor:
    """Embedded photographs as (R, 3, height, width) frames: central square resized to the longer
    side, then the central rows/columns kept (stand-ins for 384x512 KADID/TID frames)."""
    squares, _ = demo_references(max(height, width), names)
    top, left = (squares.shape[-2] - height) // 2, (squares.shape[-1] - width) // 2
    return squares[:, :, top:top + height, left:left + width].contiguous()


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


def first_pairs_per_ref(table: pd.DataFrame, k: int, by: Sequence[str] = ("ref",)) -> pd.DataFrame:
    """The first ``k`` rows of each ``by`` group (smoke runs on dataset folders); ``k=0`` keeps all."""
    if not k:
        return table
    out = table.groupby(list(by), sort=False).head(k).reset_index(drop=True)
    out.attrs.update(table.attrs)
    return out


def load_into_memory(table: pd.DataFrame, size: int | None = None, square: bool = True
                     ) -> tuple[Tensor, Tensor, pd.DataFrame]:
    """Read a pair table's images: ``(refs (R,3,H,W), images (M,3,H,W), table + ref_index/index)``.

    ``square=True`` takes the central square and resizes it to ``size`` (so every backbone,
    APS included, gets a side that is a multiple of 32 when ``size`` is); ``size`` 0 or ``None``
    keeps the native frame, centrally cropped to multiples of 32 (RAID 454 -> 448; KADID/TID
    384x512 unchanged; all images of a dataset must then share one size).
    """
    def read(path: str) -> Tensor:
        return read_for_metrics(path, size, square)

    ref_paths = list(dict.fromkeys(table["ref_path"]))
    refs = torch.stack([read(p) for p in ref_paths])
    images = torch.stack([read(p) for p in table["dist_path"]])
    out = table.copy()
    out["ref_index"] = [ref_paths.index(p) for p in table["ref_path"]]
    out["index"] = np.arange(len(table))
    return refs, images, out

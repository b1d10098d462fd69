"""Image-quality datasets in their official layouts, hygiene checks, and embedded demo stimuli.

Every loader returns a *pair table* (``pandas.DataFrame``, one row per distorted image) with
columns ``ref`` (reference id, e.g. ``"I01"``), ``ref_path``, ``dist_path``, ``distortion``,
``level`` and ``score``, and ``table.attrs`` holding ``dataset`` and ``score_kind``
(``"quality"``: higher = better, e.g. MOS; ``"distortion"``: higher = worse, e.g. RAID's MLDS
responses; see :mod:`shiftinv.perceptual.stats` for the sign convention).

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

Embedded stimuli (no download) are made in :mod:`shiftinv.perceptual.stimuli`; reading and batching
images in :mod:`shiftinv.perceptual.images`.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..workbook import imageio, paths
from .images import read_for_metrics

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

    Files that cannot be decoded (truncated, corrupt, not an image) are collected and reported
    together at the end in one :class:`~shiftinv.workbook.imageio.ImageReadError` (a ``ValueError``)
    naming each and saying ``how`` to get a good copy, instead of PIL's bare ``OSError: image file
    is truncated`` in the middle of a scoring run. The hashes are :func:`image_hash`'s.
    """
    from ..workbook import runtime

    out: dict[str, str] = {}
    bad: list[tuple[Path, str]] = []
    for path in runtime.progress(list(dict.fromkeys(paths_)), desc=desc or f"checking {what} images", unit="img"):
        try:
            out[path] = image_hash(path)
        except imageio.ImageReadError as err:
            bad.append((Path(path), err.reason))
    imageio.raise_for_bad(bad, f"{how} ({what})" if how else f"({what})")
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
    arr = np.ascontiguousarray(np.asarray(imageio.open_rgb(path)))
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


def resolve_raid_source(source: str, kodak_dir: Path | str, responses_csv: Path | str) -> str:
    """``auto`` -> ``raid-approx`` when the Kodak images and RAID responses are there, else
    ``embedded``; ``raid``, ``raid-approx`` and ``embedded`` pass (anything else is an error)."""
    if source == "auto":
        ok = (Path(kodak_dir) / "kodim01.png").is_file() and Path(responses_csv).is_file()
        return "raid-approx" if ok else "embedded"
    if source not in ("raid", "raid-approx", "embedded"):
        raise ValueError(f"RAID_SOURCE must be auto, raid, raid-approx or embedded, got {source!r}")
    return source


def first_pairs_per_ref(table: pd.DataFrame, k: int, by: Sequence[str] = ("ref",)) -> pd.DataFrame:
    """The first ``k`` rows of each ``by`` group (smoke runs on dataset folders); ``k=0`` keeps all."""
    if not k:
        return table
    out = table.groupby(list(by), sort=False).head(k).reset_index(drop=True)
    out.attrs.update(table.attrs)
    return out


def load_into_memory(table: pd.DataFrame, size: int | None = None, square: bool = True, how: str = ""
                     ) -> tuple[Tensor, Tensor, pd.DataFrame]:
    """Read a pair table's images: ``(refs (R,3,H,W), images (M,3,H,W), table + ref_index/index)``.

    ``square=True`` takes the central square and resizes it to ``size`` (so every backbone,
    APS included, gets a side that is a multiple of 32 when ``size`` is); ``size`` 0 or ``None``
    keeps the native frame, centrally cropped to multiples of 32 (RAID 454 -> 448; KADID/TID
    384x512 unchanged; all images of a dataset must then share one size). Files that cannot be
    decoded are named together in one :class:`~shiftinv.workbook.imageio.ImageReadError`, with ``how``.
    """
    bad: list[tuple[Path, str]] = []

    def read(path: str) -> Tensor | None:
        try:
            return read_for_metrics(path, size, square)
        except imageio.ImageReadError as err:  # collected: every bad file is named at the end
            bad.append((Path(path), err.reason))
            return None

    ref_paths = list(dict.fromkeys(table["ref_path"]))
    refs = [read(p) for p in ref_paths]
    images = [read(p) for p in table["dist_path"]]
    imageio.raise_for_bad(bad, how or f"Get a good copy of the {table.attrs.get('dataset', 'dataset')} images.")
    refs, images = torch.stack(refs), torch.stack(images)
    out = table.copy()
    out["ref_index"] = [ref_paths.index(p) for p in table["ref_path"]]
    out["index"] = np.arange(len(table))
    return refs, images, out

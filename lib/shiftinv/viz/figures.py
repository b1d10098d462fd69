"""One helper to save every figure: PNG + PDF + the numbers behind it, and a manifest.

File names follow the notebook that makes the figure (``02_params.png``), so a
figure leads to its source. Each profile has its own folder (``figures/demo/``,
``figures/paper/``; see :mod:`shiftinv.workbook.paths`), so one profile never overwrites
another's figures.

Where a figure goes (:func:`save_figure` without ``out_dir``):

- ``$SHIFTINV_FIGURES`` when set: an exact folder. ``make figures`` (the runner
  :mod:`shiftinv.workbook.runner`) sets it, for each notebook, to a staging folder and moves
  the files into ``figures/<profile>/`` only when the notebook succeeds; the test tier
  sets it to temporary folders.
- else ``figures/<profile>/`` (``build/smoke/figures/<profile>/`` when smoke), the
  profile set by :func:`use_profile` (every notebook calls
  ``figures.use_profile(PROFILE, smoke=SMOKE)`` after its parameters cell, so a run in
  JupyterLab files its figures like ``make figures`` does) or by ``$SHIFTINV_PROFILE``.

Safe against concurrency and failure: a figure's PNG, PDF and data file are rendered
in memory, written to unique temporary names, then renamed together while the
folder is locked, and the folder's ``MANIFEST.json`` is updated in the same lock.
Two processes saving the same figure leave one consistent set, never a PNG from
one and a CSV from the other.

Deterministic: PNG/PDF metadata carry no timestamps or software versions, numbers in
data files are written to :data:`SIGNIFICANT_DIGITS` significant digits, and the
manifest names the run (notebook, profile, parameters, code commit) without times or
host names, so re-running a notebook on the same numbers gives identical files.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import math
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..workbook import paths

#: Colour-blind-safe palette used across all notebooks.
PALETTE = "colorblind"


#: The manifest of a figure folder: which run wrote each file.
MANIFEST = "MANIFEST.json"


#: Extensions of the files that belong to a figure (image files first).
FIGURE_SUFFIXES = (".png", ".pdf")


DATA_SUFFIXES = (".csv", ".json")


#: Significant digits of the numbers in data files. Data files are compared across runs and
#: machines (``git status`` after ``make figures``), and floating-point results differ between
#: machines in their last digits (float32 sums in another order: about 1e-7 relative, grown to
#: about 1e-6 by long reductions; the primer's 0.00585665 vs 0.00585666). Four digits (0.01 %,
#: finer than any figure or README number needs) hide such differences unless a value lies
#: within round-off of a rounding boundary (chance about difference / 1e-4, 1-2 % per value for
#: a 1e-6 difference), so rounding reduces but cannot replace deterministic computation. At five
#: digits the primer's pair still differs (0.0058566 vs 0.0058567); at four both are 0.005857.
SIGNIFICANT_DIGITS = 4


#: Folders under the code of the figures: the manifest names the last commit that changed them.
CODE_PATHS = ("lib", "notebooks", "requirements.txt", "pyproject.toml")


_ACTIVE: dict[str, Any] = {"profile": None, "smoke": False}


def set_style() -> None:
    """Apply the workbook's seaborn/matplotlib style (call once per notebook)."""
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", palette=PALETTE)
    matplotlib.rcParams.update(
        {
            "figure.dpi": 100,
            "savefig.dpi": 150,
            "savefig.bbox": "tight",
            "axes.titlesize": "medium",
            "image.cmap": "viridis",
            "svg.hashsalt": "shiftinv",
            "pdf.compression": 6,
        }
    )


# --------------------------------------------------------------------------- where figures go


def use_profile(profile: str, smoke: bool = False) -> Path:
    """File this process's figures under ``profile`` (``figures/<profile>/``); return the folder.

    Notebooks call it right after their parameters cell:
    ``figures.use_profile(PROFILE, smoke=SMOKE)``. Smoke figures go to
    ``build/smoke/figures/<profile>/``, never into the committed folders.
    ``$SHIFTINV_FIGURES``, when set (runner, tests), still decides the folder.
    """
    _ACTIVE["profile"] = paths.check_profile_name(profile)
    _ACTIVE["smoke"] = bool(smoke)
    return output_dir()


def active_profile() -> tuple[str | None, bool]:
    """(profile, smoke) set by :func:`use_profile`, else ``$SHIFTINV_PROFILE`` / ``$SHIFTINV_SMOKE``."""
    if _ACTIVE["profile"] is not None:
        return _ACTIVE["profile"], _ACTIVE["smoke"]
    return os.environ.get("SHIFTINV_PROFILE") or None, os.environ.get("SHIFTINV_SMOKE", "0") == "1"


def output_dir() -> Path:
    """The folder :func:`save_figure` writes to by default (see the module docstring)."""
    profile, smoke = active_profile()
    return paths.figures_dir(profile, smoke)


# --------------------------------------------------------------------------- numbers


def format_number(value: float) -> str:
    """A float as written in data files: integral values as integers, others to
    :data:`SIGNIFICANT_DIGITS` significant digits (``0.00585666`` -> ``"0.005857"``)."""
    value = float(value)
    if math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))  # counts stay exact; -0.0 -> "0"
    return f"{value:.{SIGNIFICANT_DIGITS}g}"


def _jsonable(obj: Any, digits: bool = True) -> Any:
    """``obj`` as JSON-ready values; ``digits``: floats to :data:`SIGNIFICANT_DIGITS` (data files)."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v, digits) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist(), digits)
    if hasattr(obj, "detach") and hasattr(obj, "cpu"):  # torch tensor
        return _jsonable(obj.detach().cpu().numpy(), digits)
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.floating, float)):
        value = float(obj)
        if math.isnan(value):
            return None
        return float(format_number(value)) if digits and math.isfinite(value) else value
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def encode_data(data: pd.DataFrame | Mapping[str, Any]) -> tuple[str, bytes]:
    """``(suffix, bytes)`` of a figure's data: a DataFrame as CSV, a mapping as JSON."""
    if isinstance(data, pd.DataFrame):
        return ".csv", data.to_csv(index=False, float_format=format_number, lineterminator="\n").encode()
    if isinstance(data, Mapping):
        return ".json", (json.dumps(_jsonable(data), indent=2, sort_keys=True) + "\n").encode()
    raise TypeError(f"figure data must be a pandas DataFrame or a dict, got {type(data).__name__}")


def save_data(data: pd.DataFrame | Mapping[str, Any], stem: Path) -> Path:
    """Write ``data`` beside a figure (``stem`` + ``.csv``/``.json``) atomically, with the manifest."""
    stem = Path(stem)
    suffix, payload = encode_data(data)
    name = stem.name + suffix
    publish_files(stem.parent, {name: payload}, run_info())
    return stem.parent / name


def _render(fig: plt.Figure, fmt: str) -> bytes:
    # No creation dates or software versions: identical figures give identical bytes.
    metadata = {"png": {"Software": None},
                "pdf": {"Creator": None, "Producer": None, "CreationDate": None}}[fmt]
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, metadata=metadata)
    return buffer.getvalue()


def save_figure(
    fig: plt.Figure,
    name: str,
    data: pd.DataFrame | Mapping[str, Any] | None,
    out_dir: Path | None = None,
    run: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Save ``fig`` as ``<name>.png`` and ``<name>.pdf`` with its data beside it, all together.

    Args:
        fig: the matplotlib figure.
        name: file stem, prefixed by the notebook number (``"01_conv_equivariance"``).
        data: the numbers drawn (DataFrame -> CSV, dict -> JSON). Required unless
            the figure shows only images; pass ``None`` explicitly then (a data file
            left from an earlier run of this figure is removed).
        out_dir: defaults to :func:`output_dir` (``figures/<profile>/``, see the module docstring).
        run: what the manifest records as the run that wrote the files (default :func:`run_info`).

    Returns:
        ``{"png": path, "pdf": path, "data": path}`` (``data`` absent if ``None``).
    """
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"figure name must be a plain file stem, got {name!r}")
    out_dir = Path(out_dir) if out_dir is not None else output_dir()
    payloads = {name + ".png": _render(fig, "png"), name + ".pdf": _render(fig, "pdf")}
    data_name = None
    if data is not None:
        suffix, payload = encode_data(data)
        data_name = name + suffix
        payloads[data_name] = payload
    stale = [name + s for s in DATA_SUFFIXES if name + s != data_name]
    publish_files(out_dir, payloads, dict(run) if run is not None else run_info(), remove=stale)
    written = {"png": out_dir / f"{name}.png", "pdf": out_dir / f"{name}.pdf"}
    if data_name is not None:
        written["data"] = out_dir / data_name
    return written


# --------------------------------------------------------------------------- the run behind a file


@functools.lru_cache(maxsize=None)
def code_commit() -> dict[str, Any]:
    """``{"commit": ..., "code_modified": bool}``: the last commit that changed the code behind
    the figures (:data:`CODE_PATHS`), and whether that code has uncommitted changes.

    The commit of the code, not ``HEAD``: committing the figures themselves does not change
    it, so re-running at the same code gives a byte-identical manifest. ``None`` outside git.
    """
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(paths.ROOT), *args], capture_output=True, text=True,
                                 timeout=30, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    commit = git("log", "-1", "--format=%H", "--", *CODE_PATHS)
    status = git("status", "--porcelain", "--", *CODE_PATHS) if commit else None
    return {"commit": commit or None, "code_modified": bool(status) if commit else None}


def run_info() -> dict[str, Any]:
    """The run that is writing figures now, as the manifest records it.

    Under ``make figures`` the runner passes it in ``$SHIFTINV_RUN`` (notebook, profile,
    smoke, parameters, commit). Otherwise (JupyterLab, a script) it is an interactive run:
    the notebook from JupyterLab's ``$JPY_SESSION_NAME`` when known, the profile from
    :func:`use_profile`, no parameters.
    """
    given = os.environ.get("SHIFTINV_RUN")
    if given:
        return json.loads(given)
    profile, smoke = active_profile()
    session = os.environ.get("JPY_SESSION_NAME")
    return {"by": "interactive", "notebook": Path(session).stem if session else None, "profile": profile,
            "smoke": smoke, "parameters": None, **code_commit()}


def _run_id(run: Mapping[str, Any]) -> str:
    text = json.dumps(_jsonable(run, digits=False), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# --------------------------------------------------------------------------- writing a folder


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (``flock`` on the folder itself; a no-op where
    unsupported). Writers of one folder take it to rename files and update the manifest."""
    try:
        import fcntl
    except ImportError:  # not POSIX: renames stay atomic one by one
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_temp(folder: Path, name: str, payload: bytes) -> Path:
    """Write ``payload`` to a new, uniquely named hidden file in ``folder`` (fsynced)."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    try:
        if hasattr(os, "fchmod"):  # mkstemp makes 0600; a figure is as readable as any file
            os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of ``folder`` (``{"files": {name: {"run", "sha256"}}, "runs": {id: run}}``);
    empty when absent or unreadable (it is rebuilt from the next write on)."""
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"files": {}, "runs": {}}
    if not isinstance(manifest, dict):
        return {"files": {}, "runs": {}}
    manifest.setdefault("files", {})
    manifest.setdefault("runs", {})
    return manifest


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Write the manifest (caller holds the lock): entries of files that are gone and runs no
    file refers to are dropped; keys sorted, no times, so the same files give the same bytes."""
    files = {n: e for n, e in sorted(manifest["files"].items()) if (folder / n).is_file() and isinstance(e, dict)}
    used = {e.get("run") for e in files.values()}
    runs = {k: v for k, v in sorted(manifest["runs"].items()) if k in used}
    text = json.dumps({"about": "the run that wrote each file of this folder (shiftinv.viz.figures)",
                       "files": files, "runs": runs}, indent=2, sort_keys=True) + "\n"
    path = folder / MANIFEST
    if path.is_file() and path.read_text() == text:
        return
    tmp = _write_temp(folder, MANIFEST, text.encode())
    os.replace(tmp, path)


def publish_files(folder: Path, payloads: Mapping[str, bytes], run: Mapping[str, Any],
                  remove: tuple[str, ...] | list[str] = ()) -> list[Path]:
    """Write several files of ``folder`` together, and record ``run`` in its manifest.

    Each payload goes to a unique temporary file first; then, with the folder locked,
    all are renamed into place, the files named in ``remove`` are deleted, and the
    manifest is updated. A reader never sees a half-written file, and two writers of
    the same names leave one writer's complete set.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    run = _jsonable(dict(run), digits=False)  # parameters as given, not rounded
    run_id = _run_id(run)
    temps: dict[str, Path] = {}
    try:
        for name, payload in payloads.items():
            temps[name] = _write_temp(folder, name, payload)
        with locked(folder):
            manifest = read_manifest(folder)
            for name, tmp in temps.items():
                os.replace(tmp, folder / name)
                manifest["files"][name] = {"run": run_id, "sha256": hashlib.sha256(payloads[name]).hexdigest()}
            for name in remove:
                (folder / name).unlink(missing_ok=True)
                manifest["files"].pop(name, None)
            manifest["runs"][run_id] = run
            _write_manifest(folder, manifest)
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)
    return [folder / name for name in payloads]


def publish_folder(staging: Path, folder: Path, run: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """Move every file a notebook wrote into ``staging`` to ``folder``, then delete ``staging``.

    Used by the runner once a notebook has succeeded. Under the folder's lock: the files
    replace their namesakes; files that an earlier run of the same notebook by the same kind
    of run (``run["by"]``) wrote and this run did not are deleted (they would be stale); the
    manifest records ``run`` for every published file.

    Returns:
        (published names, deleted stale names).
    """
    import shutil

    staging, folder = Path(staging), Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    run = _jsonable(dict(run), digits=False)  # parameters as given, not rounded
    run_id = _run_id(run)
    names = sorted(p.name for p in staging.iterdir()
                   if p.is_file() and p.name != MANIFEST and not p.name.startswith("."))
    with locked(folder):
        manifest = read_manifest(folder)
        for name in names:
            digest = hashlib.sha256((staging / name).read_bytes()).hexdigest()
            os.replace(staging / name, folder / name)
            manifest["files"][name] = {"run": run_id, "sha256": digest}
        def same_writer(entry: Mapping[str, Any]) -> bool:  # the same notebook, by the same kind of run
            earlier = manifest["runs"].get(entry.get("run"), {})
            return all(earlier.get(k) == run.get(k) for k in ("notebook", "by")) and run.get("notebook") is not None

        stale = sorted(n for n, e in manifest["files"].items() if n not in names and same_writer(e))
        for name in stale:
            (folder / name).unlink(missing_ok=True)
            del manifest["files"][name]
        manifest["runs"][run_id] = run
        _write_manifest(folder, manifest)
    shutil.rmtree(staging, ignore_errors=True)
    return names, stale

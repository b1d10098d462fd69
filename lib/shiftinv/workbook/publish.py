"""Publishing figure files: where they go, the run behind each, and a folder's ``MANIFEST.json``.

Drawing is :mod:`shiftinv.viz.figures` (``save_figure`` renders a figure and hands the bytes
here); this module writes files into figure folders and keeps their manifests. The notebook
runner (:mod:`shiftinv.workbook.runner`) publishes a notebook's staging folder with
:func:`publish_folder`, so nothing of the bottom layer imports the plots.

Where a figure goes (:func:`output_dir`):

- ``$SHIFTINV_FIGURES`` when set: an exact folder. ``make figures`` sets it, for each notebook,
  to a staging folder and moves the files into ``figures/<profile>/`` only when the notebook
  succeeds; the test tier sets it to temporary folders.
- else ``figures/<profile>/`` (``build/smoke/figures/<profile>/`` when smoke), the profile set by
  :func:`use_profile` (every notebook calls ``figures.use_profile(PROFILE, smoke=SMOKE)`` after
  its parameters cell) or by ``$SHIFTINV_PROFILE``.

Safe against concurrency and failure: files are written to unique temporary names, then
renamed together while the folder is locked (``flock``), and the manifest is updated in the
same lock. Deterministic: the manifest names the run (notebook, profile, parameters, code
commit, and the sources the run declared with :func:`record_sources`) without times or host
names, and numbers in data files are written to :data:`SIGNIFICANT_DIGITS` significant digits.

Never silent about what a folder holds: a file whose recorded run declared another data source
or backbone than the run publishing now is neither replaced nor deleted (:class:`PublishError`),
and a damaged or missing manifest is rebuilt from the files with a :class:`ManifestWarning`
(the damaged copy is kept as ``MANIFEST.json.damaged``).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from . import paths
from .cache import atomic_write_bytes

#: The manifest of a figure folder: which run wrote each file.
MANIFEST = "MANIFEST.json"


#: Where a damaged manifest is kept when it is rebuilt (beside it, visible to ``git status``).
DAMAGED_MANIFEST = MANIFEST + ".damaged"


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


#: The run of this process: profile and smoke (:func:`use_profile`), sources (:func:`record_sources`).
_ACTIVE: dict[str, Any] = {"profile": None, "smoke": False, "sources": {}}


class PublishError(RuntimeError):
    """Publishing would replace or delete files that another data source or backbone made."""


class ManifestWarning(UserWarning):
    """A figure folder's manifest was damaged or missing and has been rebuilt from its files."""


# --------------------------------------------------------------------------- where figures go


def use_profile(profile: str, smoke: bool = False) -> Path:
    """File this process's figures under ``profile`` (``figures/<profile>/``); return the folder.

    Notebooks call it right after their parameters cell: ``figures.use_profile(PROFILE, smoke=SMOKE)``.
    Smoke figures go to ``build/smoke/figures/<profile>/``, never into the committed folders.
    ``$SHIFTINV_FIGURES``, when set (runner, tests), still decides the folder. Forgets the
    sources recorded for an earlier profile.
    """
    _ACTIVE["profile"] = paths.check_profile_name(profile)
    _ACTIVE["smoke"] = bool(smoke)
    _ACTIVE["sources"] = {}
    return output_dir()


def active_profile() -> tuple[str | None, bool]:
    """(profile, smoke) set by :func:`use_profile`, else ``$SHIFTINV_PROFILE`` / ``$SHIFTINV_SMOKE``."""
    if _ACTIVE["profile"] is not None:
        return _ACTIVE["profile"], _ACTIVE["smoke"]
    return os.environ.get("SHIFTINV_PROFILE") or None, os.environ.get("SHIFTINV_SMOKE", "0") == "1"


def output_dir() -> Path:
    """The folder figures are written to by default (see the module docstring)."""
    profile, smoke = active_profile()
    return paths.figures_dir(profile, smoke)


def record_sources(**sources: str) -> dict[str, str]:
    """Declare what this run's figures are made from, e.g. ``record_sources(data="raid-approx",
    backbone="HED VGG-16")``; return every source recorded so far.

    The manifest records them with each file's run, and publishing refuses to replace or delete
    a file whose run recorded another value for the same name (:class:`PublishError`): a profile's
    committed figures never change their data source or backbone silently.
    """
    for name, value in sources.items():
        if not isinstance(value, str) or not value:
            raise ValueError(f"record_sources: {name} must be a non-empty string, got {value!r}")
    _ACTIVE["sources"] = {**_ACTIVE["sources"], **sources}
    return dict(_ACTIVE["sources"])


# --------------------------------------------------------------------------- numbers


def format_number(value: float) -> str:
    """A float as written in data files: integral values as integers, others to
    :data:`SIGNIFICANT_DIGITS` significant digits (``0.00585666`` -> ``"0.005857"``)."""
    value = float(value)
    if math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))  # counts stay exact; -0.0 -> "0"
    return f"{value:.{SIGNIFICANT_DIGITS}g}"


def _jsonable(obj: Any, digits: bool = True) -> Any:
    """``obj`` (mappings, sequences, numpy/torch values, paths) as JSON-ready values; ``digits``:
    floats to :data:`SIGNIFICANT_DIGITS` (data files), else as they are (run records)."""
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


# --------------------------------------------------------------------------- the run behind a file


@functools.lru_cache(maxsize=None)
def code_commit() -> dict[str, str | bool | None]:
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

    Under ``make figures`` the runner passes it in ``$SHIFTINV_RUN`` (notebook, profile, smoke,
    parameters, commit). Otherwise (JupyterLab, a script) it is an interactive run: the notebook
    from JupyterLab's ``$JPY_SESSION_NAME`` when known, the profile from :func:`use_profile`, no
    parameters. Either way with the sources declared by :func:`record_sources`, if any.
    """
    given = os.environ.get("SHIFTINV_RUN")
    if given:
        run = json.loads(given)
    else:
        profile, smoke = active_profile()
        session = os.environ.get("JPY_SESSION_NAME")
        run = {"by": "interactive", "notebook": Path(session).stem if session else None, "profile": profile,
               "smoke": smoke, "parameters": None, **code_commit()}
    if _ACTIVE["sources"]:
        run["sources"] = dict(_ACTIVE["sources"])
    return run


def _run_id(run: Mapping[str, Any]) -> str:
    text = json.dumps(_jsonable(run, digits=False), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# --------------------------------------------------------------------------- a folder's manifest


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


def _figure_files(folder: Path) -> list[str]:
    """Names of the published files of ``folder``: regular, not hidden, not the manifest."""
    return sorted(p.name for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.name not in (MANIFEST, DAMAGED_MANIFEST))


def _parse_manifest(path: Path) -> tuple[dict[str, Any] | None, str]:
    """``(manifest, "")`` when ``path`` holds one, else ``(None, what is wrong)``."""
    if not path.is_file():
        return None, "missing"
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        return None, f"damaged (not readable JSON: {err})"
    if not (isinstance(manifest, dict) and isinstance(manifest.get("files", {}), dict)
            and isinstance(manifest.get("runs", {}), dict)):
        return None, "damaged (not a manifest: no 'files' and 'runs' tables)"
    manifest.setdefault("files", {})
    manifest.setdefault("runs", {})
    return manifest, ""


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of ``folder``: ``{"files": {name: {"run", "sha256"}}, "runs": {id: run}}``.

    Empty for a folder without files. When the manifest is damaged, or missing beside published
    files, it is rebuilt from the files (each with its SHA-256 and an unknown run, so publishing
    never takes them for another run's stale files) with a :class:`ManifestWarning`; a damaged
    manifest is kept as :data:`DAMAGED_MANIFEST`.
    """
    folder = Path(folder)
    path = folder / MANIFEST
    manifest, problem = _parse_manifest(path)
    if manifest is not None:
        return manifest
    files = _figure_files(folder) if folder.is_dir() else []
    if not files and problem == "missing":
        return {"files": {}, "runs": {}}
    run = {"by": f"rebuilt from the files: {MANIFEST} was {problem.split(' (')[0]}", "notebook": None,
           "profile": folder.name}
    rid = _run_id(run)
    rebuilt = {"files": {n: {"run": rid, "sha256": hashlib.sha256((folder / n).read_bytes()).hexdigest()}
                         for n in files}, "runs": {rid: run}}
    kept = ""
    if path.is_file():
        atomic_write_bytes(folder / DAMAGED_MANIFEST, path.read_bytes())
        kept = f"; the damaged copy is kept as {DAMAGED_MANIFEST}"
    warnings.warn(f"{path} is {problem}: rebuilt from the {len(files)} file(s) of the folder, whose runs are "
                  f"unknown until the notebooks that made them run again{kept}", ManifestWarning, stacklevel=2)
    return rebuilt


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Write the manifest (caller holds the lock): entries of files that are gone and runs no
    file refers to are dropped; keys sorted, no times, so the same files give the same bytes."""
    files = {n: e for n, e in sorted(manifest["files"].items()) if (folder / n).is_file() and isinstance(e, dict)}
    used = {e.get("run") for e in files.values()}
    runs = {k: v for k, v in sorted(manifest["runs"].items()) if k in used}
    text = json.dumps({"about": "the run that wrote each file of this folder (shiftinv.workbook.publish)",
                       "files": files, "runs": runs}, indent=2, sort_keys=True) + "\n"
    path = folder / MANIFEST
    if path.is_file() and path.read_text(errors="replace") == text:
        return
    tmp = _write_temp(folder, MANIFEST, text.encode())
    os.replace(tmp, path)


def _check_sources(folder: Path, manifest: Mapping[str, Any], names: Sequence[str], run: Mapping[str, Any]) -> None:
    """Raise :class:`PublishError` when a file of ``names`` present in ``folder`` was made by a run
    that recorded another value for one of the sources ``run`` records (:func:`record_sources`)."""
    sources = run.get("sources") or {}
    found = []
    for name in sorted(set(names)):
        entry = manifest["files"].get(name)
        if not (sources and isinstance(entry, dict) and (folder / name).is_file()):
            continue
        earlier = manifest["runs"].get(entry.get("run"), {})
        before = earlier.get("sources") or {}
        differ = [f"{k} {before[k]!r}, now {v!r}" for k, v in sorted(sources.items()) if k in before and before[k] != v]
        if differ:
            found.append(f"{name} (made by {earlier.get('notebook') or 'an unnamed run'}: {'; '.join(differ)})")
    if found:
        raise PublishError(
            f"refusing to replace or delete {len(found)} file(s) of {folder} made from another data source or "
            f"backbone than this run: {', '.join(found[:6])}{' ...' if len(found) > 6 else ''}. A profile's "
            "figures never change their sources silently. If the change is intended, remove those files first "
            "(`git rm` them) and publish again; otherwise give this run the inputs they were made with "
            "(SHIFTINV_DATA, the notebook's data and weights parameters).")


def publish_files(folder: Path, payloads: Mapping[str, bytes], run: Mapping[str, Any],
                  remove: Sequence[str] = ()) -> list[Path]:
    """Write several files of ``folder`` together, and record ``run`` in its manifest.

    Each payload goes to a unique temporary file first; then, with the folder locked, the
    sources are checked (:class:`PublishError`, nothing changed), all files are renamed into
    place, the files named in ``remove`` are deleted, and the manifest is updated. A reader
    never sees a half-written file, and two writers of the same names leave one writer's set.
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
            _check_sources(folder, manifest, [*payloads, *remove], run)
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


def _staged_sources(staging: Path) -> dict[str, str]:
    """The sources the runs that wrote ``staging`` recorded (:func:`record_sources`), merged."""
    manifest, _ = _parse_manifest(staging / MANIFEST)
    merged: dict[str, str] = {}
    for run in (manifest or {}).get("runs", {}).values():
        if isinstance(run, dict) and isinstance(run.get("sources"), dict):
            merged.update(run["sources"])
    return merged


def publish_folder(staging: Path, folder: Path, run: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """Move every file a notebook wrote into ``staging`` to ``folder``, then delete ``staging``.

    Used by the runner once a notebook has succeeded. Under the folder's lock: the sources the
    notebook recorded are checked against those of every file it would replace or delete
    (:class:`PublishError`, nothing moved, ``staging`` kept); the files replace their
    namesakes; files that an earlier run of the same notebook by the same kind of run
    (``run["by"]``) wrote and this run did not are deleted (they would be stale); the manifest
    records ``run`` (with the notebook's sources) for every published file.

    Returns:
        (published names, deleted stale names).
    """
    staging, folder = Path(staging), Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sources = _staged_sources(staging)
    run = _jsonable({**run, **({"sources": sources} if sources else {})}, digits=False)
    run_id = _run_id(run)
    names = _figure_files(staging)
    with locked(folder):
        manifest = read_manifest(folder)

        def same_writer(entry: Mapping[str, Any]) -> bool:  # the same notebook, by the same kind of run
            earlier = manifest["runs"].get(entry.get("run"), {})
            return all(earlier.get(k) == run.get(k) for k in ("notebook", "by")) and run.get("notebook") is not None

        stale = sorted(n for n, e in manifest["files"].items()
                       if n not in names and isinstance(e, dict) and same_writer(e))
        _check_sources(folder, manifest, [*names, *stale], run)
        for name in names:
            digest = hashlib.sha256((staging / name).read_bytes()).hexdigest()
            os.replace(staging / name, folder / name)
            manifest["files"][name] = {"run": run_id, "sha256": digest}
        for name in stale:
            (folder / name).unlink(missing_ok=True)
            del manifest["files"][name]
        manifest["runs"][run_id] = run
        _write_manifest(folder, manifest)
    shutil.rmtree(staging, ignore_errors=True)
    return names, stale

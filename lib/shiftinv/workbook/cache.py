"""Atomic writes, safe loading, code versions and config-keyed caching (seeding, threads and devices:
:mod:`shiftinv.workbook.runtime`).

Everything a long run writes goes through :func:`atomic_write_bytes` or
:func:`atomic_torch_save` (write to a temporary file in the same folder, then
rename), so an interrupted run never leaves a half-written checkpoint or result.
Everything read back goes through :func:`safe_torch_load` (``weights_only=True``),
so a downloaded file cannot run code.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import io
import json
import os
import re
import sys
import types
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, TypeVar

import torch

from . import paths
from .runtime import check_finite

T = TypeVar("T")


def state_fingerprint(*modules: Any, length: int = 16) -> str:
    """Hash of the weights and buffers of ``modules`` (``nn.Module`` objects; other values are
    skipped): identifies trained models in cache keys and refuses resuming a run of other weights."""
    h = hashlib.sha256()
    for m in modules:
        if not isinstance(m, torch.nn.Module):
            continue
        for k, v in sorted(m.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes()
                     if v.dtype == torch.bfloat16 else v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:length]


def atomic_write_bytes(path: Path | str, payload: bytes) -> Path:
    """Write ``payload`` to ``path`` atomically (temporary file + rename).

    On any failure (a full disk, a read-only folder, ``path`` naming a folder) the temporary file
    is removed and the error raised, so nothing half-written is left behind and ``path`` keeps
    its previous content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_torch_save(obj: Any, path: Path | str) -> Path:
    """``torch.save`` to ``path`` atomically. Keep ``obj`` to tensors, numbers,
    strings, lists and dicts so that :func:`safe_torch_load` can read it."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


#: What to do about an unreadable weights file (the default advice of :func:`safe_torch_load`).
WEIGHTS_ADVICE = ("Check that the path names the file you meant (a state dict saved with "
                  "torch.save(model.state_dict(), path)), or re-save the weights from the model that made them "
                  "as a plain state dict.")


def safe_torch_load(path: Path | str, map_location: str | torch.device = "cpu", advice: str = WEIGHTS_ADVICE) -> Any:
    """Load a torch file with ``weights_only=True`` (no code execution).

    Raises ``FileNotFoundError`` naming the file when it is missing, and a
    :class:`CorruptFileError` (a ``ValueError``) saying what is wrong and ``advice`` (what to do;
    default: about weights files) when it is not a safe torch file. The message never advises
    ``weights_only=False``: a file that ``weights_only=True`` refuses is either damaged or may
    run code when unpickled.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file not found: '{path}'")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickle.UnpicklingError, RuntimeError, EOFError...
        raise CorruptFileError(f"'{path}' is not a loadable torch file: {_why_unloadable(path, exc)}."
                               + (f" {advice}" if advice else "")) from exc


def _why_unloadable(path: Path, exc: Exception) -> str:
    """What is wrong with a file ``torch.load(weights_only=True)`` refused (``exc``), read from its first bytes:
    empty, damaged, or holding pickled objects that could run code (refused as unsafe)."""
    with open(path, "rb") as handle:
        head = handle.read(8)
    text = str(exc)
    unsafe = re.search(r"unsupported global:?\s*(?:GLOBAL\s+)?([^\n]*)", text, flags=re.IGNORECASE)
    if not head:
        return "the file is empty"
    if unsafe:  # torch <= 2.5 wrote "Unsupported global: GLOBAL x", 2.14 "unsupported GLOBAL x"
        return (f"UNSAFE: it holds a pickled Python object ({unsafe.group(1).strip(' :.')}) besides plain "
                "tensors; unpickling it could run code, so it is refused")
    if head.startswith(b"PK\x03\x04"):  # torch's zip format
        return f"a torch file that is truncated or damaged ({type(exc).__name__})"
    if head[:1] == b"\x80":  # a raw pickle (legacy torch format or pickle.dump)
        return ("a pickle holding objects that weights_only=True refuses because unpickling them could run code, "
                "or a damaged legacy torch file")
    return f"not a torch file (it starts with the bytes {head!r})"


class CorruptFileError(ValueError):
    """A cache, checkpoint or weights file that cannot be read safely."""


def set_aside(path: Path | str, why: str = "") -> Path:
    """Rename an unreadable file under ``results/`` to ``<name>.corrupt`` (``.corrupt.2``, ... when that
    exists: kept for inspection, never read again) and print a warning; return the new path."""
    path = Path(path)
    target = path.with_name(path.name + ".corrupt")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt.{n}")
    path.replace(target)
    why = why.strip().rstrip(".")
    print(f"WARNING: cached file '{path}' could not be read{': ' + why if why else ''}; "
          f"set aside as '{target.name}', recomputing.", file=sys.stderr, flush=True)
    return target


#: What a reader of a cached value raises when the file loads but does not hold what it should.
INVALID_CONTENT = (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError)


def load_or_set_aside(path: Path | str, validate: Callable[[Any], object] | None = None) -> Any | None:
    """:func:`safe_torch_load` of a file this workbook wrote (cache, checkpoint); ``None`` when the
    file is absent or unreadable (then set aside with :func:`set_aside`, so the caller recomputes).

    ``validate(value)``, when given, checks what the file holds; raising one of
    :data:`INVALID_CONTENT` (a missing entry, a wrong shape) counts as unreadable too.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        value = safe_torch_load(path, advice="")
        if validate is not None:
            validate(value)
        return value
    except CorruptFileError as err:
        set_aside(path, str(err).split(": ", 1)[-1])  # what is wrong, without the path said again
    except INVALID_CONTENT as err:
        set_aside(path, f"it loads but does not hold what was cached ({type(err).__name__}: {err})")
    return None


# ----------------------------------------------------------------------------- code versions

_PACKAGE = __name__.split(".")[0]  # "shiftinv"
_LIB_DIR = Path(__file__).resolve().parents[1]  # lib/shiftinv


def module_file(module: str) -> Path | None:
    """The source file of a module of this package (``"shiftinv.study.training"`` ->
    ``lib/shiftinv/study/training.py``; a sub-package -> its ``__init__.py``), else ``None``."""
    if module != _PACKAGE and not module.startswith(_PACKAGE + "."):
        return None
    parts = module.split(".")[1:]
    candidates = ([_LIB_DIR.joinpath(*parts).with_suffix(".py")] if parts else []) + [_LIB_DIR.joinpath(*parts, "__init__.py")]
    return next((f for f in candidates if f.is_file()), None)


_IMPORTS: dict[tuple[str, str, int, int], frozenset[str]] = {}


def _local_imports(module: str) -> set[str]:
    """Modules of this package that ``module`` (a ``shiftinv.*`` name) imports, read from its source
    (function-local imports included); parsed once per version of the file (name, mtime, size)."""
    file = module_file(module)
    stat = file.stat()
    memo = (module, str(file), stat.st_mtime_ns, stat.st_size)
    if memo not in _IMPORTS:
        _IMPORTS[memo] = frozenset(_parse_local_imports(module, file))
    return set(_IMPORTS[memo])


def _parse_local_imports(module: str, file: Path) -> set[str]:
    package = module if file.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), package) if node.level \
                else (node.module or "")
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m != module and module_file(m) is not None}


def module_closure(modules: Iterable[str]) -> list[str]:
    """``modules`` and every module of this package they import, transitively (sorted names)."""
    todo, seen = [m for m in modules], set()
    while todo:
        m = todo.pop()
        if m in seen or module_file(m) is None:
            continue
        seen.add(m)
        todo += sorted(_local_imports(m) - seen)
    return sorted(seen)


_DIGESTS: dict[tuple[str, int, int], str] = {}


def _source_digest(module: str) -> str:
    """Hash of a module's code: its syntax tree without docstrings, so comments, docstrings and
    formatting do not count, every change to what runs does."""
    file = module_file(module)
    stat = file.stat()
    memo = (str(file), stat.st_mtime_ns, stat.st_size)
    if memo not in _DIGESTS:
        _DIGESTS[memo] = _tree_digest(file.read_text())
    return _DIGESTS[memo]


def _tree_digest(source: str) -> str:
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return hashlib.sha256(ast.dump(tree, annotate_fields=False).encode()).hexdigest()


def module_names(code: Any) -> list[str]:
    """Module names of this package named by ``code``: modules, module names, functions or classes."""
    items = code if isinstance(code, (list, tuple, set)) else [code]
    names = []
    for item in items:
        name = item if isinstance(item, str) else getattr(item, "__module__", None) or getattr(item, "__name__", "")
        if isinstance(item, types.ModuleType):
            name = item.__name__
        if not name.startswith(_PACKAGE):
            name = f"{_PACKAGE}.{name}"
        if module_file(name) is None:
            raise ValueError(f"code={item!r} names no module of {_PACKAGE} ({name}); give a module, a function or "
                             f"class of the package, or a dotted name such as 'study.training'")
        names.append(name)
    return names


def caller_modules(depth: int = 1) -> list[str]:
    """The modules of this package behind the code that called the caller (``depth`` frames up):
    its own module when it is one of the package's, else the package's modules, functions and
    classes it has imported (a notebook's ``from shiftinv.study import modelset``)."""
    frame = sys._getframe(depth + 1)
    name = frame.f_globals.get("__name__", "")
    if name.startswith(_PACKAGE + ".") and name != __name__:
        return [name]
    found = set()
    for value in list(frame.f_globals.values()):
        mod = value.__name__ if isinstance(value, types.ModuleType) else getattr(value, "__module__", None)
        if isinstance(mod, str) and mod.startswith(_PACKAGE + ".") and mod != __name__:
            found.add(mod)
    return sorted(found) or [f"{_PACKAGE}." + ".".join(p.relative_to(_LIB_DIR).with_suffix("").parts)
                             for p in sorted(_LIB_DIR.rglob("*.py")) if p.stem != "__init__"]


def code_version(code: Any, length: int = 12) -> str:
    """A short hash of the code behind a cached value: the given modules (modules, dotted names like
    ``"study.training"``, or functions/classes standing for their module) and, transitively, every module of
    this package they import. Editing any of them changes it; editing a notebook or an unrelated
    module does not; comments and docstrings do not count."""
    closure = module_closure(module_names(code))
    text = json.dumps({m: _source_digest(m) for m in closure}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


# ----------------------------------------------------------------------------- caching


def config_hash(config: Mapping[str, Any], length: int = 12) -> str:
    """Stable short hash of a JSON-serialisable configuration (key order ignored)."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def versioned(config: Mapping[str, Any], code: Any) -> dict[str, Any]:
    """``config`` with the :func:`code_version` of ``code`` added under ``"code_version"``."""
    return {**dict(config), "code_version": code_version(code)}


def cache_path(name: str, config: Mapping[str, Any], suffix: str = ".pt", *, code: Any = None) -> Path:
    """Where the result ``name`` computed under ``config`` (and, when given, the code version of
    ``code``, see :func:`versioned`) is cached."""
    key = versioned(config, code) if code is not None else config
    return paths.results_dir() / name / f"{config_hash(key)}{suffix}"


#: Environment variable that makes :func:`cached` recompute (``make figures REFRESH=1`` exports it).
REFRESH_ENV = "SHIFTINV_REFRESH"


#: The documented values of ``$SHIFTINV_REFRESH`` (``make figures REFRESH=...``).
REFRESH_OFF, REFRESH_ON = ("", "0", "false", "no", "off"), ("1", "true", "yes", "on")

#: A time in seconds since the epoch is accepted only after this one (2001): what ``1`` becomes when pinned.
_EARLIEST_PIN = 1e9


def refresh_setting(value: str | None) -> bool | float:
    """What a ``$SHIFTINV_REFRESH`` value asks: ``False`` (use the cache: unset, empty, ``0``, ``false``,
    ``no``, ``off``), ``True`` (recompute: ``1``, ``true``, ``yes``, ``on``), or a time in seconds since
    the epoch (what ``1`` becomes when the package is first imported, see ``shiftinv._pin_refresh_time``:
    recompute files written before it). Anything else (``2``, ``maybe``) raises a ``ValueError``
    naming the valid values."""
    text = (value or "").strip().lower()
    if text in REFRESH_OFF:
        return False
    if text in REFRESH_ON:
        return True
    try:
        since = float(text)
    except ValueError:
        since = float("nan")
    if not since >= _EARLIEST_PIN:
        raise ValueError(f"{REFRESH_ENV}={value!r} (make figures REFRESH=...): expected empty, 0, false, no or off "
                         "(use the cache) or 1, true, yes or on (recompute every cached result once)")
    return since


def refresh_requested(path: Path | str) -> bool:
    """Whether ``$SHIFTINV_REFRESH`` asks to recompute the cached file ``path`` (:func:`refresh_setting`):
    always for ``1``/``true``; for a pinned time, when the file was written before it; never when unset,
    empty or ``0``. An undocumented value raises a ``ValueError`` naming the valid ones."""
    setting = refresh_setting(os.environ.get(REFRESH_ENV))
    if isinstance(setting, bool):
        return setting
    path = Path(path)
    return path.exists() and path.stat().st_mtime < setting


def cached(name: str, config: Mapping[str, Any], compute: Callable[[], T], *, code: Any = None,
           refresh: bool = False, require_finite: bool = False, validate: Callable[[T], object] | None = None) -> T:
    """Return the cached result of ``compute()`` for ``config`` and the code behind it, computing it once.

    The key is ``config`` plus the :func:`code_version` of ``code`` (modules / functions whose code
    the value depends on; default: the caller's module, or, from a notebook, the package modules it
    imported), so a changed library function recomputes. The result is stored with
    :func:`atomic_torch_save` under ``results/<name>/<hash>.pt`` together with the key (for
    inspection), and read back with ``weights_only=True``; so ``compute`` must return tensors,
    numbers, strings, lists and dicts. "Cached" is decided by loading, not by the file's existence:
    a file that cannot be read, or whose value ``validate(value)`` rejects (raising one of
    :data:`INVALID_CONTENT`), is set aside (``*.corrupt``) and the value recomputed in the same call.
    ``refresh=True`` or ``$SHIFTINV_REFRESH`` (:func:`refresh_requested`) recomputes and overwrites.
    ``require_finite``: NaN or infinite floats in the result raise instead of being cached (trained
    weights; a table may hold NaN on purpose).
    """
    code = code if code is not None else caller_modules()
    key = versioned(config, code)
    path = cache_path(name, config, code=code)
    if not (refresh or refresh_requested(path)):

        def check(saved: Any) -> None:
            if not isinstance(saved, Mapping) or "value" not in saved:
                raise KeyError("no 'value' entry")
            if validate is not None:
                validate(saved["value"])

        saved = load_or_set_aside(path, check)
        if saved is not None:
            return saved["value"]
    value = compute()
    if require_finite:
        check_finite(value, f"cached value {name!r}")
    atomic_torch_save({"config": json.loads(json.dumps(key, default=str)), "value": value}, path)
    return value

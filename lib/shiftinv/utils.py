"""Seeding, device choice, atomic writes, safe loading and config-keyed caching.

Everything a long run writes goes through :func:`atomic_write_bytes` or
:func:`atomic_torch_save` (write to a temporary file in the same folder, then
rename), so an interrupted run never leaves a half-written checkpoint or result.
Everything read back goes through :func:`safe_torch_load` (``weights_only=True``),
so a downloaded file cannot run code.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import io
import json
import math
import os
import random
import sys
import time
import types
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, TypeVar

import numpy as np
import torch

from . import paths

T = TypeVar("T")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a fresh ``torch.Generator`` seeded alike.

    Metrics never use the global generators: pass the returned generator (or one
    of your own) to anything that samples.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


#: Environment variable overriding the thread count of :func:`default_threads`.
THREADS_ENV = "SHIFTINV_THREADS"


def default_threads() -> int:
    """Threads for training, features and sweeps: ``$SHIFTINV_THREADS``, else ``$OMP_NUM_THREADS``
    (the test tier sets 1 per worker), else 2 on every machine, whatever its core count: the
    thread count splits float reductions, so a fixed one keeps the rounding the same."""
    for var in (THREADS_ENV, "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
        if value:
            try:
                n = int(value)
            except ValueError:
                raise ValueError(f"{var}={value!r}: expected a positive integer") from None
            if n < 1:
                raise ValueError(f"{var}={value!r}: expected a positive integer")
            return n
    return 2


def set_threads(n: int | None = None) -> int:
    """Set torch's intra-op thread count to ``n`` (default :func:`default_threads`); return it."""
    n = default_threads() if n is None else int(n)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


@contextlib.contextmanager
def reproducible(threads: int | None = None) -> Iterator[int]:
    """Within the block: a fixed thread count (:func:`set_threads`), deterministic algorithms where
    torch has them (``use_deterministic_algorithms(True, warn_only=True)``: on the CPU nearly every
    op already is; on CUDA it picks deterministic kernels at some cost in speed, and warns where
    none exists), cuDNN without autotuning. Restores the previous settings afterwards."""
    before = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
              torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    n = set_threads(threads)
    # cuBLAS is deterministic only with a fixed workspace; read when its first handle is made
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    try:
        yield n
    finally:
        torch.set_num_threads(before[0])
        torch.use_deterministic_algorithms(before[1], warn_only=before[2])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = before[3], before[4]


def run_conditions() -> dict[str, Any]:
    """What shapes float rounding in a run, for the record (timings files, manifests): threads,
    torch version, CPU instruction set torch dispatches to (AVX2 and AVX-512 round differently, and
    training from scratch amplifies it), the variables that pin it, and the GPU."""
    pins = {v: os.environ.get(v, "") for v in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR")}
    return {"threads": default_threads(), "torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "",
            **{k.lower(): v for k, v in pins.items()}}


def default_device(prefer: str | None = None) -> torch.device:
    """``prefer`` if given (``"cpu"``, ``"cuda"``, ``"cuda:1"``), else CUDA when available, else CPU."""
    if prefer:
        device = torch.device(prefer)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {prefer!r} was asked for but CUDA is not available; use 'cpu'")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_amp(device: torch.device | str, amp: str | bool | None) -> str:
    """The mixed-precision policy of training and sweeps: ``"off"``, ``"bf16"`` or ``"fp16"``.

    ``None`` means bf16 on CUDA and off elsewhere; ``True`` means bf16 where the GPU supports it,
    else fp16 (which needs a gradient scaler in training); ``False``/``"off"`` means full float32.
    """
    dev = torch.device(device)
    if amp is None:
        return "bf16" if dev.type == "cuda" else "off"
    if amp is False or amp == "off":
        return "off"
    if amp is True:
        if dev.type != "cuda":
            return "off"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    names = {"bf16": "bf16", "bfloat16": "bf16", "fp16": "fp16", "float16": "fp16"}
    if amp not in names:
        raise ValueError(f"amp must be None, False, True, 'off', 'bf16' or 'fp16'; got {amp!r}")
    return names[amp]


def autocast(device: torch.device | str, amp: str) -> contextlib.AbstractContextManager:
    """Autocast context for an :func:`resolve_amp` policy (a no-op for ``"off"``)."""
    if amp == "off":
        return contextlib.nullcontext()
    dev = torch.device(device)
    return torch.autocast(device_type=dev.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


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
    """Write ``payload`` to ``path`` atomically (temporary file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)
    return path


def atomic_torch_save(obj: Any, path: Path | str) -> Path:
    """``torch.save`` to ``path`` atomically. Keep ``obj`` to tensors, numbers,
    strings, lists and dicts so that :func:`safe_torch_load` can read it."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def safe_torch_load(path: Path | str, map_location: str | torch.device = "cpu") -> Any:
    """Load a torch file with ``weights_only=True`` (no code execution).

    Raises ``FileNotFoundError`` naming the file when it is missing, and a
    :class:`CorruptFileError` (a ``ValueError``) saying what is wrong when it is not a safe
    torch file. The message never advises ``weights_only=False``: a file that
    ``weights_only=True`` refuses is either damaged or may run code when unpickled.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: '{path}'")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickle.UnpicklingError, RuntimeError, EOFError...
        raise CorruptFileError(
            f"'{path}' is not a loadable torch checkpoint: {_why_unloadable(path, exc)}. Check that the path "
            "names the file you meant (a state dict saved with torch.save(model.state_dict(), path)), or re-save "
            "the weights from the model that made them as a plain state dict."
        ) from exc


def _why_unloadable(path: Path, exc: Exception) -> str:
    """What is wrong with a file ``torch.load(weights_only=True)`` refused, read from its first bytes."""
    with open(path, "rb") as handle:
        head = handle.read(8)
    text = str(exc)
    if not head:
        return "the file is empty"
    if head.startswith(b"PK\x03\x04"):  # torch's zip format
        if "Unsupported global" in text:
            glob = text.split("Unsupported global", 1)[1].split("\n")[0].strip(" :")
            return (f"it holds a pickled Python object ({glob}) besides plain tensors, which weights_only=True "
                    "refuses because unpickling it could run code")
        return f"a torch file that is truncated or damaged ({type(exc).__name__})"
    if head[:1] == b"\x80":  # a raw pickle (legacy torch format or pickle.dump)
        return ("a pickle holding objects that weights_only=True refuses because unpickling them could run code, "
                "or a damaged legacy torch file")
    return f"not a torch file (it starts with the bytes {head!r})"


class CorruptFileError(ValueError):
    """A cache, checkpoint or weights file that cannot be read safely."""


def set_aside(path: Path | str, why: str = "") -> Path:
    """Rename an unreadable file under ``results/`` to ``<name>.corrupt`` (kept for inspection,
    never read again) and print a message; return the new path."""
    path = Path(path)
    target = path.with_name(path.name + ".corrupt")
    path.replace(target)
    print(f"WARNING: cached file '{path}' could not be read{': ' + why if why else ''}; "
          f"set aside as '{target.name}', recomputing.", file=sys.stderr, flush=True)
    return target


def load_or_set_aside(path: Path | str) -> Any | None:
    """:func:`safe_torch_load` of a file this workbook wrote (cache, checkpoint); ``None`` when the
    file is absent or unreadable (then set aside with :func:`set_aside`, so the caller recomputes)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return safe_torch_load(path)
    except CorruptFileError as err:
        set_aside(path, str(err.__cause__ or err).split("\n")[0])
        return None


# ----------------------------------------------------------------------------- code versions

_PACKAGE = __name__.rsplit(".", 1)[0]  # "shiftinv"
_LIB_DIR = Path(__file__).resolve().parent


def _local_imports(module: str) -> set[str]:
    """Modules of this package that ``module`` (a ``shiftinv.*`` name) imports, read from its source."""
    file = _LIB_DIR / (module.split(".", 1)[1].replace(".", "/") + ".py")
    tree = ast.parse(file.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level == 1:  # from . import x / from .x import y
                if base:
                    found.add(f"{_PACKAGE}.{base.split('.')[0]}")
                else:
                    found.update(f"{_PACKAGE}.{a.name}" for a in node.names)
            elif base == _PACKAGE:
                found.update(f"{_PACKAGE}.{a.name}" for a in node.names)
            elif base.startswith(_PACKAGE + "."):
                found.add(".".join(base.split(".")[:2]))
        elif isinstance(node, ast.Import):
            found.update(".".join(a.name.split(".")[:2]) for a in node.names if a.name.startswith(_PACKAGE + "."))
    return {m for m in found if (_LIB_DIR / (m.split(".", 1)[1] + ".py")).is_file()}


def module_closure(modules: Iterable[str]) -> list[str]:
    """``modules`` and every module of this package they import, transitively (sorted names)."""
    todo, seen = [m for m in modules], set()
    while todo:
        m = todo.pop()
        if m in seen or not m.startswith(_PACKAGE + ".") or not (_LIB_DIR / (m.split(".", 1)[1] + ".py")).is_file():
            continue
        seen.add(m)
        todo += sorted(_local_imports(m) - seen)
    return sorted(seen)


_DIGESTS: dict[tuple[str, int, int], str] = {}


def _source_digest(module: str) -> str:
    """Hash of a module's code: its syntax tree without docstrings, so comments, docstrings and
    formatting do not count, every change to what runs does."""
    file = _LIB_DIR / (module.split(".", 1)[1] + ".py")
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
        names.append(name)
    return names


def caller_modules(depth: int = 1) -> list[str]:
    """The modules of this package behind the code that called the caller (``depth`` frames up):
    its own module when it is one of the package's, else the package's modules, functions and
    classes it has imported (a notebook's ``from shiftinv import classify, sweep``)."""
    frame = sys._getframe(depth + 1)
    name = frame.f_globals.get("__name__", "")
    if name.startswith(_PACKAGE + ".") and name != __name__:
        return [name]
    found = set()
    for value in list(frame.f_globals.values()):
        mod = value.__name__ if isinstance(value, types.ModuleType) else getattr(value, "__module__", None)
        if isinstance(mod, str) and mod.startswith(_PACKAGE + ".") and mod != __name__:
            found.add(mod)
    return sorted(found) or [f"{_PACKAGE}.{p.stem}" for p in sorted(_LIB_DIR.glob("*.py")) if p.stem != "__init__"]


def code_version(code: Any, length: int = 12) -> str:
    """A short hash of the code behind a cached value: the given modules (modules, names like
    ``"train"``, or functions/classes standing for their module) and, transitively, every module of
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


def refresh_requested(path: Path | str) -> bool:
    """Whether ``$SHIFTINV_REFRESH`` asks to recompute the cached file ``path``: ``1``/``true``
    always; a time in seconds since the epoch (what ``1`` becomes when the package is first imported,
    see ``shiftinv._pin_refresh_time``) for files written before it; unset, empty or ``0`` never."""
    value = os.environ.get(REFRESH_ENV, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    try:
        since = float(value)
    except ValueError:
        raise ValueError(f"{REFRESH_ENV}={value!r}: expected 1 (recompute) or 0, or a time in seconds") from None
    path = Path(path)
    return path.exists() and path.stat().st_mtime < since


def check_finite(value: Any, what: str) -> None:
    """Raise ``ValueError`` if any float tensor or number in ``value`` (nested dicts/lists) is NaN or
    infinite: a non-finite result is never cached."""
    bad: list[str] = []

    def walk(v: Any, where: str) -> None:
        if isinstance(v, torch.Tensor):
            if v.is_floating_point() and not bool(torch.isfinite(v).all()):
                bad.append(where or "value")
        elif isinstance(v, float):
            if not math.isfinite(v):
                bad.append(where or "value")
        elif isinstance(v, Mapping):
            for k, x in v.items():
                walk(x, f"{where}.{k}" if where else str(k))
        elif isinstance(v, (list, tuple)):
            for i, x in enumerate(v):
                walk(x, f"{where}[{i}]")

    walk(value, "")
    if bad:
        raise ValueError(f"{what}: non-finite values (NaN or inf) in {', '.join(bad[:5])}"
                         f"{' ...' if len(bad) > 5 else ''}; not cached")


def cached(name: str, config: Mapping[str, Any], compute: Callable[[], T], *, code: Any = None,
           refresh: bool = False, require_finite: bool = False) -> T:
    """Return the cached result of ``compute()`` for ``config`` and the code behind it, computing it once.

    The key is ``config`` plus the :func:`code_version` of ``code`` (modules / functions whose code
    the value depends on; default: the caller's module, or, from a notebook, the package modules it
    imported), so a changed library function recomputes. The result is stored with
    :func:`atomic_torch_save` under ``results/<name>/<hash>.pt`` together with the key (for
    inspection), and read back with ``weights_only=True``; so ``compute`` must return tensors,
    numbers, strings, lists and dicts. A file that cannot be read is set aside (``*.corrupt``) and
    the value recomputed. ``refresh=True`` or ``$SHIFTINV_REFRESH`` (:func:`refresh_requested`)
    recomputes and overwrites. ``require_finite``: NaN or infinite floats in the result raise
    instead of being cached (trained weights; a table may hold NaN on purpose).
    """
    code = code if code is not None else caller_modules()
    key = versioned(config, code)
    path = cache_path(name, config, code=code)
    if not (refresh or refresh_requested(path)):
        saved = load_or_set_aside(path)
        if saved is not None:
            if isinstance(saved, Mapping) and "value" in saved:
                return saved["value"]
            set_aside(path, "no 'value' entry")
    value = compute()
    if require_finite:
        check_finite(value, f"cached value {name!r}")
    atomic_torch_save({"config": json.loads(json.dumps(key, default=str)), "value": value}, path)
    return value


def progress(iterable: Any = None, **kwargs: Any) -> Any:
    """A tqdm progress bar that renders in notebooks and terminals alike.

    Disabled when ``SHIFTINV_PROGRESS=0`` (the test tier sets it to keep logs short).
    """
    from tqdm.auto import tqdm

    kwargs.setdefault("disable", os.environ.get("SHIFTINV_PROGRESS", "1") == "0")
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)

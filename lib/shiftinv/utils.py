"""Seeding, device choice, atomic writes, safe loading and config-keyed caching.

Everything a long run writes goes through :func:`atomic_write_bytes` or
:func:`atomic_torch_save` (write to a temporary file in the same folder, then
rename), so an interrupted run never leaves a half-written checkpoint or result.
Everything read back goes through :func:`safe_torch_load` (``weights_only=True``),
so a downloaded file cannot run code.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

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


def default_device(prefer: str | None = None) -> torch.device:
    """``prefer`` if given (``"cpu"``, ``"cuda"``, ``"cuda:1"``), else CUDA when available, else CPU."""
    if prefer:
        device = torch.device(prefer)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {prefer!r} was asked for but CUDA is not available; use 'cpu'")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


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
    ``ValueError`` saying what is wrong when it is not a safe torch file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: '{path}'")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickle.UnpicklingError, RuntimeError, EOFError...
        raise ValueError(
            f"'{path}' is not a loadable torch checkpoint with plain tensors "
            f"(weights_only=True refused or failed: {type(exc).__name__}: {exc}). "
            "Re-download it, or re-save it as a plain state dict."
        ) from exc


def config_hash(config: Mapping[str, Any], length: int = 12) -> str:
    """Stable short hash of a JSON-serialisable configuration (key order ignored)."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def cache_path(name: str, config: Mapping[str, Any], suffix: str = ".pt") -> Path:
    """Where the result ``name`` computed under ``config`` is cached."""
    return paths.results_dir() / name / f"{config_hash(config)}{suffix}"


def cached(name: str, config: Mapping[str, Any], compute: Callable[[], T], *, refresh: bool = False) -> T:
    """Return the cached result of ``compute()`` for ``config``, computing it once.

    The result is stored with :func:`atomic_torch_save` under
    ``results/<name>/<hash(config)>.pt`` together with the configuration (for
    inspection), and read back with ``weights_only=True``; so ``compute`` must
    return tensors, numbers, strings, lists and dicts. ``refresh=True`` recomputes.
    """
    path = cache_path(name, config)
    if path.exists() and not refresh:
        return safe_torch_load(path)["value"]
    value = compute()
    atomic_torch_save({"config": json.loads(json.dumps(config, default=str)), "value": value}, path)
    return value


def progress(iterable: Any = None, **kwargs: Any) -> Any:
    """A tqdm progress bar that renders in notebooks and terminals alike.

    Disabled when ``SHIFTINV_PROGRESS=0`` (the test tier sets it to keep logs short).
    """
    from tqdm.auto import tqdm

    kwargs.setdefault("disable", os.environ.get("SHIFTINV_PROGRESS", "1") == "0")
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)

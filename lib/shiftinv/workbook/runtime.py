"""Run conditions: seeding, threads, device, mixed precision, progress bars, finiteness checks.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
from typing import Any, Iterator, Mapping

import numpy as np
import torch


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
    names = {"bf16": "bf16", "bfloat16": "bf16", "fp16": "fp16", "float16": "fp16", "float32": "off", "fp32": "off"}
    if amp not in names:
        raise ValueError(f"amp must be None, False, True, 'off', 'float32', 'bf16' or 'fp16'; got {amp!r}")
    return names[amp]


def autocast(device: torch.device | str, amp: str) -> contextlib.AbstractContextManager:
    """Autocast context for an :func:`resolve_amp` policy (a no-op for ``"off"``)."""
    if amp == "off":
        return contextlib.nullcontext()
    dev = torch.device(device)
    return torch.autocast(device_type=dev.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


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


def progress(iterable: Any = None, **kwargs: Any) -> Any:
    """A tqdm progress bar that renders in notebooks and terminals alike.

    Disabled when ``SHIFTINV_PROGRESS=0`` (the test tier sets it to keep logs short).
    """
    from tqdm.auto import tqdm

    kwargs.setdefault("disable", os.environ.get("SHIFTINV_PROGRESS", "1") == "0")
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)

"""The authors' result files: their shift keys, and a safe reader for their result pickles.

The authors' test scripts (Rietta5/Translation_Invariant_CNNs, ``ImageNet/03_TestModels_*``)
save Keras ``model.evaluate(..., return_dict=True)`` outputs with ``pickle.dump``:

- translation: ``{(desp_h, desp_v): {"loss": float, "accuracy": float}}`` over
  ``desp_h, desp_v in range(-50, 51)`` (test-set means per shift);
- rotation (``*_rot``): ``{angle: {...}}`` for ``angle in numpy.arange(0, 21)``;
- scaling (``*_esc``): ``{factor: {...}}`` over their 20 factors
  (:data:`shiftinv.shifts.geometric.PAPER_SCALES`).

Their two window helpers (``utils.py``) use the same key names with two conventions
(:data:`CONVENTIONS`), both converted to the workbook's ``(dx, dy)`` (content moves right / down,
:mod:`shiftinv.shifts.translation`) by :func:`to_workbook_shift` / :func:`to_authors_key`:

- ``"imagenet"`` (``ImageNet/03_TestModels_*``, files ``met_*_IMA*.pkl``): ``trasladar2(X, crop,
  desp_h, desp_v)`` is ``X[:, 256 + desp_h : 512 + desp_h, 256 + desp_v : 512 + desp_v]`` of the 3x3
  mirror mosaic (NHWC): ``desp_h`` moves the window down the rows, so the content moves *up*;
  ``desp_v`` moves it along the columns, content *left*: ``(desp_h, desp_v) = (-dy, -dx)``;
- ``"mnist"`` (``MNIST/02_TestModels_*``, files ``met_VGG16*_{56,128,256}.pkl``):
  ``trasladar_MNIST(data, size, desp_h, desp_v)`` pastes the digit at rows ``c + desp_v`` and columns
  ``c + desp_h`` of a zero canvas: the content moves *right* by ``desp_h`` and *down* by ``desp_v``:
  ``(desp_h, desp_v) = (dx, dy)``.

Both are tested against oracles that re-implement the two helpers on small arrays.

:func:`read_results` returns the workbook's per-shift table (the columns of
:func:`shiftinv.study.analysis.shift_frame`: ``head, dx, dy, accuracy, loss, p_true``; ``p_true`` is
NaN because they did not save it) or, for rotation / scaling, the columns of
:func:`shiftinv.shifts.geometric.evaluate_transforms` (``kind, value, head, accuracy, loss, n``).

A pickle can run arbitrary code when loaded; :func:`safe_load_pickle` uses a restricted
unpickler that only rebuilds builtin containers and numbers, numpy scalars and arrays,
and refuses anything else with an error naming the object.
"""

from __future__ import annotations

import io
import math
import pickle
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

#: Kinds of result file: translation (keys ``(desp_h, desp_v)``), rotation (angles), scale (factors).
RESULT_KINDS: tuple[str, ...] = ("translation", "rotation", "scale")


# What the restricted unpickler may rebuild: (module, name) pairs. numpy scalars pickle as
# numpy.core.multiarray.scalar(dtype, bytes), arrays as _reconstruct + ndarray + dtype.
_ALLOWED: frozenset[tuple[str, str]] = frozenset({
    ("builtins", "dict"), ("builtins", "list"), ("builtins", "tuple"), ("builtins", "set"),
    ("builtins", "frozenset"), ("builtins", "int"), ("builtins", "float"), ("builtins", "complex"),
    ("builtins", "bool"), ("builtins", "str"), ("builtins", "bytes"), ("builtins", "bytearray"),
    ("builtins", "slice"), ("builtins", "range"),
    ("collections", "OrderedDict"),
    ("numpy", "dtype"), ("numpy", "ndarray"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
})


_NUMPY_DTYPE_CLASSES = ("numpy.dtypes", "numpy")  # numpy >= 1.25 pickles dtypes as numpy.dtypes.Float64DType


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for an object outside the allowed builtins / numpy types."""


#: Most bytes the calls in one result pickle may allocate (the authors' files need a few kB; a hostile
#: 25-byte pickle ``numpy.ndarray((10**8,))`` would ask for 0.8 GB).
MAX_PICKLE_BYTES = 64 * 2**20


def _allocation(func: Any, args: tuple) -> int:
    """Bytes a call ``func(*args)`` of an allowed class may allocate, estimated before calling it:
    ``bytes(n)``/``bytearray(n)``, containers built from something with a length (``list(range(n))``),
    numpy arrays of a given shape and dtype (``ndarray(shape)``, ``_reconstruct(ndarray, shape, dtype)``)."""
    import numpy as np

    if func in (bytes, bytearray) and args and isinstance(args[0], int):
        return args[0]
    if func in (list, tuple, set, frozenset, dict, bytes, bytearray, str) and args and hasattr(args[0], "__len__"):
        return 8 * len(args[0])
    reconstruct = getattr(func, "__name__", "") == "_reconstruct"
    if func is np.ndarray or reconstruct:
        rest = args[1:] if reconstruct else args  # (shape, dtype, ...)
        shape, dtype = (rest[0] if rest else 0), (rest[1] if len(rest) > 1 else float)
        try:
            count = math.prod((shape,) if isinstance(shape, int) else tuple(shape))
            return int(count) * max(1, np.dtype(dtype).itemsize)
        except (TypeError, ValueError):
            return 0  # numpy refuses the call itself
    return 0


class _RestrictedUnpickler(pickle._Unpickler):  # the Python unpickler: its opcodes can be checked one by one
    """Rebuilds only :data:`_ALLOWED` objects, and refuses calls that would allocate more than
    ``max_bytes`` in all (:func:`_allocation`) before making them."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file: io.BytesIO, max_bytes: int) -> None:
        super().__init__(file)
        self.left = max_bytes
        self.max_bytes = max_bytes

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED or (module in _NUMPY_DTYPE_CLASSES and name.endswith("DType")):
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"refusing to load {module}.{name}: a result pickle may only hold dicts, lists, tuples, "
            "numbers, strings and numpy scalars/arrays (loading other objects can run code). "
            "If you trust the file, convert it to JSON/CSV yourself."
        )

    def _charge(self, func: Any, args: tuple) -> None:
        need = _allocation(func, tuple(args))
        if need > self.left:
            raise UnsafePickleError(
                f"refusing to build {getattr(func, '__name__', func)}(...) of {need / 2**20:.0f} MiB: a result "
                f"pickle may build at most {self.max_bytes / 2**20:.0f} MiB (the file is damaged or hostile)")
        self.left -= need

    def _load_reduce(self) -> None:
        args = self.stack.pop()
        self._charge(self.stack[-1], args)
        self.stack[-1] = self.stack[-1](*args)

    def _load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        self._charge(cls, args)
        self.append(cls.__new__(cls, *args))

    def _load_newobj_ex(self) -> None:
        kwargs, args, cls = self.stack.pop(), self.stack.pop(), self.stack.pop()
        self._charge(cls, args)
        self.append(cls.__new__(cls, *args, **kwargs))

    def _instantiate(self, klass: Any, args: list) -> None:
        self._charge(klass, tuple(args))
        super()._instantiate(klass, args)

    dispatch[pickle.REDUCE[0]] = _load_reduce
    dispatch[pickle.NEWOBJ[0]] = _load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = _load_newobj_ex


def safe_load_pickle(source: Path | str | bytes, max_bytes: int = MAX_PICKLE_BYTES) -> Any:
    """Load a pickle that may only contain builtin containers/numbers and numpy scalars/arrays.

    Args:
        source: a file path, or the pickle's bytes.
        max_bytes: the most its calls may allocate in all (:data:`MAX_PICKLE_BYTES`), checked
            before each call, so a tiny hostile pickle cannot make the reader allocate gigabytes.

    Raises:
        FileNotFoundError: the file does not exist.
        UnsafePickleError: the pickle references any other class or function, or asks for more memory.
        ValueError: the file is not a readable pickle.
    """
    if isinstance(source, (bytes, bytearray)):
        data, where = bytes(source), "the given bytes"
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"result pickle not found: '{path}'")
        data, where = path.read_bytes(), f"'{path}'"
    try:
        return _RestrictedUnpickler(io.BytesIO(data), max_bytes).load()
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{where}: {exc}") from None
    except Exception as exc:  # truncated / not a pickle
        raise ValueError(f"{where} is not a readable pickle ({type(exc).__name__}: {exc}). Get a good copy of the "
                         "authors' result file") from exc


#: The authors' two shift conventions: their ImageNet window (``trasladar2``) and MNIST canvas (``trasladar_MNIST``).
CONVENTIONS: tuple[str, ...] = ("imagenet", "mnist")


def _check_convention(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown shift convention {convention!r}; choose one of {CONVENTIONS} (the authors' ImageNet "
                         "scripts or their MNIST helper)")


def to_workbook_shift(desp_h: int, desp_v: int, convention: str = "imagenet") -> tuple[int, int]:
    """The authors' key ``(desp_h, desp_v)`` as the workbook's shift ``(dx, dy)``: ``(-desp_v, -desp_h)`` in
    their ImageNet scripts, ``(desp_h, desp_v)`` in their MNIST helper (see the module docstring)."""
    _check_convention(convention)
    return (-int(desp_v), -int(desp_h)) if convention == "imagenet" else (int(desp_h), int(desp_v))


def to_authors_key(dx: int, dy: int, convention: str = "imagenet") -> tuple[int, int]:
    """The workbook's shift ``(dx, dy)`` as the authors' key ``(desp_h, desp_v)``: ``(-dy, -dx)`` (ImageNet)
    or ``(dx, dy)`` (MNIST)."""
    _check_convention(convention)
    return (-int(dy), -int(dx)) if convention == "imagenet" else (int(dx), int(dy))


def guess_convention(path: Path | str) -> str | None:
    """The convention of one of the authors' translation files from its name: ``met_*_IMA*`` is ImageNet,
    ``met_*_{56,128,256}`` (their MNIST canvases) is MNIST; ``None`` when the name does not tell."""
    stem = Path(path).stem
    if "_IMA" in stem:
        return "imagenet"
    if stem.rsplit("_", 1)[-1] in ("56", "128", "256"):
        return "mnist"
    return None


def _number(value: Any, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    return v


def results_frame(results: Mapping[Any, Mapping[str, Any]], kind: str, head: str = "authors",
                  n: int | None = None, convention: str = "imagenet") -> pd.DataFrame:
    """The workbook's table of an authors' result dict (already loaded).

    Args:
        results: ``{key: {"loss": float, "accuracy": float, ...}}`` (other metrics are ignored).
        kind: ``"translation"`` (keys ``(desp_h, desp_v)``), ``"rotation"`` (degrees) or
            ``"scale"`` (factors).
        head: the name in the ``head`` column (e.g. ``"authors/multi_gap"``).
        n: number of test images, if known (rotation / scale tables; else NaN).
        convention: how translation keys read (:data:`CONVENTIONS`: their ImageNet scripts or MNIST helper).

    Returns:
        translation: ``head, dx, dy, accuracy, loss, p_true`` sorted by ``(dy, dx)``
        (:func:`shiftinv.study.analysis.shift_frame`'s columns; ``p_true`` NaN: not saved by the authors);
        rotation / scale: ``kind, value, head, accuracy, loss, n`` sorted by value
        (:func:`shiftinv.shifts.geometric.evaluate_transforms`'s columns, ``kind`` ``"rotation"`` / ``"scale"``).
    """
    if kind not in RESULT_KINDS:
        raise ValueError(f"unknown result kind {kind!r}; choose one of {RESULT_KINDS}")
    if not isinstance(results, Mapping) or not results:
        raise ValueError(f"expected a non-empty dict {{key: {{'loss', 'accuracy'}}}}, got {type(results).__name__}")
    rows = []
    for key, metrics in results.items():
        if not isinstance(metrics, Mapping) or not {"loss", "accuracy"} <= set(metrics):
            have = sorted(metrics) if isinstance(metrics, Mapping) else type(metrics).__name__
            raise ValueError(f"entry {key!r} must be a dict with 'loss' and 'accuracy' (Keras evaluate), got {have}")
        loss, acc = _number(metrics["loss"], f"loss of {key!r}"), _number(metrics["accuracy"], f"accuracy of {key!r}")
        if kind == "translation":
            if not (isinstance(key, tuple) and len(key) == 2 and all(float(k).is_integer() for k in key)):
                raise ValueError(f"translation keys must be integer pairs (desp_h, desp_v), got {key!r}")
            dx, dy = to_workbook_shift(int(key[0]), int(key[1]), convention)
            rows.append({"head": head, "dx": dx, "dy": dy, "accuracy": acc, "loss": loss, "p_true": math.nan})
        else:
            value = _number(key, f"{kind} key")
            rows.append({"kind": kind, "value": value, "head": head, "accuracy": acc, "loss": loss,
                         "n": math.nan if n is None else n})
    frame = pd.DataFrame(rows)
    if kind == "translation":
        if frame.duplicated(["dx", "dy"]).any():
            raise ValueError("two keys map to the same shift")
        return frame.sort_values(["dy", "dx"], ignore_index=True)
    return frame.sort_values("value", ignore_index=True)


def read_results(path: Path | str, kind: str | None = None, head: str | None = None,
                 n: int | None = None, convention: str | None = None) -> pd.DataFrame:
    """Read one of the authors' result pickles (safely) into the workbook's table.

    Args:
        path: e.g. ``met_VGGGAP.pkl`` (translation), ``met_VGGGAP_rot.pkl``, ``met_VGGGAP_esc.pkl``.
        kind: ``"translation"`` / ``"rotation"`` / ``"scale"``; default: translation when the
            keys are pairs, else from the file name (``_rot`` -> rotation, ``_esc`` -> scale).
        head: the ``head`` column (default: the file's stem, e.g. ``"met_VGGGAP"``).
        n: number of test images, if known.
        convention: ``"imagenet"`` or ``"mnist"`` for translation keys (default: from the file name,
            :func:`guess_convention`; an error when the name does not tell).

    Returns:
        See :func:`results_frame`.
    """
    path = Path(path).expanduser()
    results = safe_load_pickle(path)
    if not isinstance(results, Mapping) or not results:
        raise ValueError(f"'{path}' holds a {type(results).__name__}, not the authors' {{key: metrics}} dict")
    if kind is None:
        first = next(iter(results))
        if isinstance(first, tuple):
            kind = "translation"
        elif "_rot" in path.stem:
            kind = "rotation"
        elif "_esc" in path.stem:
            kind = "scale"
        else:
            raise ValueError(f"cannot tell whether '{path}' holds angles or scale factors: pass kind='rotation' "
                             "or kind='scale'")
    if kind == "translation" and convention is None:
        convention = guess_convention(path)
        if convention is None:
            raise ValueError(f"cannot tell from its name whether '{path}' comes from the authors' ImageNet scripts "
                             "(keys (desp_h, desp_v) = (-dy, -dx)) or their MNIST helper ((dx, dy)): pass "
                             "convention='imagenet' or convention='mnist'")
    return results_frame(results, kind, head or path.stem, n, convention or "imagenet")

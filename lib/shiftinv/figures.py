"""One helper to save every figure: PNG + PDF + the numbers behind it.

File names follow the notebook that makes the figure (``02_params_table.png``),
so a figure leads to its source. Metadata is fixed (no timestamps, no software
versions) so that re-running a notebook on the same numbers gives identical
files.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from . import paths
from .utils import atomic_write_bytes

#: Colour-blind-safe palette used across all notebooks.
PALETTE = "colorblind"


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


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if hasattr(obj, "detach") and hasattr(obj, "cpu"):  # torch tensor
        return _jsonable(obj.detach().cpu().numpy())
    if isinstance(obj, (np.floating, float)):
        value = float(obj)
        return None if math.isnan(value) else value
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def save_data(data: pd.DataFrame | Mapping[str, Any], stem: Path) -> Path:
    """Write ``data`` beside a figure: a DataFrame as CSV, a mapping as JSON."""
    if isinstance(data, pd.DataFrame):
        path = stem.with_suffix(".csv")
        atomic_write_bytes(path, data.to_csv(index=False, float_format="%.6g").encode())
    elif isinstance(data, Mapping):
        path = stem.with_suffix(".json")
        text = json.dumps(_jsonable(data), indent=2, sort_keys=True) + "\n"
        atomic_write_bytes(path, text.encode())
    else:
        raise TypeError(f"figure data must be a pandas DataFrame or a dict, got {type(data).__name__}")
    return path


def save_figure(
    fig: plt.Figure,
    name: str,
    data: pd.DataFrame | Mapping[str, Any] | None,
    out_dir: Path | None = None,
) -> dict[str, Path]:
    """Save ``fig`` as ``<name>.png`` and ``<name>.pdf`` with its data beside it.

    Args:
        fig: the matplotlib figure.
        name: file stem, prefixed by the notebook number (``"01_conv_equivariance"``).
        data: the numbers drawn (DataFrame -> CSV, dict -> JSON). Required unless
            the figure shows only images; pass ``None`` explicitly then.
        out_dir: defaults to :func:`shiftinv.paths.figures_dir`.

    Returns:
        ``{"png": path, "pdf": path, "data": path}`` (``data`` absent if ``None``).
    """
    if not name or "/" in name:
        raise ValueError(f"figure name must be a plain file stem, got {name!r}")
    out_dir = Path(out_dir) if out_dir is not None else paths.figures_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / name
    written: dict[str, Path] = {}
    for ext, metadata in (
        ("png", {"Software": None}),
        ("pdf", {"Creator": None, "Producer": None, "CreationDate": None}),
    ):
        tmp = stem.with_name(f".{stem.name}.tmp.{ext}")
        fig.savefig(tmp, format=ext, metadata=metadata)
        final = stem.with_suffix(f".{ext}")
        tmp.replace(final)
        written[ext] = final
    if data is not None:
        written["data"] = save_data(data, stem)
    return written

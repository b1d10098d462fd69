"""One helper to save every figure: PNG + PDF + the numbers behind it, and the workbook's style.

File names follow the notebook that makes the figure (``02_params.png``), so a figure leads to
its source. Each profile has its own folder (``figures/demo/``, ``figures/paper/``; see
:mod:`shiftinv.workbook.paths`), so one profile never overwrites another's figures.

This module draws: :func:`save_figure` renders a figure to PNG and PDF bytes (no timestamps or
software versions in their metadata, so identical figures give identical bytes) and encodes its
data, then hands them to :mod:`shiftinv.workbook.publish`, which writes them together under the
folder's lock, records the run in the folder's ``MANIFEST.json`` and decides where a figure goes
(``$SHIFTINV_FIGURES``, else ``figures/<profile>/`` of :func:`use_profile`). ``use_profile``,
``record_sources``, ``output_dir`` and ``save_data`` are the publisher's, named here because
notebooks call them beside ``save_figure``.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Mapping

import matplotlib
import matplotlib.pyplot as plt
import pandas as pd

from ..workbook.publish import encode_data, output_dir, publish_files, record_sources, run_info, save_data, use_profile

__all__ = ["PALETTE", "output_dir", "record_sources", "save_data", "save_figure", "set_style", "use_profile"]

#: Colour-blind-safe palette used across all notebooks.
PALETTE = "colorblind"


#: Suffixes of a figure's data file (one of them, written beside its PNG and PDF).
DATA_SUFFIXES = (".csv", ".json")


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


def _render(fig: plt.Figure, fmt: str) -> bytes:
    # No creation dates or software versions: identical figures give identical bytes.
    metadata = {"png": {"Software": None},
                "pdf": {"Creator": None, "Producer": None, "CreationDate": None}}[fmt]
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, metadata=metadata)
    return buffer.getvalue()


def save_figure_timed(fig: plt.Figure, name: str, frame: pd.DataFrame, keys: tuple[str, ...] = ("model", "epoch")
                      ) -> dict[str, Path]:
    """:func:`save_figure` with ``frame``'s wall-clock columns (:data:`shiftinv.study.analysis.TIMING_COLUMNS`)
    moved to ``<name>_timings.csv`` beside the run conditions: the figure's data file holds only the numbers
    a rerun must reproduce, the timings file what the machine took."""
    from ..study import analysis
    from ..workbook import runtime

    data, timings = analysis.split_timings(frame, keys)
    paths_written = save_figure(fig, name, data)
    save_data(timings.assign(**runtime.run_conditions()), output_dir() / f"{name}_timings")
    return paths_written


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

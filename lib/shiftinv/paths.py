"""Every folder the workbook uses, resolved from the package location.

Nothing here depends on the current working directory, so notebooks, tests and
the Makefile agree on where things are. Three environment variables override
the defaults (the test tier uses them to keep smoke runs out of ``figures/``):

- ``SHIFTINV_DATA``     real datasets (default: ``<repo>/../shared/data``)
- ``SHIFTINV_FIGURES``  where figures and their data files go (default ``<repo>/figures``)
- ``SHIFTINV_RESULTS``  cached results and checkpoints (default ``<repo>/results``)
"""

from __future__ import annotations

import os
from pathlib import Path

#: Repository root (``lib/shiftinv/paths.py`` -> three levels up).
ROOT: Path = Path(__file__).resolve().parents[2]
NOTEBOOKS: Path = ROOT / "notebooks"
BUILD: Path = ROOT / "build"
EXECUTED: Path = BUILD / "executed"


def _env_path(var: str, default: Path) -> Path:
    value = os.environ.get(var)
    return Path(value).expanduser().resolve() if value else default


def data_dir() -> Path:
    """Folder holding real datasets (``$SHIFTINV_DATA``, default ``../shared/data``)."""
    return _env_path("SHIFTINV_DATA", ROOT.parent / "shared" / "data")


def figures_dir() -> Path:
    """Folder for figures and the numbers behind them (created on demand)."""
    path = _env_path("SHIFTINV_FIGURES", ROOT / "figures")
    path.mkdir(parents=True, exist_ok=True)
    return path


def results_dir() -> Path:
    """Folder for cached results and checkpoints (created on demand)."""
    path = _env_path("SHIFTINV_RESULTS", ROOT / "results")
    path.mkdir(parents=True, exist_ok=True)
    return path


def require_dir(path: Path | str, what: str, how_to_get: str) -> Path:
    """Return ``path`` if it is an existing folder, else raise a helpful error.

    ``what`` names the data ("KADID-10k images"), ``how_to_get`` says where to get
    it or which variable/parameter points to it.
    """
    path = Path(path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{what} not found: folder '{path}' does not exist. {how_to_get}")
    return path

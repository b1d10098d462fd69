"""Every folder the workbook uses, resolved from the package location.

Nothing here depends on the current working directory, so notebooks, tests and
the Makefile agree on where things are. The package must be installed editable
from a clone (``pip install -e .``, as ``make setup`` does): the folders below
are the clone's, and :func:`require_clone` says so when they are missing.

Figures of each profile have a folder of their own, ``figures/<profile>/``
(``figures/demo/``, ``figures/paper/``, ...), so one profile never overwrites
another's; smoke runs go to ``build/smoke/figures/<profile>/``.

Three environment variables override the defaults:

- ``SHIFTINV_DATA``     real datasets (default: ``<repo>/../shared/data``)
- ``SHIFTINV_FIGURES``  the exact folder figures and their data files go to, whatever the
  profile (the test tier uses it to keep smoke runs out of ``figures/``; the notebook runner
  points it at a per-notebook staging folder)
- ``SHIFTINV_RESULTS``  cached results and checkpoints (default ``<repo>/results``)
"""

from __future__ import annotations

import os
import re
from pathlib import Path

#: Repository root (``lib/shiftinv/workbook/paths.py`` -> three levels up).
ROOT: Path = Path(__file__).resolve().parents[3]


NOTEBOOKS: Path = ROOT / "notebooks"


BUILD: Path = ROOT / "build"


EXECUTED: Path = BUILD / "executed"


#: Committed figures, one folder per profile: ``FIGURES / "demo"``.
FIGURES: Path = ROOT / "figures"


#: Figures of smoke runs (never committed), one folder per profile.
SMOKE_FIGURES: Path = BUILD / "smoke" / "figures"


_PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def require_clone() -> Path:
    """Return :data:`ROOT` if it is a clone of the workbook, else raise a clear error.

    A non-editable ``pip install .`` puts the package in ``site-packages``, where there
    are no notebooks, and figures and results would be written inside the environment.
    """
    if not NOTEBOOKS.is_dir():
        raise RuntimeError(
            f"shiftinv is not running from a clone of the workbook: {NOTEBOOKS} does not exist "
            f"(package at {Path(__file__).resolve().parents[1]}). Install it with `pip install -e .` "
            "from a clone (or run `make setup` there), not with `pip install .`."
        )
    return ROOT


def _env_path(var: str, default: Path | None) -> Path | None:
    value = os.environ.get(var)
    return Path(value).expanduser().resolve() if value else default


def data_dir() -> Path:
    """Folder holding real datasets (``$SHIFTINV_DATA``, default ``../shared/data``)."""
    return _env_path("SHIFTINV_DATA", ROOT.parent / "shared" / "data")


#: The profiles every notebook knows (both halves of the workbook); each names a folder ``figures/<profile>/``.
PROFILES: tuple[str, ...] = ("demo", "natural", "cifar", "paper")


def check_profile_name(profile: str) -> str:
    """``profile`` if it can name a folder (letters, digits, ``_.-``), else ``ValueError``."""
    if not isinstance(profile, str) or not _PLAIN_NAME.match(profile):
        raise ValueError(f"profile must be a plain name such as 'demo' (it names a folder), got {profile!r}")
    return profile


def profile_figures_dir(profile: str, smoke: bool = False) -> Path:
    """Where the figures of ``profile`` live: ``figures/<profile>`` (smoke: ``build/smoke/figures/<profile>``).

    Ignores ``$SHIFTINV_FIGURES``; :func:`figures_dir` is the folder a figure is written to.
    """
    check_profile_name(profile)
    require_clone()
    return (SMOKE_FIGURES if smoke else FIGURES) / profile


def figures_dir(profile: str | None = None, smoke: bool = False) -> Path:
    """Folder a figure and the numbers behind it are written to (created on demand).

    ``$SHIFTINV_FIGURES`` when set (an exact folder: tests, the runner's staging folder),
    else :func:`profile_figures_dir` of ``profile``.

    Raises:
        ValueError: neither ``$SHIFTINV_FIGURES`` nor a profile says where figures go.
    """
    path = _env_path("SHIFTINV_FIGURES", None)
    if path is None:
        if profile is None:
            raise ValueError(
                "no profile to file this figure under: call figures.use_profile(PROFILE, smoke=SMOKE) "
                "in the notebook's first cell after its parameters (or set SHIFTINV_FIGURES to a folder)"
            )
        path = profile_figures_dir(profile, smoke)
    path.mkdir(parents=True, exist_ok=True)
    return path


def results_dir() -> Path:
    """Folder for cached results and checkpoints (created on demand)."""
    path = _env_path("SHIFTINV_RESULTS", None)
    if path is None:
        path = require_clone() / "results"
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

"""Test configuration shared by every tier.

Smoke runs and unit tests write figures and cached results into a temporary
folder (never into the repository's ``figures/``), progress bars are off, and
matplotlib draws headless.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_SESSION_TMP = Path(tempfile.mkdtemp(prefix="shiftinv-tests-"))
os.environ.setdefault("SHIFTINV_FIGURES", str(_SESSION_TMP / "figures"))
os.environ.setdefault("SHIFTINV_RESULTS", str(_SESSION_TMP / "results"))
os.environ["SHIFTINV_PROGRESS"] = "0"
os.environ["MPLBACKEND"] = "Agg"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA (no GPU on this machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``$SHIFTINV_DATA`` (default ``../shared/data``); skips the test when absent."""
    from shiftinv import paths

    root = paths.data_dir()
    if not root.is_dir():
        pytest.skip(f"real data folder {root} is absent (set SHIFTINV_DATA to ../shared/data)")
    return root


@pytest.fixture(scope="session")
def session_tmp() -> Path:
    return _SESSION_TMP

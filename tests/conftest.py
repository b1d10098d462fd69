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

_RUN_ID = os.environ.get("PYTEST_XDIST_TESTRUNUID")
if _RUN_ID:  # xdist workers share one folder, so a model one notebook trains is cached for the next
    _SESSION_TMP = Path(tempfile.gettempdir()) / f"shiftinv-tests-{_RUN_ID}"
    _SESSION_TMP.mkdir(exist_ok=True)
else:
    _SESSION_TMP = Path(tempfile.mkdtemp(prefix="shiftinv-tests-"))
os.environ.setdefault("SHIFTINV_FIGURES", str(_SESSION_TMP / "figures"))
os.environ.setdefault("SHIFTINV_RESULTS", str(_SESSION_TMP / "results"))
os.environ["SHIFTINV_PROGRESS"] = "0"
os.environ["MPLBACKEND"] = "Agg"
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two xdist workers on two cores: one thread each (also for the notebook
    # kernels they start, which inherit this environment) instead of two threads fighting for a core.
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)
    for item in items:
        if "browser" in item.keywords:
            # one worker runs the whole browser tier against one JupyterLab server
            item.add_marker(pytest.mark.xdist_group("browser"))
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA (no GPU on this machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``$SHIFTINV_DATA`` (default ``../shared/data``); skips the test when absent."""
    from shiftinv.workbook import paths

    root = paths.data_dir()
    if not root.is_dir():
        pytest.skip(f"real data folder {root} is absent (set SHIFTINV_DATA to ../shared/data)")
    return root


@pytest.fixture(scope="session")
def session_tmp() -> Path:
    return _SESSION_TMP


@pytest.fixture(autouse=True)
def _own_figures_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Each notebook test writes its figures to a folder of its own (the kernels inherit the
    variable), so two workers running the same notebook under different profiles never read
    each other's data files. Cached results stay shared."""
    if request.node.get_closest_marker("notebooks"):
        monkeypatch.setenv("SHIFTINV_FIGURES", str(tmp_path_factory.mktemp("figures")))

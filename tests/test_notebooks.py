"""Notebook tier: every notebook runs end to end through papermill with SMOKE=True.

Uses the same runner as ``make figures`` (``shiftinv.notebooks.run_notebook``),
so a notebook that breaks here breaks there too, with the same message.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from shiftinv import notebooks

NOTEBOOKS = notebooks.list_notebooks()


@pytest.mark.notebooks
@pytest.mark.parametrize("source", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_notebook_runs_with_smoke_parameters(source: Path, session_tmp: Path) -> None:
    executed = notebooks.run_notebook(source, {"PROFILE": "demo", "SMOKE": True}, session_tmp / "executed")
    assert executed.exists()


@pytest.mark.notebooks
def test_broken_notebook_names_notebook_and_cell(tmp_path: Path) -> None:
    broken = tmp_path / "99_broken.py"
    broken.write_text(
        "# %%\nx = 1\n\n# %% tags=[\"parameters\"]\nPROFILE: str = \"demo\"\nSMOKE: bool = False\n\n"
        "# %%\nraise ValueError('deliberately broken')\n"
    )
    with pytest.raises(notebooks.NotebookError) as info:
        notebooks.run_notebook(broken, {"SMOKE": True}, tmp_path / "out")
    message = str(info.value)
    assert "99_broken.py" in message
    assert "deliberately broken" in message
    assert "cell" in message


def test_list_notebooks_rejects_unknown_prefix() -> None:
    with pytest.raises(notebooks.NotebookError, match="no notebook matches"):
        notebooks.list_notebooks(["does-not-exist"])

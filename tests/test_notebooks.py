"""Notebook tier: every notebook runs end to end through papermill with SMOKE=True.

Uses the same runner as ``make figures`` (``shiftinv.workbook.runner.run_notebook``),
so a notebook that breaks here breaks there too, with the same message.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from shiftinv.workbook import parameters as workbook_parameters
from shiftinv.workbook import runner

NOTEBOOKS = runner.list_notebooks()


@pytest.mark.notebooks
@pytest.mark.parametrize("source", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_notebook_runs_with_smoke_parameters(source: Path, session_tmp: Path) -> None:
    executed = runner.run_notebook(source, {"PROFILE": "demo", "SMOKE": True}, session_tmp / "executed")
    assert executed.exists()


@pytest.mark.notebooks
def test_broken_notebook_names_notebook_and_cell(tmp_path: Path) -> None:
    broken = tmp_path / "99_broken.py"
    broken.write_text(
        "# %%\nx = 1\n\n# %% tags=[\"parameters\"]\nPROFILE: str = \"demo\"\nSMOKE: bool = False\n\n"
        "# %%\nraise ValueError('deliberately broken')\n"
    )
    with pytest.raises(workbook_parameters.NotebookError) as info:
        runner.run_notebook(broken, {"SMOKE": True}, tmp_path / "out")
    message = str(info.value)
    assert "99_broken.py" in message
    assert "deliberately broken" in message
    assert "cell" in message


def test_list_notebooks_rejects_unknown_prefix() -> None:
    with pytest.raises(workbook_parameters.NotebookError, match="no notebook matches"):
        runner.list_notebooks(["does-not-exist"])


# --------------------------------------------------------------------------- parameters, checked first

import ast  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from shiftinv.study import profiles
from shiftinv.workbook import paths


@pytest.fixture
def no_runs(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Replace the execution by a record of what would run (no kernel starts)."""
    calls: list[dict] = []

    def record(nbs, parameters, profile, smoke, figures_dir, executed_dir, out=None):  # noqa: ANN001
        calls.append({"notebooks": [nb.stem for nb in nbs], "parameters": parameters, "profile": profile,
                      "smoke": smoke, "figures_dir": figures_dir})
        return 0

    monkeypatch.setattr(runner, "run_notebooks", record)
    monkeypatch.delenv("SHIFTINV_FIGURES", raising=False)
    return calls


def test_profile_typo_is_an_error_naming_the_known_profiles(no_runs, capsys) -> None:
    assert runner.main(["--profile", "typo"]) == 2
    err = capsys.readouterr().err
    assert "unknown profile 'typo'" in err
    assert all(p in err for p in profiles.PROFILES)  # read from the code, not a list of its own
    assert no_runs == []


def test_unknown_parameter_is_an_error_listing_the_valid_ones(no_runs, capsys) -> None:
    assert runner.main(["-p", "EPOCS=3"]) == 2
    err = capsys.readouterr().err
    assert "unknown parameter EPOCS (did you mean EPOCHS?)" in err
    assert "valid names" in err and "OVERRIDES" in err and "SEED" in err and "DEVICE" in err
    assert no_runs == []
    assert runner.main(["-p", "EPOCHS=3", "01"]) == 2  # EPOCHS exists, but not in notebook 01


def test_value_of_the_wrong_type_is_an_error_naming_the_parameter(no_runs, capsys) -> None:
    assert runner.main(["-p", "EPOCHS=abc"]) == 2
    err = capsys.readouterr().err
    assert "EPOCHS" in err and "int" in err and "'abc'" in err and "08_iqa_evaluation" in err
    assert runner.main(["-p", "SMOKE=maybe"]) == 2
    assert "SMOKE" in capsys.readouterr().err
    assert runner.main(["-p", "EPOCHS"]) == 2  # no "="
    assert no_runs == []


def test_smoke_false_is_false_and_only_smoke_runs_go_to_build(no_runs) -> None:
    assert runner.main(["-p", "SMOKE=false", "-p", "EPOCHS=3", "01", "08"]) == 0
    run = no_runs.pop()
    assert run["smoke"] is False
    assert run["parameters"]["01_primer_equivariance"] == {"PROFILE": "demo", "SMOKE": False}
    assert run["parameters"]["08_iqa_evaluation"]["EPOCHS"] == 3  # only 08 declares EPOCHS
    assert run["figures_dir"] == paths.FIGURES / "demo"
    for argv in (["--smoke", "01"], ["-p", "SMOKE=true", "01"], ["-p", "SMOKE=1", "01"]):
        assert runner.main(argv) == 0
        run = no_runs.pop()
        assert run["smoke"] is True and run["parameters"]["01_primer_equivariance"]["SMOKE"] is True
        assert run["figures_dir"] == paths.SMOKE_FIGURES / "demo", argv  # never into figures/
    assert runner.main(["--profile", "paper", "02"]) == 0
    assert no_runs.pop()["figures_dir"] == paths.FIGURES / "paper"


def _param(annotation: str, default: object = None) -> workbook_parameters.Parameter:
    return workbook_parameters.Parameter("X", annotation, default, "99_test")


@pytest.mark.parametrize("annotation, text, expected", [
    ("bool", "false", False), ("bool", "False", False), ("bool", "0", False), ("bool", "true", True),
    ("bool", "YES", True), ("int", "3", 3), ("int", " -2 ", -2), ("float", "1e-3", 1e-3), ("float", "2", 2.0),
    ("str", "/data/x", "/data/x"), ("str", "'quoted'", "quoted"), ("str", "3", "3"),
    ("str | None", "None", None), ("str | None", "abc", "abc"), ("Optional[int]", "none", None),
    ("Optional[int]", "4", 4), ("int | str", "4", 4), ("int | str", "four", "four"),
    ("list", "[0, 1, 2]", [0, 1, 2]), ("list", "0,1,2", [0, 1, 2]), ("list[int]", "4", [4]),
    ("tuple[int, ...]", "1,2", [1, 2]), ("list[float]", "[1, 2.5]", [1.0, 2.5]),
    ("Literal['mosaic', 'circular']", "circular", "circular"),
])
def test_values_are_parsed_as_their_annotation(annotation: str, text: str, expected: object) -> None:
    value = workbook_parameters.parse_parameter(_param(annotation), text)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("annotation, text", [
    ("bool", "maybe"), ("int", "abc"), ("int", "1.5"), ("float", "x"), ("list[int]", "[1, 'a']"),
    ("list", "abc"), ("Literal['mosaic', 'circular']", "spiral"), ("int | None", "x"),
])
def test_bad_values_name_parameter_and_type(annotation: str, text: str) -> None:
    expected = re.escape(f"X={text!r}") + ".*" + re.escape(f"X: {annotation} in the parameters cell of 99_test")
    with pytest.raises(workbook_parameters.ParameterError, match=expected):
        workbook_parameters.parse_parameter(_param(annotation), text)


def test_unannotated_parameters_take_the_type_of_their_default() -> None:
    assert workbook_parameters.parse_parameter(workbook_parameters.Parameter("N", None, 5, "nb"), "7") == 7
    with pytest.raises(workbook_parameters.ParameterError, match="N='x'"):
        workbook_parameters.parse_parameter(workbook_parameters.Parameter("N", None, 5, "nb"), "x")


def test_every_notebook_parameter_has_a_checkable_annotation() -> None:
    for nb in NOTEBOOKS:
        for param in workbook_parameters.parameters_cell(nb).values():
            assert param.annotation, f"{nb.name}: give {param.name} a type annotation"
            workbook_parameters.parse_parameter(param, repr(param.default) if not isinstance(param.default, str)
                                      else param.default)  # the default itself parses


def test_every_notebook_files_its_figures_under_its_profile() -> None:
    """The first code cell after the parameters cell calls figures.use_profile(PROFILE, smoke=SMOKE)."""
    import jupytext

    for nb in NOTEBOOKS:
        cells = jupytext.read(nb).cells
        index = next(i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", []))
        following = next(c for c in cells[index + 1:] if c.cell_type == "code")
        first = ast.parse(following.source).body[0]
        assert ast.unparse(first) == "figures.use_profile(PROFILE, smoke=SMOKE)", nb.name


@pytest.mark.slow
def test_command_line_fails_within_seconds_before_any_notebook_runs() -> None:
    for argv, expected in ((["--profile", "typo"], "unknown profile 'typo'"),
                           (["-p", "EPOCS=3"], "unknown parameter EPOCS")):
        start = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "shiftinv.workbook.runner", *argv], capture_output=True,
                                text=True, timeout=120)
        assert result.returncode != 0 and expected in result.stderr, result.stderr
        assert ">> 01" not in result.stdout  # no notebook started
        assert time.monotonic() - start < 60


# --------------------------------------------------------------------------- publishing figures

_OK = '''# %%
from shiftinv.viz import figures
import matplotlib.pyplot as plt
import pandas as pd

# %% tags=["parameters"]
PROFILE: str = "demo"
SMOKE: bool = False
N: int = 1

# %%
figures.use_profile(PROFILE, smoke=SMOKE)
fig, ax = plt.subplots(figsize=(2, 2))
ax.plot(range(N + 1))
figures.save_figure(fig, "{stem}", pd.DataFrame({{"n": [N]}}))
{extra}
'''


@pytest.mark.notebooks
@pytest.mark.slow
def test_a_failing_notebook_publishes_nothing_and_the_manifest_names_the_run(tmp_path: Path) -> None:
    (tmp_path / "01_ok.py").write_text(_OK.format(stem="01_ok", extra="print('progress is printed')"))
    (tmp_path / "02_broken.py").write_text(_OK.format(stem="02_partial", extra="raise ValueError('broken on purpose')"))
    nbs = [tmp_path / "01_ok.py", tmp_path / "02_broken.py"]
    params = workbook_parameters.resolve_parameters(nbs, {"N": "3"}, "demo", False)
    assert params["01_ok"] == {"PROFILE": "demo", "SMOKE": False, "N": 3}
    out_dir, log = tmp_path / "figures" / "demo", tmp_path / "log.txt"
    with open(log, "w") as handle:
        rc = runner.run_notebooks(nbs, params, "demo", False, out_dir, tmp_path / "executed", out=handle)
    assert rc == 1
    assert sorted(p.name for p in out_dir.iterdir()) == ["01_ok.csv", "01_ok.pdf", "01_ok.png", "MANIFEST.json"]
    manifest = json.loads((out_dir / "MANIFEST.json").read_text())
    (run,) = manifest["runs"].values()
    assert run["notebook"] == "01_ok" and run["profile"] == "demo" and run["smoke"] is False
    assert run["parameters"] == {"PROFILE": "demo", "SMOKE": False, "N": 3}
    assert "commit" in run and set(manifest["files"]) == {"01_ok.csv", "01_ok.pdf", "01_ok.png"}
    text = log.read_text()
    assert ">> 01_ok.py" in text and "3 file(s) published" in text
    assert "[1/4]" in text and "[4/4] figures.use_profile(PROFILE, smoke=SMOKE)" in text  # one line per cell
    assert " s\n" in text  # with its time


def test_staging_folders_of_killed_runs_are_removed(tmp_path: Path) -> None:
    import os

    dead = tmp_path / ".staging-01_x-999999999-abcd"  # no such process
    alive = tmp_path / f".staging-01_x-{os.getpid()}-abcd"
    for folder in (dead, alive):
        folder.mkdir()
        (folder / "01_x.png").write_bytes(b"half")
    runner._remove_orphan_staging(tmp_path)
    assert not dead.exists() and alive.exists()

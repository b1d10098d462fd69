"""Student versions (``make student``): no solutions left, and they still run up to the exercises."""

from __future__ import annotations

from pathlib import Path

import jupytext
import nbformat
import pytest

from shiftinv.workbook import paths, runner, student

NOTEBOOKS = runner.list_notebooks()
IDS = [nb.stem for nb in NOTEBOOKS]


def _toy_notebook() -> nbformat.NotebookNode:
    v4 = nbformat.v4
    nb = v4.new_notebook()
    nb.cells = [
        v4.new_markdown_cell("# 99 · Toy"),
        v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
        v4.new_code_cell("y = x + 1", outputs=[v4.new_output("stream", text="2\n")], execution_count=3),
        v4.new_markdown_cell("## Exercises\n1. Double y.\n2. Explain."),
        v4.new_code_cell("print(2 * y)  # SECRET-1", metadata={"tags": ["solution"]}),
        v4.new_markdown_cell("Because SECRET-2.", metadata={"tags": ["solution", "other"]}),
        v4.new_markdown_cell("3. Triple y."),
        v4.new_code_cell("print(3 * y)  # SECRET-3", metadata={"tags": ["solution"]}),
    ]
    return nb


def test_strip_solutions_replaces_each_run_of_solutions_by_one_answer_cell() -> None:
    nb = _toy_notebook()
    out = student.strip_solutions(nb)
    assert student.solution_count(nb) == 3  # the input is untouched
    assert student.solution_count(out) == 0
    text = "\n".join(cell.source for cell in out.cells)
    assert "SECRET" not in text
    answers = [cell for cell in out.cells if student.ANSWER_TAG in cell.metadata.get("tags", [])]
    assert len(answers) == 2  # two runs of solution cells -> two answer slots
    assert [cell.source for cell in out.cells[:4]] == [cell.source for cell in nb.cells[:4]]
    assert out.cells[2].outputs == [] and out.cells[2].execution_count is None
    assert out.cells[1].metadata["tags"] == ["parameters"]


def test_solution_without_exercise_section_is_an_error() -> None:
    nb = _toy_notebook()
    nb.cells[3].source = "## Questions"
    with pytest.raises(student.StudentError, match="no markdown cell before it mentions the exercises"):
        student.strip_solutions(nb, name="99_toy.py")


def test_cli_writes_student_versions_of_py_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "notebooks"
    src.mkdir()
    jupytext.write(_toy_notebook(), src / "99_toy.py", fmt="py:percent")
    monkeypatch.setattr(paths, "NOTEBOOKS", src)
    for fmt in ("ipynb", "py"):
        assert student.main(["--out", str(tmp_path / "out"), "--format", fmt]) == 0
        written = tmp_path / "out" / f"99_toy.{fmt}"
        assert written.is_file()
        assert "SECRET" not in written.read_text()
        assert student.solution_count(jupytext.read(written)) == 0
    assert student.main(["does-not-exist", "--out", str(tmp_path / "out")]) == 2


@pytest.mark.parametrize("source", NOTEBOOKS, ids=IDS)
def test_student_version_has_no_solution(source: Path, tmp_path: Path) -> None:
    teacher = jupytext.read(source)
    assert student.solution_count(teacher) >= 1, (
        f"{source.name} has no cell tagged 'solution': each notebook ends with exercises "
        "whose solutions are in cells tagged solution (see CONTRIBUTING.md)"
    )
    path = student.write_student_version(source, tmp_path)
    text = path.read_text()
    nb = nbformat.reads(text, as_version=4)
    assert student.solution_count(nb) == 0
    for cell in teacher.cells:
        if student.is_solution(cell) and cell.source.strip():
            assert cell.source.strip() not in text, f"a solution of {source.name} leaked into the student version"
    kept = [c.source for c in teacher.cells if not student.is_solution(c)]
    assert kept == [c.source for c in nb.cells if student.ANSWER_TAG not in c.metadata.get("tags", [])]


def _code_runs_after_a_solution(source: Path) -> bool:
    """True if a non-solution code cell follows a solution cell: only then can stripping the
    solutions break a later cell. Otherwise the student version is a prefix of the notebook that
    the notebook tier already executes, plus empty answer cells."""
    seen_solution = False
    for cell in jupytext.read(source).cells:
        tags = cell.metadata.get("tags", [])
        if student.SOLUTION_TAG in tags:
            seen_solution = True
        elif seen_solution and cell.cell_type == "code" and cell.source.strip():
            return True
    return False


# The first notebook always (the mechanism end to end), plus every notebook where stripping
# could change what runs; running all ten again would triple the notebook time of `make test`.
STUDENT_RUNS = [nb for i, nb in enumerate(NOTEBOOKS) if i == 0 or _code_runs_after_a_solution(nb)]


@pytest.mark.notebooks
@pytest.mark.parametrize("source", STUDENT_RUNS, ids=[nb.stem for nb in STUDENT_RUNS])
def test_student_version_runs_up_to_the_exercises(source: Path, tmp_path: Path) -> None:
    path = student.write_student_version(source, tmp_path / "student", fmt="py")
    executed = runner.run_notebook(path, {"PROFILE": "demo", "SMOKE": True}, tmp_path / "executed")
    nb = nbformat.read(executed, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.get("execution_count") is not None for c in code), "some cells did not run"
    assert not any(o.get("output_type") == "error" for c in code for o in c.outputs)
    exercises = [i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and "exercise" in c.source.lower()]
    assert exercises, f"{source.name}: the student version has no Exercises section"

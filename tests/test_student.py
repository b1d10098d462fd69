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
        v4.new_markdown_cell("# 99 · Toy\n1. Not an exercise: the intro's list."),
        v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
        v4.new_code_cell("y = x + 1", outputs=[v4.new_output("stream", text="2\n")], execution_count=3),
        v4.new_markdown_cell("## Exercises\n1. Double y.\n2. Explain why y is\n   two."),
        v4.new_code_cell("# Exercise 1: SECRET-0\nprint(2 * y)  # SECRET-1", metadata={"tags": ["solution"]}),
        v4.new_code_cell("# Exercise 1 (continued)\nprint(4 * y)  # SECRET-4", metadata={"tags": ["solution"]}),
        v4.new_markdown_cell("**Exercise 2.** Because SECRET-2.", metadata={"tags": ["solution", "other"]}),
        v4.new_markdown_cell("3. Triple y."),
        v4.new_code_cell("# Exercise 3\nprint(3 * y)  # SECRET-3", metadata={"tags": ["solution"]}),
    ]
    return nb


def _answers(nb: nbformat.NotebookNode) -> list[str]:
    return [cell.source for cell in nb.cells if student.is_answer(cell)]


def test_each_exercise_gets_one_answer_cell_with_its_prompt() -> None:
    nb = _toy_notebook()
    out = student.strip_solutions(nb)
    assert student.solution_count(nb) == 4  # the input is untouched
    assert student.solution_count(out) == 0
    assert "SECRET" not in "\n".join(cell.source for cell in out.cells)
    assert student.exercise_prompts(nb) == {1: "Double y.", 2: "Explain why y is two.", 3: "Triple y."}
    answers = _answers(out)
    assert [a.splitlines()[0] for a in answers] == ["# Exercise 1: Double y.", "# Exercise 2: Explain why y is two.",
                                                    "# Exercise 3: Triple y."]
    assert all(a.endswith(student.ANSWER_TEXT) for a in answers)
    assert [cell.source for cell in out.cells[:4]] == [cell.source for cell in nb.cells[:4]]
    assert out.cells[2].outputs == [] and out.cells[2].execution_count is None
    assert out.cells[1].metadata["tags"] == ["parameters"]
    assert out.cells[6].source == "3. Triple y." and student.is_answer(out.cells[7])  # answers stay in place


@pytest.mark.parametrize("change, message", [
    (lambda nb: setattr(nb.cells[3], "source", "## Questions\n1. Double y."), "no markdown cell before it mentions"),
    (lambda nb: setattr(nb.cells[5], "source", "print(4 * y)"), "solution cell 5 does not say which exercise"),
    (lambda nb: setattr(nb.cells[8], "source", "# Exercise 4\nprint(3 * y)"), r"answer \[4\] that are not in it"),
    (lambda nb: nb.cells.pop(6), r"none answers \[2\]"),
])
def test_solutions_that_do_not_match_the_exercises_are_an_error(change, message: str) -> None:
    nb = _toy_notebook()
    change(nb)
    with pytest.raises(student.StudentError, match=message):
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
    assert kept == [c.source for c in nb.cells if not student.is_answer(c)]
    prompts = student.exercise_prompts(teacher)
    assert len(_answers(nb)) == len(prompts) >= 2, f"{source.name}: one answer cell per exercise"
    assert [a.split(":", 1)[0] for a in _answers(nb)] == [f"# Exercise {n}" for n in sorted(prompts)]


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

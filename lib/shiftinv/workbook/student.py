"""Student versions of the notebooks: the same notebooks, one empty answer cell per exercise.

Every notebook ends with a numbered list of exercises (``## Exercises``, ``1. ...``) whose solutions
sit in cells tagged ``solution``, each opening with the exercise it answers (``# Exercise 2: ...``;
a solution may take several cells). This module generates (never hand-copies) student versions from
the versioned ``notebooks/NN_name.py`` files: the solution cells of exercise N become one code cell
tagged ``answer`` that repeats the prompt (``# Exercise N: <the question>``) above "# Your answer
here", every other cell is kept as it is, outputs and execution counts are dropped. A notebook whose
solutions do not name their exercise, or whose exercises lack a solution, is refused with the cell
to fix. The result opens in JupyterLab with the project kernel like the original
(``make lab DIR=build/student``).

Command line (``make student``, ``shiftinv-student``)::

    python -m shiftinv.workbook.student                     # every notebook -> build/student/*.ipynb
    python -m shiftinv.workbook.student 03 05 --format py   # selected, as py:percent files
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from . import paths
from .cache import atomic_write_bytes

if TYPE_CHECKING:
    from nbformat import NotebookNode

SOLUTION_TAG = "solution"


ANSWER_TAG = "answer"


ANSWER_TEXT = "# Your answer here (the solution is in the teacher's version of this notebook)."


#: The first line of a solution cell names its exercise: ``# Exercise 2: ...`` (code) or ``Exercise 2 ...``.
SOLUTION_HEADER = re.compile(r"^\W*Exercise\s+(\d+)\b", re.I)


#: The heading of the exercise list, and an item of it: ``1. Question`` (continuation lines indented).
_HEADING = re.compile(r"^#{1,6}\s*Exercises?\b", re.I | re.M)
_ITEM = re.compile(r"^\s*(\d+)\.\s+(.*)$")


#: Output formats: file extension and jupytext format name.
FORMATS = {"ipynb": ("ipynb", "ipynb"), "py": ("py", "py:percent")}


class StudentError(RuntimeError):
    """A notebook cannot be turned into a student version (the message says why)."""


def _tags(cell: NotebookNode) -> list[str]:
    tags = cell.get("metadata", {}).get("tags", [])
    return list(tags) if isinstance(tags, (list, tuple)) else [str(tags)]


def is_solution(cell: NotebookNode) -> bool:
    """True for a cell tagged ``solution`` (code or markdown)."""
    return SOLUTION_TAG in _tags(cell)


def is_answer(cell: NotebookNode) -> bool:
    """True for an answer cell of a student version."""
    return ANSWER_TAG in _tags(cell)


def exercise_prompts(notebook: NotebookNode) -> dict[int, str]:
    """``{N: question}`` of the numbered exercise list: the items of the markdown cells from the one with the
    ``## Exercises`` heading on, solution cells excepted, in order."""
    cells = [c for c in notebook.cells if not is_solution(c)]
    start = next((i for i, c in enumerate(cells) if c.cell_type == "markdown" and _HEADING.search(c.source)), None)
    prompts: dict[int, str] = {}
    for cell in [] if start is None else cells[start:]:
        if cell.cell_type != "markdown":
            continue
        current = None
        for line in cell.source.splitlines():
            item = _ITEM.match(line)
            if item:
                current = int(item[1])
                prompts[current] = item[2].strip()
            elif current is not None and line.startswith((" ", "\t")) and line.strip():
                prompts[current] += " " + line.strip()
            elif not line.strip() or line.lstrip().startswith("#"):
                current = None
    return prompts


def solution_exercise(cell: NotebookNode, index: int, name: str = "notebook") -> int:
    """The exercise a solution cell answers, read from its first line (``# Exercise N: ...``)."""
    first = next((ln for ln in cell.source.splitlines() if ln.strip()), "")
    found = SOLUTION_HEADER.match(first)
    if not found:
        raise StudentError(f"{name}: solution cell {index} does not say which exercise it answers: start it "
                           f"with '# Exercise N: ...' (it starts with {first[:60]!r})")
    return int(found[1])


def answer_cell(number: int, prompt: str) -> NotebookNode:
    """The student's empty code cell for exercise ``number``: the question as comments, then :data:`ANSWER_TEXT`."""
    import nbformat

    lines = textwrap.wrap(f"Exercise {number}: {prompt}", width=100, subsequent_indent="  ")
    text = "\n".join(f"# {line}" for line in lines) + "\n" + ANSWER_TEXT
    return nbformat.v4.new_code_cell(text, metadata={"tags": [ANSWER_TAG]})


def strip_solutions(notebook: NotebookNode, name: str = "notebook") -> NotebookNode:
    """Return a copy of ``notebook`` (an ``nbformat`` node) with one answer cell per exercise instead of
    its solutions; outputs and execution counts of the kept code cells are cleared.

    The answer cell of exercise N stands where its first solution cell stood.

    Raises:
        StudentError: a solution cell does not name an exercise of the list, an exercise has no
            solution, or there are solutions but no exercise list before them; ``name`` is used in the message.
    """
    result = copy.deepcopy(notebook)
    prompts = exercise_prompts(result)
    solutions = [(i, c) for i, c in enumerate(result.cells) if is_solution(c)]
    if solutions and not prompts:
        raise StudentError(f"{name}: cell {solutions[0][0]} is tagged 'solution' but no markdown cell before it "
                           "mentions the exercises: add an '## Exercises' section (a numbered list) before the solutions")
    answered = {i: solution_exercise(c, i, name) for i, c in solutions}
    unknown = sorted({n for n in answered.values() if n not in prompts})
    missing = sorted(set(prompts) - set(answered.values())) if solutions else []
    if unknown or missing:
        raise StudentError(f"{name}: exercises {sorted(prompts)} in the list; solutions answer {unknown} that are not "
                           f"in it, and none answers {missing}: number the solution cells '# Exercise N' as the list")
    cells, placed = [], set()
    for i, cell in enumerate(result.cells):
        if i in answered:
            if answered[i] not in placed:
                cells.append(answer_cell(answered[i], prompts[answered[i]]))
                placed.add(answered[i])
            continue
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cells.append(cell)
    result.cells = cells
    return result


def solution_count(notebook: NotebookNode) -> int:
    """Number of cells tagged ``solution`` in ``notebook``."""
    return sum(is_solution(cell) for cell in notebook.cells)


def write_student_version(source: Path, out_dir: Path, fmt: str = "ipynb") -> Path:
    """Write the student version of one jupytext notebook; return its path.

    Args:
        source: ``notebooks/NN_name.py`` (any format jupytext reads).
        out_dir: destination folder (created).
        fmt: ``"ipynb"`` (default, opens anywhere) or ``"py"`` (jupytext ``py:percent``).
    """
    import jupytext

    if fmt not in FORMATS:
        raise StudentError(f"unknown format {fmt!r}; use one of {sorted(FORMATS)}")
    source = Path(source)
    if not source.is_file():
        raise StudentError(f"notebook '{source}' does not exist")
    ext, jupytext_fmt = FORMATS[fmt]
    student = strip_solutions(jupytext.read(source), name=source.name)
    # A student copy is not paired with the teacher's .py file.
    student.metadata.get("jupytext", {}).pop("formats", None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{source.stem}.{ext}"
    text = jupytext.writes(student, fmt=jupytext_fmt)
    return atomic_write_bytes(target, text.encode())


def write_student_versions(
    selected: Sequence[str] | None = None, out_dir: Path | None = None, fmt: str = "ipynb"
) -> list[Path]:
    """Student versions of every notebook (or those whose name starts with ``selected``).

    Returns the written paths, in notebook order. ``out_dir`` defaults to
    ``build/student``.
    """
    from .runner import list_notebooks

    out_dir = Path(out_dir) if out_dir is not None else paths.BUILD / "student"
    return [write_student_version(nb, out_dir, fmt) for nb in list_notebooks(selected)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="notebook prefixes (default: all)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: build/student)")
    parser.add_argument("--format", choices=sorted(FORMATS), default="ipynb", help="output format (default: ipynb)")
    args = parser.parse_args(argv)
    from .parameters import NotebookError

    try:
        written = write_student_versions(args.names, args.out, args.format)
    except (StudentError, NotebookError) as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 2
    for path in written:
        print(f"   {path}")
    print(f">> {len(written)} student notebook(s) without solutions")
    return 0


if __name__ == "__main__":
    sys.exit(main())

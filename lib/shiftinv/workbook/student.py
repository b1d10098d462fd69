"""Student versions of the notebooks: the same notebooks without their solutions.

Every notebook ends with exercises whose solutions sit in cells tagged
``solution``. This module generates (never hand-copies) student versions from
the versioned ``notebooks/NN_name.py`` files: each run of consecutive solution
cells is replaced by one empty code cell tagged ``answer`` ("# Your answer
here"), every other cell is kept as it is, outputs and execution counts are
dropped. The result opens in JupyterLab with the project kernel like the
original.

Command line (``make student``)::

    python -m shiftinv.workbook.student                     # every notebook -> build/student/*.ipynb
    python -m shiftinv.workbook.student 03 05 --format py   # selected, as py:percent files
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any, Sequence

from . import paths
from .cache import atomic_write_bytes

SOLUTION_TAG = "solution"


ANSWER_TAG = "answer"


ANSWER_TEXT = "# Your answer here (the solution is in the teacher's version of this notebook)."


#: Output formats: file extension and jupytext format name.
FORMATS = {"ipynb": ("ipynb", "ipynb"), "py": ("py", "py:percent")}


class StudentError(RuntimeError):
    """A notebook cannot be turned into a student version (the message says why)."""


def _tags(cell: Any) -> list[str]:
    tags = cell.get("metadata", {}).get("tags", [])
    return list(tags) if isinstance(tags, (list, tuple)) else [str(tags)]


def is_solution(cell: Any) -> bool:
    """True for a cell tagged ``solution`` (code or markdown)."""
    return SOLUTION_TAG in _tags(cell)


def strip_solutions(notebook: Any, name: str = "notebook") -> Any:
    """Return a copy of ``notebook`` (an ``nbformat`` node) without solution cells.

    Each maximal run of consecutive solution cells becomes one empty code cell
    tagged ``answer``; outputs and execution counts of the kept code cells are
    cleared.

    Raises:
        StudentError: the notebook has solutions but no exercise prompt before
            them (no markdown cell mentioning "exercise"), so a student version
            would show answers slots with no question; ``name`` is used in the message.
    """
    import nbformat

    result = copy.deepcopy(notebook)
    cells: list[Any] = []
    previous_was_solution = False
    for cell in result.cells:
        if is_solution(cell):
            if not previous_was_solution:
                cells.append(nbformat.v4.new_code_cell(ANSWER_TEXT, metadata={"tags": [ANSWER_TAG]}))
            previous_was_solution = True
            continue
        previous_was_solution = False
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cells.append(cell)
    first_solution = next((i for i, cell in enumerate(result.cells) if is_solution(cell)), None)
    if first_solution is not None:
        before = result.cells[:first_solution]
        if not any(c.cell_type == "markdown" and "exercise" in c.source.lower() for c in before):
            raise StudentError(
                f"{name}: cell {first_solution} is tagged 'solution' but no markdown cell before it "
                "mentions the exercises; add an '## Exercises' section before the solutions"
            )
    result.cells = cells
    return result


def solution_count(notebook: Any) -> int:
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

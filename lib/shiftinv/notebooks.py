"""Headless execution of the workbook's notebooks (``make figures``, notebook tests).

The versioned notebooks are jupytext ``py:percent`` files ``notebooks/NN_name.py``.
Each is converted to ``.ipynb`` in the build folder, executed by papermill with
the project kernel and the given parameters (papermill injects them after the
cell tagged ``parameters``), and kept executed in ``build/executed/<profile>/``.

A failing cell raises :class:`NotebookError` naming the notebook, the cell and
the error, and the command line exits non-zero with that message.

Command line::

    python -m shiftinv.notebooks --profile demo            # all, in order
    python -m shiftinv.notebooks --profile demo 03 04      # selected (by prefix)
    python -m shiftinv.notebooks --smoke                   # tiny parameters
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from . import paths

KERNEL = "shiftinv"


class NotebookError(RuntimeError):
    """A notebook failed; the message names the notebook, the cell and the error."""


def list_notebooks(selected: Sequence[str] | None = None) -> list[Path]:
    """Notebooks in execution order; ``selected`` filters by name prefix (``"03"``)."""
    found = sorted(paths.NOTEBOOKS.glob("[0-9][0-9]_*.py"))
    if not selected:
        return found
    chosen = [nb for nb in found if any(nb.name.startswith(s) or nb.stem == s for s in selected)]
    missing = [s for s in selected if not any(nb.name.startswith(s) or nb.stem == s for nb in found)]
    if missing:
        names = ", ".join(nb.stem for nb in found)
        raise NotebookError(f"no notebook matches {missing}; available: {names}")
    return chosen


def run_notebook(
    source: Path,
    parameters: Mapping[str, Any],
    out_dir: Path,
    kernel: str = KERNEL,
    timeout_s: int | None = None,
) -> Path:
    """Execute one jupytext notebook with papermill; return the executed ``.ipynb``.

    Raises:
        NotebookError: a cell raised; the message names notebook, cell and error.
    """
    import jupytext
    import papermill
    from papermill.exceptions import PapermillExecutionError

    source = Path(source)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    generated = out_dir / f"{source.stem}.input.ipynb"
    executed = out_dir / f"{source.stem}.ipynb"
    notebook = jupytext.read(source)
    jupytext.write(notebook, generated, fmt="ipynb")
    try:
        papermill.execute_notebook(
            str(generated),
            str(executed),
            parameters=dict(parameters),
            kernel_name=kernel,
            language="python",
            cwd=str(source.parent),
            progress_bar=False,
            execution_timeout=timeout_s,
        )
    except PapermillExecutionError as err:
        cell_source = "\n".join("    | " + line for line in str(err.source).splitlines()[:6])
        raise NotebookError(
            f"notebook {source.name} failed in code cell {err.exec_count} "
            f"(cell index {err.cell_index}): {err.ename}: {err.evalue}\n"
            f"{cell_source}\n    executed copy with the traceback: {executed}"
        ) from None
    finally:
        generated.unlink(missing_ok=True)
    return executed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="notebook prefixes to run (default: all, in order)")
    parser.add_argument("--profile", default="demo", help="PROFILE parameter: demo (CPU, embedded data), cifar, paper")
    parser.add_argument("--smoke", action="store_true", help="SMOKE=True: tiny sizes, for tests")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                        help="extra papermill parameter (value parsed as a Python literal when possible)")
    args = parser.parse_args(argv)

    import ast

    params: dict[str, Any] = {"PROFILE": args.profile, "SMOKE": args.smoke}
    for item in args.param:
        key, _, value = item.partition("=")
        try:
            params[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[key] = value
    try:
        notebooks = list_notebooks(args.names)
    except NotebookError as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 2
    out_dir = paths.EXECUTED / (args.profile + ("-smoke" if args.smoke else ""))
    if args.smoke and "SHIFTINV_FIGURES" not in os.environ:
        # smoke figures are not the real ones: keep them out of figures/
        os.environ["SHIFTINV_FIGURES"] = str(paths.BUILD / "smoke" / "figures")
    print(f">> {len(notebooks)} notebook(s), parameters {params}; figures -> {paths.figures_dir()}")
    total = time.perf_counter()
    for nb in notebooks:
        start = time.perf_counter()
        print(f">> {nb.name} ...", flush=True)
        try:
            run_notebook(nb, params, out_dir)
        except NotebookError as err:
            print(f"ERROR: {err}", file=sys.stderr)
            return 1
        print(f"   done in {time.perf_counter() - start:.1f} s", flush=True)
    print(f">> all notebooks done in {time.perf_counter() - total:.1f} s; executed copies in {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Headless execution of the workbook's notebooks (``make figures``, notebook tests).

The versioned notebooks are jupytext ``py:percent`` files ``notebooks/NN_name.py``.
Each is converted to ``.ipynb`` in the build folder, executed by papermill with
the project kernel and the given parameters (papermill injects them after the
cell tagged ``parameters``), and kept executed in ``build/executed/<profile>/``.

Everything is checked before the first notebook runs: the profile against
``profiles.PROFILES``, every ``-p NAME=VALUE`` against the ``parameters`` cells of
the selected notebooks (an unknown name is an error listing the valid ones), and
each value against the cell's type annotation (``SMOKE=false`` is ``False``,
``EPOCHS=abc`` is an error naming ``EPOCHS``). Each notebook then gets only the
parameters its cell declares.

Figures: each notebook writes into a staging folder of its own (``$SHIFTINV_FIGURES``,
inherited by the kernel); only when it succeeds are its files moved into
``figures/<profile>/`` and recorded in that folder's ``MANIFEST.json`` (see
:mod:`shiftinv.workbook.publish`). Smoke runs publish into ``build/smoke/figures/<profile>/``. A
notebook whose files would replace or delete files made from another data source or backbone
publishes nothing: its files are kept in ``build/refused/<profile>/<notebook>/`` and the run stops.

A failing cell raises :class:`NotebookError` naming the notebook, the cell and
the error, and the command line exits non-zero with that message; that
notebook's figures are discarded. While a notebook runs, one line per code cell
shows which cell runs and how long it took.

Command line::

    python -m shiftinv.workbook.runner --profile demo            # all, in order
    python -m shiftinv.workbook.runner --profile demo 03 04      # selected (by prefix)
    python -m shiftinv.workbook.runner --smoke                   # tiny parameters
    python -m shiftinv.workbook.runner -p EPOCHS=3 08            # a parameter of the parameters cell
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence, TextIO

from . import paths, publish
from .labsetup import KERNEL
from .parameters import NotebookError, Parameter, ParameterError, parse_parameter, resolve_parameters, unquote

if TYPE_CHECKING:
    from nbformat import NotebookNode
    from papermill.engines import NotebookExecutionManager

ENGINE = "shiftinv-progress"


#: Notebooks ``make figures PROFILE=<profile>`` runs when none are named, where not all: ``cifar`` is the
#: classification study on photographs (01-06); its perceptual half would repeat ``natural``'s (the same HED
#: backbone, Kodak and RAID: nothing CIFAR-specific), so notebooks 07-10 are run under ``natural``.
PROFILE_NOTEBOOKS: dict[str, tuple[str, ...]] = {"cifar": ("01", "02", "03", "04", "05", "06")}


def list_notebooks(selected: Sequence[str] | None = None, profile: str | None = None) -> list[Path]:
    """Notebooks in execution order; ``selected`` filters by name prefix (``"03"``); with none selected, the
    profile's default list (:data:`PROFILE_NOTEBOOKS`, else every notebook).

    Raises:
        NotebookError: no notebook folder (not a clone), no notebooks, or a prefix matches none.
    """
    if not paths.NOTEBOOKS.is_dir():
        try:
            paths.require_clone()
        except RuntimeError as err:
            raise NotebookError(str(err)) from None
        raise NotebookError(f"notebook folder {paths.NOTEBOOKS} does not exist")
    found = sorted(paths.NOTEBOOKS.glob("[0-9][0-9]_*.py"))
    if not found:
        raise NotebookError(f"no notebooks (NN_name.py) in {paths.NOTEBOOKS}: is this a complete clone?")
    if not selected and profile in PROFILE_NOTEBOOKS:
        selected = PROFILE_NOTEBOOKS[profile]
    if not selected:
        return found
    chosen = [nb for nb in found if any(nb.name.startswith(s) or nb.stem == s for s in selected)]
    missing = [s for s in selected if not any(nb.name.startswith(s) or nb.stem == s for nb in found)]
    if missing:
        names = ", ".join(nb.stem for nb in found)
        raise NotebookError(f"no notebook matches {missing}; available: {names}")
    return chosen


# --------------------------------------------------------------------------- execution


def _engine() -> str:
    """Register (once) a papermill engine that prints one line per code cell, with its time."""
    from papermill.engines import NBClientEngine, papermill_engines

    if ENGINE in papermill_engines._engines:  # noqa: SLF001 (papermill has no public lookup)
        return ENGINE

    class ProgressEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, **kwargs):  # type: ignore[override]
            _report_cells(nb_man, kwargs.pop("progress_stream", None))
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

    papermill_engines.register(ENGINE, ProgressEngine)
    return ENGINE


def _report_cells(nb_man: NotebookExecutionManager, out: TextIO | None = None) -> None:
    """Wrap ``nb_man``'s cell hooks: "   [ 3/21] first line of the cell ... 4.2 s"."""
    out = out or sys.stdout
    code = [i for i, c in enumerate(nb_man.nb.cells) if c.cell_type == "code"]
    number = {index: k + 1 for k, index in enumerate(code)}
    width = len(str(len(code)))
    start_hook, complete_hook = nb_man.cell_start, nb_man.cell_complete
    started: dict[int, float] = {}

    def first_line(cell: NotebookNode) -> str:
        lines = [ln.strip() for ln in cell.source.splitlines() if ln.strip() and not ln.strip().startswith("#")]
        text = lines[0] if lines else (cell.source.strip().splitlines() or [""])[0]
        return text[:60]

    def cell_start(cell: NotebookNode, cell_index: int | None = None, **kwargs: Any) -> Any:
        if cell_index in number:
            started[cell_index] = time.perf_counter()
            out.write(f"   [{number[cell_index]:>{width}}/{len(code)}] {first_line(cell)} ...")
            out.flush()
        return start_hook(cell, cell_index=cell_index, **kwargs)

    def cell_complete(cell: NotebookNode, cell_index: int | None = None, **kwargs: Any) -> Any:
        if cell_index in started:
            failed = cell.get("metadata", {}).get("papermill", {}).get("status") == "failed"
            out.write(f" {time.perf_counter() - started.pop(cell_index):.1f} s{' FAILED' if failed else ''}\n")
            out.flush()
        return complete_hook(cell, cell_index=cell_index, **kwargs)

    nb_man.cell_start, nb_man.cell_complete = cell_start, cell_complete


def run_notebook(
    source: Path,
    parameters: Mapping[str, Any],
    out_dir: Path,
    kernel: str = KERNEL,
    timeout_s: int | None = None,
    progress: bool | TextIO = False,
) -> Path:
    """Execute one jupytext notebook with papermill; return the executed ``.ipynb``.

    ``progress``: ``True`` (stdout) or a text stream prints one line per code cell (which
    cell runs, then its seconds).

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
            **({"engine_name": _engine(), "progress_stream": None if progress is True else progress}
               if progress else {}),
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


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    """Set environment variables (inherited by the kernel papermill starts), then restore them."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _remove_orphan_staging(folder: Path) -> None:
    """Delete staging folders left by runs that were killed (their process is gone)."""
    if not folder.is_dir():
        return
    for staging in folder.glob(".staging-*"):
        try:
            pid = int(staging.name.rsplit("-", 2)[-2])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(staging, ignore_errors=True)
        except (ValueError, IndexError, PermissionError, OSError):
            continue


def run_notebooks(notebooks: Sequence[Path], parameters: Mapping[str, Mapping[str, Any]], profile: str,
                  smoke: bool, figures_dir: Path, executed_dir: Path, out: TextIO | None = None) -> int:
    """Run ``notebooks`` in order; publish each one's figures into ``figures_dir`` when it succeeds.

    ``parameters`` maps a notebook stem to its parameters (:func:`resolve_parameters`).
    Each notebook writes into ``figures_dir/.staging-<notebook>-<pid>-<random>/`` (the kernel
    inherits ``$SHIFTINV_FIGURES``, ``$SHIFTINV_PROFILE`` and ``$SHIFTINV_RUN``, the manifest
    record); on success :func:`shiftinv.workbook.publish.publish_folder` moves the files into
    ``figures_dir``, on failure the staging folder is deleted and the run stops.

    Returns:
        0 when every notebook succeeded, 1 otherwise (the error is printed to stderr).
    """
    out = out or sys.stdout
    figures_dir = Path(figures_dir)
    figures_dir.mkdir(parents=True, exist_ok=True)
    _remove_orphan_staging(figures_dir)
    version = publish.code_commit()
    total = time.perf_counter()
    for nb in notebooks:
        params = dict(parameters.get(nb.stem, {}))
        run = {"by": "python -m shiftinv.workbook.runner", "notebook": nb.stem, "profile": profile, "smoke": smoke,
               "parameters": params, **version}
        staging = figures_dir / f".staging-{nb.stem}-{os.getpid()}-{secrets.token_hex(4)}"
        staging.mkdir()
        start = time.perf_counter()
        print(f">> {nb.name} {params}", file=out, flush=True)
        try:
            with _environ(SHIFTINV_FIGURES=str(staging), SHIFTINV_PROFILE=profile,
                          SHIFTINV_SMOKE="1" if smoke else "0", SHIFTINV_RUN=json.dumps(run, sort_keys=True)):
                run_notebook(nb, params, executed_dir, progress=out)
        except BaseException as err:
            shutil.rmtree(staging, ignore_errors=True)
            if isinstance(err, NotebookError):
                print(f"ERROR: {err}\n   nothing of {nb.stem} was published to {figures_dir} "
                      "(figures of the notebooks before it were)", file=sys.stderr)
                return 1
            raise
        try:
            published, stale = publish.publish_folder(staging, figures_dir, run)
        except publish.PublishError as err:
            kept = _keep_refused(staging, figures_dir.name, nb.stem)
            print(f"ERROR: {nb.name} ran, but {err}\n   nothing of {nb.stem} was published; its files are kept "
                  f"in {kept}", file=sys.stderr)
            return 1
        note = f"; removed {len(stale)} stale file(s) of an earlier run: {', '.join(stale)}" if stale else ""
        print(f"   done in {time.perf_counter() - start:.1f} s; {len(published)} file(s) published{note}",
              file=out, flush=True)
    print(f">> all notebooks done in {time.perf_counter() - total:.1f} s; figures in {figures_dir}, "
          f"executed copies in {executed_dir}", file=out, flush=True)
    return 0


def _keep_refused(staging: Path, profile: str, notebook: str) -> Path:
    """Move a staging folder that publishing refused to ``build/refused/<profile>/<notebook>/``
    (replacing an earlier refused copy), so the run's files are not lost; return it."""
    target = paths.BUILD / "refused" / profile / notebook
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(staging), str(target))
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="notebook prefixes to run (default: all, in order)")
    parser.add_argument("--profile", default="demo", help="PROFILE parameter (one of shiftinv.workbook.paths.PROFILES)")
    parser.add_argument("--smoke", action="store_true", help="SMOKE=True: tiny sizes, for tests")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                        help="a parameter of the notebooks' parameters cells, checked against its type")
    args = parser.parse_args(argv)

    try:
        given: dict[str, str] = {}
        for item in args.param:
            name, sep, value = item.partition("=")
            if not sep or not name.strip().isidentifier():
                raise ParameterError(f"-p {item!r}: expected NAME=VALUE (for example EPOCHS=3)")
            given[name.strip()] = value
        profile = unquote(given.pop("PROFILE", args.profile))
        notebooks = list_notebooks(args.names, profile)
        smoke = args.smoke
        if "SMOKE" in given:
            smoke = parse_parameter(Parameter("SMOKE", "bool", False, "every notebook"), given.pop("SMOKE"))
        parameters = resolve_parameters(notebooks, given, profile, smoke)
    except (NotebookError, ParameterError) as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 2
    if os.environ.get("SHIFTINV_FIGURES"):  # an explicit folder (tests, a user's choice)
        figures_dir = Path(os.environ["SHIFTINV_FIGURES"]).expanduser().resolve()
    else:  # smoke figures are not the real ones: never in figures/
        figures_dir = paths.profile_figures_dir(profile, smoke)
    out_dir = paths.EXECUTED / (profile + ("-smoke" if smoke else ""))
    print(f">> {len(notebooks)} notebook(s), profile {profile}{' (smoke)' if smoke else ''}; "
          f"figures -> {figures_dir}", flush=True)
    return run_notebooks(notebooks, parameters, profile, smoke, figures_dir, out_dir)


if __name__ == "__main__":
    sys.exit(main())

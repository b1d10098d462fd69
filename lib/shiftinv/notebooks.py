"""Headless execution of the workbook's notebooks (``make figures``, notebook tests).

The versioned notebooks are jupytext ``py:percent`` files ``notebooks/NN_name.py``.
Each is converted to ``.ipynb`` in the build folder, executed by papermill with
the project kernel and the given parameters (papermill injects them after the
cell tagged ``parameters``), and kept executed in ``build/executed/<profile>/``.

Everything is checked before the first notebook runs: the profile against
``classify.PROFILES``, every ``-p NAME=VALUE`` against the ``parameters`` cells of
the selected notebooks (an unknown name is an error listing the valid ones), and
each value against the cell's type annotation (``SMOKE=false`` is ``False``,
``EPOCHS=abc`` is an error naming ``EPOCHS``). Each notebook then gets only the
parameters its cell declares.

Figures: each notebook writes into a staging folder of its own (``$SHIFTINV_FIGURES``,
inherited by the kernel); only when it succeeds are its files moved into
``figures/<profile>/`` and recorded in that folder's ``MANIFEST.json`` (see
:mod:`shiftinv.figures`). Smoke runs publish into ``build/smoke/figures/<profile>/``.

A failing cell raises :class:`NotebookError` naming the notebook, the cell and
the error, and the command line exits non-zero with that message; that
notebook's figures are discarded. While a notebook runs, one line per code cell
shows which cell runs and how long it took.

Command line::

    python -m shiftinv.notebooks --profile demo            # all, in order
    python -m shiftinv.notebooks --profile demo 03 04      # selected (by prefix)
    python -m shiftinv.notebooks --smoke                   # tiny parameters
    python -m shiftinv.notebooks -p EPOCHS=3 08            # a parameter of the parameters cell
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import difflib
import json
import os
import secrets
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence, TextIO

from . import paths

KERNEL = "shiftinv"
ENGINE = "shiftinv-progress"
#: Parameters the runner always passes (to the notebooks that declare them).
RUNNER_PARAMETERS = ("PROFILE", "SMOKE")


class NotebookError(RuntimeError):
    """A notebook failed; the message names the notebook, the cell and the error."""


class ParameterError(ValueError):
    """A parameter given to the runner is unknown or has a value of the wrong type."""


def list_notebooks(selected: Sequence[str] | None = None) -> list[Path]:
    """Notebooks in execution order; ``selected`` filters by name prefix (``"03"``).

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
    if not selected:
        return found
    chosen = [nb for nb in found if any(nb.name.startswith(s) or nb.stem == s for s in selected)]
    missing = [s for s in selected if not any(nb.name.startswith(s) or nb.stem == s for nb in found)]
    if missing:
        names = ", ".join(nb.stem for nb in found)
        raise NotebookError(f"no notebook matches {missing}; available: {names}")
    return chosen


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class Parameter:
    """One assignment of a notebook's ``parameters`` cell: ``NAME: annotation = default``."""

    name: str
    annotation: str | None  # source text of the annotation ("int", "str | None"), None if absent
    default: Any
    notebook: str


def parameters_cell(source: Path) -> dict[str, Parameter]:
    """The parameters declared in the cell tagged ``parameters`` of a jupytext notebook.

    Raises:
        NotebookError: no such cell, or it does not parse.
    """
    import jupytext

    source = Path(source)
    nb = jupytext.read(source)
    cell = next((c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])), None)
    if cell is None:
        raise NotebookError(f"{source.name} has no code cell tagged 'parameters' (see CONTRIBUTING.md)")
    try:
        tree = ast.parse(cell.source)
    except SyntaxError as err:
        raise NotebookError(f"the parameters cell of {source.name} does not parse: {err}") from None
    found: dict[str, Parameter] = {}
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            name, annotation, value = node.target.id, ast.unparse(node.annotation), node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, annotation, value = node.targets[0].id, None, node.value
        else:
            continue
        try:
            default = ast.literal_eval(value) if value is not None else None
        except ValueError:
            default = None
        found[name] = Parameter(name, annotation, default, source.stem)
    return found


_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}
_NONE = {"none", "null"}


def unquote(text: str) -> str:
    """``text`` without one pair of matching outer quotes (``'demo'`` -> ``demo``)."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def _parse_as(text: str, kind: ast.expr) -> Any:
    """Parse the command-line ``text`` as the type written in ``kind`` (an annotation AST).

    Raises:
        ValueError: the text is not such a value (the message says what was expected).
    """
    if isinstance(kind, ast.Constant) and kind.value is None:
        if text.strip().lower() in _NONE:
            return None
        raise ValueError("expected None")
    if isinstance(kind, ast.Constant) and isinstance(kind.value, str):  # a string annotation "int"
        return _parse_as(text, ast.parse(kind.value, mode="eval").body)
    if isinstance(kind, ast.BinOp) and isinstance(kind.op, ast.BitOr):  # X | Y
        return _parse_union(text, [kind.left, kind.right])
    if isinstance(kind, ast.Subscript):
        base = ast.unparse(kind.value).rsplit(".", 1)[-1]
        args = list(kind.slice.elts) if isinstance(kind.slice, ast.Tuple) else [kind.slice]
        if base == "Optional":
            return _parse_union(text, [args[0], ast.Constant(None)])
        if base == "Union":
            return _parse_union(text, args)
        if base == "Literal":
            allowed = [ast.literal_eval(a) for a in args]
            for value in allowed:
                with contextlib.suppress(ValueError):
                    if _parse_as(text, ast.Name(type(value).__name__)) == value:
                        return value
            raise ValueError(f"expected one of {allowed}")
        if base in ("list", "List", "tuple", "Tuple", "Sequence", "set", "Set"):
            items = _parse_container(text, base.lower())
            item_kinds = [a for a in args if not (isinstance(a, ast.Constant) and a.value is Ellipsis)]
            if item_kinds and len(item_kinds) == 1:
                items = [_check_instance(v, item_kinds[0]) for v in items]
            return items  # tuples and sets too: papermill passes JSON types (a tuple would become a string)
        if base in ("dict", "Dict", "Mapping"):
            return _parse_as(text, ast.Name("dict"))
        raise ValueError(f"cannot check values of type {ast.unparse(kind)}")
    name = ast.unparse(kind).rsplit(".", 1)[-1]
    stripped = text.strip()
    if name == "bool":
        if stripped.lower() in _TRUE:
            return True
        if stripped.lower() in _FALSE:
            return False
        raise ValueError("expected a boolean: true/false (also 1/0, yes/no)")
    if name == "int":
        try:
            return int(stripped)
        except ValueError:
            raise ValueError("expected an integer") from None
    if name == "float":
        try:
            return float(stripped)
        except ValueError:
            raise ValueError("expected a number") from None
    if name == "str":
        return unquote(text)
    if name in ("list", "tuple", "set"):
        return _parse_container(text, name)  # a list (papermill passes JSON types)
    if name == "dict":
        try:
            value = ast.literal_eval(stripped)
        except (ValueError, SyntaxError):
            value = None
        if not isinstance(value, dict):
            raise ValueError("expected a dict literal such as {'a': 1}")
        return value
    if name in ("Any", "object"):
        try:
            return ast.literal_eval(stripped)
        except (ValueError, SyntaxError):
            return text
    if name == "Path":
        return unquote(text)
    raise ValueError(f"cannot check values of type {name}")


def _parse_union(text: str, kinds: list[ast.expr]) -> Any:
    # None first, then the strictest types, str last: "3" is an int for `int | str`.
    order = {"None": 0, "bool": 1, "int": 2, "float": 3, "str": 9}
    kinds = sorted(kinds, key=lambda k: order.get(ast.unparse(k), 5))
    errors = []
    for kind in kinds:
        try:
            return _parse_as(text, kind)
        except ValueError as err:
            errors.append(str(err))
    raise ValueError(" or ".join(errors))


def _parse_container(text: str, kind: str) -> list[Any]:
    """``[1, 2]``, ``(1, 2)`` or ``1,2`` (a single value: a one-item list)."""
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        raise ValueError(f"expected a {kind} literal such as [0, 1, 2] or 0,1,2") from None
    if isinstance(value, (list, tuple, set)):
        return list(value)
    if isinstance(value, dict):
        raise ValueError(f"expected a {kind}, got a dict")
    return [value]


def _check_instance(value: Any, kind: ast.expr) -> Any:
    name = ast.unparse(kind)
    types = {"int": int, "float": (int, float), "str": str, "bool": bool}
    if name in types and isinstance(value, types[name]) and not (name != "bool" and isinstance(value, bool)):
        return float(value) if name == "float" else value
    if name not in types:
        return value
    raise ValueError(f"expected items of type {name}, got {value!r}")


def parse_parameter(param: Parameter, text: str) -> Any:
    """The value of ``param`` given as ``text`` on the command line, checked against its annotation.

    Without an annotation the default's type decides (a ``None`` default: a Python literal, or the text).

    Raises:
        ParameterError: naming the parameter, the notebook, the expected type and the text.
    """
    if param.annotation is not None:
        kind = ast.parse(param.annotation, mode="eval").body
    elif param.default is None:
        kind = ast.Name("Any")
    else:
        kind = ast.Name(type(param.default).__name__)
    try:
        return _parse_as(text, kind)
    except ValueError as err:
        expected = param.annotation or type(param.default).__name__
        raise ParameterError(f"parameter {param.name}={text!r}: {err} ({param.name}: {expected} in the "
                             f"parameters cell of {param.notebook})") from None


def known_profiles() -> tuple[str, ...]:
    """The profiles the notebooks know (``classify.PROFILES``)."""
    from .classify import PROFILES

    return tuple(PROFILES)


def resolve_parameters(notebooks: Sequence[Path], given: Mapping[str, str], profile: str,
                       smoke: bool) -> dict[str, dict[str, Any]]:
    """Check everything before any notebook runs; return each notebook's parameters.

    Args:
        notebooks: the notebooks to run.
        given: ``NAME -> text`` from ``-p NAME=VALUE`` (without ``PROFILE`` and ``SMOKE``).
        profile, smoke: the profile and smoke flag, passed to the notebooks that declare them.

    Returns:
        ``{notebook stem: {name: value}}`` with only the names each notebook declares.

    Raises:
        ParameterError: unknown profile, unknown parameter name (listing the valid ones), or a
            value that does not parse as its annotation.
    """
    profiles = known_profiles()
    if profile not in profiles:
        close = difflib.get_close_matches(profile, profiles, n=1)
        raise ParameterError(f"unknown profile {profile!r}{f' (did you mean {close[0]}?)' if close else ''}; "
                             f"known profiles: {', '.join(profiles)} (shiftinv.classify.PROFILES)")
    cells = {nb.stem: parameters_cell(nb) for nb in notebooks}
    valid = sorted(set().union(*(set(c) for c in cells.values())) | set(RUNNER_PARAMETERS))
    unknown = [name for name in given if name not in valid]
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, valid, n=1)
            hints.append(name + (f" (did you mean {close[0]}?)" if close else ""))
        raise ParameterError(
            f"unknown parameter {', '.join(hints)} for notebooks {', '.join(s[:2] for s in cells)}; "
            f"valid names (from their parameters cells): {', '.join(valid)}")
    result: dict[str, dict[str, Any]] = {}
    for stem, cell in cells.items():
        values: dict[str, Any] = {}
        for name, value in (("PROFILE", profile), ("SMOKE", smoke)):
            if name in cell:
                values[name] = value
        for name, text in given.items():
            if name in cell:
                values[name] = parse_parameter(cell[name], text)
        result[stem] = values
    return result


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


def _report_cells(nb_man: Any, out: Any = None) -> None:
    """Wrap ``nb_man``'s cell hooks: "   [ 3/21] first line of the cell ... 4.2 s"."""
    out = out or sys.stdout
    code = [i for i, c in enumerate(nb_man.nb.cells) if c.cell_type == "code"]
    number = {index: k + 1 for k, index in enumerate(code)}
    width = len(str(len(code)))
    start_hook, complete_hook = nb_man.cell_start, nb_man.cell_complete
    started: dict[int, float] = {}

    def first_line(cell: Any) -> str:
        lines = [ln.strip() for ln in cell.source.splitlines() if ln.strip() and not ln.strip().startswith("#")]
        text = lines[0] if lines else (cell.source.strip().splitlines() or [""])[0]
        return text[:60]

    def cell_start(cell: Any, cell_index: int | None = None, **kwargs: Any) -> Any:
        if cell_index in number:
            started[cell_index] = time.perf_counter()
            out.write(f"   [{number[cell_index]:>{width}}/{len(code)}] {first_line(cell)} ...")
            out.flush()
        return start_hook(cell, cell_index=cell_index, **kwargs)

    def cell_complete(cell: Any, cell_index: int | None = None, **kwargs: Any) -> Any:
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
                  smoke: bool, figures_dir: Path, executed_dir: Path, out: Any = None) -> int:
    """Run ``notebooks`` in order; publish each one's figures into ``figures_dir`` when it succeeds.

    ``parameters`` maps a notebook stem to its parameters (:func:`resolve_parameters`).
    Each notebook writes into ``figures_dir/.staging-<notebook>-<pid>-<random>/`` (the kernel
    inherits ``$SHIFTINV_FIGURES``, ``$SHIFTINV_PROFILE`` and ``$SHIFTINV_RUN``, the manifest
    record); on success :func:`shiftinv.figures.publish_folder` moves the files into
    ``figures_dir``, on failure the staging folder is deleted and the run stops.

    Returns:
        0 when every notebook succeeded, 1 otherwise (the error is printed to stderr).
    """
    from . import figures

    out = out or sys.stdout
    figures_dir = Path(figures_dir)
    figures_dir.mkdir(parents=True, exist_ok=True)
    _remove_orphan_staging(figures_dir)
    version = figures.code_version()
    total = time.perf_counter()
    for nb in notebooks:
        params = dict(parameters.get(nb.stem, {}))
        run = {"by": "python -m shiftinv.notebooks", "notebook": nb.stem, "profile": profile, "smoke": smoke,
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
        published, stale = figures.publish_folder(staging, figures_dir, run)
        note = f"; removed {len(stale)} stale file(s) of an earlier run: {', '.join(stale)}" if stale else ""
        print(f"   done in {time.perf_counter() - start:.1f} s; {len(published)} file(s) published{note}",
              file=out, flush=True)
    print(f">> all notebooks done in {time.perf_counter() - total:.1f} s; figures in {figures_dir}, "
          f"executed copies in {executed_dir}", file=out, flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="notebook prefixes to run (default: all, in order)")
    parser.add_argument("--profile", default="demo", help="PROFILE parameter (one of classify.PROFILES)")
    parser.add_argument("--smoke", action="store_true", help="SMOKE=True: tiny sizes, for tests")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                        help="a parameter of the notebooks' parameters cells, checked against its type")
    args = parser.parse_args(argv)

    try:
        notebooks = list_notebooks(args.names)
        given: dict[str, str] = {}
        for item in args.param:
            name, sep, value = item.partition("=")
            if not sep or not name.strip().isidentifier():
                raise ParameterError(f"-p {item!r}: expected NAME=VALUE (for example EPOCHS=3)")
            given[name.strip()] = value
        profile = unquote(given.pop("PROFILE", args.profile))
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

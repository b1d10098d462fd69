"""Notebook parameters: the tagged parameters cell, typed parsing and checking of ``-p`` values.
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

#: Parameters the runner always passes (to the notebooks that declare them).
RUNNER_PARAMETERS = ("PROFILE", "SMOKE")


class NotebookError(RuntimeError):
    """A notebook failed; the message names the notebook, the cell and the error."""


class ParameterError(ValueError):
    """A parameter given to the runner is unknown or has a value of the wrong type."""


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
        return _parse_generic(text, kind)
    return _parse_named(text, ast.unparse(kind).rsplit(".", 1)[-1])


def _parse_generic(text: str, kind: ast.Subscript) -> Any:
    """``text`` as a subscripted annotation: ``Optional[X]``, ``Union[...]``, ``Literal[...]``, containers."""
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


def _parse_named(text: str, name: str) -> Any:
    """``text`` as a plain type named ``name`` (``bool``, ``int``, ``float``, ``str``, ``Path``, containers)."""
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


@dataclass(frozen=True)
class Bounds:
    """Valid values of a numeric parameter: ``minimum`` and up, whole multiples of ``multiple``,
    or one of the ``special`` values whose ``meaning`` the notebooks document (``-1``: the profile's)."""

    minimum: int
    special: tuple[int, ...] = ()
    multiple: int = 1
    meaning: str = ""

    def describe(self) -> str:
        rule = f"a whole number >= {self.minimum}" + (f", a multiple of {self.multiple}" if self.multiple > 1 else "")
        return rule + (f", or {self.meaning}" if self.meaning else "")


#: Ranges of the notebooks' numeric parameters, by name (a notebook that does not declare a name ignores it;
#: ``tests/test_faults.py`` checks that every notebook's default is in range).
BOUNDS: dict[str, Bounds] = {
    "SEED": Bounds(0),
    "EPOCHS": Bounds(1, (-1,), meaning="-1 (the profile's)"),
    "NUM_CLASSES": Bounds(2),
    "INPUT_SIZE": Bounds(32, multiple=32),
    "IMAGE_SIZE": Bounds(32, (-1, 0), 32, "-1 (the profile's) or 0 (native frames)"),
    "N_IMAGES": Bounds(1, (0,), meaning="0 (the profile's)"),
    "N_REFS": Bounds(1, (0,), meaning="0 (the profile's)"),
    "MAX_SHIFT": Bounds(1),
    "EQUIV_IMAGES": Bounds(1),
    "EXPLORER_IMAGE": Bounds(0),
}


def check_bounds(param: Parameter, value: Any) -> Any:
    """``value`` when it is in the range :data:`BOUNDS` gives ``param`` (or it has none), else a
    :class:`ParameterError` naming the parameter, the notebook and the valid values."""
    bounds = BOUNDS.get(param.name)
    if bounds is None or isinstance(value, bool) or not isinstance(value, (int, float)) or value in bounds.special:
        return value
    if value < bounds.minimum or value != int(value) or int(value) % bounds.multiple:
        raise ParameterError(f"parameter {param.name}={value!r} is out of range: expected {bounds.describe()} "
                             f"(parameters cell of {param.notebook})")
    return value


def check_refresh(value: str | None) -> None:
    """Raise a :class:`ParameterError` when ``value`` (``$SHIFTINV_REFRESH``, ``make figures REFRESH=...``) is
    not one of its documented values (:func:`shiftinv.workbook.cache.refresh_setting`)."""
    from .cache import refresh_setting

    try:
        refresh_setting(value)
    except ValueError as err:
        raise ParameterError(str(err)) from None


def parse_parameter(param: Parameter, text: str) -> Any:
    """The value of ``param`` given as ``text`` on the command line, checked against its annotation.

    Without an annotation the default's type decides (a ``None`` default: a Python literal, or the text).
    Numbers are range-checked (:func:`check_bounds`).

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
        value = _parse_as(text, kind)
    except ValueError as err:
        expected = param.annotation or type(param.default).__name__
        raise ParameterError(f"parameter {param.name}={text!r}: {err} ({param.name}: {expected} in the "
                             f"parameters cell of {param.notebook})") from None
    return check_bounds(param, value)


def known_profiles() -> tuple[str, ...]:
    """The profiles the notebooks know (``paths.PROFILES``)."""
    from .paths import PROFILES

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
        ParameterError: unknown profile, unknown parameter name (listing the valid ones), a value
            that does not parse as its annotation or is out of its range (:data:`BOUNDS`), or an
            undocumented ``$SHIFTINV_REFRESH`` (:func:`check_refresh`).
    """
    check_refresh(os.environ.get("SHIFTINV_REFRESH"))
    profiles = known_profiles()
    if profile not in profiles:
        close = difflib.get_close_matches(profile, profiles, n=1)
        raise ParameterError(f"unknown profile {profile!r}{f' (did you mean {close[0]}?)' if close else ''}; "
                             f"known profiles: {', '.join(profiles)} (shiftinv.workbook.paths.PROFILES)")
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

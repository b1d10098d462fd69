"""Lazy exports of the sub-packages: ``from shiftinv.models import build_vgg16`` imports ``models.vgg`` on first use.

Each sub-package's ``__init__`` names its main functions and classes in a table ``{name: module}``
and installs the module ``__getattr__`` / ``__dir__`` made here (PEP 562). The table holds strings,
not imports, on purpose: a cached value's code version (:func:`shiftinv.workbook.cache.code_version`)
follows the imports of the library's modules, and a sub-package ``__init__`` that imported all its
modules would tie every cache to every module of the sub-package. Inside the library, modules
import modules (``from ..shifts import engine``), never these names (``tests/test_exports.py``).
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` exporting ``exports`` (``{name: submodule}``)."""
    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(f"{package}.{exports[name]}")
        return getattr(module, name)

    def __dir__() -> list[str]:
        return sorted({*importlib.import_module(package).__dict__, *exports})

    return __getattr__, __dir__

"""Register the project kernel and configure the environment's JupyterLab for the notebooks.

``python -m shiftinv.workbook.labsetup`` (the console script ``shiftinv-lab-setup``; ``make setup``
runs it) does both halves of the set-up, in the active environment:

- registers the Jupyter kernel ``shiftinv`` ("Python (shiftinv)") that runs this environment's
  Python, inside the environment (``ipykernel install --sys-prefix``: a per-user kernel would
  shadow other environments' kernels);
- writes ``<env>/share/jupyter/lab/settings/overrides.json`` so that double-clicking a jupytext
  ``py:percent`` file opens it as a notebook rather than in the text editor, and turns off
  JupyterLab's network news/update pop-up.

After ``pip install -e ".[lab,test]"`` it is the one command that makes ``make lab`` / ``shiftinv-lab``
work. :func:`problems` says what is missing (``--check``; ``make lab`` and the browser tier check it first).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .cache import atomic_write_bytes

#: Setting overrides for the environment's JupyterLab (plugin id -> settings).
OVERRIDES: dict[str, dict[str, Any]] = {
    # .py files open as notebooks (jupytext), not in the text editor.
    "@jupyterlab/docmanager-extension:plugin": {
        "defaultViewers": {"python": "Jupytext Notebook"},
    },
    # Offline-friendly and quiet: no "Would you like to get notified about
    # Jupyter news?" pop-up, no update check over the network.
    "@jupyterlab/apputils-extension:notification": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


#: Kernel that every notebook header names.
KERNEL = "shiftinv"  # the Jupyter kernel `make setup` registers and the runner executes with


def overrides_path(prefix: str | Path | None = None) -> Path:
    """``<prefix>/share/jupyter/lab/settings/overrides.json`` (``prefix`` defaults to this environment)."""
    return Path(prefix or sys.prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"


def problems(prefix: str | Path | None = None) -> list[str]:
    """What is missing for notebooks to open cleanly in this environment's JupyterLab.

    Returns an empty list when the overrides are installed, the jupytext lab
    extension is present, and the ``shiftinv`` kernel runs this environment's
    Python; otherwise one sentence per problem, saying how to fix it.
    """
    found: list[str] = []
    path = overrides_path(prefix)
    current = json.loads(path.read_text()) if path.is_file() else {}
    for plugin, settings in OVERRIDES.items():
        for key, value in settings.items():
            if current.get(plugin, {}).get(key) != value:
                found.append(f"JupyterLab setting {plugin} {key} is not {value!r} in {path}: "
                             "run `make setup` (or `shiftinv-lab-setup`)")
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL)
    except NoSuchKernel:
        found.append(f"no Jupyter kernel named {KERNEL!r}: run `make setup` (or `shiftinv-lab-setup`)")
    else:
        if Path(spec.argv[0]).resolve() != Path(sys.executable).resolve():
            found.append(f"kernel {KERNEL!r} runs {spec.argv[0]}, not this environment's {sys.executable}: "
                         "run `make setup` again")
    jupytext_ext = Path(sys.prefix) / "share" / "jupyter" / "labextensions" / "jupyterlab-jupytext"
    if not jupytext_ext.is_dir():
        found.append(f"the jupytext JupyterLab extension is missing ({jupytext_ext}): pip install jupytext")
    return found


def install_kernel(prefix: str | Path | None = None) -> Path:
    """Register the :data:`KERNEL` kernel (this Python) under ``prefix`` (default: this environment); return its folder."""
    from ipykernel.kernelspec import install

    return Path(install(kernel_name=KERNEL, display_name=f"Python ({KERNEL})", prefix=str(prefix or sys.prefix)))


def write_overrides(prefix: str | Path | None = None) -> Path:
    """Merge :data:`OVERRIDES` into the environment's ``overrides.json``; return its path."""
    path = overrides_path(prefix)
    path.parent.mkdir(parents=True, exist_ok=True)
    current = json.loads(path.read_text()) if path.exists() else {}
    for plugin, settings in OVERRIDES.items():
        current.setdefault(plugin, {}).update(settings)
    atomic_write_bytes(path, (json.dumps(current, indent=2) + "\n").encode())
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m shiftinv.workbook.labsetup [--check]``: register the kernel and write the settings (or only
    check them); exit status 1 when ``--check`` finds a problem."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report what is missing; exit 1 if anything is")
    args = parser.parse_args(argv)
    if not args.check:
        print(f"kernel {KERNEL!r} registered in {install_kernel()}")
        print(f"JupyterLab settings written to {write_overrides()}")
    found = problems()
    for problem in found:
        print(f"{'ERROR' if args.check else 'WARNING'}: {problem}", file=sys.stderr)
    if args.check and not found:
        print("JupyterLab is set up: .py notebooks open through jupytext with the 'shiftinv' kernel")
    return 1 if args.check and found else 0


if __name__ == "__main__":
    sys.exit(main())

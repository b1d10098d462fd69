"""``make lab`` (``shiftinv-lab``): JupyterLab on the notebooks, or on any folder, with figures shown inline.

Command line (what ``make lab PORT=8890 DIR=build/student`` runs)::

    python -m shiftinv.workbook.lab                                   # notebooks/ on 127.0.0.1:8888
    python -m shiftinv.workbook.lab --port 8890 --dir build/student   # the student copies (make student)
    python -m shiftinv.workbook.lab -- --IdentityProvider.token=...   # more JupyterLab options after --

Kernels inherit the server's environment, and the Makefile exports ``MPLBACKEND=Agg`` to every
recipe so that ``make figures`` and the tests draw headless. A notebook kernel with Agg shows no
figure at all, so the launcher sets matplotlib's inline backend for the server and its kernels
(:func:`lab_environment`) and then replaces itself by JupyterLab (:func:`lab_command`). The
browser test tier starts JupyterLab through ``make lab``, so it checks what a user gets.

Before starting it checks what would otherwise fail later or silently: the JupyterLab set-up
(:func:`shiftinv.workbook.labsetup.problems`), the folder, and whether the port is free.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path
from typing import Mapping, Sequence

from . import labsetup, paths

#: The port ``make lab`` serves on unless ``PORT=...`` says otherwise.
DEFAULT_PORT = 8888


#: matplotlib's backend for notebook kernels: figures appear as images in the cell outputs.
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


#: Host JupyterLab listens on: this machine only (the URL it prints carries a token).
HOST = "127.0.0.1"


def lab_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``environ`` (default ``os.environ``) with matplotlib's inline backend for the kernels."""
    env = dict(os.environ if environ is None else environ)
    env["MPLBACKEND"] = INLINE_BACKEND
    return env


def lab_command(folder: Path, port: int, extra: Sequence[str] = ()) -> list[str]:
    """The JupyterLab command line: this environment's Python, serving ``folder`` on :data:`HOST`:``port``
    (no other port if it is taken, no browser opened: the URL with its token is printed)."""
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--ServerApp.root_dir={folder}",
           f"--ServerApp.ip={HOST}", f"--ServerApp.port={port}", "--ServerApp.port_retries=0", *extra]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    return cmd


def check_folder(folder: Path) -> Path:
    """``folder`` resolved, or ``FileNotFoundError`` saying how to get it."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        hint = " (`make student` writes the student copies there)" if folder.name == "student" else ""
        raise FileNotFoundError(f"folder '{folder}' does not exist{hint}; give an existing folder, e.g. "
                                f"`make lab DIR=notebooks`")
    return folder.resolve()


def check_port(port: int) -> int:
    """``port`` when it is a valid port nothing listens on at :data:`HOST`, else ``ValueError`` saying what to do."""
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is not a TCP port (1-65535)")
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            raise ValueError(f"port {port} is in use (another JupyterLab?): choose another, e.g. "
                             f"`make lab PORT={port + 2}`") from None
    return port


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m shiftinv.workbook.lab [--port P] [--dir D] [-- JupyterLab options]``: checks, then JupyterLab."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)  # JupyterLab's own options pass through
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--dir", type=Path, default=paths.NOTEBOOKS, help="folder to serve (default: notebooks/)")
    args, extra = parser.parse_known_args(argv)
    extra = [a for a in extra if a != "--"]
    problems = labsetup.problems()
    for problem in problems:
        print(f"ERROR: {problem}", file=sys.stderr)
    if problems:
        return 1
    try:
        folder, port = check_folder(args.dir), check_port(args.port)
    except (FileNotFoundError, ValueError) as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 2
    print(f">> JupyterLab on http://{HOST}:{port}/lab serving {folder}: open the URL with ?token=... printed "
          f"below; notebooks open with the 'Python ({labsetup.KERNEL})' kernel, figures inline", flush=True)
    cmd = lab_command(folder, port, extra)
    os.execve(cmd[0], cmd, lab_environment())  # JupyterLab takes this process over (signals, exit status)


if __name__ == "__main__":
    sys.exit(main())

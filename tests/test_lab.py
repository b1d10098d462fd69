"""`make lab` and the pip path's set-up command, without a browser (the browser tier runs `make lab` itself)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from shiftinv.workbook import lab, labsetup, paths


def test_kernels_get_the_inline_backend_whatever_make_exports() -> None:
    env = lab.lab_environment({"MPLBACKEND": "Agg", "SHIFTINV_DATA": "/data"})
    assert env == {"MPLBACKEND": lab.INLINE_BACKEND, "SHIFTINV_DATA": "/data"}
    import importlib

    importlib.import_module(lab.INLINE_BACKEND.removeprefix("module://"))  # the backend exists here


def test_lab_serves_the_folder_on_the_port_it_was_given(tmp_path: Path) -> None:
    cmd = lab.lab_command(tmp_path, 8890, ["--IdentityProvider.token=t"])
    assert cmd[:3] == [sys.executable, "-m", "jupyterlab"]
    assert f"--ServerApp.root_dir={tmp_path}" in cmd and "--ServerApp.port=8890" in cmd
    assert "--ServerApp.port_retries=0" in cmd and "--IdentityProvider.token=t" in cmd


def test_make_lab_runs_the_launcher_with_port_and_folder(tmp_path: Path) -> None:
    """The Makefile's recipe is the launcher's command line (a dry run: nothing starts)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    stamp = tmp_path / "done.stamp"
    stamp.touch()
    out = subprocess.run(["make", "--no-print-directory", "-C", str(paths.ROOT), "-n", "lab", f"PY={sys.executable}",
                          f"STAMP={stamp}", "PORT=8890", "DIR=build/student"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"{sys.executable} -m shiftinv.workbook.lab --port '8890' --dir 'build/student'" in out.stdout, out.stdout


def test_launcher_refuses_a_missing_folder_and_a_busy_port(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    if labsetup.problems():
        pytest.skip("JupyterLab is not set up in this environment (the launcher reports that first)")
    assert lab.main(["--dir", str(tmp_path / "student")]) == 2
    assert "make student" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind((lab.HOST, 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert lab.main(["--port", str(port), "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"port {port} is in use" in err and f"PORT={port + 2}" in err


def test_setup_command_registers_the_kernel_inside_the_environment(tmp_path: Path) -> None:
    """`shiftinv-lab-setup` = `python -m shiftinv.workbook.labsetup`: the kernel runs this Python, under the prefix."""
    folder = labsetup.install_kernel(tmp_path)
    spec = json.loads((folder / "kernel.json").read_text())
    assert folder == tmp_path / "share" / "jupyter" / "kernels" / labsetup.KERNEL
    assert spec["argv"][0] == sys.executable and spec["display_name"] == "Python (shiftinv)"

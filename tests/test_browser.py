"""Browser tier: every notebook opened in JupyterLab, in headless Chromium, the way a person does.

One JupyterLab server, started exactly as a user starts it: ``make lab PORT=<free port>
DIR=<folder>`` (the Makefile's environment, ``MPLBACKEND=Agg`` included, and its command line,
``python -m shiftinv.workbook.lab``; the test only points ``STAMP`` at a fresh file so that make
does not run the set-up, and passes a token in ``LAB_ARGS``). It serves copies of
``notebooks/NN_*.py`` in which a cell after the ``parameters``
cell sets ``SMOKE = True`` (papermill's convention). For each notebook the test
double-clicks it in the file browser (it must open as a notebook through
jupytext, with the project kernel and no kernel dialog), runs all cells from the
Run menu, and checks that no cell shows an error, and that a notebook that draws
figures shows at least one of them as an image (``<img>``) in a cell's output area
(not only the paths ``save_figure`` returns). In every cell that shows
sliders or dropdowns (an explorer) it moves up to two controls, sliders first
and those described "shift..." before the others (a slider: focus its handle,
press an arrow key; a dropdown: choose the next option), and checks that the
control moved, that the displayed output (text, pictures) changed, that no
error appeared, and that a text "shift (dx, dy) = (a, b)" agrees with the
"shift x"/"shift y" sliders. A notebook whose code creates widgets must show
at least one such control.

Fixture notebooks in ``tests/browser_fixtures`` control the checker itself:
working widgets (sliders, a dropdown) must pass, two deliberately broken
callbacks (one silent, one showing a traceback) must be reported, and so must a
notebook whose figures are drawn by a headless backend (``agg_figure.py``).

Artefacts: screenshots and a log per notebook in ``build/browser/``.
By default the tier opens notebooks 01 (the lesson's figures inline), 05 (the explorer's widgets) and 11
(the audit's figures): every notebook already runs headless in the smoke tier, and these three hold every
kind of output the browser adds (inline images, sliders, dropdowns). ``SHIFTINV_BROWSER_ONLY="all"`` opens
every notebook, ``SHIFTINV_BROWSER_ONLY="05"`` some (by prefix),
``SHIFTINV_BROWSER_TIMEOUT`` sets the seconds one notebook may run (300),
``SHIFTINV_BROWSER_SMOKE=0`` runs the notebooks with their own parameters. With
``SHIFTINV_README_SCREENSHOT=1`` the first explorer met (notebooks run in
order) is also saved as ``figures/demo/05_explorer_screenshot.png`` (+ ``.json``), the
README's picture (the demo profile's figure folder).

Chromium is Debian's (``/usr/bin/chromium``, or ``$SHIFTINV_CHROMIUM``), never
downloaded. Without it the tier skips, except under
``SHIFTINV_REQUIRE_BROWSER=1`` (CI), where it fails saying how to install it.
JupyterLab (its own process group) and Chromium are stopped by fixture
finalizers whatever happens.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

from shiftinv.workbook import labsetup, paths, runner

CHROMIUM = Path(os.environ.get("SHIFTINV_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
FIXTURES = Path(__file__).parent / "browser_fixtures"
ARTEFACTS = paths.BUILD / "browser"
#: Seconds a notebook may take to run all its cells in the browser (smoke parameters).
RUN_TIMEOUT_S = float(os.environ.get("SHIFTINV_BROWSER_TIMEOUT", "300"))
#: Seconds to wait for the output to settle after moving a slider.
MOVE_TIMEOUT_S = 60.0
MAX_CONTROLS_PER_EXPLORER = 2
SLIDER = ".widget-slider"
DROPDOWN = ".widget-dropdown"
SMOKE_CELL = "SMOKE = True  # injected by the browser test tier (tests/test_browser.py)"
SHIFT_TEXT = re.compile(r"shift \(dx, dy\) = \((-?\d+), (-?\d+)\)")
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^-{20,}\s*\n\s*\w*(Error|Exception)\b", re.M)
#: An error message an explorer shows instead of its output ("error: channel 600 out of range").
SHOWN_ERROR = re.compile(r"(?:^|[\s>|])(?:error|Error|ERROR):\s*([^\n|]{0,80})")
#: Code that creates widgets; a notebook with such code must show at least one moving slider.
WIDGET_CODE = re.compile(r"\bipywidgets\b|\bexplorer_widget\b|\binteract(ive)?\(")
#: Code that draws figures; a notebook with such code must show at least one as an image.
FIGURE_CODE = re.compile(r"\bsave_figure\(|\bplt\.(subplots|figure)\(")
#: ``SHIFTINV_BROWSER_SMOKE=0`` runs the notebooks with their own parameters (for the README screenshot).
SMOKE = os.environ.get("SHIFTINV_BROWSER_SMOKE", "1") != "0"
#: The notebooks the tier opens by default (module docstring); ``SHIFTINV_BROWSER_ONLY="all"`` opens every one,
#: ``SHIFTINV_BROWSER_ONLY="05 07"`` those (by prefix).
DEFAULT_NOTEBOOKS = ("01", "05", "11")
_ONLY = os.environ.get("SHIFTINV_BROWSER_ONLY", "").split() or list(DEFAULT_NOTEBOOKS)
NOTEBOOKS = runner.list_notebooks(None if _ONLY == ["all"] else _ONLY)


# --------------------------------------------------------------------------- served copies


def smoke_copy(source: Path, target: Path, smoke: bool = True) -> Path:
    """Write ``source`` (jupytext) to ``target`` (py:percent) with ``SMOKE = True`` injected.

    The injected cell is tagged ``injected-parameters`` and follows the cell
    tagged ``parameters``, as papermill does. ``smoke=False`` copies the
    notebook with its own parameters (the demo profile).
    """
    import jupytext
    import nbformat

    nb = jupytext.read(source)
    index = next((i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])), None)
    if index is None:
        raise AssertionError(f"{source.name} has no cell tagged 'parameters' (see CONTRIBUTING.md)")
    if smoke:
        cell = nbformat.v4.new_code_cell(SMOKE_CELL, metadata={"tags": ["injected-parameters"]})
        nb.cells.insert(index + 1, cell)
    jupytext.write(nb, target, fmt="py:percent")
    return target


def expects_widgets(source: Path) -> bool:
    """True when a code cell of the notebook creates widgets (ipywidgets, an explorer, interact)."""
    import jupytext

    return any(c.cell_type == "code" and WIDGET_CODE.search(c.source) for c in jupytext.read(source).cells)


def expects_figures(source: Path) -> bool:
    """True when a code cell of the notebook draws a figure (``save_figure``, ``plt.subplots``, ``plt.figure``)."""
    import jupytext

    return any(c.cell_type == "code" and FIGURE_CODE.search(c.source) for c in jupytext.read(source).cells)


# --------------------------------------------------------------------------- processes


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child before exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class LabServer:
    """A JupyterLab server of this environment on ``127.0.0.1:port`` serving ``root``."""

    root: Path
    state: Path
    port: int = field(default_factory=_free_port)
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    process: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.state / "jupyterlab.log"

    def start(self, timeout_s: float = 90.0) -> None:
        """``make lab`` as a user runs it (see the module docstring), in its own process group."""
        if shutil.which("make") is None:
            pytest.skip("make is not installed: the browser tier starts JupyterLab with `make lab`")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "MAKE", "MFLAGS"))}
        env.update(
            SHIFTINV_FIGURES=str(self.state / "figures"),
            # Smoke runs keep their caches apart; a demo run (SHIFTINV_BROWSER_SMOKE=0)
            # shares the cache of `make figures` (results/).
            SHIFTINV_RESULTS=str(self.state / "results" if SMOKE else paths.ROOT / "results"),
            SHIFTINV_PROGRESS="0",
            # Only this environment's kernels and settings; fresh user state.
            JUPYTER_CONFIG_DIR=str(self.state / "config"),
            JUPYTER_DATA_DIR=str(self.state / "data"),
            JUPYTER_RUNTIME_DIR=str(self.state / "runtime"),
            JUPYTERLAB_SETTINGS_DIR=str(self.state / "user-settings"),
            JUPYTERLAB_WORKSPACES_DIR=str(self.state / "workspaces"),
            JUPYTER_PLATFORM_DIRS="1",
        )
        stamp = self.state / "setup-done.stamp"  # newer than requirements.txt: make skips the set-up
        stamp.touch()
        extra = f"--IdentityProvider.token={self.token} --LabApp.expose_app_in_browser=True"  # window.jupyterapp: read state
        cmd = ["make", "--no-print-directory", "-C", str(paths.ROOT), "lab", f"PY={sys.executable}",
               f"STAMP={stamp}", f"PORT={self.port}", f"DIR={self.root}", f"LAB_ARGS={extra}"]
        handle = open(self.log, "wb")
        self.process = subprocess.Popen(
            cmd, cwd=self.root, env=env, stdout=handle, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_die_with_parent,
        )
        handle.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with code {self.process.returncode}; log:\n{self.tail()}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{self.base}/api/status?token={self.token}", timeout=2) as r:
                    if r.status == 200:
                        return
            time.sleep(0.5)
        raise RuntimeError(f"JupyterLab did not answer within {timeout_s:.0f} s; log:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""

    def api(self, method: str, path: str) -> Any:
        request = urllib.request.Request(f"{self.base}{path}?token={self.token}", method=method)
        with urllib.request.urlopen(request, timeout=10) as r:
            body = r.read()
        return json.loads(body) if body else None

    def stop(self) -> None:
        """Shut the kernels down, then the server's process group (TERM, then KILL)."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(Exception):
            for kernel in self.api("GET", "/api/kernels"):
                self.api("DELETE", f"/api/kernels/{kernel['id']}")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


# --------------------------------------------------------------------------- the checker

_NOTEBOOK_STATE_JS = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  if (!w || !w.content || !w.content.model || !w.sessionContext) return null;
  const kernel = w.sessionContext.session && w.sessionContext.session.kernel;
  const cells = w.content.model.cells;
  let unexecuted = 0, errors = [];
  for (let i = 0; i < cells.length; i++) {
    const c = cells.get(i);
    if (c.type !== 'code') continue;
    if (c.executionCount === null && c.sharedModel.getSource().trim() !== '') unexecuted += 1;
    for (let j = 0; j < c.outputs.length; j++) {
      const o = c.outputs.get(j);
      if (o.type === 'error') errors.push(`cell ${i}: ${o.toJSON().ename}: ${o.toJSON().evalue}`);
    }
  }
  const pending = Array.from(w.node.querySelectorAll('.jp-InputPrompt'))
    .filter(p => p.textContent.includes('*')).length;
  return {status: kernel ? kernel.status : 'none', kernel: kernel ? kernel.name : null,
          display: w.sessionContext.kernelDisplayName, unexecuted, pending, errors,
          path: w.context.path, notebook: w.hasClass('jp-NotebookPanel')};
}"""

# Figures shown as pictures in the cells' own output areas (not inside a widget's output).
_FIGURE_IMAGES_JS = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  return Array.from(w.node.querySelectorAll('.jp-CodeCell .jp-OutputArea-output img'))
    .filter(img => !img.closest('.jupyter-widgets')).length;
}"""

_STDERR_TEXTS_JS = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  return Array.from(w.node.querySelectorAll('[data-mime-type="application/vnd.jupyter.stderr"]'))
    .map(e => e.textContent);
}"""

# Output of one cell without its controls: text, images (as data), canvases.
_SIGNATURE_JS = """(cell) => {
  const area = cell.querySelector('.jp-OutputArea');
  if (!area) return {text: '', images: []};
  const clone = area.cloneNode(true);
  clone.querySelectorAll('.widget-slider, .widget-readout, .widget-dropdown, .widget-toggle-buttons, '
    + '.widget-checkbox, .widget-text, .widget-button, .widget-play, input, select, button, style')
    .forEach(e => e.remove());
  const pixels = (img) => {  // the picture itself (blob: URLs change on every update)
    try {
      const c = document.createElement('canvas');
      c.width = img.naturalWidth; c.height = img.naturalHeight;
      c.getContext('2d').drawImage(img, 0, 0);
      return c.toDataURL();
    } catch (e) { return img.src; }
  };
  const images = Array.from(area.querySelectorAll('img')).map(pixels)
    .concat(Array.from(area.querySelectorAll('canvas')).map(c => c.toDataURL()))
    .concat(Array.from(area.querySelectorAll('svg')).map(s => s.outerHTML));
  return {text: clone.textContent, images};
}"""


@dataclass
class Move:
    """One control moved in an explorer, with what the page showed before and after."""

    cell: int
    description: str
    value_before: str
    value_after: str
    text_before: str
    text_after: str
    images_changed: bool
    seconds: float


@dataclass
class Report:
    """What happened to one notebook in the browser; ``problems`` empty means it passed."""

    name: str
    problems: list[str] = field(default_factory=list)
    moves: list[Move] = field(default_factory=list)
    widget_cells: int = 0
    figure_images: int = 0
    screenshots: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        lines = [f"{self.name}: {len(self.problems)} problem(s), {self.figure_images} figure(s) shown, "
                 f"{self.widget_cells} widget cell(s), {len(self.moves)} control move(s), {self.seconds:.1f} s"]
        lines += [f"  - {p}" for p in self.problems]
        lines += [f"  * cell {m.cell} '{m.description}' {m.value_before} -> {m.value_after}: "
                  f"{_short(m.text_before)!r} -> {_short(m.text_after)!r} (images changed: {m.images_changed}, "
                  f"{m.seconds:.1f} s)" for m in self.moves]
        lines += [f"  screenshot {s}" for s in self.screenshots]
        return "\n".join(lines)


def _short(text: str, n: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 3] + "..."


def _digest(images: list[str]) -> list[str]:
    return [hashlib.sha1(i.encode()).hexdigest()[:12] for i in images]


class LabPage:
    """Drives one Chromium tab on the JupyterLab server, as a person would."""

    def __init__(self, page: Any, server: LabServer, artefacts: Path) -> None:
        self.page = page
        self.server = server
        self.artefacts = artefacts
        self.console: list[str] = []
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))

    def load(self) -> None:
        self.page.goto(f"{self.server.base}/lab?reset&token={self.server.token}")
        self.page.wait_for_selector(".jp-DirListing-item", timeout=90_000)
        self.page.wait_for_function("() => window.jupyterapp !== undefined && window.jupyterapp.shell")

    def default_viewer(self, filename: str) -> str:
        """Name of the viewer JupyterLab uses when ``filename`` is double-clicked."""
        return self.page.evaluate("(f) => window.jupyterapp.docRegistry.defaultWidgetFactory(f).name", filename)

    def state(self) -> dict[str, Any] | None:
        return self.page.evaluate(_NOTEBOOK_STATE_JS)

    # -- one notebook -------------------------------------------------------
    def check(self, filename: str, expect_widgets: bool = False, readme_screenshot: Path | None = None,
              expect_figures: bool = False) -> Report:
        """Open ``filename`` (in the server root), run it, check errors, figures and widgets; close it."""
        report = Report(filename)
        start = time.monotonic()
        stem = Path(filename).stem
        try:
            if self._open(filename, report) and self._run_all(report):
                self._check_errors(report, "after running all cells")
                self._check_figures(report, expect_figures)
                self._check_widgets(report, expect_widgets, stem, readme_screenshot)
        except Exception as err:  # the report says what broke; the test fails on it
            report.problems.append(f"browser check crashed: {type(err).__name__}: {err}")
        finally:
            with contextlib.suppress(Exception):
                report.screenshots.append(self._screenshot(f"{stem}.png"))
            self._close()
            report.seconds = time.monotonic() - start
            (self.artefacts / f"{stem}.log").write_text(report.summary() + "\n\nconsole errors:\n"
                                                        + "\n".join(self.console) + "\n")
            self.console.clear()
        return report

    def _open(self, filename: str, report: Report) -> bool:
        page = self.page
        page.locator(".jp-DirListing-item", has=page.locator(".jp-DirListing-itemText", has_text=filename)) \
            .first.dblclick()
        try:
            page.wait_for_function(
                "(name) => { const w = window.jupyterapp.shell.currentWidget;"
                " return w && w.context && w.context.path.endsWith(name); }", arg=filename, timeout=60_000)
        except Exception:
            report.problems.append(f"{filename} did not open within 60 s (double-click in the file browser)")
            return False
        state = self.state()
        if not state or not state["notebook"]:
            report.problems.append(f"{filename} opened, but not as a notebook (jupytext viewer missing? "
                                   "run `make setup` / `python -m shiftinv.workbook.labsetup`)")
            return False
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            dialog = page.locator(".jp-Dialog")
            if dialog.count():
                text = _short(dialog.first.inner_text(), 200)
                report.problems.append(f"a dialog appeared on opening: {text!r} (kernelspec header missing "
                                       "or kernel 'shiftinv' not installed: `make setup`)")
                self._screenshot(f"{Path(filename).stem}-dialog.png")
                page.keyboard.press("Escape")
                return False
            state = self.state()
            if state and state["status"] == "idle":
                break
            time.sleep(0.3)
        else:
            report.problems.append(f"the kernel did not start within 90 s (status {state and state['status']})")
            return False
        if state["kernel"] != labsetup.KERNEL:
            report.problems.append(f"kernel is {state['kernel']!r} ({state['display']}), expected "
                                   f"{labsetup.KERNEL!r}: the notebook header must name it")
        return True

    def _run_all(self, report: Report) -> bool:
        page = self.page
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        deadline = time.monotonic() + RUN_TIMEOUT_S
        quiet = 0
        time.sleep(0.5)
        while time.monotonic() < deadline:
            state = self.state()
            done = state and state["status"] == "idle" and state["pending"] == 0 and (
                state["unexecuted"] == 0 or state["errors"])
            quiet = quiet + 1 if done else 0
            if quiet >= 3:
                return True
            if state and state["status"] in ("dead", "autorestarting", "restarting"):
                report.problems.append(f"the kernel died while running all cells (status {state['status']}; "
                                       "out of memory?)")
                return False
            if page.locator(".jp-Dialog").count():
                report.problems.append(f"a dialog appeared while running: "
                                       f"{_short(page.locator('.jp-Dialog').first.inner_text(), 200)!r}")
                return False
            time.sleep(0.5)
        state = self.state()
        report.problems.append(f"running all cells did not finish within {RUN_TIMEOUT_S:.0f} s "
                               f"({state and state['pending']} cell(s) still running or queued)")
        return False

    def _check_errors(self, report: Report, when: str) -> None:
        state = self.state() or {"errors": [], "unexecuted": 0}
        for error in state["errors"]:
            report.problems.append(f"error output {when}: {error}")
        if state["unexecuted"] and not state["errors"]:
            report.problems.append(f"{state['unexecuted']} code cell(s) did not run {when}")
        # Errors inside widget Output areas are not cell outputs: look at what is displayed.
        for text in self.page.evaluate(_STDERR_TEXTS_JS):
            if TRACEBACK.search(text) and not any(e.split(": ", 1)[-1][:40] in text for e in state["errors"]):
                report.problems.append(f"a traceback is displayed {when}: {_short(text, 300)!r}")

    def _check_figures(self, report: Report, expect: bool) -> None:
        """A notebook that draws figures must show at least one as an image in a cell's output area."""
        report.figure_images = self.page.evaluate(_FIGURE_IMAGES_JS)
        if expect and report.figure_images == 0:
            report.problems.append("the notebook draws figures, but no cell output shows one as an image "
                                   "(matplotlib's inline backend off? MPLBACKEND=Agg reached the kernel)")

    def _check_widgets(self, report: Report, expect: bool, stem: str, readme: Path | None) -> None:
        page = self.page
        cells = page.locator(".jp-Notebook .jp-Cell").filter(has=page.locator(f"{SLIDER}, {DROPDOWN}"))
        report.widget_cells = cells.count()
        if report.widget_cells == 0:
            if expect:
                shown = page.locator(".jp-Notebook .jupyter-widgets").count()
                report.problems.append(
                    "the notebook's code creates widgets, but no slider or dropdown is displayed "
                    + ("(only other widgets)" if shown else "(widget manager missing? nothing rendered)"))
            return
        for index in range(report.widget_cells):
            cell = cells.nth(index)
            controls = self._controls(cell)
            for k, (kind, control, name) in enumerate(controls[:MAX_CONTROLS_PER_EXPLORER]):
                move = self._move(index, cell, kind, control, name, report)
                if move is None:
                    continue
                report.moves.append(move)
                shot = self.artefacts / f"{stem}-explorer{index}-move{k}.png"
                area = cell.locator(".jp-OutputArea").first
                area.scroll_into_view_if_needed()
                area.screenshot(path=str(shot))
                report.screenshots.append(shot)
                if readme is not None and k == 0 and not report.problems and not _README_DONE:
                    _README_DONE.append(_save_readme_screenshot(shot, stem, move, readme))
        self._check_errors(report, "after moving the controls")

    @staticmethod
    def _controls(cell: Any) -> list[tuple[str, Any, str]]:
        """(kind, locator, description) of a cell's sliders ("shift..." first), then its dropdowns."""
        found = []
        for kind, selector in (("slider", SLIDER), ("dropdown", DROPDOWN)):
            items = cell.locator(selector)
            for i in range(items.count()):
                name = _short(items.nth(i).locator(".widget-label").first.text_content() or "").strip()
                found.append((kind, items.nth(i), name))
        return sorted(found, key=lambda c: (c[0] != "slider", not c[2].lower().startswith("shift")))

    def _move(self, index: int, cell: Any, kind: str, control: Any, name: str, report: Report) -> Move | None:
        """Move one control of explorer cell ``index`` as a person would; check what the page shows.

        A slider: focus its handle, press the right arrow (left at its maximum).
        A dropdown: choose the next option.
        """
        def read() -> str:
            if kind == "slider":
                return (control.locator(".widget-readout").first.text_content() or "").strip()
            return control.locator("select").first.input_value()

        def look() -> tuple[str, dict[str, Any]]:
            return read(), cell.evaluate(_SIGNATURE_JS)

        value0, sig0 = look()
        start = time.monotonic()
        if kind == "slider":
            handle = control.locator(".noUi-handle").first
            handle.scroll_into_view_if_needed()
            handle.focus()
            self.page.keyboard.press("ArrowRight")
            time.sleep(0.3)
            if read() == value0:  # at its maximum: go the other way
                self.page.keyboard.press("ArrowLeft")
        else:
            select = control.locator("select").first
            options = select.locator("option")
            if options.count() < 2:
                return None
            values = [options.nth(i).get_attribute("value") for i in range(options.count())]
            current = values.index(value0) if value0 in values else 0
            select.select_option(index=(current + 1) % len(values))
        # Settled: kernel idle and the output unchanged for a second.
        last, stable_since = None, time.monotonic()
        while time.monotonic() - start < MOVE_TIMEOUT_S:
            time.sleep(0.25)
            value1, sig1 = look()
            state = self.state() or {"status": "unknown"}
            key = (value1, sig1["text"], tuple(_digest(sig1["images"])))
            if key != last:
                last, stable_since = key, time.monotonic()
            elif state["status"] == "idle" and time.monotonic() - stable_since >= 1.0:
                break
        seconds = time.monotonic() - start
        value1, sig1 = look()
        where = f"{kind} '{name}' ({value0} -> {value1})"
        if value1 == value0:
            how = "with the arrow keys" if kind == "slider" else "by choosing another option"
            report.problems.append(f"{kind} '{name}' did not move {how} (value {value0})")
            return None
        images_changed = _digest(sig0["images"]) != _digest(sig1["images"])
        if sig1["text"] == sig0["text"] and not images_changed:
            report.problems.append(f"moving {where}: the displayed output did not change "
                                   f"(still {_short(sig0['text'])!r}): is the widget callback broken?")
        new_errors = set(SHOWN_ERROR.findall(sig1["text"])) - set(SHOWN_ERROR.findall(sig0["text"]))
        if new_errors:
            report.problems.append(f"moving {where}: the explorer shows an error: {_short(sig1['text'], 300)!r}")
        if TRACEBACK.search(sig1["text"]):
            report.problems.append(f"moving {where}: an error is displayed: {_short(sig1['text'], 300)!r}")
        self._check_shift_text(cell, sig1["text"], where, report)
        return Move(index, name, value0, value1, sig0["text"], sig1["text"], images_changed, seconds)

    def _check_shift_text(self, cell: Any, text: str, where: str, report: Report) -> None:
        """"shift (dx, dy) = (a, b)" must show the values of the "shift x" / "shift y" sliders."""
        found = SHIFT_TEXT.findall(text)
        if not found:
            return
        sliders = cell.locator(".widget-slider")
        values = {}
        for i in range(sliders.count()):
            label = (sliders.nth(i).locator(".widget-label").first.text_content() or "").strip().lower()
            values[label] = (sliders.nth(i).locator(".widget-readout").first.text_content() or "").strip()
        dx, dy = found[-1]
        for labels, shown in ((("shift x", "dx", "shift dx"), dx), (("shift y", "dy", "shift dy"), dy)):
            for label in labels:
                if label in values and values[label] != shown:
                    report.problems.append(f"moving {where}: the text says {SHIFT_TEXT.search(text)[0]!r} "
                                           f"but slider '{label}' shows {values[label]}")

    def _screenshot(self, name: str) -> Path:
        path = self.artefacts / name
        self.page.screenshot(path=str(path))
        return path

    def _close(self) -> None:
        """Shut the notebook's kernel down and close its tab without saving."""
        with contextlib.suppress(Exception):
            self.page.evaluate("""async () => {
              const w = window.jupyterapp.shell.currentWidget;
              if (w && w.sessionContext) { await w.sessionContext.shutdown(); w.dispose(); }
            }""")
        with contextlib.suppress(Exception):
            for kernel in self.server.api("GET", "/api/kernels"):
                self.server.api("DELETE", f"/api/kernels/{kernel['id']}")


#: The README screenshot is the first explorer met (notebooks run in order).
_README_DONE: list[Path] = []


def _save_readme_screenshot(png: Path, stem: str, move: Move, out_dir: Path) -> Path:
    """The explorer screenshot for the README, through ``save_figure`` with what it shows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from shiftinv.viz import figures
    from shiftinv.workbook import publish

    image = plt.imread(png)
    dpi = 100
    fig = plt.figure(figsize=(image.shape[1] / dpi, image.shape[0] / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(image, interpolation="none")
    ax.set_axis_off()
    data = {"notebook": stem, "control": move.description, "value_before": move.value_before,
            "value_after": move.value_after, "text_before": _short(move.text_before, 400),
            "text_after": _short(move.text_after, 400), "images_changed": move.images_changed,
            "smoke_parameters": SMOKE, "made_by": "tests/test_browser.py (JupyterLab in headless Chromium)"}
    run = {"by": "tests/test_browser.py (SHIFTINV_README_SCREENSHOT=1)", "notebook": stem, "profile": "demo",
           "smoke": SMOKE, "parameters": {"SMOKE": True} if SMOKE else {}, **publish.code_commit()}
    written = figures.save_figure(fig, README_SCREENSHOT.stem, data, out_dir=out_dir, run=run)
    plt.close(fig)
    return written["png"]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def chromium() -> Path:
    if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    message = (f"Chromium not found at {CHROMIUM}: install Debian's package (`apt-get install -y chromium`, "
               "as .ci/run does) or set SHIFTINV_CHROMIUM; browsers are never downloaded")
    if os.environ.get("SHIFTINV_REQUIRE_BROWSER") == "1":
        pytest.fail(f"SHIFTINV_REQUIRE_BROWSER=1 but {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def lab_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Server root with smoke copies of every notebook and of the checker's fixtures."""
    root = tmp_path_factory.mktemp("lab-root")
    for source in NOTEBOOKS + sorted(FIXTURES.glob("*.py")):
        smoke_copy(source, root / source.name, smoke=SMOKE or source.parent == FIXTURES)
    return root


@pytest.fixture(scope="session")
def lab(chromium: Path, lab_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabPage]:
    """One JupyterLab server and one Chromium tab on it for the whole session; both always stopped."""
    problems = labsetup.problems()
    if problems:
        pytest.fail("JupyterLab is not set up for the workbook:\n" + "\n".join(problems), pytrace=False)
    from playwright.sync_api import sync_playwright

    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    state = tmp_path_factory.mktemp("lab-state")
    server = LabServer(lab_root, state)
    with contextlib.ExitStack() as stack:
        stack.callback(lambda: shutil.copy(server.log, ARTEFACTS / "jupyterlab.log") if server.log.exists() else None)
        stack.callback(server.stop)
        server.start()
        playwright = stack.enter_context(sync_playwright())
        context = playwright.chromium.launch_persistent_context(
            str(state / "chromium-profile"), executable_path=str(chromium), headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 1000},
        )
        stack.callback(context.close)
        page = context.pages[0] if context.pages else context.new_page()
        page.set_default_timeout(30_000)
        lab_page = LabPage(page, server, ARTEFACTS)
        lab_page.load()
        yield lab_page


#: The README shows the explorer screenshot from the demo profile's figure folder.
README_SCREENSHOT = Path("figures") / "demo" / "05_explorer_screenshot.png"


def _readme_dir() -> Path | None:
    return (paths.ROOT / README_SCREENSHOT).parent if os.environ.get("SHIFTINV_README_SCREENSHOT") == "1" else None


# --------------------------------------------------------------------------- tests


def test_lab_setup_has_no_problems() -> None:
    """The settings, kernel and jupytext extension that `make setup` installs are in place."""
    assert labsetup.problems() == []


def test_labsetup_merges_overrides_and_reports_what_is_missing(tmp_path: Path) -> None:
    path = labsetup.overrides_path(tmp_path)
    assert any("defaultViewers" in p for p in labsetup.problems(tmp_path))
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"@jupyterlab/apputils-extension:notification": {"doNotDisturbMode": True},
                                "other:plugin": {"x": 1}}))
    assert labsetup.write_overrides(tmp_path) == path
    written = json.loads(path.read_text())
    assert written["other:plugin"] == {"x": 1}  # the user's other settings are kept
    assert written["@jupyterlab/apputils-extension:notification"]["doNotDisturbMode"] is True
    assert written["@jupyterlab/docmanager-extension:plugin"]["defaultViewers"]["python"] == "Jupytext Notebook"
    assert not any(str(path) in p for p in labsetup.problems(tmp_path))


def test_smoke_copy_injects_smoke_after_parameters(tmp_path: Path) -> None:
    source = FIXTURES / "working_widget.py"
    text = smoke_copy(source, tmp_path / source.name).read_text()
    assert text.index('SMOKE: bool = False') < text.index(SMOKE_CELL)
    assert 'tags=["injected-parameters"]' in text
    bad = tmp_path / "no_params.py"
    bad.write_text("# %%\nx = 1\n")
    with pytest.raises(AssertionError, match="no cell tagged 'parameters'"):
        smoke_copy(bad, tmp_path / "out.py")


@pytest.mark.browser
def test_py_notebooks_open_with_jupytext_by_default(lab: LabPage) -> None:
    assert lab.default_viewer("01_anything.py") == "Jupytext Notebook"


@pytest.mark.browser
def test_checker_passes_a_working_widget(lab: LabPage) -> None:
    report = lab.check("working_widget.py", expect_widgets=True)
    assert report.problems == [], report.summary()
    assert report.widget_cells == 2 and len(report.moves) == 3, report.summary()
    first, second, third = report.moves
    assert first.description == "shift x" and (first.value_before, first.value_after) == ("3", "4")
    assert "shift (dx, dy) = (4, 0)" in first.text_after and first.images_changed, report.summary()
    assert second.description == "shift y" and "shift (dx, dy) = (4, 1)" in second.text_after
    assert (third.cell, third.description, third.value_after) == (1, "colour map", "viridis")
    assert "colour map: viridis" in third.text_after, report.summary()


@pytest.mark.browser
@pytest.mark.parametrize("fixture, expected", [
    ("broken_widget.py", "did not change"),           # the callback raises before drawing: nothing changes
    ("broken_widget_traceback.py", "error is displayed"),  # it raises while drawing: a traceback shows
])
def test_checker_detects_a_broken_widget_callback(lab: LabPage, fixture: str, expected: str) -> None:
    report = lab.check(fixture, expect_widgets=True)
    assert report.problems, f"the checker missed the broken callback:\n{report.summary()}"
    assert any(expected in p for p in report.problems), report.summary()


@pytest.mark.browser
def test_checker_detects_figures_that_are_not_shown(lab: LabPage) -> None:
    """A kernel drawing with Agg (what `make lab` gave before it set the inline backend) shows no figure."""
    report = lab.check("agg_figure.py", expect_figures=True)
    assert report.figure_images == 0 and any("no cell output shows one as an image" in p for p in report.problems), \
        report.summary()


@pytest.mark.browser
@pytest.mark.parametrize("source", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_notebook_in_jupyterlab(lab: LabPage, source: Path) -> None:
    report = lab.check(source.name, expect_widgets=expects_widgets(source), readme_screenshot=_readme_dir(),
                       expect_figures=expects_figures(source))
    assert report.problems == [], report.summary()
    if report.widget_cells:
        assert report.moves, report.summary()


def test_error_patterns() -> None:
    """What the checker counts as an error shown in an output (no browser needed)."""
    assert SHOWN_ERROR.search("error: channel 600 out of range")
    assert SHOWN_ERROR.search("shift (dx, dy) = (1, 0) | Error: no model")
    assert not SHOWN_ERROR.search("relative error 0.12 | RuntimeError")
    assert TRACEBACK.search("-" * 75 + "\nRuntimeError                              Traceback (most recent call last)")
    assert TRACEBACK.search("Traceback (most recent call last):\n  File ...")
    assert not TRACEBACK.search("UserWarning: just a warning\n  warnings.warn(...)")
    assert SHIFT_TEXT.findall("shift (dx, dy) = (-3, 12) | prediction: 7 (p=0.93)") == [("-3", "12")]


def test_readme_shows_the_committed_explorer_screenshot() -> None:
    """The README's picture is the file the browser tier writes, in the demo profile's folder."""
    readme = (paths.ROOT / "README.md").read_text()
    assert f"]({README_SCREENSHOT.as_posix()})" in readme
    assert (paths.ROOT / README_SCREENSHOT).is_file()
    assert (paths.ROOT / README_SCREENSHOT).with_suffix(".json").is_file()
    assert not re.search(r"\]\(figures/\d\d_", readme), "a README link points at figures/ outside a profile folder"

"""Configure the environment's JupyterLab so ``notebooks/*.py`` open as notebooks.

Run by ``make setup``: writes ``<venv>/share/jupyter/lab/settings/overrides.json``
so that double-clicking a jupytext ``py:percent`` file opens it as a notebook
(with the project kernel named in its header) rather than in the text editor.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OVERRIDES = {
    "@jupyterlab/docmanager-extension:plugin": {
        "defaultViewers": {"python": "Jupytext Notebook"},
    },
}


def main() -> Path:
    path = Path(sys.prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    current = json.loads(path.read_text()) if path.exists() else {}
    current.update(OVERRIDES)
    path.write_text(json.dumps(current, indent=2) + "\n")
    return path


if __name__ == "__main__":
    print(f"JupyterLab settings written to {main()}")

"""shiftinv: the library behind the translation-invariance workbook.

Modules (each small, typed and tested):

- ``paths``      folders resolved from the package location
- ``figures``    one helper that saves a figure as PNG + PDF + its data
- ``utils``      seeding, device choice, atomic saving, config-keyed caching
- ``notebooks``  headless execution of the jupytext notebooks with papermill
"""

__version__ = "0.1.0"


def _pin_refresh_time() -> None:
    """``SHIFTINV_REFRESH=1`` (``make figures REFRESH=1``) becomes the time this package is first
    imported, so the runner and every notebook kernel it starts (they inherit the environment)
    recompute each cached value once and reuse what this run wrote (``utils.refresh_requested``)."""
    import os
    import time

    if os.environ.get("SHIFTINV_REFRESH", "").strip().lower() in ("1", "true", "yes", "on"):
        os.environ["SHIFTINV_REFRESH"] = repr(time.time())


_pin_refresh_time()

"""shiftinv: the library behind the translation-invariance workbook.

Seven sub-packages, in the order the notebooks use them (each ``__init__`` lists its modules):

- ``shiftinv.models``      the VGG-16 trunk, heads at every depth, anti-aliasing layers, weights
                           (notebooks 02-10)
- ``shiftinv.shifts``      shift operators, rotation/scaling, the sweep engine, invariance measures,
                           periodicity (notebooks 01, 02, 04-06)
- ``shiftinv.study``       the classification study: profiles, data, training, the model set, intervals
                           (notebooks 03-06)
- ``shiftinv.perceptual``  LPIPS-style metrics, IQA data, statistics, metric training (notebooks 07-10)
- ``shiftinv.audit``       audit any image classifier under shifts: models and images in, one grid of
                           shifted views, every published measure, a report; ``shiftinv-audit`` (notebook 11)
- ``shiftinv.viz``         figure saving and style, the plots, the explorer widget
- ``shiftinv.workbook``    paths, caching, run conditions, publishing figures, the notebook runner, student
                           versions, JupyterLab
- ``shiftinv.commands``    the shell commands (``shiftinv-sweep``); nothing in the library imports them

Dependencies point one way: ``workbook`` <- ``models`` <- ``shifts`` <- ``study`` / ``perceptual`` / ``audit``,
and ``viz`` draws what they compute (``viz.figures.save_figure`` hands its files to ``workbook.publish``).
Each sub-package exports its main names (``from shiftinv.models import build_vgg16``). Out of the
package: ``benchmarks/`` (``make bench``) and ``tests/reference/`` (test-only references).
"""

__version__ = "0.1.0"


def _pin_refresh_time() -> None:
    """``SHIFTINV_REFRESH=1`` (``make figures REFRESH=1``) becomes the time this package is first
    imported, so the runner and every notebook kernel it starts (they inherit the environment)
    recompute each cached value once and reuse what this run wrote (``workbook.cache.refresh_requested``)."""
    import os
    import time

    if os.environ.get("SHIFTINV_REFRESH", "").strip().lower() in ("1", "true", "yes", "on"):
        os.environ["SHIFTINV_REFRESH"] = repr(time.time())


_pin_refresh_time()

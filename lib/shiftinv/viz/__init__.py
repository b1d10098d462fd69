"""Figures: saving and style, the plots of each part of the workbook, the explorer widget.

- ``figures``             ``save_figure`` (PNG + PDF + the data behind it, published by
                          :mod:`shiftinv.workbook.publish`), style
- ``equivariance_plots``  notebooks 01, 02 and 05's per-phase equivariance
- ``robustness_plots``    notebooks 03, 04 and 06
- ``aliasing_plots``      notebook 05
- ``perceptual_plots``    notebooks 07-10
- ``explorer``            the aliasing explorer (pure panels + an ipywidgets view), notebook 05
- ``audit_plots``         the shift audit's figures and report publishing, notebook 11 and ``shiftinv-audit``

The main names are exported here (``from shiftinv.viz import ...``) and imported on first
use; inside the library, modules import modules (see :mod:`shiftinv._lazy`).
"""

from .._lazy import lazy_exports

_EXPORTS = {
    "save_figure": "figures", "set_style": "figures", "use_profile": "figures", "record_sources": "figures",
    "explorer_widget": "explorer",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

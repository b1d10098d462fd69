"""Figures: saving and style, the plots of each part of the workbook, the explorer widget.

- ``figures``             ``save_figure`` (PNG + PDF + the data behind it, published by
                          :mod:`shiftinv.workbook.publish`), style
- ``equivariance_plots``  notebooks 01, 02 and 05's per-phase equivariance
- ``robustness_plots``    notebooks 03, 04 and 06
- ``aliasing_plots``      notebook 05
- ``perceptual_plots``    notebooks 07-10
- ``explorer``            the aliasing explorer (pure panels + an ipywidgets view), notebook 05
"""

"""Shifts and what they do to a network (the measurement half of notebooks 01, 02 and 04-06).

- ``translation``    shift operators for every protocol (mosaic, circular, zero/mean canvas, crop)
- ``geometric``      rotation and scaling with the authors' scale list and resize rule (notebook 06)
- ``engine``         the batched sweep engine (many heads, many shifts per forward pass, resumable,
                     ``torch.distributed``; ``sweep``, ``sweep_models``); ``sweep_result`` what it returns
- ``invariance``     invariance and equivariance measures (one relative-change measure for all)
- ``relative_loss``  the paper's "average relative loss" and every candidate reading of it
- ``periodicity``    spectra of responses over shifts, energy at the predicted periods, exact periods
- ``primer``         the toy networks of notebook 01

The main names are exported here (``from shiftinv.shifts import ...``) and imported on first
use; inside the library, modules import modules (see :mod:`shiftinv._lazy`).
"""

from .._lazy import lazy_exports

_EXPORTS = {
    # translation: shift operators and shift lists
    "translate": "translation", "shift_grid": "translation", "diagonal_shifts": "translation", "MODES": "translation",
    # engine, sweep_result: the batched sweep and what it returns
    "sweep": "engine", "sweep_models": "engine", "SweepResult": "sweep_result",
    # invariance, relative_loss, periodicity, geometric
    "relative_change": "invariance", "consistency": "invariance", "expected_consistency": "invariance",
    "response_map": "invariance", "response_profile": "invariance",
    "relative_loss_table": "relative_loss", "RELATIVE_LOSS_DEFINITIONS": "relative_loss",
    "spectrum_1d": "periodicity", "fundamental_period": "periodicity", "predicted_period": "periodicity",
    "periodicity_table": "periodicity",
    "rotate": "geometric", "rescale": "geometric", "evaluate_transforms": "geometric",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

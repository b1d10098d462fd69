"""The classification study of notebooks 03-06: what is trained, on what, and the tables made from it.

- ``profiles``      a profile (demo, natural, cifar, paper): data, backbone, sizes and recipe in one object
- ``datasets``, ``digits``  the datasets with their splits (``digits``: digits on a canvas)
- ``feature_data``, ``training``  batches and trunk features; the training loop, cached and resumable
- ``modelset``      every trunk and head of a profile, trained or loaded (notebook 03)
- ``analysis``      translation sweeps of the model set and the robustness tables (notebooks 03-04)
- ``intervals``     bootstrap intervals and head-seed spreads of the claims
- ``aliasing``, ``depth_heads``  notebook 05's settings, sweeps and periods; GAP heads at every depth
- ``rotscale``      notebook 06's rotation and scaling protocols
- ``authors``       the authors' result files, read safely and converted to the workbook's conventions

The main names are exported here (``from shiftinv.study import ...``) and imported on first
use; inside the library, modules import modules (see :mod:`shiftinv._lazy`).
"""

from .._lazy import lazy_exports

_EXPORTS = {
    "Profile": "profiles", "get_profile": "profiles", "profile_from_params": "profiles",
    "ModelSet": "modelset", "train_or_load_models": "modelset", "load_data": "modelset",
    "translation_sweep": "analysis", "robustness_table": "analysis",
    "TrainConfig": "training", "fit": "training", "train_or_load": "training",
    "accuracy_intervals": "intervals", "sweep_intervals": "intervals",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

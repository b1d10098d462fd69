"""Running the workbook: where things are, how results are kept, how notebooks run.

- ``paths``        folders resolved from the package location (figures, results, data)
- ``cache``        atomic writes, safe loading (``weights_only=True``), code versions, config-keyed caching
- ``runtime``      seeds, threads, devices, mixed precision, progress bars
- ``checkpoints``  checkpoint-and-resume and divergence checks shared by every training loop
- ``runner``, ``parameters``  ``make figures``: the notebooks through papermill, parameters checked first
- ``student``      student versions of the notebooks (solutions stripped)
- ``imageio``      reading image files: errors name the file, a folder keeps its good files
- ``labsetup``     JupyterLab set-up and its check
- ``claims``       the result sentences, each decided on the data's intervals (holds / does not hold / undecided)
- ``see``          "what to see" after each figure, read from the figure's own data file
- ``readme``       the README's generated results blocks
- ``rerun``        does a rerun land inside the intervals a run printed, and keep its verdicts?

The main names are exported here (``from shiftinv.workbook import ...``) and imported on first
use; inside the library, modules import modules (see :mod:`shiftinv._lazy`).
"""

from .._lazy import lazy_exports

_EXPORTS = {
    "data_dir": "paths", "results_dir": "paths",
    "cached": "cache", "atomic_torch_save": "cache", "safe_torch_load": "cache", "code_version": "cache",
    "seed_everything": "runtime", "default_device": "runtime",
    "record_sources": "publish", "publish_folder": "publish",
    "run_notebook": "runner", "list_notebooks": "runner", "write_student_versions": "student",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

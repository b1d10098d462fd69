"""Perceptual metrics on the invariant backbones (notebooks 07-10).

- ``metrics``          LPIPS-style metrics on any VGG trunk (LPIPS, the paper's baseline, the GAP metric),
                       PSNR and SSIM
- ``profiles``         perceptual profiles: data, backbone, sizes and recipe of notebooks 07-10 in one object
- ``zoo``              the metric zoo built from a profile; notebook 07's tables
- ``evaluate``         scoring image pairs and stimuli; SRCC under shifts (notebook 10)
- ``metric_training``  training the metrics' weights (the authors' recipes and LPIPS's)
- ``iqa``, ``images``, ``stimuli``  IQA datasets in their official layouts; reading images;
                       synthetic stimuli for the embedded demo
- ``iqa_evaluation``   notebook 08's pipeline (KADID-10k, TID)
- ``raid``             notebook 09's pipeline (RAID, both anchor protocols)
- ``stats``            correlations, bootstrap intervals, tests comparing metrics

The main names are exported here (``from shiftinv.perceptual import ...``) and imported on first
use; inside the library, modules import modules (see :mod:`shiftinv._lazy`).
"""

from .._lazy import lazy_exports

_EXPORTS = {
    "PerceptualMetric": "metrics", "LinearTapMetric": "metrics", "GAPMetric": "metrics", "psnr": "metrics",
    "ssim": "metrics",
    "PerceptualProfile": "profiles", "get_perceptual_profile": "profiles", "profile_zoo": "zoo", "metric_zoo": "zoo",
    "evaluate_pairs": "evaluate", "evaluate_stimuli": "evaluate", "srcc_under_shifts": "evaluate",
    "MetricTrainConfig": "metric_training", "train_metric": "metric_training",
    "srcc": "stats", "krcc": "stats", "plcc": "stats", "bootstrap_ci": "stats",
    "load_image": "images",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

"""Models (every notebook from 02 on): the VGG-16 trunk with heads at every depth, and its parts.

- ``layers``      BlurPool, max-blur-pool, APS pooling, circular shifts (the anti-aliasing layers)
- ``vgg``         the VGG-16 trunk with named taps, the heads (flatten, final/multi GAP, FC), builders
- ``pretrained``  weights: torchvision enums and state-dict files, the HED trunk, Keras ``.h5`` files,
                  the input normalisation each set of weights expects
- ``accounting``  parameter counts, per-layer tables and the paper's headline reductions (notebook 02)

The main names are exported here (``from shiftinv.models import ...``) and imported on first
use; inside the library, modules import modules (see :mod:`shiftinv._lazy`).
"""

from .._lazy import lazy_exports

_EXPORTS = {
    # vgg: the VGG-16 trunk with named taps, its heads, one-line builders
    "VGGTrunk": "vgg", "Head": "vgg", "VGGClassifier": "vgg", "build_trunk": "vgg", "build_head": "vgg",
    "build_vgg16": "vgg", "HEAD_KINDS": "vgg", "POOL_TAPS": "vgg", "LPIPS_TAPS": "vgg",
    # layers: anti-aliasing pools
    "BlurPool": "layers", "MaxBlurPool": "layers", "APSPool": "layers",
    # pretrained, accounting
    "load_trunk_weights": "pretrained", "count_parameters": "accounting", "parameter_table": "accounting",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

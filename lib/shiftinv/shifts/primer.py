"""Toy networks and error measures for the equivariance/invariance primer (notebook 01).

A *toy CNN* is a stack of stages ``circular 3x3 conv -> ReLU -> downsample`` with
random (seeded) weights. All convolutions use circular padding, so that the
only thing that can break shift-equivariance is the downsampling, which is what
the primer is about. Shifts here are circular (``torch.roll``): positive ``dx``
moves content right.

Measures (all relative, dimensionless, on ``(N, C, H, W)`` tensors):

- :func:`toy_equivariance_error` -- how far ``f(shift(x, s))`` is from a shifted copy of
  ``f(x)``: ``min_k ||f(roll(x, s)) - roll(f(x), k)|| / ||f(x)||`` over the integer output
  shifts ``k`` nearest to ``s / stride``. Zero iff the output moved rigidly. (The per-layer,
  phase-resolved measure of a VGG trunk is :func:`shiftinv.shifts.invariance.equivariance_error`;
  both call :func:`shiftinv.shifts.invariance.relative_change`.)
- :func:`invariance_error` -- how much a global average pool of the output changes:
  ``||GAP f(roll(x, s)) - GAP f(x)|| / ||GAP f(x)||``.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

DOWNSAMPLERS = ("none", "maxpool", "stride", "blurpool")


def sample_image(size: int = 128) -> Tensor:
    """The scikit-image 'astronaut' photograph, resized to ``(1, 3, size, size)`` in [0, 1]."""
    from skimage import data, transform

    image = transform.resize(data.astronaut(), (size, size), anti_aliasing=True)  # (H, W, 3) float64
    return torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1).unsqueeze(0)


def roll(x: Tensor, dx: int, dy: int = 0) -> Tensor:
    """Circular shift of ``(..., H, W)`` by ``dx`` px right and ``dy`` px down
    (:func:`shiftinv.models.layers.circular_shift` with the primer's ``(dx, dy)`` order)."""
    from ..models.layers import circular_shift

    return circular_shift(x, dy, dx)


class Subsample(nn.Module):
    """Keep every second row and column: ``(N, C, H, W) -> (N, C, H/2, W/2)`` (naive striding)."""

    def forward(self, x: Tensor) -> Tensor:
        return x[..., ::2, ::2]


def _downsampler(kind: str, channels: int, blur_size: int) -> nn.Module:
    if kind == "none":
        return nn.Identity()
    if kind == "maxpool":
        return nn.MaxPool2d(2)
    if kind == "stride":
        return Subsample()
    if kind == "blurpool":
        from ..models.layers import MaxBlurPool

        return MaxBlurPool(filt_size=blur_size, circular=True)
    raise ValueError(f"unknown downsampler {kind!r}; choose one of {DOWNSAMPLERS}")


def toy_cnn(depth: int, down: str, channels: int = 8, blur_size: int = 3, seed: int = 0, in_channels: int = 3) -> nn.Sequential:
    """``depth`` stages of circular conv3x3 -> ReLU -> ``down``; total stride ``2**depth`` (1 for ``"none"``).

    Weights are drawn from a ``torch.Generator`` seeded with ``seed`` (no global RNG).
    """
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    generator = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    c_in = in_channels
    for _ in range(depth):
        conv = nn.Conv2d(c_in, channels, 3, padding=1, padding_mode="circular")
        with torch.no_grad():
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * math.sqrt(2.0 / (9 * c_in)))
            conv.bias.copy_(torch.randn(conv.bias.shape, generator=generator) * 0.05)
        layers += [conv, nn.ReLU(), _downsampler(down, channels, blur_size)]
        c_in = channels
    return nn.Sequential(*layers).eval()


def total_stride(net: nn.Sequential) -> int:
    """Product of the strides of the downsampling modules in a :func:`toy_cnn`."""
    return int(np.prod([1 if isinstance(m, nn.Identity) else 2 for m in net if not isinstance(m, (nn.Conv2d, nn.ReLU))]))


@torch.no_grad()
def toy_equivariance_error(net: nn.Module, x: Tensor, shifts: Sequence[int], stride: int) -> Tensor:
    """Relative distance of ``net(roll(x, s))`` to the nearest rigidly shifted ``net(x)``.

    Args:
        net: maps ``(N, C, H, W)`` to ``(N, C', H/stride, W/stride)``.
        x: input batch ``(N, C, H, W)``; ``H, W`` divisible by ``stride``.
        shifts: horizontal circular shifts ``s`` in pixels.
        stride: the network's total stride.

    Returns:
        ``(S,)``: for each ``s``, ``min_k ||net(roll(x, s)) - roll(net(x), k)|| / ||net(x)||``
        with ``k`` in ``{floor(s/stride), ceil(s/stride)}`` (just ``s/stride`` when it divides).
    """
    from .invariance import relative_change

    y0 = net(x)
    errors = []
    for s in shifts:
        ys = net(roll(x, int(s)))
        candidates = {math.floor(s / stride), math.ceil(s / stride)}
        errors.append(min(relative_change(y0, ys, expected=roll(y0, k)) for k in candidates))
    return torch.stack(errors)


@torch.no_grad()
def invariance_error(net: nn.Module, x: Tensor, shifts: Sequence[int]) -> Tensor:
    """``(S,)`` relative change of the global-average-pooled output under circular shifts ``s``."""
    from .invariance import relative_change

    g0 = net(x).mean(dim=(-2, -1))  # (N, C')
    return torch.stack([relative_change(g0, net(roll(x, int(s))).mean(dim=(-2, -1))) for s in shifts])


# ============================================================================ notebook 01 · primer

PRIMER_DOWNSAMPLERS = ("stride", "maxpool", "blurpool")


PRIMER_CHANNELS = 8  # channels of every toy network of notebook 01


def primer_phase_table(image: torch.Tensor, shifts: Sequence[int], seed: int, depths: Sequence[int] = (1, 3),
                       downsamplers: Sequence[str] = PRIMER_DOWNSAMPLERS) -> pd.DataFrame:
    """Equivariance error of toy networks with ``depth`` stride-2 stages, per downsampler and shift.

    Args:
        image: ``(1, 3, H, W)`` in [0, 1].
        shifts: circular shifts in pixels.
        seed: seed of the toy networks' weights.
    Returns:
        one row per (depth, downsampler, shift): ``depth``, ``downsampler``, ``shift_px``,
        ``relative_error`` (``primer.toy_equivariance_error`` with stride ``2**depth``, unitless).
    """
    rows = []
    for depth in depths:
        for down in downsamplers:
            net = toy_cnn(depth=depth, down=down, channels=PRIMER_CHANNELS, seed=seed)
            err = toy_equivariance_error(net, image, shifts, stride=2**depth)
            rows += [{"depth": depth, "downsampler": down, "shift_px": sft, "relative_error": float(e)}
                     for sft, e in zip(shifts, err)]
    return pd.DataFrame(rows)


def primer_gap_table(image: torch.Tensor, shifts: Sequence[int], seed: int,
                     depths: Sequence[int] = (0, 1, 2, 3)) -> pd.DataFrame:
    """Relative change of the GAP vector of toy max-pool networks (depth 0: no downsampling).

    Returns:
        one row per (total stride ``2**depth``, shift): ``stride``, ``shift_px``, ``gap_change`` (unitless).
    """
    rows = []
    for depth in depths:
        net = toy_cnn(depth=max(depth, 1), down="none" if depth == 0 else "maxpool",
                             channels=PRIMER_CHANNELS, seed=seed)
        err = invariance_error(net, image, shifts)
        rows += [{"stride": 2**depth, "shift_px": sft, "gap_change": float(e)} for sft, e in zip(shifts, err)]
    return pd.DataFrame(rows)


def primer_blur_table(image: torch.Tensor, shifts: Sequence[int], seed: int, gap: pd.DataFrame, depth: int = 3,
                      filter_sizes: Sequence[int] = (1, 2, 3, 5, 7)) -> pd.DataFrame:
    """Mean and worst GAP change of a ``depth``-stage BlurPool toy network per blur filter size.

    Args:
        gap: the table of :func:`primer_gap_table`, for the max-pool reference at stride ``2**depth``.
    Returns:
        one row per filter size: ``filter_size``, ``mean_gap_change``, ``max_gap_change`` and the
        max-pool reference ``maxpool_mean_gap_change`` (the same in every row).
    """
    rows = []
    for size_k in filter_sizes:
        net = toy_cnn(depth=depth, down="blurpool", blur_size=size_k, channels=PRIMER_CHANNELS, seed=seed)
        err = invariance_error(net, image, shifts)
        rows.append({"filter_size": size_k, "mean_gap_change": float(err.mean()), "max_gap_change": float(err.max())})
    maxpool_mean = float(gap[gap.stride == 2**depth].gap_change.mean())
    return pd.DataFrame(rows).assign(maxpool_mean_gap_change=maxpool_mean)

"""Downsampling layers that fight aliasing, and padding helpers.

- :class:`BlurPool` (Zhang 2019, "Making Convolutional Networks Shift-Invariant
  Again"): a depthwise, normalised binomial low-pass filter applied with stride 2.
- :class:`MaxBlurPool`: the anti-aliased replacement of ``MaxPool2d(2, 2)``:
  max-pool densely (stride 1), *then* blur and subsample.
- :class:`APSDownsample` (Chaman & Dokmanic 2021, "Truly shift-invariant CNNs"):
  of the four polyphase components of a stride-2 subsampling, keep the one with
  the largest l2 norm (per sample), so that the choice moves with the signal.
- :class:`APSPool`: max-pool at stride 1 (size kept by padding) followed by APS.

None of these layers has parameters (filters are non-persistent buffers), so a
VGG-16 built with them keeps torchvision's state-dict layout.
"""

from __future__ import annotations

import math
from typing import Any, Iterator, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PadMode = Literal["reflect", "zeros", "circular", "replicate"]


_PAD_MODES = ("reflect", "zeros", "circular", "replicate")


def binomial_filter_1d(size: int) -> Tensor:
    """Normalised binomial coefficients ``C(size-1, k) / 2**(size-1)``, shape ``(size,)``.

    ``size`` 1..7 as in Zhang (2019): 1 = no blur (plain subsampling), 2 = box,
    3 = [1, 2, 1] / 4, ... 7 = [1, 6, 15, 20, 15, 6, 1] / 64.
    """
    if not isinstance(size, int) or not 1 <= size <= 7:
        raise ValueError(f"blur filter size must be an integer in 1..7, got {size!r}")
    coeffs = torch.tensor([math.comb(size - 1, k) for k in range(size)], dtype=torch.float64)
    return (coeffs / coeffs.sum()).float()


def binomial_filter_2d(size: int) -> Tensor:
    """Outer product of :func:`binomial_filter_1d` with itself, shape ``(size, size)``, sums to 1."""
    f = binomial_filter_1d(size)
    return torch.outer(f, f)


def pad2d(x: Tensor, pads: tuple[int, int, int, int], mode: PadMode) -> Tensor:
    """Pad ``x`` (N, C, H, W) by ``(left, right, top, bottom)`` with ``mode``.

    ``mode`` is ``"reflect"``, ``"zeros"``, ``"circular"`` (periodic: the image is
    one tile of an infinite periodic plane) or ``"replicate"``.
    """
    if mode not in _PAD_MODES:
        raise ValueError(f"padding mode must be one of {_PAD_MODES}, got {mode!r}")
    if not any(pads):
        return x
    if mode == "zeros":
        return F.pad(x, pads, mode="constant", value=0.0)
    if mode == "reflect" and (max(pads[:2]) >= x.shape[-1] or max(pads[2:]) >= x.shape[-2]):
        raise ValueError(
            f"reflect padding {pads} needs a feature map larger than the pad, got {tuple(x.shape[-2:])}; "
            "use a larger input, a smaller blur filter, or blur_pad='zeros'/'circular'"
        )
    if mode == "circular" and max(pads[:2]) <= x.shape[-1] and max(pads[2:]) <= x.shape[-2]:
        return _circular_pad(x, pads)
    return F.pad(x, pads, mode=mode)  # reflect, replicate: PyTorch's kernels are as fast or faster (make bench);
    # a circular pad that wraps more than once: F.pad says what is wrong


def _wrap(x: Tensor, dim: int, side: str, n: int) -> Tensor:
    """The ``n`` rows (``dim=-2``) or columns (``dim=-1``) that circular padding puts before (``side="lo"``) or
    after (``"hi"``) ``x`` along ``dim``: the other end's."""
    size = x.shape[dim]
    return x.narrow(dim, size - n, n) if side == "lo" else x.narrow(dim, 0, n)


def _circular_pad(x: Tensor, pads: tuple[int, int, int, int]) -> Tensor:
    """``F.pad(x, pads, mode="circular")`` built with ``torch.cat`` of views: the same values, and 2-3x faster
    than ``F.pad`` on channels-last maps (which every bf16 trunk pass uses; ``make bench``)."""
    left, right, top, bottom = pads
    if top or bottom:
        parts = ([_wrap(x, -2, "lo", top)] if top else []) + [x] + ([_wrap(x, -2, "hi", bottom)] if bottom else [])
        x = torch.cat(parts, dim=-2)
    if left or right:
        parts = ([_wrap(x, -1, "lo", left)] if left else []) + [x] + ([_wrap(x, -1, "hi", right)] if right else [])
        x = torch.cat(parts, dim=-1)
    return x


class CircularConv2d(nn.Conv2d):
    """``nn.Conv2d`` with ``padding_mode="circular"`` whose padding is :func:`pad2d` (the same values as
    PyTorch's, faster on channels-last maps). The parameters and state dict are those of ``nn.Conv2d``;
    :func:`make_circular` turns an existing convolution into one without touching its weights."""

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:  # noqa: A002
        ph, pw = self.padding  # type: ignore[misc]
        return F.conv2d(pad2d(input, (pw, pw, ph, ph), "circular"), weight, bias, self.stride, 0, self.dilation,
                        self.groups)


def make_circular(conv: nn.Conv2d) -> nn.Conv2d:
    """``conv`` padding circularly, in place (same weights, same state dict): a :class:`CircularConv2d`."""
    if isinstance(conv.padding, str) or conv.padding_mode not in ("zeros", "circular"):
        raise ValueError(f"make_circular needs a convolution with numeric zero padding, got {conv}")
    conv.padding_mode = "circular"
    conv.__class__ = CircularConv2d
    return conv


def circular_shift(x: Tensor, dy: int, dx: int) -> Tensor:
    """Circular shift of ``x`` (..., H, W) by ``dy`` rows and ``dx`` columns (``torch.roll``)."""
    return torch.roll(x, shifts=(dy, dx), dims=(-2, -1))


class BlurPool(nn.Module):
    """Depthwise binomial blur followed by subsampling (Zhang 2019's ``BlurPool``).

    Input (N, C, H, W) -> output (N, C, H', W') with ``H' = floor((H - 1) / stride) + 1``
    (the blur pads ``(size-1)//2`` before and ``ceil((size-1)/2)`` after, as the
    reference implementation does). Works for any channel count.

    Args:
        filt_size: binomial filter size, 1..7 (1 = subsample without blur).
        stride: subsampling factor (2 in VGG).
        pad: ``"reflect"`` (Zhang's default), ``"zeros"``, ``"circular"``, ``"replicate"``.
    """

    def __init__(self, filt_size: int = 3, stride: int = 2, pad: PadMode = "reflect") -> None:
        super().__init__()
        if pad not in _PAD_MODES:
            raise ValueError(f"blur padding must be one of {_PAD_MODES}, got {pad!r}")
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        self.filt_size = filt_size
        self.stride = stride
        self.pad = pad
        self.pads = ((filt_size - 1) // 2, math.ceil((filt_size - 1) / 2)) * 2  # left, right, top, bottom
        self.register_buffer("filt", binomial_filter_2d(filt_size)[None, None], persistent=False)  # (1,1,k,k)

    def forward(self, x: Tensor) -> Tensor:  # (N, C, H, W) -> (N, C, H', W')
        channels = x.shape[1]
        weight = self.filt.to(dtype=x.dtype).expand(channels, 1, -1, -1)  # (C, 1, k, k) depthwise
        return F.conv2d(pad2d(x, self.pads, self.pad), weight, stride=self.stride, groups=channels)

    def extra_repr(self) -> str:
        return f"filt_size={self.filt_size}, stride={self.stride}, pad={self.pad!r}"


def dense_max2x2(x: Tensor) -> Tensor:
    """The max over every 2x2 window at stride 1, ``F.max_pool2d(x, 2, stride=1)``: (N, C, H, W) ->
    (N, C, H-1, W-1), the same values (NaN propagates). Without a gradient: three elementwise maxima of shifted
    views instead of the pooling kernel, which is several times slower on channels-last and strided maps
    (measured in ``benchmarks/pools.py``). With one (training): the pooling kernel, whose backward pass is 3-7x
    faster than the maxima's and sends a tied window's gradient to one input, as max pooling does."""
    if x.requires_grad and torch.is_grad_enabled():
        return F.max_pool2d(x, 2, stride=1)
    return torch.maximum(torch.maximum(x[..., :-1, :-1], x[..., :-1, 1:]), torch.maximum(x[..., 1:, :-1], x[..., 1:, 1:]))


class MaxBlurPool(nn.Module):
    """Anti-aliased max-pool: ``MaxPool2d(2, stride=1)`` then :class:`BlurPool` (stride 2).

    With ``circular=False`` this is Zhang's layer exactly (the dense max-pool has no
    padding, H -> H-1, then the blur pads with ``pad``): output ``floor(H/2)``.
    With ``circular=True`` the dense max-pool wraps around (H -> H) and the blur pads
    circularly, so the layer commutes with circular shifts by even amounts:
    output ``ceil(H/2)``.
    """

    def __init__(self, filt_size: int = 3, pad: PadMode = "reflect", circular: bool = False) -> None:
        super().__init__()
        self.circular = circular
        self.blur = BlurPool(filt_size, stride=2, pad="circular" if circular else pad)

    def forward(self, x: Tensor) -> Tensor:  # (N, C, H, W) -> (N, C, H/2, W/2)
        if self.circular:
            x = pad2d(x, (0, 1, 0, 1), "circular")
        return self.blur(dense_max2x2(x))


class APSDownsample(nn.Module):
    """Adaptive polyphase subsampling by 2 (Chaman & Dokmanic 2021).

    Input (N, C, H, W) with H, W even -> output (N, C, H/2, W/2): for each sample,
    the polyphase component ``x[:, :, i::2, j::2]`` (i, j in {0, 1}) with the largest
    l2 norm over (C, H/2, W/2). Ties go to the first component in the order
    (0,0), (0,1), (1,0), (1,1). A circular shift of the input therefore gives a
    circular shift of the output (no information about the phase is lost).
    """

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        if h % 2 or w % 2:
            raise ValueError(
                f"APS downsampling needs an even height and width, got {h}x{w}; "
                "use an input size that is a multiple of 2**(number of pools), e.g. 32 for pool5"
            )
        return _PolyphaseSelect.apply(x, self.phase(x))

    @staticmethod
    def norms(comps: list[Tensor]) -> Tensor:
        """l2 norm of each of the 4 polyphase components (each (N, C, H', W')) per sample, shape (N, 4)."""
        return torch.stack([torch.linalg.vector_norm(c, dim=(1, 2, 3)) for c in comps], dim=1)

    @classmethod
    def phase(cls, x: Tensor) -> Tensor:
        """Index 0..3 of the component APS keeps, per sample, shape (N,)."""
        return cls.norms([x[:, :, i::2, j::2] for i in (0, 1) for j in (0, 1)]).argmax(dim=1)


class _PolyphaseSelect(torch.autograd.Function):
    """``(x, idx) -> x[n, :, i::2, j::2]`` per sample n, with ``(i, j) = divmod(idx[n], 2)``: (N, C, H, W), (N,) ->
    (N, C, H/2, W/2), in ``x``'s memory format. The gradient flows back to the kept positions, zeros elsewhere.

    The same values as choosing among the four components with ``torch.where``, at a fraction of the cost:
    the samples are grouped by component and copied once, where three full-size ``where`` passes, their
    masked fills in the backward pass and four full-size slice gradients made APS training 2.6x slower
    than max pooling.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, idx: Tensor) -> Tensor:
        fmt = _memory_format(x)
        out = x[:, :, 0::2, 0::2].contiguous(memory_format=fmt)
        for k, rows in _rows_by_component(idx, first=1):
            i, j = divmod(k, 2)
            out[rows] = x[rows, :, i::2, j::2]
        ctx.save_for_backward(idx)
        ctx.shape, ctx.fmt = x.shape, fmt
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (idx,) = ctx.saved_tensors
        grad_x = torch.empty(ctx.shape, dtype=grad.dtype, device=grad.device, memory_format=ctx.fmt).zero_()
        for k, rows in _rows_by_component(idx, first=0):
            i, j = divmod(k, 2)
            grad_x[rows, :, i::2, j::2] = grad[rows]
        return grad_x, None


def _rows_by_component(idx: Tensor, first: int) -> Iterator[tuple[int, Tensor]]:
    """``(k, sample indices with idx == k)`` for the components ``first``..3 that some sample keeps."""
    for k in range(first, 4):
        rows = (idx == k).nonzero().squeeze(1)
        if rows.numel():
            yield k, rows


def _memory_format(x: Tensor) -> torch.memory_format:
    """``torch.channels_last`` for an NHWC map (that is not also NCHW-contiguous), else the contiguous format."""
    nhwc = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return torch.channels_last if nhwc else torch.contiguous_format


class APSPool(nn.Module):
    """Max-pool at stride 1 (size kept: pad right/bottom by one) followed by :class:`APSDownsample`.

    ``circular=True`` pads circularly (exact equivariance to circular shifts);
    otherwise the border is replicated (the max of a replicated edge stays local).
    Input (N, C, H, W), H and W even -> (N, C, H/2, W/2).
    """

    def __init__(self, circular: bool = True) -> None:
        super().__init__()
        self.circular = circular
        self.aps = APSDownsample()

    def forward(self, x: Tensor) -> Tensor:
        x = pad2d(x, (0, 1, 0, 1), "circular" if self.circular else "replicate")
        return self.aps(dense_max2x2(x))

    def extra_repr(self) -> str:
        return f"circular={self.circular}"

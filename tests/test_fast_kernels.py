"""The workbook's pooling and padding kernels give PyTorch's values exactly (they only take a faster path)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from shiftinv.models import layers, vgg


@pytest.mark.parametrize("mode", ["circular", "replicate", "reflect"])
@pytest.mark.parametrize("pads", [(1, 1, 1, 1), (0, 1, 0, 1), (2, 1, 0, 3), (1, 0, 2, 0)])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_pad2d_is_f_pad(mode: str, pads: tuple[int, int, int, int], channels_last: bool, dtype: torch.dtype) -> None:
    x = torch.randn(2, 5, 7, 9, generator=torch.Generator().manual_seed(0)).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    assert torch.equal(layers.pad2d(x, pads, mode), F.pad(x, pads, mode=mode))  # type: ignore[arg-type]


def test_dense_max_is_max_pool_at_stride_one_nan_included() -> None:
    x = torch.randn(3, 4, 9, 8, generator=torch.Generator().manual_seed(1)).contiguous(memory_format=torch.channels_last)
    x[0, 1, 3, 3] = float("nan")
    a, b = layers.dense_max2x2(x), F.max_pool2d(x, 2, stride=1)
    assert torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num())


def test_make_circular_keeps_the_weights_and_the_values() -> None:
    torch.manual_seed(0)
    ref = nn.Conv2d(4, 6, 3, padding=1, padding_mode="circular")
    conv = nn.Conv2d(4, 6, 3, padding=1)
    conv.load_state_dict(ref.state_dict())
    layers.make_circular(conv)
    x = torch.randn(2, 4, 8, 8)
    assert torch.equal(conv(x), ref(x)) and conv.state_dict().keys() == ref.state_dict().keys()
    with pytest.raises(ValueError, match="numeric zero padding"):
        layers.make_circular(nn.Conv2d(4, 6, 3, padding="same"))


def test_aps_pool_is_the_reference_rule() -> None:
    """Max-pool at stride 1 (padded right/bottom), then the polyphase component of largest norm."""
    for circular in (True, False):
        x = torch.randn(4, 3, 10, 12, generator=torch.Generator().manual_seed(2))
        xp = F.pad(x, (0, 1, 0, 1), mode="circular" if circular else "replicate")
        dense = F.max_pool2d(xp, 2, stride=1)
        comps = torch.stack([dense[:, :, i::2, j::2] for i in (0, 1) for j in (0, 1)], dim=1)
        ref = comps[torch.arange(4), comps.flatten(2).norm(dim=2).argmax(dim=1)]
        assert torch.equal(layers.APSPool(circular=circular)(x), ref)


def test_circular_trunk_uses_the_fast_convolution() -> None:
    trunk = vgg.build_trunk(width=1 / 16, pool="aps", circular=True)
    convs = [m for m in trunk.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(isinstance(m, layers.CircularConv2d) and m.padding_mode == "circular" for m in convs)


def _aps_by_where(x: torch.Tensor) -> torch.Tensor:
    """The APS rule written plainly: the four components, ``torch.where`` on the one of largest norm."""
    comps = [x[:, :, i::2, j::2] for i in (0, 1) for j in (0, 1)]
    idx = torch.stack([c.flatten(1).norm(dim=1) for c in comps], dim=1).argmax(dim=1).view(-1, 1, 1, 1)
    out = comps[0]
    for k in (1, 2, 3):
        out = torch.where(idx == k, comps[k], out)
    return out


@pytest.mark.parametrize("channels_last", [False, True])
def test_aps_selection_gives_the_values_gradient_and_layout_of_the_plain_rule(channels_last: bool) -> None:
    x = torch.randn(16, 3, 8, 10, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for n in range(16):  # sample n keeps component n % 4
        i, j = divmod(n % 4, 2)
        x[n, :, i::2, j::2] *= 3
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    phases = layers.APSDownsample.phase(x)
    assert len(set(phases.tolist())) == 4, "the test needs samples keeping every component"
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, ref = layers.APSDownsample()(a), _aps_by_where(b)
    assert torch.equal(out, ref)
    assert out.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    weights = torch.randn(ref.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    (out * weights).sum().backward()
    (ref * weights).sum().backward()
    assert torch.equal(a.grad, b.grad)
    assert torch.autograd.gradcheck(layers.APSDownsample(), (x[:4].clone().requires_grad_(),))


def test_dense_max_in_training_is_max_pooling_values_and_gradient() -> None:
    x = torch.randn(2, 3, 9, 8, generator=torch.Generator().manual_seed(5)).contiguous(memory_format=torch.channels_last)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, ref = layers.dense_max2x2(a), F.max_pool2d(b, 2, stride=1)
    assert torch.equal(out, ref)
    out.square().sum().backward()
    ref.square().sum().backward()
    assert torch.equal(a.grad, b.grad)
    with torch.no_grad():  # the inference path (elementwise maxima) gives the same values
        assert torch.equal(layers.dense_max2x2(x), ref.detach())

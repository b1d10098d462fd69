"""Shift operators against independent references (torch.roll, numpy.pad)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shiftinv.shifts import translation
from shiftinv.shifts.translation import MODES, diagonal_shifts, shift_grid, shift_windows, subpixel_shift, translate


@pytest.fixture()
def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(3, 2, 9, 12, generator=g, dtype=torch.float64)  # odd H, even W on purpose


SHIFTS = [(0, 0), (1, 0), (0, 1), (-3, 2), (5, -4), (12, 9), (-12, -9), (7, 9)]


@pytest.mark.parametrize("dx,dy", SHIFTS)
def test_circular_equals_roll(images: torch.Tensor, dx: int, dy: int) -> None:
    out = translate(images, dx, dy, mode="circular")
    assert torch.equal(out, torch.roll(images, shifts=(dy, dx), dims=(-2, -1)))


@pytest.mark.parametrize("dx,dy", SHIFTS)
def test_mosaic_equals_numpy_symmetric_pad_and_crop(images: torch.Tensor, dx: int, dy: int) -> None:
    _, _, h, w = images.shape
    padded = np.pad(images.numpy(), ((0, 0), (0, 0), (h, h), (w, w)), mode="symmetric")
    # content moves right/down by (dx, dy): the window starts at (h - dy, w - dx)
    expected = padded[:, :, h - dy : 2 * h - dy, w - dx : 2 * w - dx]
    assert np.array_equal(translate(images, dx, dy, mode="mosaic").numpy(), expected)


def test_direction_convention(images: torch.Tensor) -> None:
    for mode in ("mosaic", "circular", "zero", "mean"):
        out = translate(images, 2, 1, mode=mode)
        assert torch.equal(out[..., 1:, 2:], images[..., :-1, :-2]), mode


def test_zero_and_mean_canvas_fill(images: torch.Tensor) -> None:
    out = translate(images, -3, 2, mode="zero")
    assert torch.equal(out[..., :2, :], torch.zeros_like(out[..., :2, :]))
    assert torch.equal(out[..., :, -3:], torch.zeros_like(out[..., :, -3:]))
    out = translate(images, 4, 0, mode="mean")
    mean = images.mean(dim=(-2, -1), keepdim=True).expand(-1, -1, 9, 4)
    assert torch.allclose(out[..., :4], mean)


def test_larger_canvas_centres_the_image(images: torch.Tensor) -> None:
    out = translate(images, 3, -2, mode="zero", out_size=(21, 24))
    top, left = (21 - 9) // 2 - 2, (24 - 12) // 2 + 3
    assert out.shape == (3, 2, 21, 24)
    assert torch.equal(out[..., top : top + 9, left : left + 12], images)
    assert torch.isclose(out.abs().sum(), images.abs().sum())
    with pytest.raises(ValueError, match="fully inside"):
        translate(images, 7, 0, mode="zero", out_size=(21, 24))


def test_crop_moves_window_inside_larger_source(images: torch.Tensor) -> None:
    out = translate(images, 0, 0, mode="crop", out_size=(5, 6))
    assert torch.equal(out, images[..., 2:7, 3:9])
    out = translate(images, 1, -2, mode="crop", out_size=(5, 6))
    assert torch.equal(out, images[..., 4:9, 2:8])
    with pytest.raises(ValueError, match="larger source"):
        translate(images, 4, 0, mode="crop", out_size=(5, 6))
    with pytest.raises(ValueError, match="out_size"):
        translate(images, 0, 0, mode="crop")


@pytest.mark.parametrize("mode", MODES)
def test_zero_shift_is_identity(images: torch.Tensor, mode: str) -> None:
    if mode == "crop":
        assert torch.equal(translate(images, 0, 0, mode, out_size=(9, 12)), images)
    else:
        assert torch.equal(translate(images, 0, 0, mode), images)


@pytest.mark.parametrize("dx,dy", [(0, 0), (3, -2), (-5, 4), (12, 9)])
def test_subpixel_by_integers_equals_integer_shifts(images: torch.Tensor, dx: int, dy: int) -> None:
    circ = subpixel_shift(images, float(dx), float(dy), boundary="circular")
    assert torch.allclose(circ, translate(images, dx, dy, "circular"), atol=1e-10)
    sym = subpixel_shift(images, float(dx), float(dy), boundary="symmetric")
    assert torch.allclose(sym, translate(images, dx, dy, "mosaic"), atol=1e-10)


def test_fractional_shifts_compose_and_interpolate() -> None:
    x = torch.linspace(0, 2 * np.pi, 33, dtype=torch.float64)[:-1]
    signal = torch.sin(3 * x).double().expand(1, 1, 4, 32).clone()  # band-limited along x
    half = translate(signal, 0.5, 0, mode="circular")
    assert torch.allclose(translate(half, 0.5, 0, mode="circular"), torch.roll(signal, 1, -1), atol=1e-10)
    expected = torch.sin(3 * (x - 0.5 * 2 * np.pi / 32)).double()
    assert torch.allclose(half[0, 0, 0], expected, atol=1e-10)
    assert translate(signal.float(), 0.25, 0.5, mode="mosaic").shape == signal.shape
    with pytest.raises(ValueError, match="integer shifts only"):
        translate(signal, 0.5, 0, mode="zero")


def test_shift_windows_batches_match_translate(images: torch.Tensor) -> None:
    grid = [(-2, 1), (0, 0), (3, 3)]
    for mode in ("mosaic", "circular", "zero", "mean"):
        out = shift_windows(images, grid, mode, channels_last=True)
        assert out.shape == (9, 2, 9, 12) and out.is_contiguous(memory_format=torch.channels_last)
        for s, (dx, dy) in enumerate(grid):
            assert torch.equal(out[s * 3 : (s + 1) * 3], translate(images, dx, dy, mode)), (mode, dx, dy)
    out = shift_windows(images, torch.tensor([(-2, 1), (0, 0), (3, 2)]), "crop", out_size=5)
    assert out.shape == (9, 2, 5, 5) and out.is_contiguous()


def test_bad_input_messages(images: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="unknown shift mode"):
        translate(images, 1, 1, mode="wrap")
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        translate(images[0], 1, 1)
    with pytest.raises(ValueError, match=r"\|dx\| <= 12"):
        translate(images, 13, 0, mode="mosaic")
    with pytest.raises(ValueError, match=r"\(S, 2\)"):
        shift_windows(images, [1, 2, 3])


def test_shift_sets() -> None:
    grid = shift_grid(50)
    assert len(grid) == 101 * 101 and grid[0] == (-50, -50) and grid[1] == (-49, -50) and (0, 0) in grid
    assert shift_grid((2, 1), step=2) == [(-2, 0), (0, 0), (2, 0)]
    assert shift_grid((3, 2), step=2) == [(dx, dy) for dy in (-2, 0, 2) for dx in (-2, 0, 2)]
    assert diagonal_shifts(-1, 1) == [(-1, -1), (0, 0), (1, 1)]
    idx = translation.symmetric_index(torch.arange(-4, 8), 4)
    assert idx.tolist() == [3, 2, 1, 0, 0, 1, 2, 3, 3, 2, 1, 0]


def test_shift_each_moves_every_image_by_its_own_shift(images: torch.Tensor) -> None:
    offsets = torch.tensor([(1, -2), (0, 0), (-12, 9)])
    for mode in ("mosaic", "circular", "zero", "mean"):
        out = translation.shift_each(images, offsets, mode)
        for n, (dx, dy) in enumerate(offsets.tolist()):
            assert torch.equal(out[n : n + 1], translate(images[n : n + 1], dx, dy, mode)), (mode, n)
    crop = translation.shift_each(images, [(1, 0), (0, 2), (-3, -2)], "crop", out_size=5)
    assert torch.equal(crop[2], images[2, :, 4:9, 6:11])
    with pytest.raises(ValueError, match="one \\(dx, dy\\) per image"):
        translation.shift_each(images, offsets[:2])

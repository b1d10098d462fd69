"""Each claim of the primer notebook (01) as a unit test of the functions it uses."""

from __future__ import annotations

import pytest
import torch

from shiftinv.shifts import primer


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return primer.sample_image(64)


def test_sample_image_shape_and_range(image: torch.Tensor) -> None:
    assert image.shape == (1, 3, 64, 64)
    assert 0.0 <= image.min() and image.max() <= 1.0 and image.std() > 0.1


def test_roll_moves_content_right_and_down() -> None:
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 1, 1] = 1
    y = primer.roll(x, dx=2, dy=1)
    assert y[0, 0, 2, 3] == 1 and y.sum() == 1


def test_convolution_is_equivariant_to_every_circular_shift(image: torch.Tensor) -> None:
    net = primer.toy_cnn(depth=2, down="none")
    err = primer.toy_equivariance_error(net, image, range(0, 17), stride=1)
    assert err.max() < 1e-5


@pytest.mark.parametrize("down", ["maxpool", "stride", "blurpool"])
def test_downsampling_is_equivariant_only_at_multiples_of_the_stride(image: torch.Tensor, down: str) -> None:
    net = primer.toy_cnn(depth=2, down=down)
    err = primer.toy_equivariance_error(net, image, range(0, 9), stride=4)
    assert err[[0, 4, 8]].max() < 1e-5  # multiples of 4: exact
    assert err[[1, 2, 3, 5, 6, 7]].min() > 1e-3  # other phases: broken


def test_gap_is_invariant_without_downsampling(image: torch.Tensor) -> None:
    net = primer.toy_cnn(depth=2, down="none")
    assert primer.invariance_error(net, image, range(0, 20, 3)).max() < 1e-5


def test_gap_after_pooling_is_invariant_only_with_period_of_total_stride(image: torch.Tensor) -> None:
    net = primer.toy_cnn(depth=3, down="maxpool")
    assert primer.total_stride(net) == 8
    err = primer.invariance_error(net, image, range(0, 17))
    assert err[[0, 8, 16]].max() < 1e-5
    assert err[[1, 3, 4, 5, 7, 12]].min() > 1e-4


def test_blurpool_reduces_gap_change(image: torch.Tensor) -> None:
    shifts = range(0, 9)
    plain = primer.invariance_error(primer.toy_cnn(depth=3, down="maxpool"), image, shifts).mean()
    blurred = primer.invariance_error(primer.toy_cnn(depth=3, down="blurpool", blur_size=5), image, shifts).mean()
    assert blurred < 0.7 * plain


def test_blurpool_filter_size_one_is_max_pooling(image: torch.Tensor) -> None:
    a = primer.toy_cnn(depth=2, down="maxpool")(image)
    b = primer.toy_cnn(depth=2, down="blurpool", blur_size=1)(image)
    torch.testing.assert_close(a, b)


def test_toy_cnn_rejects_unknown_downsampler() -> None:
    with pytest.raises(ValueError, match="unknown downsampler"):
        primer.toy_cnn(depth=1, down="avg")

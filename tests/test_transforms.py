"""Rotation/scaling protocols checked against numpy/scipy references."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.ndimage as ndi
import torch

from shiftinv.shifts import geometric


def _img(n: int = 2, c: int = 3, h: int = 13, w: int = 17, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_paper_grids() -> None:
    assert geometric.PAPER_ANGLES[0] == 0 and geometric.PAPER_ANGLES[-1] == 20
    assert len(geometric.PAPER_ANGLES) == 21
    assert len(geometric.PAPER_SCALES) == 20
    assert geometric.PAPER_SCALES[0] == pytest.approx(0.11)
    assert geometric.PAPER_SCALES[-1] == pytest.approx(1.98)
    assert np.all(np.diff(geometric.PAPER_SCALES) > 0)


def test_paper_scales_are_the_authors_list() -> None:
    # rows np.linspace(0, 98, 20, dtype=int) of escalas_imagenet.csv (see /work/shared/PAPER.md)
    authors = [0.11, 0.19, 0.29, 0.40, 0.48, 0.58, 0.68, 0.79, 0.90, 0.98,
               1.08, 1.18, 1.26, 1.40, 1.48, 1.58, 1.68, 1.76, 1.87, 1.98]
    assert list(geometric.PAPER_SCALES) == authors
    assert geometric.scale_list("paper") == geometric.PAPER_SCALES
    with pytest.raises(ValueError, match="unknown scale list"):
        geometric.scale_list("authors")
    lin = geometric.SCALE_LISTS["linspace"]
    np.testing.assert_allclose(lin, np.linspace(0.11, 1.98, 20), atol=5e-5)
    assert lin != geometric.PAPER_SCALES and 1.0 not in geometric.PAPER_SCALES
    # their sizes: int(256 * s), i.e. floor (28 px at 0.11, 506 px at 1.98)
    assert [int(256 * s) for s in geometric.PAPER_SCALES][:3] == [28, 48, 74]


def _tf_bilinear_reference(x: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """numpy transcription of TF's ResizeBilinear with half_pixel_centers=True (tf.image.resize default)."""

    def axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        lo = np.floor(pos)
        frac = pos - lo
        lo_i = np.clip(lo, 0, n_in - 1).astype(int)
        hi_i = np.clip(lo + 1, 0, n_in - 1).astype(int)
        return lo_i, hi_i, frac

    y0, y1, fy = axis(x.shape[-2], out_h)
    x0, x1, fx = axis(x.shape[-1], out_w)
    top = x[..., y0, :] * (1 - fy)[:, None] + x[..., y1, :] * fy[:, None]  # (..., out_h, W)
    return top[..., x0] * (1 - fx) + top[..., x1] * fx


@pytest.mark.parametrize("size", [(5, 7), (11, 13), (28, 28), (40, 33), (50, 64)])
def test_tf_resize_matches_half_pixel_bilinear(size: tuple[int, int]) -> None:
    x = _img(h=25, w=32)
    out = geometric.tf_resize(x, size).numpy()
    np.testing.assert_allclose(out, _tf_bilinear_reference(x.numpy(), *size), atol=1e-12)


def _authors_scale_mosaic(x: np.ndarray, factor: float, resize) -> np.ndarray:
    """Their scale_mosaic: resize to int(H*s), pad SYMMETRIC by the mosaic's own size until >= H, centre crop."""
    h, w = x.shape[-2:]
    m = resize(x, int(h * factor), int(w * factor))
    m = np.pad(m, ((0, 0), (0, 0), (m.shape[-2],) * 2, (m.shape[-1],) * 2), mode="symmetric")
    while m.shape[-2] < h:
        m = np.pad(m, ((0, 0), (0, 0), (m.shape[-2],) * 2, (m.shape[-1],) * 2), mode="symmetric")
    ih, iw = m.shape[-2] // 2 - h // 2, m.shape[-1] // 2 - w // 2
    return m[..., ih:ih + h, iw:iw + w]


@pytest.mark.parametrize("factor", geometric.PAPER_SCALES)
def test_rescale_tf_matches_authors_mosaic_crop(factor: float) -> None:
    x = _img(n=1, h=32, w=32)
    out = geometric.rescale(x, factor).numpy()  # default: resize="tf"
    np.testing.assert_allclose(out, _authors_scale_mosaic(x.numpy(), factor, _tf_bilinear_reference), atol=1e-12)


@pytest.mark.parametrize("factor", [0.11, 0.48, 0.9, 1.26])
def test_rescale_tf_odd_frame(factor: float) -> None:
    x = _img(n=1, h=27, w=31)
    np.testing.assert_allclose(geometric.rescale(x, factor, resize="tf").numpy(),
                               _authors_scale_mosaic(x.numpy(), factor, _tf_bilinear_reference), atol=1e-12)


def test_rescale_rules_differ_when_shrinking() -> None:
    x = _img(n=1, h=64, w=64)
    tf_out, aa_out = geometric.rescale(x, 0.29, "tf"), geometric.rescale(x, 0.29, "antialias")
    assert (tf_out - aa_out).abs().max() > 1e-3  # no prefilter vs antialiasing (and floor vs round)
    with pytest.raises(ValueError, match="unknown resize rule"):
        geometric.rescale(x, 0.5, "bicubic")


@pytest.mark.parametrize("pad", [0, 3, 13, 40, (5, 0, 2, 30)])
def test_mirror_pad_equals_numpy_symmetric(pad) -> None:
    x = _img(h=7, w=11)
    out = geometric.mirror_pad(x, pad).numpy()
    left, right, top, bottom = (pad,) * 4 if isinstance(pad, int) else pad
    ref = np.pad(x.numpy(), ((0, 0), (0, 0), (top, bottom), (left, right)), mode="symmetric")
    np.testing.assert_array_equal(out, ref)


def test_mirror_pad_negative_crops() -> None:
    x = _img(h=9, w=9)
    assert torch.equal(geometric.mirror_pad(x, (-2, -1, -3, 0)), x[..., 3:, 2:-1])


@pytest.mark.parametrize("angle", [1.0, 7.5, 20.0, -33.0, 90.0])
@pytest.mark.parametrize("shape", [(13, 17), (16, 16)])
def test_rotate_matches_scipy_reflect(angle: float, shape: tuple[int, int]) -> None:
    x = _img(h=shape[0], w=shape[1])
    out = geometric.rotate(x, angle).numpy()
    ref = np.stack([np.stack([ndi.rotate(ch, angle, reshape=False, order=1, mode="reflect") for ch in im])
                    for im in x.numpy()])
    np.testing.assert_allclose(out, ref, atol=1e-9)


def test_rotate_identity_and_full_turns() -> None:
    x = _img()
    assert torch.equal(geometric.rotate(x, 0), x)
    assert torch.equal(geometric.rotate(x, 360), x)
    # a quarter turn of a square image is an exact pixel permutation
    sq = _img(h=12, w=12)
    np.testing.assert_allclose(geometric.rotate(sq, 90).numpy(), np.rot90(sq.numpy(), k=1, axes=(2, 3)), atol=1e-9)


def test_rescale_identity_and_constant() -> None:
    x = _img()
    assert torch.equal(geometric.rescale(x, 1.0), x)
    const = torch.full((1, 3, 20, 20), 0.25, dtype=torch.float64)
    for f in geometric.PAPER_SCALES + geometric.LINSPACE_SCALES:
        for rule in geometric.RESIZE_RULES:
            out = geometric.rescale(const, f, rule)
            assert out.shape == const.shape
            torch.testing.assert_close(out, const)


def test_rescale_shrink_is_mirror_padded_resize() -> None:
    x = _img(h=20, w=20)
    out = geometric.rescale(x, 0.5, resize="antialias")  # 10x10 image in the centre, mirrored around it
    small = torch.nn.functional.interpolate(x, size=(10, 10), mode="bilinear", antialias=True, align_corners=False)
    torch.testing.assert_close(out[..., 5:15, 5:15], small)
    ref = np.pad(small.numpy(), ((0, 0), (0, 0), (5, 5), (5, 5)), mode="symmetric")
    np.testing.assert_allclose(out.numpy(), ref)
    # smaller than a third of the frame: the mirror pattern repeats (padding wider than the image)
    tiny = geometric.rescale(x, 0.11, resize="antialias")
    assert tiny.shape == x.shape and torch.isfinite(tiny).all()


@pytest.mark.parametrize("rule", geometric.RESIZE_RULES)
def test_rescale_grow_is_centre_crop(rule: str) -> None:
    x = _img(h=8, w=8)
    out = geometric.rescale(x, 2.0, rule)
    big = torch.nn.functional.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out, big[..., 4:12, 4:12])


def test_bad_input_errors() -> None:
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        geometric.rotate(torch.rand(3, 8, 8), 5)
    with pytest.raises(ValueError, match="floating point"):
        geometric.rescale(torch.zeros(1, 1, 8, 8, dtype=torch.uint8), 0.5)
    with pytest.raises(ValueError, match="positive"):
        geometric.rescale(_img(), 0)
    with pytest.raises(ValueError, match="unknown transform kind"):
        geometric.apply_transform(_img(), "shear", 1)
    with pytest.raises(ValueError, match="empty"):
        geometric.evaluate_transforms(torch.nn.Identity(), _img(), torch.zeros(2, dtype=torch.long), "scale", [])


class _CentreMass(torch.nn.Module):
    """Two-class 'classifier': is the bright square in the left half? Sensitive to rotation/scale."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.shape[-1]
        left = x[..., : w // 2].mean(dim=(1, 2, 3))
        right = x[..., w // 2:].mean(dim=(1, 2, 3))
        return 20 * torch.stack([left - right, right - left], dim=1)


def test_evaluate_transforms_table_and_summary() -> None:
    x = torch.zeros(4, 1, 16, 16)
    x[:2, :, 6:10, 1:5] = 1  # left
    x[2:, :, 6:10, 11:15] = 1  # right
    y = torch.tensor([0, 0, 1, 1])
    model = _CentreMass()
    rot = geometric.evaluate_transforms(model, x, y, "rotation", [0, 90, 180], batch_size=3)
    assert list(rot.columns) == ["kind", "value", "head", "accuracy", "loss", "n"]
    acc = dict(zip(rot["value"], rot["accuracy"]))
    assert acc[0.0] == 1.0 and acc[180.0] == 0.0  # half a turn swaps left and right
    heads = geometric.evaluate_transforms(lambda b: {"a": model(b), "b": -model(b)}, x, y, "scale", [1.0, 0.5])
    assert set(heads["head"]) == {"a", "b"} and len(heads) == 4
    summary = geometric.robustness_summary(pd.concat([rot, heads]))
    row = summary[(summary.kind == "rotation")].iloc[0]
    assert row.accuracy_identity == 1.0 and row.accuracy_worst == 0.0
    assert row.relative_drop == pytest.approx(1 - (1 + acc[90.0] + 0) / 3)
    with pytest.raises(ValueError, match="identity"):
        geometric.robustness_summary(rot[rot.value != 0])

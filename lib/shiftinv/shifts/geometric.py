"""Rotation and scaling protocols (the authors' code: 0..20 degrees, 20 scales 0.11..1.98).

The authors' code tests robustness beyond translation by rotating each test
image by 0..20 degrees and rescaling it by 20 factors between 0.11 and 1.98,
with mirror padding where the transformed image does not cover the frame and a
centre crop where it overflows it; the frame size never changes. Here:

- :func:`rotate` samples the rotated image with ``torch.nn.functional.grid_sample``
  (bilinear, ``padding_mode="reflection"``, ``align_corners=False``), which is
  the symmetric mirror padding (edge pixel repeated) of ``numpy.pad(mode="symmetric")``
  and gives the same numbers as ``scipy.ndimage.rotate(reshape=False, order=1,
  mode="reflect")`` (tested). The authors rotate the 3x3 mirror mosaic with
  ``cv2.warpAffine`` (bilinear, weights quantised to 1/32 px) about pixel
  ``(W//2, H//2)`` of the mosaic; here the centre is the geometric centre of the
  frame (half a pixel away on even sizes): a stated difference.
- :func:`rescale` has two resizing rules (``resize=``, :data:`RESIZE_RULES`):

  ``"tf"`` (default, the authors' code): the image is resized to
  ``floor(factor * H) x floor(factor * W)`` with :func:`tf_resize` (bilinear, no
  antialiasing, half-pixel centres: what ``tf.image.resize`` does by default),
  symmetric-padded by its own size until the mosaic covers the frame, and the
  centre ``H x W`` window is cut at ``(h//2 - H//2, w//2 - W//2)`` of the mosaic,
  i.e. the resized image's pixel ``(nh//2, nw//2)`` lands on ``(H//2, W//2)``.

  ``"antialias"`` (the workbook's own variant): ``round(factor * H)``, antialiased
  when shrinking, margins ``(H - nh) // 2`` (extra pixel at the bottom/right).
- :data:`PAPER_SCALES` are the authors' 20 factors, rows
  ``numpy.linspace(0, 98, 20, dtype=int)`` of their ``escalas_imagenet.csv``;
  :data:`LINSPACE_SCALES` the workbook's earlier ``numpy.linspace(0.11, 1.98, 20)``.
  Neither list contains the identity 1.0.
- :func:`evaluate_transforms` runs a classifier (or several heads sharing one
  trunk) over a list of angles or factors and returns accuracy and loss per
  value and head, as a tidy DataFrame.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from .translation import check_images, symmetric_index

#: Rotation angles of the paper's code, in degrees (0, 1, ..., 20).
PAPER_ANGLES: tuple[float, ...] = tuple(float(a) for a in range(21))


#: The authors' 20 scale factors: rows ``numpy.linspace(0, 98, 20, dtype=int)`` of
#: ``escalas_imagenet.csv`` (Rietta5/InvarianceTestIQA), as their scaling scripts select them.
PAPER_SCALES: tuple[float, ...] = (0.11, 0.19, 0.29, 0.40, 0.48, 0.58, 0.68, 0.79, 0.90, 0.98,
                                   1.08, 1.18, 1.26, 1.40, 1.48, 1.58, 1.68, 1.76, 1.87, 1.98)


#: The workbook's earlier choice, ``numpy.linspace(0.11, 1.98, 20)`` (before the authors' list was known).
LINSPACE_SCALES: tuple[float, ...] = tuple(round(float(s), 4) for s in np.linspace(0.11, 1.98, 20))


#: Named scale lists (notebook 06's ``SCALES`` parameter).
SCALE_LISTS: dict[str, tuple[float, ...]] = {"paper": PAPER_SCALES, "linspace": LINSPACE_SCALES}


def scale_list(name: str) -> tuple[float, ...]:
    """The named scale factors of :data:`SCALE_LISTS` (``"paper"``: the authors' 20; ``"linspace"``)."""
    if name not in SCALE_LISTS:
        raise ValueError(f"unknown scale list {name!r}; choose one of {tuple(SCALE_LISTS)}")
    return SCALE_LISTS[name]


#: Resizing rules of :func:`rescale`: the authors' TF default, or the workbook's antialiased one.
RESIZE_RULES: tuple[str, ...] = ("tf", "antialias")


#: Transform kinds understood by :func:`apply_transform`.
TRANSFORM_KINDS: tuple[str, ...] = ("rotation", "scale")


Predict = Callable[[Tensor], Mapping[str, Tensor]]


def mirror_pad(images: Tensor, pad: int | Sequence[int]) -> Tensor:
    """Symmetric mirror padding of any width (``numpy.pad(mode="symmetric")`` on H and W).

    The mirrored extension is periodic (period ``2 H``), so widths larger than the
    image work too (needed to shrink an image to 0.11 of its size).

    Args:
        images: ``(N, C, H, W)``.
        pad: one width for all sides, or ``(left, right, top, bottom)`` as in ``F.pad``;
            negative widths crop.

    Returns:
        ``(N, C, H + top + bottom, W + left + right)``.
    """
    check_images(images, floating=True)
    if isinstance(pad, int):
        left = right = top = bottom = pad
    else:
        if len(pad) != 4:
            raise ValueError(f"pad must be an int or (left, right, top, bottom), got {pad!r}")
        left, right, top, bottom = (int(p) for p in pad)
    h, w = images.shape[-2:]
    if h + top + bottom < 1 or w + left + right < 1:
        raise ValueError(f"padding {pad!r} leaves nothing of a {h}x{w} image")
    rows = symmetric_index(torch.arange(-top, h + bottom, device=images.device), h)  # (H',) in [0, H)
    cols = symmetric_index(torch.arange(-left, w + right, device=images.device), w)
    return images.index_select(-2, rows).index_select(-1, cols)


def rotate(images: Tensor, angle_deg: float) -> Tensor:
    """Rotate about the image centre by ``angle_deg`` degrees, mirror padding, same size.

    The convention is that of ``scipy.ndimage.rotate(img, angle, reshape=False)``:
    output pixel ``(y, x)`` samples the input at ``c + R(angle) (p - c)`` in
    ``(x, y)`` coordinates (positive angles turn the content counter-clockwise as
    displayed with the origin at the top left). Bilinear interpolation; positions
    outside the image read the symmetric mirror image.

    Args:
        images: ``(N, C, H, W)`` float.
        angle_deg: angle in degrees (any real value).

    Returns:
        ``(N, C, H, W)``, same dtype and device.
    """
    check_images(images, floating=True)
    if not math.isfinite(float(angle_deg)):
        raise ValueError(f"angle must be a finite number of degrees, got {angle_deg!r}")
    if float(angle_deg) % 360 == 0:
        return images.clone()
    n, _, h, w = images.shape
    theta = math.radians(float(angle_deg))
    c, s = math.cos(theta), math.sin(theta)
    # affine_grid works in normalised coordinates ([-1, 1] over W and H, align_corners=False);
    # a rotation in pixel units becomes anisotropic there when H != W.
    mat = torch.tensor([[c, -s * h / w, 0.0], [s * w / h, c, 0.0]], dtype=images.dtype, device=images.device)
    grid = F.affine_grid(mat.expand(n, 2, 3), list(images.shape), align_corners=False)  # (N, H, W, 2)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def tf_resize(images: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize as ``tf.image.resize(images, size)`` does by default.

    TensorFlow 2's default (``method="bilinear"``, ``antialias=False``) samples at
    half-pixel centres: output pixel ``i`` reads input position ``(i + 0.5) * in / out - 0.5``,
    clamped at the border, and interpolates linearly without any prefilter, also when
    shrinking. ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False,
    antialias=False)`` implements the same rule (``tests/test_transforms.py`` checks it
    against a numpy transcription of the formula), so the two agree to float rounding.

    Args:
        images: ``(N, C, H, W)`` float.
        size: output ``(h, w)`` in pixels.

    Returns:
        ``(N, C, h, w)``.
    """
    check_images(images, floating=True)
    h, w = (int(v) for v in size)
    if h < 1 or w < 1:
        raise ValueError(f"resize target must be at least 1x1 px, got {size!r}")
    return F.interpolate(images, size=(h, w), mode="bilinear", align_corners=False, antialias=False)


def rescale(images: Tensor, factor: float, resize: str = "tf") -> Tensor:
    """Zoom about the centre by ``factor``, keeping the frame size.

    ``resize="tf"`` (the authors' code): resize to ``floor(factor * H) x floor(factor * W)``
    with :func:`tf_resize` (no antialiasing); place the resized image's pixel
    ``(nh // 2, nw // 2)`` on the frame's ``(H // 2, W // 2)``, filling the rest by symmetric
    mirroring (what their repeated ``tf.pad(mode="SYMMETRIC")`` by the mosaic's own size and
    centre crop give) or cropping (factor > 1).

    ``resize="antialias"`` (the workbook's own variant): resize to ``round(factor * H) x
    round(factor * W)`` (bilinear, antialiased when shrinking), then mirror-pad (factor < 1)
    or centre-crop (factor > 1) back to ``H x W``; odd margins put the extra pixel at the
    bottom/right.

    Args:
        images: ``(N, C, H, W)`` float.
        factor: scale factor > 0 (1 is the identity).
        resize: one of :data:`RESIZE_RULES`.

    Returns:
        ``(N, C, H, W)``.
    """
    check_images(images, floating=True)
    if resize not in RESIZE_RULES:
        raise ValueError(f"unknown resize rule {resize!r}; choose one of {RESIZE_RULES}")
    factor = float(factor)
    if not math.isfinite(factor) or factor <= 0:
        raise ValueError(f"scale factor must be a positive number, got {factor!r}")
    h, w = images.shape[-2:]
    top, left, nh, nw = scaled_box((h, w), factor, resize)
    if (nh, nw) == (h, w):
        return images.clone()
    if resize == "tf":
        resized = tf_resize(images, (nh, nw))  # (N, C, nh, nw)
    else:
        resized = F.interpolate(images, size=(nh, nw), mode="bilinear", align_corners=False,
                                antialias=factor < 1)  # (N, C, nh, nw)
    return mirror_pad(resized, (left, w - nw - left, top, h - nh - top))


def scaled_box(size: tuple[int, int], factor: float, resize: str = "tf") -> tuple[int, int, int, int]:
    """Where :func:`rescale` puts the resized image in the frame: ``(top, left, nh, nw)`` in pixels.

    ``(nh, nw)`` is the resized size (``floor`` for ``"tf"``, ``round`` for ``"antialias"``, at
    least 1); ``(top, left)`` its top-left corner in the ``size = (H, W)`` frame (negative when
    it overflows the frame and is cropped).
    """
    if resize not in RESIZE_RULES:
        raise ValueError(f"unknown resize rule {resize!r}; choose one of {RESIZE_RULES}")
    h, w = (int(v) for v in size)
    if resize == "tf":
        nh, nw = max(1, math.floor(h * factor)), max(1, math.floor(w * factor))
        return h // 2 - nh // 2, w // 2 - nw // 2, nh, nw
    nh, nw = max(1, round(h * factor)), max(1, round(w * factor))
    return (h - nh) // 2, (w - nw) // 2, nh, nw


def apply_transform(images: Tensor, kind: str, value: float, resize: str = "tf") -> Tensor:
    """``rotate(images, value)`` for ``kind="rotation"``, ``rescale(images, value, resize)`` for ``"scale"``."""
    if kind == "rotation":
        return rotate(images, value)
    if kind == "scale":
        return rescale(images, value, resize)
    raise ValueError(f"unknown transform kind {kind!r}; choose one of {TRANSFORM_KINDS}")


def identity_value(kind: str) -> float:
    """The value of ``kind`` that leaves an image unchanged (0 degrees, factor 1)."""
    if kind not in TRANSFORM_KINDS:
        raise ValueError(f"unknown transform kind {kind!r}; choose one of {TRANSFORM_KINDS}")
    return 0.0 if kind == "rotation" else 1.0


@torch.no_grad()
def evaluate_transforms(
    predict: Predict | torch.nn.Module,
    images: Tensor,
    labels: Tensor,
    kind: str,
    values: Iterable[float],
    batch_size: int = 256,
    device: torch.device | str | None = None,
    progress: bool = False,
    resize: str = "tf",
) -> pd.DataFrame:
    """Accuracy and cross-entropy of each head on transformed copies of a test set.

    Args:
        predict: ``images (B, C, H, W) -> {head: logits (B, K)}`` (several heads
            sharing one trunk evaluated once), or a single ``nn.Module`` returning
            logits (reported as head ``"model"``).
        images: ``(N, C, H, W)`` test images (kept on their device; batches go to ``device``).
        labels: ``(N,)`` int64 class indices.
        kind: ``"rotation"`` (values in degrees) or ``"scale"`` (factors).
        values: the angles or factors to test.
        batch_size: images per forward pass.
        device: where the transforms and the model run (default: the images' device).
        resize: resizing rule of the scale protocol (:data:`RESIZE_RULES`; ignored for rotation).

    Returns:
        DataFrame with one row per (value, head): ``kind, value, head, accuracy,
        loss, n`` (loss = mean cross-entropy in nats, accuracy in [0, 1]).
    """
    values = _check_transform_inputs(images, labels, kind, values, resize)
    predict = _as_predict(predict)
    device = torch.device(device) if device is not None else images.device
    from ..workbook.runtime import progress as progress_bar

    rows: list[dict] = []
    for value in progress_bar(values, desc=kind, disable=not progress):
        rows += _evaluate_one(predict, images, labels, kind, value, batch_size, device, resize)
    return pd.DataFrame(rows)


def _check_transform_inputs(images: Tensor, labels: Tensor, kind: str, values: Iterable[float],
                            resize: str) -> list[float]:
    """Raise ``ValueError`` on bad input; return the values as floats."""
    check_images(images, floating=True)
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
    if kind not in TRANSFORM_KINDS:
        raise ValueError(f"unknown transform kind {kind!r}; choose one of {TRANSFORM_KINDS}")
    if resize not in RESIZE_RULES:
        raise ValueError(f"unknown resize rule {resize!r}; choose one of {RESIZE_RULES}")
    values = [float(v) for v in values]
    if not values:
        raise ValueError("values is empty: give at least one angle or scale factor")
    return values


def _as_predict(predict: Predict | torch.nn.Module) -> Predict:
    """A plain ``nn.Module`` (put in eval mode) as a predict function with one head, ``"model"``."""
    if not isinstance(predict, torch.nn.Module):
        return predict
    module = predict
    module.eval()
    return lambda x: {"model": module(x)}


def _evaluate_one(predict: Predict, images: Tensor, labels: Tensor, kind: str, value: float, batch_size: int,
                  device: torch.device, resize: str) -> list[dict]:
    """The rows of one angle or factor: accuracy and mean cross-entropy of each head over all images."""
    correct: dict[str, float] = {}
    loss: dict[str, float] = {}
    for start in range(0, images.shape[0], batch_size):
        x = apply_transform(images[start:start + batch_size].to(device), kind, value, resize)
        y = labels[start:start + batch_size].to(device)
        for head, logits in predict(x).items():
            logits = logits.float()
            correct[head] = correct.get(head, 0.0) + (logits.argmax(1) == y).sum().item()
            loss[head] = loss.get(head, 0.0) + F.cross_entropy(logits, y, reduction="sum").item()
    n = images.shape[0]
    return [{"kind": kind, "value": value, "head": head, "accuracy": correct[head] / n, "loss": loss[head] / n,
             "n": n} for head in correct]


def robustness_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per (kind, head): accuracy at the identity, mean accuracy over the values, worst accuracy,
    and the mean relative accuracy drop ``1 - mean(acc) / acc(identity)``.

    Args:
        table: output of :func:`evaluate_transforms` (one or several kinds concatenated);
            each kind must include its identity value (0 degrees / factor 1).
    """
    rows = []
    for (kind, head), group in table.groupby(["kind", "head"], sort=False):
        ident = group[np.isclose(group["value"], identity_value(kind))]
        if ident.empty:
            raise ValueError(f"{kind} results for head {head!r} lack the identity value "
                             f"{identity_value(kind)}; include it in values")
        acc0 = float(ident["accuracy"].iloc[0])
        mean = float(group["accuracy"].mean())
        rows.append({"kind": kind, "head": head, "accuracy_identity": acc0, "accuracy_mean": mean,
                     "accuracy_worst": float(group["accuracy"].min()),
                     "relative_drop": 1 - mean / acc0 if acc0 > 0 else float("nan")})
    return pd.DataFrame(rows)

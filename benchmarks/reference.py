"""Straightforward references of the sweep engine and the shift mosaic: the benchmark's baseline
and what the tests compare the library against.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from shiftinv.shifts.sweep_result import FIELDS, SweepResult

# ----------------------------------------------------------------------------- images


def mosaic_numpy(images: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """The paper's shifted image, built independently with NumPy (the baseline's CPU path).

    The batch is mirror-padded by its own size (``numpy.pad(mode="symmetric")``: a 3 x 3
    mirrored mosaic) and the original-size window is cut so that the content moves right
    by ``dx`` and down by ``dy`` (the convention of :mod:`shiftinv.shifts.translation`).

    Args:
        images: (N, C, H, W) float32 array.
    Returns:
        (N, C, H, W) float32 array.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be an array (N, C, H, W), got shape {images.shape}")
    h, w = images.shape[-2:]
    if abs(dx) > w or abs(dy) > h:
        raise ValueError(f"the mosaic pads by the image size, so |dx| <= {w} and |dy| <= {h}; got ({dx}, {dy})")
    padded = np.pad(images, ((0, 0), (0, 0), (h, h), (w, w)), mode="symmetric")  # (N, C, 3H, 3W)
    return np.ascontiguousarray(padded[:, :, h - dy: 2 * h - dy, w - dx: 2 * w - dx])


def reference_sweep(
    models: Mapping[str, Callable[[Tensor], Tensor]],
    images: Tensor,
    labels: Tensor,
    shifts: Sequence[tuple[int, int]],
    mode: str = "mosaic",
    *,
    batch_size: int = 64,
    out_size: tuple[int, int] | int | None = None,
    shift: Callable[[Tensor, int, int], Tensor] | None = None,
    device: str | torch.device | None = None,
) -> SweepResult:
    """The straightforward loop: for every model, for every shift, translate and run the whole model.

    The baseline that :func:`sweep` is tested against and that :func:`benchmarks.bench.run_baseline`
    times (``models``: ``{name: model(x) -> logits}``, each run separately, in float32).

    Args:
        images: (N, C, H, W); labels: (N,) int.
        shift: ``shift(images, dx, dy) -> (N, C, h, w)`` shifted images (default
            :func:`shiftinv.shifts.translation.translate` in ``mode`` with ``out_size``).
        device: where the models run; each batch of ``batch_size`` shifted images is moved there
            (default: the images' device, no move).

    Returns:
        :class:`SweepResult` with (S, N) tensors on ``device`` (no logits).
    """
    from shiftinv.shifts.translation import translate

    if shift is None:
        shift = lambda x, dx, dy: translate(x, dx, dy, mode, out_size=out_size)  # noqa: E731
    labels = torch.as_tensor(labels).long()
    y = labels if device is None else labels.to(device)
    out = {f: {} for f in FIELDS}
    with torch.inference_mode():
        for name, model in models.items():
            rows: dict[str, list[Tensor]] = {f: [] for f in FIELDS}
            for dx, dy in shifts:
                x = shift(images, dx, dy)
                logits = torch.cat([model(x[i : i + batch_size] if device is None else x[i : i + batch_size].to(device))
                                    for i in range(0, len(x), batch_size)]).float()
                pred = logits.argmax(1)
                rows["loss"].append(F.cross_entropy(logits, y, reduction="none"))
                rows["pred"].append(pred)
                rows["correct"].append(pred == y)
                rows["p_true"].append(logits.softmax(1).gather(1, y[:, None])[:, 0])
            for f in FIELDS:
                out[f][name] = torch.stack(rows[f])
    return SweepResult(torch.as_tensor(shifts).long().reshape(-1, 2), labels, mode,
                       out["loss"], out["correct"], out["pred"], out["p_true"], {}, {"reference": True})

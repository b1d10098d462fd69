"""Translation operators on batched images, for every protocol used in the literature.

Convention (all modes): a shift ``(dx, dy)`` moves the *content* right by ``dx``
and down by ``dy`` pixels, i.e. ``out[..., y, x] = in[..., y - dy, x - dx]``
wherever the source pixel exists. Shifts are integers, except in the sub-pixel
path (Fourier phase shift) taken automatically by ``"mosaic"`` and
``"circular"`` for fractional values.

Modes (``MODES``):

- ``"mosaic"``   the paper's protocol: the image is mirror-padded by its own
  size on every side (``numpy.pad(mode="symmetric")``, edge pixel repeated: a
  3x3 mirrored mosaic) and the window of the original size is taken at the
  shifted offset. ``|dx| <= W`` and ``|dy| <= H``. (The authors' code takes the
  window at offset ``(H + desp_h, W + desp_v)``, which moves content *up/left*
  for positive values: their ImageNet key ``(desp_h, desp_v)`` is ``(-dy, -dx)`` here (their MNIST
  helper's is ``(dx, dy)``: :func:`shiftinv.study.authors.to_workbook_shift`);
  :mod:`shiftinv.study.authors` converts, tested against this function.)
- ``"circular"`` ``torch.roll``: exact for circular-padded, polyphase models.
- ``"zero"`` / ``"mean"``  canvas embedding (Azulay & Weiss; the paper's MNIST
  canvases): the image is pasted into a canvas filled with zeros or with its
  per-image, per-channel mean, at the centre plus the shift. The canvas has the
  image size unless ``canvas=(Hc, Wc)`` is given; the pasted image must stay
  fully inside a larger canvas, and may be partly cut off in a same-size one.
- ``"crop"``     Zhang's protocol: the input is a *larger* source (e.g. 288 px)
  and the output is the ``out_size`` window centred in it, moved by the shift
  (content moves right when the window moves left). The window must stay
  inside the source.

Two entry points: :func:`translate` (one shift) and :func:`shift_windows`
(``S`` shifts of ``N`` images at once, gathered from the images on their own
device with a single indexing operation, the building block of
:mod:`shiftinv.shifts.engine`).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

MODES: tuple[str, ...] = ("mosaic", "circular", "zero", "mean", "crop")


# ----------------------------------------------------------------------------- helpers


def check_images(images: Tensor, floating: bool = False) -> None:
    """Raise ``ValueError`` unless ``images`` is a 4-D tensor ``(N, C, H, W)`` (and, with
    ``floating``, of a floating-point dtype, e.g. values in [0, 1])."""
    if not isinstance(images, Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a tensor (N, C, H, W), got {shape}; add a batch axis with images[None]")
    if floating and not images.is_floating_point():
        raise ValueError(f"images must be floating point (e.g. in [0, 1]), got dtype {images.dtype}; use x.float() / 255")


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown shift mode {mode!r}; choose one of {MODES}")


def _is_integer(value: float) -> bool:
    return float(value) == math.floor(float(value))


def symmetric_index(index: Tensor, size: int) -> Tensor:
    """Map integer positions (any range) to ``[0, size)`` by symmetric mirroring.

    Same as indexing ``numpy.pad(x, pad, mode="symmetric")`` (the edge sample is
    repeated: ``..., 1, 0 | 0, 1, ..., size-1 | size-1, size-2, ...``); the
    extension is periodic with period ``2 * size``.
    """
    period = 2 * size
    j = torch.remainder(index, period)
    return torch.where(j >= size, period - 1 - j, j)


def _fill_values(images: Tensor, mode: str) -> Tensor:
    """(N, C, 1, 1) canvas fill for ``"zero"`` / ``"mean"``."""
    if mode == "mean":
        return images.mean(dim=(-2, -1), keepdim=True)
    return torch.zeros(images.shape[:2] + (1, 1), dtype=images.dtype, device=images.device)


def _as_shift_tensor(shifts: Sequence[tuple[int, int]] | Tensor, device: torch.device) -> Tensor:
    s = torch.as_tensor(shifts, device=device)
    if s.dim() != 2 or s.shape[1] != 2:
        raise ValueError(f"shifts must be a sequence of (dx, dy) pairs, shape (S, 2); got shape {tuple(s.shape)}")
    if s.is_floating_point():
        if not torch.equal(s, s.round()):
            raise ValueError("shift_windows takes integer shifts only; use translate(..., dx, dy) for sub-pixel shifts")
        s = s.round()
    return s.long()


# ----------------------------------------------------------------------------- batched windows


def window_indices(
    shifts: Tensor, mode: str, src_h: int, src_w: int, out_h: int, out_w: int, validate: bool = True
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """Row/column source indices (S, out_h) / (S, out_w) and in-range masks (canvas modes).

    ``validate=False`` skips the range checks (they synchronise a GPU with the host).
    """
    dx, dy = shifts[:, 0:1], shifts[:, 1:2]  # (S, 1)
    ys = torch.arange(out_h, device=shifts.device)[None, :]  # (1, h)
    xs = torch.arange(out_w, device=shifts.device)[None, :]
    if mode == "mosaic":
        if validate and ((dx.abs() > src_w).any() or (dy.abs() > src_h).any()):
            raise ValueError(
                f"mode 'mosaic' pads by the image size ({src_h}x{src_w}), so |dx| <= {src_w} and |dy| <= {src_h}; "
                f"got shifts up to |dx|={int(dx.abs().max())}, |dy|={int(dy.abs().max())}"
            )
        return symmetric_index(ys - dy, src_h), symmetric_index(xs - dx, src_w), None, None
    if mode == "circular":
        return torch.remainder(ys - dy, src_h), torch.remainder(xs - dx, src_w), None, None
    if mode == "crop":
        top = (src_h - out_h) // 2 - dy  # (S, 1): window moves up when content moves down
        left = (src_w - out_w) // 2 - dx
        if validate and ((top < 0).any() or (left < 0).any() or (top + out_h > src_h).any() or (left + out_w > src_w).any()):
            raise ValueError(
                f"mode 'crop': a {out_h}x{out_w} window centred in a {src_h}x{src_w} source can move by at most "
                f"{(src_h - out_h) // 2} px vertically and {(src_w - out_w) // 2} px horizontally (less on the far "
                f"side when the margin is odd); got |dx| up to {int(dx.abs().max())}, |dy| up to "
                f"{int(dy.abs().max())}. Give a larger source or a smaller out_size"
            )
        return top + ys, left + xs, None, None
    # canvas modes: the image's top-left corner sits at the centred offset plus the shift
    top = (out_h - src_h) // 2 + dy
    left = (out_w - src_w) // 2 + dx
    rows, cols = ys - top, xs - left  # source position of each canvas pixel
    if validate and (out_h > src_h or out_w > src_w):
        if (top < 0).any() or (left < 0).any() or (top + src_h > out_h).any() or (left + src_w > out_w).any():
            raise ValueError(
                f"mode {mode!r}: a {src_h}x{src_w} image in a {out_h}x{out_w} canvas must stay fully inside it; "
                f"got |dx| up to {int(dx.abs().max())}, |dy| up to {int(dy.abs().max())}. Use a larger canvas"
            )
    row_ok = (rows >= 0) & (rows < src_h)
    col_ok = (cols >= 0) & (cols < src_w)
    return rows.clamp(0, src_h - 1), cols.clamp(0, src_w - 1), row_ok, col_ok


def shift_windows(
    images: Tensor,
    shifts: Sequence[tuple[int, int]] | Tensor,
    mode: str = "mosaic",
    *,
    out_size: tuple[int, int] | int | None = None,
    channels_last: bool = False,
    validate: bool = True,
) -> Tensor:
    """All ``S`` shifts of ``N`` images at once: ``(S * N, C, h, w)``, shift-major.

    Row ``s * N + n`` is image ``n`` translated by ``shifts[s] = (dx, dy)``.
    The windows are gathered on ``images.device`` with one advanced-indexing
    operation (no padded copy, no Python loop over shifts, no host sync besides
    the range check of the shifts).

    Args:
        images: (N, C, H, W) float.
        shifts: (S, 2) integer ``(dx, dy)`` pairs (list or tensor).
        mode: one of :data:`MODES`.
        out_size: output ``(h, w)``: the window for ``"crop"`` (required), the
            canvas for ``"zero"``/``"mean"`` (default: image size); ignored otherwise.
        channels_last: return a ``channels_last`` tensor (free: the gather
            produces that layout; otherwise it is made contiguous NCHW).
        validate: check that every shift fits the mode (a host sync on GPU;
            the sweep checks all shifts once up front and passes ``False``).

    Returns:
        (S * N, C, h, w) tensor of the images' dtype.
    """
    return _gather(images, shifts, mode, out_size, channels_last, validate, per_image=False)


def shift_each(
    images: Tensor,
    shifts: Sequence[tuple[int, int]] | Tensor,
    mode: str = "mosaic",
    *,
    out_size: tuple[int, int] | int | None = None,
    channels_last: bool = False,
    validate: bool = True,
) -> Tensor:
    """Each image by its own shift: ``(N, C, h, w)``, row ``n`` moved by ``shifts[n]``.

    Same modes and arguments as :func:`shift_windows` (one gather, on the images'
    device); ``shifts`` is (N, 2). Use it for random-shift augmentation with offsets
    drawn from a ``torch.Generator``.
    """
    return _gather(images, shifts, mode, out_size, channels_last, validate, per_image=True)


def _gather(images: Tensor, shifts: Sequence[tuple[int, int]] | Tensor, mode: str, out_size: tuple[int, int] | int | None,
            channels_last: bool, validate: bool, per_image: bool) -> Tensor:
    check_images(images)
    _check_mode(mode)
    n, c, src_h, src_w = images.shape
    s = shifts if (not validate and isinstance(shifts, Tensor)) else _as_shift_tensor(shifts, images.device)
    if per_image and s.shape[0] != n:
        raise ValueError(f"shift_each needs one (dx, dy) per image: {n} images but {s.shape[0]} shifts")
    if isinstance(out_size, int):
        out_size = (out_size, out_size)
    if mode == "crop":
        if out_size is None:
            raise ValueError("mode 'crop' needs out_size=(h, w): the window taken inside the larger source images")
        out_h, out_w = out_size
    elif mode in ("zero", "mean") and out_size is not None:
        out_h, out_w = out_size
        if out_h < src_h or out_w < src_w:
            raise ValueError(f"canvas {out_size} is smaller than the images ({src_h}x{src_w})")
    else:
        out_h, out_w = src_h, src_w
    rows, cols, row_ok, col_ok = window_indices(s, mode, src_h, src_w, out_h, out_w, validate)
    num_s = s.shape[0]
    # advanced indices separated by a slice -> broadcast dims first: (S, N, h, w, C), or (N, h, w, C) per image
    if per_image:
        idx_n = torch.arange(n, device=images.device).view(n, 1, 1)
        out = images[idx_n, :, rows.view(n, out_h, 1), cols.view(n, 1, out_w)][None]  # (1, N, h, w, C)
        num_s, shape = 1, (1, n)  # masks vary per image
    else:
        idx_n = torch.arange(n, device=images.device).view(1, n, 1, 1)
        out = images[idx_n, :, rows.view(num_s, 1, out_h, 1), cols.view(num_s, 1, 1, out_w)]
        shape = (num_s, 1)  # masks vary per shift
    if row_ok is not None and col_ok is not None:
        inside = (row_ok.view(*shape, out_h, 1, 1) & col_ok.view(*shape, 1, out_w, 1)).to(images.dtype)
        fill = _fill_values(images, mode).view(1, n, 1, 1, c)
        out = out * inside + fill * (1 - inside)
    out = out.reshape(num_s * n, out_h, out_w, c).permute(0, 3, 1, 2)  # (B, C, h, w), channels_last strides
    return out.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


# ----------------------------------------------------------------------------- sub-pixel


def subpixel_shift(images: Tensor, dx: float, dy: float, boundary: str = "circular") -> Tensor:
    """Shift by real-valued ``(dx, dy)`` with a Fourier phase ramp (band-limited interpolation).

    ``boundary="circular"`` treats the image as periodic (integer values equal
    ``torch.roll``). ``boundary="symmetric"`` shifts the mirror-extended image
    (period ``2H x 2W``, continuous at the edges) and keeps the original window,
    so integer values equal the ``"mosaic"`` protocol for ``|d| <= size``.

    Args:
        images: (N, C, H, W) float.
    Returns:
        (N, C, H, W), same dtype (computed in float64 for float64 input, else float32).
    """
    check_images(images)
    if boundary not in ("circular", "symmetric"):
        raise ValueError(f"boundary must be 'circular' or 'symmetric', got {boundary!r}")
    x = images if images.dtype == torch.float64 else images.float()
    h, w = x.shape[-2:]
    if boundary == "symmetric":
        x = torch.cat([x, x.flip(-2)], dim=-2)
        x = torch.cat([x, x.flip(-1)], dim=-1)  # (N, C, 2H, 2W): one period of the symmetric extension
    ph, pw = x.shape[-2:]
    fy = torch.fft.fftfreq(ph, device=x.device, dtype=x.dtype)[:, None]  # cycles / px
    fx = torch.fft.fftfreq(pw, device=x.device, dtype=x.dtype)[None, :]
    ramp = torch.exp(-2j * math.pi * (fx * float(dx) + fy * float(dy)))
    out = torch.fft.ifft2(torch.fft.fft2(x) * ramp).real
    return out[..., :h, :w].to(images.dtype)


# ----------------------------------------------------------------------------- single shift


def translate(
    images: Tensor,
    dx: float,
    dy: float,
    mode: str = "mosaic",
    *,
    out_size: tuple[int, int] | int | None = None,
) -> Tensor:
    """Translate a batch of images by ``(dx, dy)`` (content moves right/down for positive values).

    Args:
        images: (N, C, H, W) float (for ``"crop"``, the larger source images).
        dx, dy: shift in pixels. Fractional values use :func:`subpixel_shift`
            (``"circular"`` -> periodic, ``"mosaic"`` -> mirror extension); the
            other modes accept integers only.
        mode: one of :data:`MODES` (see the module docstring).
        out_size: ``"crop"`` window size (required) or ``"zero"``/``"mean"`` canvas size.

    Returns:
        (N, C, h, w): ``(H, W)`` except for ``"crop"`` and larger canvases.
    """
    check_images(images)
    _check_mode(mode)
    if not (_is_integer(dx) and _is_integer(dy)):
        if mode == "circular":
            return subpixel_shift(images, dx, dy, boundary="circular")
        if mode == "mosaic":
            h, w = images.shape[-2:]
            if abs(dx) > w or abs(dy) > h:
                raise ValueError(f"mode 'mosaic' allows |dx| <= {w}, |dy| <= {h}; got ({dx}, {dy})")
            return subpixel_shift(images, dx, dy, boundary="symmetric")
        raise ValueError(
            f"mode {mode!r} takes integer shifts only, got ({dx}, {dy}); "
            "use mode='circular' or 'mosaic' for sub-pixel (Fourier) shifts"
        )
    return shift_windows(images, [(int(dx), int(dy))], mode, out_size=out_size)


# ----------------------------------------------------------------------------- shift sets


def shift_grid(radius: int | tuple[int, int], step: int = 1) -> list[tuple[int, int]]:
    """Every ``(dx, dy)`` with ``|dx| <= rx``, ``|dy| <= ry`` on multiples of ``step``, ``dy``-major.

    ``shift_grid(50)`` is the paper's 101 x 101 = 10,201 shifts; the order is
    row-major over the map (row = ``dy``, column = ``dx``).
    """
    rx, ry = (radius, radius) if isinstance(radius, int) else radius
    if rx < 0 or ry < 0 or step < 1:
        raise ValueError(f"radius must be >= 0 and step >= 1, got radius={radius}, step={step}")
    xs = range(-(rx // step) * step, rx + 1, step)  # multiples of step: (0, 0) is always in the grid
    ys = range(-(ry // step) * step, ry + 1, step)
    return [(dx, dy) for dy in ys for dx in xs]


def diagonal_shifts(start: int, stop: int) -> list[tuple[int, int]]:
    """``(d, d)`` for ``d`` in ``[start, stop]``: Azulay & Weiss's consecutive 1-px diagonal shifts."""
    if stop < start:
        raise ValueError(f"stop ({stop}) must be >= start ({start})")
    return [(d, d) for d in range(start, stop + 1)]

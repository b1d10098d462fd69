"""The one grid of shifted views per image and protocol, computed once by the sweep engine.

:func:`run_grid` sweeps one model over every offset of a preset under one protocol with
:func:`shiftinv.shifts.engine.sweep` (the model as a plain callable, logits kept), so every measure of
:mod:`shiftinv.audit.measures` is read from the same :class:`~shiftinv.shifts.sweep_result.SweepResult`.
The file of each grid is keyed by the model's identity, the images, the offsets, the protocol and
the precision: an interrupted audit resumes where it stopped, a finished one is read back.

The sweep's labels are the **reference classes**: the true labels when the images have them, else
the model's own top-1 on the unshifted view (:func:`reference_labels`), so ``p_true`` and
``true_logit`` read "the reference class" in both cases.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..shifts import engine
from ..shifts.sweep_result import SweepResult
from ..workbook import cache, runtime
from .images import AuditImages
from .models import AuditModel
from .protocol import Preset


def reference_labels(model: AuditModel, images: AuditImages, device: torch.device, batch_size: int = 64) -> Tensor:
    """(N,) int64: the true labels, or the model's top-1 on each unshifted (centre) view."""
    if images.labels is not None:
        return images.labels
    centre = images.centre()
    model.to(device).eval()
    preds = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            preds.append(model(centre[start: start + batch_size].to(device)).argmax(1).cpu())
    return torch.cat(preds)


def grid_path(out_dir: Path, models: list[AuditModel], images: AuditImages, shifts: list[tuple[int, int]],
              protocol: str, amp: str) -> Path:
    """Where one grid is kept: ``<out_dir>/grids/<model>.<protocol>.<key>.sweep.pt`` (several models
    sharing one trunk: one file named after the first)."""
    first = models[0]
    which = ({"model": first.identity, "input": list(first.input_size), "output": first.output} if len(models) == 1
             else {"models": [[m.identity, list(m.input_size), m.output] for m in models]})
    key = cache.config_hash({**which, "names": images.names, "sum": round(float(images.sources.double().sum()), 4),
                             "margin": images.margin, "shifts": shifts, "protocol": protocol, "amp": amp})
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in models[0].name)
    return Path(out_dir) / "grids" / f"{safe}.{protocol}.{key}.sweep.pt"


def shared_trunk(model: AuditModel) -> nn.Module | None:
    """The trunk of a workbook-style model (``net.trunk(x, taps)`` + ``net.head`` with ``taps``, its
    normalisation inside the trunk), which several heads can share in one sweep; else ``None``."""
    net = model.net
    if net is None or not hasattr(net, "trunk") or not hasattr(getattr(net, "head", None), "taps"):
        return None
    plain = bool((model.mean == 0).all()) and bool((model.std == 1).all()) and model.output == "logits"
    return net.trunk if plain else None


def run_grids(models: list[AuditModel], images: AuditImages, preset: Preset, protocol: str, *,
              labels: dict[str, Tensor], **kwargs: Any) -> dict[str, SweepResult]:
    """The grids of several models under one protocol: ``{name: SweepResult}``. Heads on one trunk
    (:func:`shared_trunk`) share its passes when their reference classes agree (labelled images),
    as the sweep engine shares a trunk between heads; other models run alone (:func:`run_grid`)."""
    groups: dict[int, list[AuditModel]] = {}
    for m in models:
        trunk = shared_trunk(m) if images.labelled else None
        groups.setdefault(id(trunk) if trunk is not None else id(m), []).append(m)
    out = {}
    for group in groups.values():
        out.update(_sweep(group, images, preset, protocol, labels[group[0].name], **kwargs))
    return out


def run_grid(model: AuditModel, images: AuditImages, preset: Preset, protocol: str, *, labels: Tensor,
             out_dir: Path | None = None, device: str | torch.device | None = None, amp: str | bool | None = False,
             batch_size: int = 64, progress: bool = True,
             shifts: list[tuple[int, int]] | None = None) -> SweepResult:
    """Every offset of ``preset`` (or only ``shifts``) under ``protocol`` for every image: a SweepResult
    with one head named ``model.name`` and its logits (S, N, K), resumable from ``out_dir/grids/``."""
    return _sweep([model], images, preset, protocol, labels, out_dir=out_dir, device=device, amp=amp,
                  batch_size=batch_size, progress=progress, shifts=shifts)[model.name]


def _sweep(models: list[AuditModel], images: AuditImages, preset: Preset, protocol: str, labels: Tensor, *,
           out_dir: Path | None = None, device: str | torch.device | None = None, amp: str | bool | None = False,
           batch_size: int = 64, progress: bool = True,
           shifts: list[tuple[int, int]] | None = None) -> dict[str, SweepResult]:
    """One sweep of ``models`` (one model, or heads sharing ``shared_trunk``): ``{name: SweepResult}``."""
    if protocol not in preset.protocols:
        raise ValueError(f"protocol {protocol!r} is not in preset {preset.name!r} ({preset.protocols})")
    h, w = models[0].input_size
    side = images.sources.shape[-1] - 2 * images.margin
    if (side, side) != (h, w):
        raise ValueError(f"the images were prepared for {side} px inputs but {models[0].name} takes {h}x{w}: "
                         "load them with the model's input size")
    if images.margin < preset.radius:
        raise ValueError(f"the sources have a {images.margin} px margin, the preset's radius is {preset.radius}: "
                         "load the images with margin=preset.radius")
    dev = runtime.default_device(str(device) if device else None)
    policy = runtime.resolve_amp(dev, amp)
    crop = protocol == "crop"
    inputs = _crop_sources(images, preset.radius) if crop else images.centre()
    offsets = preset.shifts() if shifts is None else list(shifts)
    path = grid_path(out_dir, models, images, offsets, protocol, policy) if out_dir is not None else None
    if len(models) == 1:
        trunk, heads = models[0], None
    else:
        trunk, heads = shared_trunk(models[0]), {m.name: m.net.head for m in models}
    result = engine.sweep(trunk, heads, inputs.contiguous(), labels, offsets, protocol, batch_size=batch_size,
                         device=dev, out_path=path, keep_logits=True, amp=policy, channels_last=False,
                         out_size=(h, w) if crop else None, progress=progress)
    if heads is None:
        return {models[0].name: _rename(result, models[0].name)}
    return {m.name: result.select([m.name]) for m in models}


def _crop_sources(images: AuditImages, radius: int) -> Tensor:
    """The sources trimmed to the preset's margin (the crop window moves at most ``radius``)."""
    cut = images.margin - radius
    s = images.sources
    return s if cut == 0 else s[..., cut: s.shape[-2] - cut, cut: s.shape[-1] - cut]


def _rename(result: SweepResult, name: str) -> SweepResult:
    """The sweep's single head ``"model"`` renamed to the model's name."""
    rename = lambda d: {name: v for v in d.values()}  # noqa: E731
    return SweepResult(result.shifts, result.labels, result.mode, rename(result.loss), rename(result.correct),
                       rename(result.pred), rename(result.p_true), rename(result.logits), dict(result.meta))


def amp_agreement(model: AuditModel, images: AuditImages, preset: Preset, protocol: str, grid: SweepResult, *,
                  labels: Tensor, device: str | torch.device | None = None, n_images: int = 8,
                  batch_size: int = 64) -> dict[str, Any]:
    """How far a reduced-precision grid is from float32: the line offsets of the first ``n_images``
    images swept again in float32 and compared with ``grid`` (same offsets and images).

    Returns ``{"amp", "pairs", "top1_agreement", "max_abs_diff", "max_rel_diff"}`` (differences of the
    outputs, relative to the largest float32 output magnitude); ``amp`` ``"off"`` gives agreement 1.
    """
    amp = grid.meta.get("amp", "off")
    sub = images.take(n_images)
    line = preset.line()
    ref = run_grid(model, sub, preset, protocol, labels=labels[: len(sub)], device=device, amp="off",
                   batch_size=batch_size, progress=False, shifts=line)
    low = grid.select_shifts(line)
    a, b = ref.logits[model.name], low.logits[model.name][:, : len(sub)]  # (S, n, K) each
    diff = (a - b).abs()
    return {"amp": amp, "pairs": int(a.shape[0] * a.shape[1]),
            "top1_agreement": float((a.argmax(-1) == b.argmax(-1)).double().mean()),
            "max_abs_diff": float(diff.max()), "max_rel_diff": float(diff.max() / a.abs().max().clamp_min(1e-12))}

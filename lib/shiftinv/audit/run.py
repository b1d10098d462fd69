"""One call audits several models on the same images: :func:`audit` -> :class:`AuditResult`.

For each model: reference classes (:func:`shiftinv.audit.grid.reference_labels`), one grid per
protocol of the preset (resumable under ``out_dir/grids/``; heads on one trunk share its passes),
every per-image measure and its
summary with intervals, the 2-D agreement map, the diagonal curve, the line's spectrum and its
periodicity at the model's own strides, per-layer equivariance (torch modules), and, with a
reduced precision, its measured agreement with float32. Then paired comparisons: every other model
against the first under each protocol, and each model's main protocol against ``circular``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch

from ..shifts.sweep_result import SweepResult
from ..workbook import runtime
from . import grid as audit_grid
from . import measures, periods
from .images import AuditImages
from .models import AuditModel
from .protocol import Preset, protocol_block


@dataclass
class AuditResult:
    """Everything an audit measured (tables carry ``model`` and, where it applies, ``protocol``).

    Attributes:
        preset: the :class:`Preset`; protocol: its statement (:func:`shiftinv.audit.protocol.protocol_block`).
        models: ``{name: description}``; images: the :class:`AuditImages`.
        per_image: one row per (model, protocol, image); summary: ``measure, value, lo, hi, n`` per (model, protocol).
        comparisons: paired differences; maps: 2-D agreement maps; diagonal: diagonal curves.
        spectra, periodicity: the line's spectrum and its energy at the predicted periods.
        layers: per-layer equivariance by phase (torch modules); amp: precision agreement per model.
        grids: ``{(model, protocol): SweepResult}``; seconds: wall-clock time (grids and measures, total).
    """

    preset: Preset
    protocol: dict[str, Any]
    models: dict[str, str]
    images: AuditImages
    per_image: pd.DataFrame
    summary: pd.DataFrame
    comparisons: pd.DataFrame
    maps: pd.DataFrame
    diagonal: pd.DataFrame
    spectra: pd.DataFrame
    periodicity: pd.DataFrame
    layers: pd.DataFrame
    amp: dict[str, dict[str, Any]] = field(default_factory=dict)
    grids: dict[tuple[str, str], SweepResult] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def value(self, model: str, protocol: str, measure: str) -> float:
        """One summary number, e.g. ``result.value("resnet", "crop", "consistency")``."""
        row = self.summary[(self.summary.model == model) & (self.summary.protocol == protocol)
                           & (self.summary.measure == measure)]
        if row.empty:
            raise KeyError(f"no {measure!r} for model {model!r} under {protocol!r}; models: {list(self.models)}, "
                           f"measures: {sorted(self.summary.measure.unique())}")
        return float(row.value.iloc[0])


def audit(models: Sequence[AuditModel], images: AuditImages, preset: Preset, *, out_dir: Path | str | None = None,
          device: str | torch.device | None = None, amp: str | bool | None = False, batch_size: int = 64,
          progress: bool = True) -> AuditResult:
    """Audit every model of ``models`` on ``images`` with ``preset`` (see the module docstring).

    Args:
        images: prepared for the models' input size with ``margin >= preset.radius``.
        out_dir: where grids are kept (resume); ``None`` keeps nothing.
        device: default CUDA when available, else CPU. ``amp``: ``False`` (float32, the default),
            ``"bf16"`` (opt-in; its agreement with float32 is measured and reported).
    """
    names = [m.name for m in models]
    if not models or len(set(names)) != len(names):
        raise ValueError(f"give at least one model, each with its own name; got {names}")
    dev = runtime.default_device(str(device) if device else None)
    weights = measures.resamples(len(images))
    parts: dict[str, list[pd.DataFrame]] = {k: [] for k in ("per_image", "summary", "maps", "diagonal", "spectra",
                                                           "periodicity", "layers")}
    result_grids, amp_info, frames = {}, {}, {}
    started = time.monotonic()
    with runtime.reproducible():  # fixed threads, deterministic kernels: the same numbers on every run
        labels = {m.name: audit_grid.reference_labels(m, images, dev) for m in models}
        for protocol in preset.protocols:
            grids = audit_grid.run_grids(list(models), images, preset, protocol, labels=labels, device=dev, amp=amp,
                                         out_dir=Path(out_dir) if out_dir else None, batch_size=batch_size,
                                         progress=progress)
            for model in models:
                result_grids[model.name, protocol] = grids[model.name]
                frames[model.name, protocol] = _measure(model, grids[model.name], images, preset, protocol,
                                                        weights, parts)
        seconds = {"grids and measures": time.monotonic() - started}
        for model in models:
            if runtime.resolve_amp(dev, amp) != "off":
                main = result_grids[model.name, preset.protocols[0]]
                amp_info[model.name] = audit_grid.amp_agreement(model, images, preset, preset.protocols[0], main,
                                                                labels=labels[model.name], device=dev,
                                                                batch_size=batch_size)
            parts["layers"].append(_layers(model, images, preset, dev, parts["layers"], models))
    seconds["total"] = time.monotonic() - started
    tables = {k: pd.concat(v, ignore_index=True) if v else pd.DataFrame() for k, v in parts.items()}
    comparisons = measures.compare(frames, weights, _pairs(names, preset.protocols)) if frames else pd.DataFrame()
    return AuditResult(preset, protocol_block(preset, models[0].input_size, images.origin),
                       {m.name: m.description for m in models}, images, tables["per_image"], tables["summary"],
                       comparisons, tables["maps"], tables["diagonal"], tables["spectra"], tables["periodicity"],
                       tables["layers"], amp_info, result_grids, seconds)


def _measure(model: AuditModel, g: SweepResult, images: AuditImages, preset: Preset, protocol: str,
             weights: torch.Tensor, parts: dict[str, list[pd.DataFrame]]) -> pd.DataFrame:
    """Every table of one model under one protocol, appended to ``parts``; returns the per-image frame."""
    head, tag = model.name, {"model": model.name, "protocol": protocol}
    frame = measures.per_image_measures(g, head, preset, labelled=images.labelled, output=model.output)
    parts["per_image"].append(frame.assign(name=[images.names[i] for i in frame.image], **tag))
    grid_rows = g.select_shifts(preset.grid())
    parts["summary"].append(measures.summarise(frame, grid_rows, head, weights).assign(**tag))
    amap = measures.agreement_map(g, head, preset)
    parts["maps"].append((amap if images.labelled else amap.drop(columns="accuracy")).assign(**tag))
    parts["diagonal"].append(measures.diagonal_curve(g, head, preset).assign(**tag))
    predicted, source = periods.predicted_periods(model, 2 * preset.line_half)
    parts["spectra"].append(periods.line_spectrum(g, head, preset, predicted).assign(**tag))
    parts["periodicity"].append(periods.line_periodicity(g, head, preset, predicted).assign(source=source, **tag))
    return frame


def _layers(model: AuditModel, images: AuditImages, preset: Preset, dev: torch.device, done: list[pd.DataFrame],
            models: Sequence[AuditModel]) -> pd.DataFrame:
    """Per-layer equivariance of ``model``; heads on a trunk already measured share its table (their conv
    and pool layers are the same modules)."""
    trunk = audit_grid.shared_trunk(model)
    for other, table in zip(models, done):
        if trunk is not None and audit_grid.shared_trunk(other) is trunk and not table.empty:
            return table.assign(model=model.name)
    return periods.layer_equivariance(model, images.centre(), preset.equivariance_images, dev).assign(model=model.name)


def _pairs(names: list[str], protocols: Sequence[str]) -> list[tuple[tuple[str, str], tuple[str, str]]]:
    """Every other model against the first, under each protocol; each model's other protocols against
    the first one (e.g. crop against circular: what the border adds)."""
    pairs = [((n, p), (names[0], p)) for p in protocols for n in names[1:]]
    pairs += [((n, protocols[0]), (n, p)) for n in names for p in protocols[1:]]
    return pairs

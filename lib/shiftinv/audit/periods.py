"""Why a model changes its mind: the periods of its output over shifts, and which layers break equivariance.

- :func:`predicted_periods`: the periods a torch model's own strides predict (every distinct total
  stride of its conv / pool layers, :class:`~shiftinv.audit.layers.HookedTrunk`); a black box (or
  TorchScript, whose layers cannot be hooked) gets the powers of two up to the line's length, marked
  as assumed.
- :func:`line_spectrum` / :func:`line_periodicity`: the power spectrum of the reference-class output
  over the 1-px line (per image, energies pooled) and the share of its energy at each predicted
  period and harmonics against white noise (:mod:`shiftinv.shifts.periodicity`).
- :func:`layer_equivariance`: per-layer, phase-resolved equivariance error of every conv and pool
  output under circular shifts over one period of the coarsest stride
  (:func:`shiftinv.shifts.invariance.equivariance_error` on the hooked model).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..shifts import invariance, periodicity
from ..shifts.sweep_result import SweepResult
from .layers import HookedTrunk
from .models import AuditModel
from .protocol import Preset

#: Periods assumed for a black box (its strides are unknown): powers of two.
ASSUMED_PERIODS: tuple[int, ...] = (2, 4, 8, 16, 32)


def predicted_periods(model: AuditModel, line_length: int) -> tuple[tuple[int, ...], str]:
    """``(periods, source)``: the distinct strides > 1 of a torch model's layers (``"strides"``), or
    :data:`ASSUMED_PERIODS` for a black box (``"assumed"``); only periods that fit at least twice in
    the line (``P <= line_length / 2``): any response is "periodic" with the line's own length."""
    if model.hookable:
        periods, source = HookedTrunk(model).periods(), "strides"
    else:
        periods, source = ASSUMED_PERIODS, "assumed"
    return tuple(p for p in periods if 2 * p <= line_length), source


def _line_values(result: SweepResult, head: str, preset: Preset) -> tuple[np.ndarray, np.ndarray]:
    """``(dxs (L,), values (N, L))``: the reference-class output along the line, dx ascending."""
    line = result.select_shifts(preset.line())
    return invariance.response_profile(line, head, "true_logit")


def line_spectrum(result: SweepResult, head: str, preset: Preset, periods: tuple[int, ...]) -> pd.DataFrame:
    """Power spectrum of the reference-class output over the line, pooled over images:
    ``frequency`` (cycles / px), ``period`` (px), ``power`` (share of the non-constant energy)."""
    _, values = _line_values(result, head, preset)
    freqs, power = periodicity.spectrum_1d(values, periods or ASSUMED_PERIODS)
    pooled = power.sum(0)
    total = pooled[1:].sum()
    share = pooled / total if total > 0 else np.full_like(pooled, np.nan)
    with np.errstate(divide="ignore"):
        period = np.where(freqs > 0, 1.0 / np.where(freqs > 0, freqs, 1.0), np.inf)
    return pd.DataFrame({"frequency": freqs[1:], "period": period[1:], "power": share[1:]})


def line_periodicity(result: SweepResult, head: str, preset: Preset, periods: tuple[int, ...]) -> pd.DataFrame:
    """Share of the line response's energy at each predicted period and its harmonics, beside its
    white-noise level: ``period, fraction, chance`` (:func:`shiftinv.shifts.periodicity.period_energy`)."""
    _, values = _line_values(result, head, preset)
    if not periods or float(np.ptp(values)) == 0.0:
        return pd.DataFrame({"period": list(periods), "fraction": np.nan, "chance": np.nan})
    table = periodicity.period_energy(values, periods)
    return table[["period", "fraction", "chance"]]


def layer_equivariance(model: AuditModel, centre: torch.Tensor, n_images: int,
                       device: torch.device | str = "cpu", max_shift: int | None = None) -> pd.DataFrame:
    """Per-layer equivariance error of a torch model by phase: ``layer, order, stride, phase,
    mean_error, max_error`` over circular shifts ``dx = 0 .. max stride`` of the first ``n_images``.

    ``error = ||F(T_d x) - T_{d/r} F(x)||^2 / ||F(x)||^2`` on the valid region of each layer of total
    stride ``r`` (``max_shift``: the largest dx, default the largest stride) (0 at multiples of ``r`` when the layers pad circularly; borders of a zero-padded
    model add to it). Empty for a black box, TorchScript or ``n_images = 0``.
    """
    columns = ["layer", "order", "stride", "phase", "mean_error", "max_error"]
    if not model.hookable or n_images < 1:
        return pd.DataFrame(columns=columns)
    trunk = HookedTrunk(model.to(device).eval())
    strides = trunk.strides()
    shifts = [(d, 0) for d in range((max(strides.values()) if max_shift is None else max_shift) + 1)]
    table = invariance.equivariance_error(trunk, centre[:n_images], list(strides), shifts, mode="circular",
                                          device=device)
    by_phase = invariance.error_by_phase(table).rename(columns={"tap": "layer", "phase_x": "phase"})
    by_phase["order"] = by_phase["layer"].map({t: i for i, t in enumerate(strides)})
    return by_phase[columns]

"""Periodicity analysis on synthetic responses with known periods, and on circular-padded VGG trunks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from shiftinv.shifts import periodicity
from shiftinv.shifts.periodicity import (
    dominant_period,
    dominant_period_2d,
    fundamental_period,
    period_energy,
    period_energy_2d,
    periodicity_table,
    spectrum_1d,
    spectrum_2d,
    trimmed_length,
)

DX = np.arange(-50, 51)  # the paper's shift range: 101 samples


def periodic(period: int, dx: np.ndarray = DX, seed: int = 0) -> np.ndarray:
    """A non-sinusoidal response with exact period ``period`` (random values per residue)."""
    values = np.random.default_rng(seed).normal(size=period)
    return 3.0 + values[dx % period]


def test_trimmed_length() -> None:
    assert trimmed_length(101) == 96 and trimmed_length(64) == 64 and trimmed_length(20) == 16
    assert trimmed_length(101, (3, 4)) == 96 and trimmed_length(5, (8,)) == 5


def test_period_8_is_found_as_8() -> None:
    r = periodic(8) + 0.01 * np.random.default_rng(1).normal(size=DX.size)
    assert fundamental_period(r) == 8.0
    assert dominant_period(r) in (8.0, 4.0, 8 / 3, 2.0)  # strongest bin: the fundamental or a harmonic
    assert dominant_period(np.cos(2 * np.pi * DX / 8) + 0.3 * np.cos(2 * np.pi * DX / 4)) == 8.0
    table = period_energy(r).set_index("period")
    assert table.loc[8, "fraction"] > 0.99
    assert table.loc[16, "fraction"] > 0.99 and table.loc[32, "fraction"] > 0.99  # 8-periodic is 16- and 32-periodic
    assert table.loc[4, "fraction"] < 0.9 and table.loc[2, "fraction"] < 0.6
    assert table.loc[8, "exclusive"] + table.loc[4, "fraction"] == pytest.approx(table.loc[8, "fraction"])
    assert table.loc[16, "exclusive"] < 0.01 and table.loc[32, "exclusive"] < 0.01
    assert (table["length"] == 96).all()


@pytest.mark.parametrize("period", [2, 4, 16, 32])
def test_sinusoid_periods(period: int) -> None:
    r = np.cos(2 * np.pi * DX / period + 0.4)
    assert dominant_period(r) == float(period)
    table = period_energy(r).set_index("period")
    assert table.loc[period, "fraction"] == pytest.approx(1.0)
    assert table.loc[period, "exclusive"] == pytest.approx(1.0)


@pytest.mark.parametrize("period", [3, 5, 8, 12, 32])
def test_fundamental_period_of_any_integer_period(period: int) -> None:
    r = periodic(period, seed=period) + 1e-3 * np.random.default_rng(0).normal(size=DX.size)
    assert fundamental_period(r) == float(period)


def test_white_noise_scores_chance() -> None:
    noise = np.random.default_rng(2).normal(size=(400, DX.size))
    assert math.isnan(fundamental_period(noise))
    table = period_energy(noise).set_index("period")
    for p in (8, 32):
        assert table.loc[p, "fraction"] == pytest.approx(table.loc[p, "chance"], rel=0.1)
    assert table.loc[32, "chance"] == pytest.approx(31 / 95)


def test_spectrum_sums_to_variance_and_accepts_tensors() -> None:
    r = periodic(16, seed=4)
    freqs, power = spectrum_1d(torch.tensor(r))
    trimmed = r[2:98]
    assert power.sum() == pytest.approx(((trimmed - trimmed.mean()) ** 2).sum())
    assert freqs[np.argmax(power)] in (1 / 16, 2 / 16, 3 / 16, 4 / 16, 5 / 16, 6 / 16, 7 / 16, 8 / 16)
    assert period_energy(np.arange(10.0), (32,)).loc[0, "fraction"] != period_energy(np.arange(10.0), (32,)).loc[0, "fraction"]


def test_two_dimensional_periods() -> None:
    yy, xx = np.meshgrid(DX, DX, indexing="ij")
    m = np.cos(2 * np.pi * xx / 8) + 0.5 * np.cos(2 * np.pi * yy / 32)
    fy, fx, power = spectrum_2d(m)
    assert power.shape == (96, 96) and fx[48] == 0
    assert dominant_period_2d(m) == (8.0, math.inf)
    table = period_energy_2d(m).set_index("period")
    assert table.loc[32, "fraction"] == pytest.approx(1.0)
    assert table.loc[8, "fraction"] == pytest.approx(1 / 1.25)  # the dy part (energy 0.25 of 1.25) has period 32
    assert dominant_period_2d(np.cos(2 * np.pi * yy / 4)) == (math.inf, 4.0)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="NaN"):
        period_energy(np.array([1.0, np.nan, 2.0]))
    with pytest.raises(ValueError, match="at least 2 samples"):
        spectrum_1d(np.array([1.0]))
    with pytest.raises(ValueError, match="map"):
        spectrum_2d(np.arange(5.0))


def test_circular_vgg_responses_have_the_predicted_periods() -> None:
    """Circular padding + circular shifts: a GAP after pool-k gives a response periodic in 2**k."""
    models = pytest.importorskip("shiftinv.models.vgg")
    from shiftinv.shifts.engine import sweep
    from shiftinv.shifts.translation import shift_grid

    torch.manual_seed(0)
    # float64: with random weights the aliasing ripple is ~1e-7, too close to float32 rounding
    trunk = models.build_trunk(width=0.0625, circular=True, normalize="none").double()
    heads = {
        "final_gap": models.build_head("final_gap", trunk, num_classes=4, input_size=64).double(),
        "gap_pool4": models.build_head("final_gap", trunk, num_classes=4, input_size=64, gap_taps=("pool4",)).double(),
    }
    g = torch.Generator().manual_seed(1)
    images = torch.rand(2, 3, 64, 64, generator=g, dtype=torch.float64)
    res = sweep(trunk, heads, images, torch.tensor([0, 1]), shift_grid((32, 0)), "circular", batch_size=130,
                device="cpu", keep_logits=True)
    for head, period in (("final_gap", 32), ("gap_pool4", 16)):
        logits = res.logits[head].permute(1, 2, 0).reshape(-1, res.num_shifts).numpy()  # (N*K, 65) over dx
        table = period_energy(logits, (period // 2, period, 64)).set_index("period")
        assert table.loc[period, "fraction"] > 0.999, (head, table)
        assert table.loc[period // 2, "fraction"] < 0.99, (head, table)  # not already periodic at the finer period
        assert np.allclose(logits[:, :period], logits[:, period : 2 * period], rtol=0, atol=1e-12)
    pt = periodicity_table(res, field="loss", periods=(16, 32))
    assert set(pt["axis"]) == {"dx"} and (pt.query("head == 'final_gap' and period == 32")["fraction"] > 0.999).all()
    assert periodicity.PERIODS == (2, 4, 8, 16, 32)

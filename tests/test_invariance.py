"""Invariance metrics on hand-built sweep results with known answers, and on tiny trunks."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from shiftinv.shifts import invariance, relative_loss
from shiftinv.shifts.engine import sweep
from shiftinv.shifts.sweep_result import SweepResult
from shiftinv.shifts.translation import diagonal_shifts, shift_grid
from shiftinv.viz import equivariance_plots

sys.path.insert(0, str(Path(__file__).parent))
from test_sweep import TinyTrunk, make_data, make_model  # noqa: E402


def hand_result() -> SweepResult:
    """3 shifts x 2 images with losses chosen so every definition has a known value."""
    shifts = torch.tensor([[-1, 0], [0, 0], [1, 0]])
    loss = torch.tensor([[2.0, 1.0], [1.0, 0.5], [1.0, 2.0]])  # row = shift; Lbar = 1.5, 0.75, 1.5
    correct = torch.tensor([[False, True], [True, True], [True, False]])
    pred = torch.tensor([[3, 1], [0, 1], [0, 2]])
    p_true = torch.tensor([[0.1, 0.6], [0.5, 0.7], [0.4, 0.2]])
    labels = torch.tensor([0, 1])
    h = "h"
    return SweepResult(shifts, labels, "mosaic", {h: loss}, {h: correct}, {h: pred}, {h: p_true})


def test_relative_loss_definitions_on_known_numbers() -> None:
    r = hand_result()
    expected = {
        "dataset_signed": 1.0,  # ((1.5 - .75) + (1.5 - .75)) / 2 / .75
        "dataset_abs": 1.0,
        "dataset_max": 1.0,
        "dataset_cv": float(np.std([1.5, 0.75, 1.5]) / np.mean([1.5, 0.75, 1.5])),
        "image_signed": (1.0 + 1.0 + 0.0 + 3.0) / 4,  # (2-1)/1, (1-.5)/.5, (1-1)/1, (2-.5)/.5
        "image_abs": (1.0 + 1.0 + 0.0 + 3.0) / 4,
        "image_abs_pooled": (1.0 + 0.5 + 0.0 + 1.5) / 4 / 0.75,
        "acc_drop": (1.0 - 0.5) / 1.0,
        "acc_abs": 0.5,
        "flip_rate": 0.5,
        "pred_change": 0.5,
    }
    assert set(expected) == set(relative_loss.RELATIVE_LOSS_DEFINITIONS)
    for name, value in expected.items():
        assert relative_loss.relative_loss(r, "h", name) == pytest.approx(value), name
    table = relative_loss.relative_loss_table(r)
    assert table.loc[0, "loss0"] == pytest.approx(0.75) and table.loc[0, "dataset_signed"] == pytest.approx(1.0)
    # signed and absolute differ when some shifts lower the loss
    r.loss["h"][2] = torch.tensor([0.25, 0.25])
    assert relative_loss.relative_loss(r, "h", "dataset_signed") == pytest.approx((1.0 - 0.5 / 0.75) / 2)
    assert relative_loss.relative_loss(r, "h", "dataset_abs") == pytest.approx((1.0 + 0.5 / 0.75) / 2)


def test_metric_errors() -> None:
    r = hand_result()
    with pytest.raises(ValueError, match="unknown definition"):
        relative_loss.relative_loss(r, "h", "paper")
    with pytest.raises(KeyError, match="unknown head"):
        relative_loss.relative_loss(r, "x")
    no_zero = SweepResult(r.shifts[[0, 2]], r.labels, "mosaic", {"h": r.loss["h"][[0, 2]]}, {"h": r.correct["h"][[0, 2]]},
                          {"h": r.pred["h"][[0, 2]]}, {"h": r.p_true["h"][[0, 2]]})
    with pytest.raises(ValueError, match=r"include \(0, 0\)"):
        relative_loss.relative_loss(no_zero, "h")
    with pytest.raises(TypeError, match="Generator"):
        invariance.consistency(r, "h", 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="consecutive diagonal"):
        invariance.diagonal_stability(r, "h")


def test_response_map_layout() -> None:
    trunk, heads = make_model()
    images, labels = make_data(n=3)
    shifts = [s for s in shift_grid((2, 1)) if s != (2, 1)]  # one grid point missing
    res = sweep(trunk, heads, images, labels, shifts, device="cpu")
    values, dxs, dys = invariance.response_map(res, "final_gap", "loss")
    assert values.shape == (3, 5) and list(dxs) == [-2, -1, 0, 1, 2] and list(dys) == [-1, 0, 1]
    assert np.isnan(values[2, 4]) and np.isfinite(values[:2]).all()
    assert values[0, 4] == pytest.approx(float(res.loss["final_gap"][res.index(2, -1)].mean()))
    acc, _, _ = invariance.response_map(res, "final_gap", "accuracy")
    assert np.nanmax(acc) <= 1 and np.nanmin(acc) >= 0
    change, _, _ = invariance.response_map(res, "final_gap", "pred_change")
    assert change[1, 2] == 0.0  # the unshifted image never changes


def test_consistency_sampled_matches_exact_and_is_seeded() -> None:
    r = hand_result()  # image 0 predicted 3,0,0; image 1 predicted 1,1,2
    exact = invariance.expected_consistency(r, "h")
    assert exact == pytest.approx(((1 / 3) ** 2 + (2 / 3) ** 2 + (2 / 3) ** 2 + (1 / 3) ** 2) / 2)
    a = invariance.consistency(r, "h", torch.Generator().manual_seed(0), pairs_per_image=20000)
    b = invariance.consistency(r, "h", torch.Generator().manual_seed(0), pairs_per_image=20000)
    assert a == b and a == pytest.approx(exact, abs=0.01)


def test_diagonal_stability() -> None:
    shifts = torch.tensor(diagonal_shifts(-1, 2) + [(5, 0)])
    pred = torch.tensor([[0, 0], [0, 1], [1, 1], [1, 1], [4, 4]])
    p = torch.tensor([[0.5, 0.5], [0.4, 0.5], [0.4, 0.1], [0.2, 0.1], [0.0, 0.0]])
    z = torch.zeros(5, 2)
    r = SweepResult(shifts, torch.tensor([0, 1]), "mosaic", {"h": z}, {"h": z.bool()}, {"h": pred}, {"h": p})
    out = invariance.diagonal_stability(r, "h")
    assert out["pairs"] == 3
    assert out["p_top1_change"] == pytest.approx(2 / 6)
    assert out["mean_abs_change"] == pytest.approx((0.1 + 0 + 0 + 0.4 + 0.2 + 0) / 6)


def test_equivariance_error_phase_resolved_on_circular_trunk() -> None:
    trunk = TinyTrunk(circular=True)
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    df = invariance.equivariance_error(trunk, images, ["conv1", "pool1", "pool2"], mode="circular")
    assert list(df.columns) == ["tap", "stride", "dx", "dy", "phase_x", "phase_y", "error"]
    err = df.set_index(["tap", "dx"])["error"]
    for d in range(5):
        assert err[("conv1", d)] < 1e-10  # stride 1: exactly equivariant
    assert err[("pool1", 2)] < 1e-10 and err[("pool1", 4)] < 1e-10  # whole pool1 pixels
    assert err[("pool2", 4)] < 1e-10 and err[("pool2", 0)] == 0
    assert err[("pool1", 1)] > 1e-3 and err[("pool2", 2)] > 1e-3  # off-phase shifts alias
    # zero-padded trunk and mirror mosaic: phase-0 shifts are equivariant only away from the border
    df2 = invariance.equivariance_error(TinyTrunk(circular=False), images, ["pool1"], [(2, 0), (0, 2)], mode="mosaic", margin=2)
    assert (df2["error"] < 1e-10).all()
    df3 = invariance.equivariance_error(TinyTrunk(circular=False), images, ["pool1"], [(2, 0)], mode="mosaic", margin=0)
    assert (df3["error"] > 1e-6).all()


def test_equivariance_error_on_circular_vgg_trunk() -> None:
    models = pytest.importorskip("shiftinv.models.vgg")
    torch.manual_seed(0)
    trunk = models.build_trunk(width=0.0625, circular=True, normalize="none").double()
    images = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    shifts = [(1, 0), (8, 0), (0, 16), (32, 0)]
    df = invariance.equivariance_error(trunk, images, ["relu1_2", "pool1", "pool3", "pool5"], shifts)
    err = df.set_index(["tap", "dx", "dy"])["error"]
    assert (df.query("tap == 'relu1_2'")["error"] < 1e-20).all()  # no stride: equivariant to every shift
    assert err[("pool3", 8, 0)] < 1e-20 and err[("pool3", 0, 16)] < 1e-20 and err[("pool5", 32, 0)] < 1e-20
    assert err[("pool1", 1, 0)] > 1e-3 and err[("pool3", 1, 0)] > 1e-7
    # random deep maps are nearly constant over positions, so the pool5 aliasing is small but far from 0
    assert err[("pool5", 8, 0)] > 1e-13 and err[("pool5", 0, 16)] > 1e-13
    assert set(df.query("tap == 'pool5'")["phase_x"]) == {1, 8, 0}


def test_authors_computable_definitions_need_only_the_per_shift_table() -> None:
    from shiftinv.study import analysis

    g = torch.Generator().manual_seed(3)
    shifts = torch.tensor([(dx, dy) for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
    loss = torch.rand(9, 5, generator=g) + 0.1
    correct = torch.rand(9, 5, generator=g) > 0.3
    pred = torch.randint(0, 3, (9, 5), generator=g)
    r = SweepResult(shifts, torch.zeros(5, dtype=torch.long), "mosaic", {"h": loss}, {"h": correct}, {"h": pred},
                    {"h": torch.rand(9, 5, generator=g)})
    table = analysis.shift_frame(r)
    for d in relative_loss.AUTHORS_COMPUTABLE:
        assert relative_loss.relative_loss_from_table(table, "h", d) == pytest.approx(relative_loss.relative_loss(r, "h", d)), d
    for d in set(relative_loss.RELATIVE_LOSS_DEFINITIONS) - set(relative_loss.AUTHORS_COMPUTABLE):
        with pytest.raises(ValueError, match="per-image"):
            relative_loss.relative_loss_from_table(table, "h", d)
    defs = relative_loss.relative_loss_definitions()
    assert defs["computable_from_authors_outputs"].tolist() == [True] * 6 + [False] * 5
    assert set(defs.definition[defs.computable_from_authors_outputs]) == {
        "dataset_signed", "dataset_abs", "dataset_max", "dataset_cv", "acc_drop", "acc_abs"}
    long = relative_loss.relative_loss_long(r)
    assert len(long) == 11 and long.set_index("definition").loc["image_abs", "computable_from_authors_outputs"] == False  # noqa: E712
    assert long.set_index("definition").loc["acc_drop", "value"] == pytest.approx(relative_loss.relative_loss(r, "h", "acc_drop"))


def test_relative_loss_from_the_authors_pickle(tmp_path) -> None:
    import pickle

    from shiftinv.study import authors

    res = {(h, v): {"loss": 1.0 + abs(h) + abs(v), "accuracy": 1.0 - 0.1 * (abs(h) + abs(v))}
           for h in (-1, 0, 1) for v in (-1, 0, 1)}
    (tmp_path / "met.pkl").write_bytes(pickle.dumps(res))
    table = authors.read_results(tmp_path / "met.pkl", head="authors", convention="imagenet")
    # 8 non-zero shifts: 4 at distance 1 (L = 2), 4 at distance 2 (L = 3); L(0) = 1
    assert relative_loss.relative_loss_from_table(table, "authors", "dataset_signed") == pytest.approx((4 * 1 + 4 * 2) / 8)
    assert relative_loss.relative_loss_from_table(table, "authors", "acc_drop") == pytest.approx((4 * 0.1 + 4 * 0.2) / 8)


def test_error_by_phase_and_its_plot_on_circular_trunk() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trunk = TinyTrunk(circular=True)
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    table = invariance.equivariance_error(trunk, images, ["conv1", "pool1", "pool2"], mode="circular")  # dx = 0..4
    phases = invariance.error_by_phase(table)
    assert list(phases.columns) == ["tap", "stride", "phase_x", "phase_y", "mean_error", "max_error", "shifts"]
    assert list(dict.fromkeys(phases["tap"])) == ["conv1", "pool1", "pool2"]
    by = phases.set_index(["tap", "phase_x"])
    assert by.loc[("conv1", 0), "shifts"] == 5  # stride 1: every shift is phase 0
    assert by.loc[("pool1", 0), "shifts"] == 3 and by.loc[("pool1", 1), "shifts"] == 2  # dx 0, 2, 4 | 1, 3
    assert by.loc[("pool2", 2), "shifts"] == 1 and set(phases.query("tap == 'pool2'")["phase_x"]) == {0, 1, 2, 3}
    # phase 0 is exact, every other phase aliases
    assert (phases.query("phase_x == 0")["max_error"] < 1e-10).all()
    assert (phases.query("phase_x != 0")["mean_error"] > 1e-3).all()
    pool1 = table.query("tap == 'pool1' and phase_x == 1")["error"]
    assert by.loc[("pool1", 1), "mean_error"] == pytest.approx(pool1.mean())

    fig = equivariance_plots.plot_equivariance_by_phase(table, floor=1e-12)
    left, heat = fig.axes[:2]
    assert len(left.get_lines()) >= 3 * 3  # one line + two marker sets per tap
    grid = heat.get_images()[0].get_array()  # (taps, max stride): log10 mean error by phase
    assert grid.shape == (3, 4)
    assert np.ma.getmaskarray(grid)[0, 1:].all() and np.ma.getmaskarray(grid)[1, 2:].all()  # phase >= stride: blank
    assert grid[1, 0] == pytest.approx(-12) and grid[1, 1] > -3  # exact zero drawn at the floor; aliasing far above
    fig.canvas.draw()  # the labels' mathtext parses
    plt.close(fig)

    with pytest.raises(ValueError, match="lacks columns"):
        invariance.error_by_phase(table.drop(columns="phase_x"))
    with pytest.raises(ValueError, match=r"shifts \(dx, 0\)"):
        equivariance_plots.plot_equivariance_by_phase(table.assign(dy=1))
    with pytest.raises(ValueError, match="floor"):
        equivariance_plots.plot_equivariance_by_phase(table, floor=0)

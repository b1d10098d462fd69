"""The aliasing explorer's panels, text, figure and widget, on a small stand-in model.

The stand-in is a two-stage circular-padded CNN (conv + max-pool at stride 2, twice)
with a GAP head: with circular shifts it is exactly equivariant at ``pool2`` for
shifts that are multiples of 4 and not otherwise, which the panels must show.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from torch import nn

from shiftinv.shifts import invariance, periodicity
from shiftinv.study import depth_heads
from shiftinv.viz import explorer, figures


class _Tiny(nn.Module):
    def __init__(self, seed: int = 0, classes: int = 5) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.stage1 = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1, padding_mode="circular"), nn.ReLU(), nn.MaxPool2d(2))
        self.stage2 = nn.Sequential(nn.Conv2d(6, 8, 3, padding=1, padding_mode="circular"), nn.ReLU(), nn.MaxPool2d(2))
        self.fc = nn.Linear(8, classes)
        self.taps = ("pool2",)

    def features(self, x: torch.Tensor, taps) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        x = self.stage1(x)
        out["pool1"] = x
        x = self.stage2(x)
        out["pool2"] = x
        unknown = set(taps) - set(out)
        if unknown:
            raise KeyError(f"unknown taps {unknown}")
        return {t: out[t] for t in taps}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x, ("pool2",))["pool2"].mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def model() -> _Tiny:
    return _Tiny().eval()


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_zero_shift_is_identity(model, image) -> None:
    p = explorer.compute_panels(model, image, "pool2", 0, 0, mode="mosaic", label=2)
    assert p.stride == 4 and p.feature_shift == (0, 0)
    assert torch.equal(p.image, p.reference)
    assert p.map_difference.abs().max() == 0 and p.gap_change == 0
    assert p.probs.shape == (5,) and p.probs.sum().item() == pytest.approx(1, abs=1e-5)


@pytest.mark.parametrize("dx, dy", [(4, 0), (-8, 4), (12, -12)])
def test_multiples_of_stride_are_exact_under_circular_shift(model, image, dx, dy) -> None:
    p = explorer.compute_panels(model, image, "pool2", dx, dy, mode="circular")
    assert torch.equal(p.image, torch.roll(image, (dy, dx), dims=(-2, -1)))
    assert p.feature_shift == (dx // 4, dy // 4)
    assert p.map_difference.abs().max() < 1e-5
    assert p.gap_change < 1e-5


def test_other_shifts_alias(model, image) -> None:
    p = explorer.compute_panels(model, image, "pool2", 1, 0, mode="circular")
    assert p.map_change > 1e-3  # not equivariant for a 1 px shift after two stride-2 pools
    assert p.gap_change > 1e-4  # and the GAP vector changes: the residual aliasing
    p1 = explorer.compute_panels(model, image, "pool1", 2, 0, mode="circular")
    assert p1.stride == 2 and p1.map_change < 1e-5 and p1.gap_change < 1e-5  # pool1 is exact for even shifts


def test_channel_view_and_errors(model, image) -> None:
    p = explorer.compute_panels(model, image, "pool1", 3, 1, channel=2)
    assert p.map_reference.shape == (16, 16) and p.gap_reference.shape == (6,)
    with pytest.raises(ValueError, match="channel 9 out of range"):
        explorer.compute_panels(model, image, "pool1", 0, 0, channel=9)
    with pytest.raises(ValueError, match="not a tap"):
        explorer.compute_panels(model, image, "conv9", 0, 0)
    with pytest.raises(ValueError, match="integer shifts"):
        explorer.compute_panels(model, image, "pool1", 0.5, 0)
    with pytest.raises(ValueError, match="unknown shift mode"):
        explorer.compute_panels(model, image, "pool1", 1, 0, mode="spiral")


def test_text_figure_and_data(model, image, tmp_path) -> None:
    p = explorer.compute_panels(model, image, "pool2", 3, 0, label=1, head="gap", class_names=list("abcde"))
    text = explorer.panel_text(p)
    assert text.startswith(f"shift (dx, dy) = (3, 0) | prediction: {p.prediction} ({'abcde'[p.prediction]}) (p=")
    assert "true: 1 (b)" in text and "head: gap" in text
    fig = explorer.draw_panels(p)
    assert len(fig.axes) == 7 and fig._suptitle.get_text() == text  # five panels and two colour bars
    written = figures.save_figure(fig, "test_explorer", explorer.panels_data(p), out_dir=tmp_path)
    assert written["png"].stat().st_size > 1000 and written["data"].suffix == ".json"
    assert explorer.figure_png(fig)[:4] == b"\x89PNG"


def test_widget_reacts_to_controls(model, image) -> None:
    pytest.importorskip("ipywidgets")
    images = torch.stack([image, image.flip(-1)])
    view = explorer.explorer_widget({"gap": model, "gap2": _Tiny(seed=3).eval()}, images, torch.tensor([0, 1]),
                                    layers=("pool1", "pool2"), max_shift=8, initial={"layer": "pool2"})
    descriptions = {w.description for w in view.controls.values()}
    assert {"head", "layer", "image", "shift x", "shift y", "shift mode"} <= descriptions
    assert "shift (dx, dy) = (0, 0)" in view.text.value
    png0 = view.picture.value
    view.controls["shift x"].value = 3
    assert "shift (dx, dy) = (3, 0)" in view.text.value
    assert view.picture.value != png0 and view.panels.dx == 3
    view.controls["head"].value = "gap2"
    assert "head: gap2" in view.text.value
    view.controls["channel"].value = 99  # out of range: the view says so instead of raising
    assert "error" in view.text.value and "out of range" in view.text.value
    with pytest.raises(ValueError, match="unknown control"):
        explorer.explorer_widget({"gap": model}, images, initial={"zoom": 2})


def test_head_model_adapter(model, image) -> None:
    class Trunk(nn.Module):
        def forward(self, x, taps):
            return model.features(x, taps)

    class Head(nn.Module):
        taps = ("pool2",)

        def forward(self, feats):
            return model.fc(feats["pool2"].mean(dim=(2, 3)))

    hm = depth_heads.HeadModel(Trunk(), Head()).eval()
    x = image[None]
    torch.testing.assert_close(hm(x), model(x))
    assert set(hm.features(x, ("pool1",))) == {"pool1"}


# ----------------------------------------------------------------------------- periodicity analysis

from shiftinv.models import vgg
from shiftinv.shifts import sweep  # the engine's function


@pytest.fixture(scope="module")
def tiny_vgg():
    torch.manual_seed(0)
    trunk = vgg.build_trunk(width=1 / 32, batch_norm=False, circular=True).eval()
    heads = {depth_heads.depth_head_name(t): vgg.build_head("final_gap", trunk, 4, 64, gap_taps=(t,)).eval()
             for t in ("pool1", "pool2", "pool3")}
    heads["flatten"] = vgg.build_head("flatten", trunk, 4, 64).eval()
    with torch.no_grad():  # random heads give near-constant logits: make the responses visible
        for head in heads.values():
            for m in head.modules():
                if isinstance(m, nn.Linear):
                    m.weight.mul_(100)
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    return trunk, heads, images, torch.tensor([0, 1, 2])


def test_predicted_period(tiny_vgg) -> None:
    trunk, heads, _, _ = tiny_vgg
    assert periodicity.predicted_period(trunk, heads["gap_pool1"]) == 2
    assert periodicity.predicted_period(trunk, heads["gap_pool3"]) == 8
    assert periodicity.predicted_period(trunk, heads["flatten"]) is None
    multi = vgg.build_head("multi_gap", trunk, 4, 64)
    assert periodicity.predicted_period(trunk, multi) == 32
    aps = vgg.build_trunk(width=1 / 32, pool="aps", circular=True)
    assert periodicity.predicted_period(aps, multi) == 1


def test_circular_sweep_is_exactly_periodic_with_predicted_period(tiny_vgg) -> None:
    trunk, heads, images, labels = tiny_vgg
    shifts_ = [(dx, 0) for dx in range(-16, 16)]
    res = sweep(trunk, heads, images, labels, shifts_, "circular", device="cpu", keep_logits=True,
                      progress=False, batch_size=96)
    predicted = {h: periodicity.predicted_period(trunk, m) for h, m in heads.items()}
    table = periodicity.periodicity_summary(res, predicted, fields=("loss", "true_logit"), label="circular")
    for head, period in (("gap_pool1", 2), ("gap_pool2", 4), ("gap_pool3", 8)):
        for _, row in table[table["head"] == head].iterrows():
            assert row.predicted_period == period
            assert row.periodic_deviation < 1e-4  # exactly periodic: aliasing alone
            assert row.invariance_deviation > 1e-4  # but not invariant
            assert row.fraction == pytest.approx(1.0, abs=1e-6)
            assert row.fundamental_period in (period, period / 2)  # P, or P/2 if the P-periodic part is tiny
            assert row.exact_period == period  # the architecture's period, found in the data
    flat = table[(table["head"] == "flatten") & (table["field"] == "loss")].iloc[0]
    assert np.isnan(flat.fraction) and flat.invariance_deviation > 1e-4
    # the response profile agrees with the sweep and the true-class logit with the logits
    dxs, loss = invariance.response_profile(res, "gap_pool2", "loss")
    assert list(dxs) == list(range(-16, 16)) and loss.shape == (3, 32)
    _, logit = invariance.response_profile(res, "gap_pool2", "true_logit")
    i = res.index(3, 0)
    assert logit[1, 19] == pytest.approx(float(res.logits["gap_pool2"][i, 1, 1]))


def test_aps_same_weights_is_exactly_invariant(tiny_vgg) -> None:
    trunk, heads, images, labels = tiny_vgg
    same = depth_heads.same_weights_trunk(trunk)
    x = images[:1]
    torch.testing.assert_close(same(x, ("pool3",))["pool3"], trunk(x, ("pool3",))["pool3"])
    zero_pad = depth_heads.same_weights_trunk(trunk, circular=False)
    assert not zero_pad.circular and not torch.allclose(zero_pad(x, ("pool3",))["pool3"], trunk(x, ("pool3",))["pool3"])
    aps = depth_heads.same_weights_trunk(trunk, pool="aps")
    gap = {"gap_pool3": heads["gap_pool3"]}
    res = sweep(aps, gap, images, labels, [(dx, 0) for dx in range(-8, 8)], "circular", device="cpu",
                      progress=False)
    row = periodicity.periodicity_summary(res, {"gap_pool3": periodicity.predicted_period(aps, gap["gap_pool3"])}).iloc[0]
    assert row.predicted_period == 1 and row.invariance_deviation < 1e-4 and row.exact_period == 1


def test_response_profile_errors(tiny_vgg) -> None:
    trunk, heads, images, labels = tiny_vgg
    res = sweep(trunk, {"gap_pool1": heads["gap_pool1"]}, images, labels, [(0, 0), (2, 0)], "circular",
                      device="cpu", progress=False)
    with pytest.raises(ValueError, match="consecutive"):
        invariance.response_profile(res, "gap_pool1")
    with pytest.raises(ValueError, match="keep_logits"):
        invariance.response_profile(res, "gap_pool1", "true_logit")
    with pytest.raises(ValueError, match="field must be"):
        invariance.response_profile(res, "gap_pool1", "entropy")


def test_train_depth_heads_trains_then_loads(tiny_vgg) -> None:
    from shiftinv.study import datasets, training

    trunk, _, images, _ = tiny_vgg
    g = torch.Generator().manual_seed(5)
    x = torch.rand(24, 3, 64, 64, generator=g)
    y = torch.arange(24) % 4
    ds = datasets.TensorImages(x, y)
    cfg = training.TrainConfig(epochs=2, batch_size=8, patience=2, device="cpu", amp=False)
    key = {"test": "depth-heads", "seed": 5}
    heads, table = depth_heads.train_depth_heads(trunk, ds, ds, 4, cfg, key, taps=("pool1", "pool4"), test_data=ds,
                                              input_size=64)
    assert list(heads) == ["gap_pool1", "gap_pool4"] and heads["gap_pool4"].taps == ("pool4",)
    assert list(table["stride"]) == [2, 16] and not table["cached"].any()
    assert table["test_acc"].between(0, 1).all()
    again, table2 = depth_heads.train_depth_heads(trunk, ds, ds, 4, cfg, key, taps=("pool1", "pool4"), input_size=64)
    assert table2["cached"].all()
    for name in heads:
        for a, b in zip(heads[name].state_dict().values(), again[name].state_dict().values()):
            assert torch.equal(a, b)


def test_exact_period() -> None:
    x = np.arange(48)
    assert periodicity.exact_period(np.sin(2 * np.pi * x / 8)) == 8
    assert periodicity.exact_period(np.stack([np.cos(2 * np.pi * x / 4), np.sin(2 * np.pi * x / 16)])) == 16
    assert periodicity.exact_period(np.full(48, 3.0)) == 1
    assert np.isnan(periodicity.exact_period(np.random.default_rng(0).normal(size=48)))

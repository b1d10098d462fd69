"""The aliasing explorer's panels, text, figure and widget, on a small stand-in model.

The stand-in is a two-stage circular-padded CNN (conv + max-pool at stride 2, twice)
with a GAP head: with circular shifts it is exactly equivariant at ``pool2`` for
shifts that are multiples of 4 and not otherwise, which the panels must show.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
from torch import nn

from shiftinv import explorer, figures


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
    assert len(fig.axes) == 5 and fig._suptitle.get_text() == text
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

    hm = explorer.HeadModel(Trunk(), Head()).eval()
    x = image[None]
    torch.testing.assert_close(hm(x), model(x))
    assert set(hm.features(x, ("pool1",))) == {"pool1"}

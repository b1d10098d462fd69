"""The steps of notebooks 01-06 (``shiftinv.study.analysis``) on tiny inputs: tables, checks and figures."""

from __future__ import annotations

from types import SimpleNamespace

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import torch

from shiftinv.models import accounting, vgg
from shiftinv.shifts import geometric, invariance, periodicity, primer, relative_loss
from shiftinv.study import aliasing, analysis, datasets, depth_heads, rotscale
from shiftinv.viz import aliasing_plots, equivariance_plots, robustness_plots


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# ---------------------------------------------------------------------------- notebook 01


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return primer.sample_image(32)  # (1, 3, 32, 32)


def test_primer_tables_are_exact_at_multiples_of_the_stride(image: torch.Tensor) -> None:
    shifts = [0, 1, 2, 3, 4]
    phase = primer.primer_phase_table(image, shifts, seed=0, depths=(1,))
    assert list(phase.columns) == ["depth", "downsampler", "shift_px", "relative_error"]
    assert len(phase) == len(shifts) * len(primer.PRIMER_DOWNSAMPLERS)
    even = phase[phase.shift_px % 2 == 0]
    assert even.relative_error.max() < 1e-5 < phase[phase.shift_px % 2 == 1].relative_error.min()
    gap = primer.primer_gap_table(image, shifts, seed=0, depths=(0, 2))
    assert sorted(gap.stride.unique()) == [1, 4]
    assert gap[(gap.stride == 1) | (gap.shift_px % 4 == 0)].gap_change.max() < 1e-5
    blur = primer.primer_blur_table(image, shifts, seed=0, gap=gap, depth=2, filter_sizes=(1, 3))
    assert list(blur.columns) == ["filter_size", "mean_gap_change", "max_gap_change", "maxpool_mean_gap_change"]
    assert blur.maxpool_mean_gap_change.iloc[0] == pytest.approx(gap[gap.stride == 4].gap_change.mean())
    conv = primer.toy_cnn(depth=1, down="none", channels=4, seed=0)
    a, b = conv(primer.roll(image, 3)).detach(), primer.roll(conv(image), 3).detach()
    err = primer.toy_equivariance_error(conv, image, shifts, stride=1)
    for fig in (equivariance_plots.plot_primer_conv_equivariance(image, a, b, 3, shifts, err),
                equivariance_plots.plot_primer_phase(phase, max(shifts)), equivariance_plots.plot_primer_gap(gap),
                equivariance_plots.plot_primer_blur(blur, 2)):
        assert isinstance(fig, plt.Figure)


# ---------------------------------------------------------------------------- notebook 02


def test_zoo_parameter_derivation_matches_the_table_and_names_a_mismatch() -> None:
    full = accounting.zoo_meta_models(num_classes=10, input_size=64)
    assert set(vgg.HEAD_KINDS) < set(full) and all(p.is_meta for p in full["flatten"].parameters())
    table = accounting.parameter_table(num_classes=10, input_size=64)
    derivation = accounting.zoo_parameter_derivation(full["flatten"], table, 10)
    assert (derivation["computed"] == derivation["table"]).all()
    assert derivation.set_index("quantity").loc["final_gap head", "computed"] == 512 * 10 + 10
    wrong = table.copy()
    wrong.loc[wrong["head"] == "multi_gap", "trainable"] += 1
    with pytest.raises(ValueError, match="multi_gap head"):
        accounting.zoo_parameter_derivation(full["flatten"], wrong, 10)
    assert isinstance(equivariance_plots.plot_zoo_parameters(table, accounting.headline_reductions(table)), plt.Figure)


def test_zoo_receptive_fields_and_circular_drift() -> None:
    rf = accounting.zoo_receptive_field_table(64)
    assert set(rf["pool"]) == {"max", "blur"}
    assert isinstance(equivariance_plots.plot_zoo_receptive_fields(rf), plt.Figure)
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)  # (N, 3, S, S)
    shifts = [0, 1, 2, 32]
    drift = invariance.zoo_circular_drift(x, shifts, width=1 / 64, seed=0, pools=("max", "aps"))
    assert drift.loc[drift["pool"] == "aps", "drift"].max() < 1e-12  # APS: exact at every circular shift
    exact = invariance.zoo_exact_shifts(drift)
    assert exact.loc["pool1", "max"] == "0, 2, 32" and exact.loc["pool5", "aps"] == "0, 1, 2, 32"
    assert isinstance(equivariance_plots.plot_zoo_circular_drift(drift, shifts), plt.Figure)


# ---------------------------------------------------------------------------- notebook 03


def _tiny_images(n: int = 6, size: int = 32, classes: int = 3) -> datasets.TensorImages:
    gen = torch.Generator().manual_seed(0)
    return datasets.TensorImages(torch.rand(n, 3, size, size, generator=gen), torch.arange(n) % classes)


def test_heads_data_samples_and_sizes() -> None:
    splits = SimpleNamespace(train=_tiny_images(), classes=["a", "b", "c"], image_size=32,
                             sizes=lambda: {"train": 6, "val": 2, "test": 2})
    sizes = analysis.heads_split_sizes(splits)
    assert sizes.to_dict("list") == {"split": ["train", "val", "test"], "images": [6, 2, 2], "image_size": [32] * 3}
    assert len(robustness_plots.plot_heads_data_samples(splits, n=4).axes) == 4


def test_heads_figures_draw_from_tables() -> None:
    hist = pd.DataFrame({"model": ["vgg/trunk"] * 2 + ["blur/final_gap"] * 2, "epoch": [1, 2, 1, 2],
                         "val_acc": [0.5, 0.6, 0.4, 0.7], "train_loss": [1.0, 0.5, 2.0, 1.0]})
    assert isinstance(robustness_plots.plot_heads_training_curves(hist), plt.Figure)
    summary = pd.DataFrame({"model": ["vgg/flatten", "vgg/final_gap"], "test_acc": [0.9, 0.95],
                            "head_params": [10_000, 100]})
    assert isinstance(robustness_plots.plot_heads_accuracy_params(summary), plt.Figure)


def test_heads_direct_vs_cached_accuracy_raises_on_disagreement() -> None:
    test = _tiny_images(20)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 3)).eval()
    profile = SimpleNamespace(head_train=SimpleNamespace(eval_batch_size=4), device="cpu", seed=7,
                              precision="float32", channels_last=False, feature_dtype="float32")
    with torch.no_grad():
        correct = net(test.images).argmax(1) == test.labels

    def model_set(outcomes: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(splits=SimpleNamespace(test=test), profile=profile,
                               predictor=lambda t: (lambda x: {"m": net(x)}), test_outcomes={"v/m@7": outcomes})

    check = analysis.heads_direct_vs_cached_accuracy(model_set(correct), "v/m")
    acc = float(correct.double().mean())
    assert check["direct"] == pytest.approx(acc) and check["cached"] == pytest.approx(acc) and check["n"] == len(test)
    wrong = torch.full_like(correct, bool(acc < 0.5))  # all right when the net is mostly wrong, and vice versa
    with pytest.raises(ValueError, match="cached features disagree"):
        analysis.heads_direct_vs_cached_accuracy(model_set(wrong), "v/m")


# ---------------------------------------------------------------------------- notebook 04


def _robustness_rows() -> pd.DataFrame:
    rows = []
    for h, acc_loss, rel, l0 in (("vgg/flatten", 0.5, 2.0, 0.1), ("vgg/final_gap", 0.1, 0.3, 1.2),
                                 ("vgg/multi_gap", 0.2, 0.4, 0.9)):
        row = {"head": h, "runs": 3, "n_images": 40, "loss0": l0}
        for stat, v in (("acc0", 0.9), ("acc_mean", 0.9 - acc_loss), ("acc_loss", acc_loss), ("dataset_signed", rel),
                        ("pred_change", acc_loss / 2)):
            row.update({stat: v, f"{stat}_lo": v * 0.8, f"{stat}_hi": v * 1.2})
        rows.append(row)
    return pd.DataFrame(rows)


def test_robustness_texts_and_figures() -> None:
    rel = _robustness_rows()
    text = analysis.denominator_text(rel)
    assert "6.67 times" in text and "0.1 nats against 1.2" in text and "a factor 12 of that ratio" in text
    assert "0.5 against 0.1" in text  # the accuracy drop, without the denominator
    maps = pd.DataFrame({"head": ["h"] * 4, "dx": [0, 8, 0, 16], "dy": [0, 0, 16, 16], "accuracy": [1.0, 0.2, 0.8, 0.6]})
    assert analysis.describe_maps(maps, 16) == ("- `h`: 1.00 centred, 0.65 on average over the grid (0.80 on shifts "
                                                "that are multiples of 16 px, 0.20 elsewhere)")
    assert isinstance(robustness_plots.plot_robustness_relative_loss(rel), plt.Figure)
    order = relative_loss.relative_loss_definitions()
    long = pd.DataFrame([{"head": h, "definition": d, "value": float(i + j), "computable_from_authors_outputs": c}
                         for i, h in enumerate(rel["head"])
                         for j, (d, c) in enumerate(zip(order["definition"], order["computable_from_authors_outputs"]))])
    assert isinstance(robustness_plots.plot_robustness_definitions(long, order, rel["head"]), plt.Figure)
    line = pd.DataFrame({"head": ["vgg/flatten"] * 3 + ["aps/multi_gap"] * 3, "dx": [-1, 0, 1] * 2,
                         "accuracy": [0.5, 1.0, 0.5, 1.0, 1.0, 1.0], "loss": [1.0, 0.1, 1.0, 0.1, 0.1, 0.1]})
    assert isinstance(robustness_plots.plot_robustness_profiles(line), plt.Figure)
    frag = pd.DataFrame({"head": ["a", "b"], "p_top1_change": [0.1, 0.0], "mean_abs_change": [0.02, 0.0]})
    assert isinstance(robustness_plots.plot_robustness_one_pixel(frag), plt.Figure)
    result = SimpleNamespace(num_shifts=9, num_images=4, heads=["a", "b"], meta={"seconds": 1.25})
    assert analysis.robustness_sweep_text(result) == "9 shifts x 4 images x 2 heads in 1.2 s"
    assert analysis.robustness_sweep_text(SimpleNamespace(**{**vars(result), "meta": {}})).endswith("2 heads")


# ---------------------------------------------------------------------------- notebook 05


@pytest.fixture(scope="module")
def tiny_model_set() -> SimpleNamespace:
    """Three width-1/64 trunks at 64 px (plain, BlurPool, APS + circular) with 3-class heads."""
    torch.manual_seed(0)
    trunks = {"vgg": vgg.build_trunk(width=1 / 64).eval(),
              "blur": vgg.build_trunk(width=1 / 64, pool="blur").eval(),
              "aps": vgg.build_trunk(width=1 / 64, pool="aps", circular=True).eval()}
    kinds = {"vgg": ("flatten", "multi_gap", "final_gap"), "blur": ("multi_gap",), "aps": ("multi_gap", "final_gap")}
    heads = {t: {k: vgg.build_head(k, trunks[t], num_classes=3, input_size=64).eval() for k in ks}
             for t, ks in kinds.items()}
    return SimpleNamespace(trunks=trunks, heads=heads)


def test_aliasing_steps_run_the_three_settings(tiny_model_set: SimpleNamespace) -> None:
    ms = tiny_model_set
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))  # (N, 3, H, W)
    labels = torch.tensor([0, 1])
    circ = depth_heads.same_weights_trunk(ms.trunks["vgg"], circular=True)
    settings = aliasing.aliasing_settings(ms, ms.heads["vgg"], circ, "zero")
    assert {k: v[1] for k, v in settings.items()} == {"protocol": "zero", "circular": "circular", "aps": "circular"}
    results = {name: aliasing.aliasing_run_setting(name, setting, images, labels, 4, {"test": "tiny"},
                                                      batch_size=16, device="cpu")
               for name, setting in settings.items()}
    assert results["circular"].num_shifts == 8 and results["protocol"].num_images == 2
    curves = aliasing.aliasing_spectra_curves(results, ["multi_gap", "flatten"])
    assert set(curves["what"]) == {"response", "power"} and set(curves["setting"]) == {"protocol", "circular"}
    periods = {h: periodicity.predicted_period(ms.trunks["vgg"], ms.heads["vgg"][h]) for h in ("multi_gap", "flatten")}
    assert isinstance(aliasing_plots.plot_aliasing_spectra(curves, periods, "tiny"), plt.Figure)
    table = aliasing.aliasing_period_table(results, ms.trunks, ms.heads, circ)
    assert "exact_is_predicted" in table and set(table["setting"]) == set(settings)
    assert isinstance(aliasing_plots.plot_aliasing_periodicity(table), plt.Figure)
    check = aliasing.aliasing_boundary_check(table)
    assert list(check["setting"]) == ["protocol", "circular", "aps", "aps"]
    assert check.loc[check["head"] == "aps/final_gap", "invariance_deviation"].iloc[0] < 1e-4  # APS: invariant
    assert isinstance(aliasing_plots.plot_aliasing_boundary(results), plt.Figure)
    chosen = aliasing.aliasing_explorer_models(ms, ms.heads["vgg"], circ)
    assert {"vgg/flatten", "vgg+circular/multi_gap", "blur/multi_gap", "aps/final_gap"} <= set(chosen)


# ---------------------------------------------------------------------------- notebook 06


def test_rotscale_protocol_table_and_figures(tiny_model_set: SimpleNamespace) -> None:
    base = tiny_model_set
    trunks = {"vgg": base.trunks["vgg"]}
    heads = {"vgg": {k: base.heads["vgg"][k] for k in ("flatten", "final_gap")}}

    def predictor(t: str):
        def predict(x: torch.Tensor) -> dict[str, torch.Tensor]:
            with torch.no_grad():
                return vgg.run_heads(trunks[t], heads[t], x)
        return predict

    profile = SimpleNamespace(sweep_batch=8, to_dict=lambda: {"name": "tiny-rotscale"})
    ms = SimpleNamespace(trunks=trunks, heads=heads, predictor=predictor, profile=profile,
                         names=lambda: ["vgg/flatten", "vgg/final_gap"])
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    labels = torch.tensor([0, 1, 2])
    table = rotscale.rotscale_table(ms, images, labels, (0.0, 10.0), (0.5, 1.0), device="cpu")
    assert set(table["head"]) == {"vgg/flatten", "vgg/final_gap"} and set(table["kind"]) == {"rotation", "scale"}
    assert len(table) == 2 * (2 + 2)
    names = ms.names()
    palette = robustness_plots.rotscale_palette(names)
    assert isinstance(robustness_plots.plot_rotscale_curves(table, names, palette, "tiny"), plt.Figure)
    summary = geometric.robustness_summary(table).rename(columns={"head": "model"})
    assert isinstance(robustness_plots.plot_rotscale_summary(summary, names, palette), plt.Figure)
    panels = rotscale.rotscale_examples(images[:1], [0.0, 10.0], [0.5])
    assert [t for t, _ in panels] == ["rotation 0 deg", "rotation 10 deg", "scale 0.5"]
    assert isinstance(robustness_plots.plot_rotscale_examples(panels, "tiny"), plt.Figure)


def test_rotscale_zero_canvas_keeps_only_the_centre_copy() -> None:
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    out = rotscale.rotscale_rescale_zero_canvas(x, 0.5)
    top, left, nh, nw = geometric.scaled_box((32, 32), 0.5)
    inside = torch.zeros_like(out, dtype=torch.bool)
    inside[..., top:top + nh, left:left + nw] = True
    assert (out[~inside] == 0).all() and out[inside].abs().sum() > 0
    assert torch.equal(rotscale.rotscale_rescale_zero_canvas(x, 1.5),
                       geometric.rescale(x, 1.5))
    predict = lambda imgs: {"h": torch.stack([imgs.mean((1, 2, 3)), -imgs.mean((1, 2, 3))], 1)}  # noqa: E731
    zero = rotscale.rotscale_zero_canvas_table(predict, x, torch.tensor([0]), [0.5], "cpu")
    assert zero.to_dict("records") == [{"scale": 0.5, "head": "h", "accuracy_zero_canvas": 1.0}]

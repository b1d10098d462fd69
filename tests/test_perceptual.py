"""LPIPS parity with the `lpips` package, the retrained baseline, the GAP metric, PSNR/SSIM."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from reference import taps
from shiftinv.perceptual import evaluate, iqa_evaluation, raid
from shiftinv.perceptual import metrics as perceptual_metrics
from shiftinv.perceptual import profiles as perceptual_profiles
from shiftinv.perceptual import zoo as perceptual_zoo
from shiftinv.viz import perceptual_plots

warnings.filterwarnings("ignore", category=UserWarning)


@pytest.fixture(scope="module")
def features() -> torch.nn.Sequential:
    return perceptual_metrics.random_vgg16_features(seed=3)


@pytest.fixture(scope="module")
def trunk(features) -> torch.nn.Module:
    return taps.TorchvisionTaps(features, normalize="lpips").eval()


def _pair(n: int = 3, size: int = 48, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(n, 3, size, size, generator=g)
    x1 = (x0 + 0.1 * torch.randn(n, 3, size, size, generator=g)).clamp(0, 1)
    return x0, x1


def test_random_features_follow_torchvision_init_rule() -> None:
    a, b = perceptual_metrics.random_vgg16_features(seed=7), perceptual_metrics.random_vgg16_features(seed=7)
    c = perceptual_metrics.random_vgg16_features(seed=8)
    torch.testing.assert_close(a[0].weight, b[0].weight)
    assert not torch.equal(a[0].weight, c[0].weight)
    w = a[28].weight  # conv5_3: Kaiming normal, fan_out = 512 * 3 * 3
    assert w.std().item() == pytest.approx((2 / (512 * 9)) ** 0.5, rel=0.02)
    assert a[28].bias.abs().max() == 0


def test_layer_names_follow_torchvision(features) -> None:
    assert len(taps.VGG16_LAYER_NAMES) == len(features) == 31
    for name, module in zip(taps.VGG16_LAYER_NAMES, features):
        kind = {"conv": torch.nn.Conv2d, "relu": torch.nn.ReLU, "pool": torch.nn.MaxPool2d}[name[:4]]
        assert isinstance(module, kind), name
    assert [taps.VGG16_LAYER_NAMES.index(t) for t in perceptual_metrics.LPIPS_TAPS] == [3, 8, 15, 22, 29]
    assert [taps.VGG16_LAYER_NAMES.index(t) for t in perceptual_metrics.POOL_TAPS] == [4, 9, 16, 23, 30]


@pytest.mark.parametrize("size", [32, 56])
def test_lpips_matches_the_lpips_package(features, trunk, size: int) -> None:
    ours = perceptual_metrics.load_lpips_weights(perceptual_metrics.LinearTapMetric(trunk, perceptual_metrics.LPIPS_TAPS))
    ref = perceptual_metrics.lpips_reference(features)
    x0, x1 = _pair(size=size, seed=size)
    with torch.no_grad():
        a = ours(x0, x1)
        b = ref(x0, x1, normalize=True).flatten()
        per_tap = ours.per_tap(x0, x1)
        _, ref_layers = ref(x0, x1, retPerLayer=True, normalize=True)
    assert a.shape == (3,)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    for (tap, ours_k), ref_k in zip(per_tap.items(), ref_layers):
        torch.testing.assert_close(ours_k, ref_k.flatten(), atol=1e-5, rtol=1e-4, msg=tap)
    # the linear weights matter: uniform weights give different numbers
    plain = perceptual_metrics.LinearTapMetric(trunk, perceptual_metrics.LPIPS_TAPS)
    with torch.no_grad():
        assert not torch.allclose(plain(x0, x1), a, rtol=1e-2)


def test_lpips_weights_in_shared_data_equal_the_package(shared_data, trunk) -> None:
    path = shared_data / "lpips" / "v0.1" / "vgg.pth"
    if not path.is_file():
        pytest.skip(f"{path} absent")
    a = perceptual_metrics.load_lpips_weights(perceptual_metrics.LinearTapMetric(trunk), path).weight
    b = perceptual_metrics.load_lpips_weights(perceptual_metrics.LinearTapMetric(trunk)).weight
    torch.testing.assert_close(a, b)
    assert (a >= 0).all() and a.numel() == 1472


def test_lpips_weights_errors(tmp_path, trunk) -> None:
    bad = tmp_path / "bad.pth"
    torch.save({"lin0.model.1.weight": torch.ones(1, 64, 1, 1)}, bad)
    with pytest.raises(KeyError, match="lin1"):
        perceptual_metrics.load_lpips_weights(perceptual_metrics.LinearTapMetric(trunk), bad)
    with pytest.raises(ValueError, match="channels"):
        perceptual_metrics.load_lpips_weights(perceptual_metrics.LinearTapMetric(trunk, perceptual_metrics.POOL_TAPS[::-1]), perceptual_metrics.lpips_weights_path())


def test_lpips_package_builds_without_downloading(monkeypatch, features) -> None:
    import torch.hub

    def refuse(*args, **kwargs):
        raise AssertionError(f"tried to download {args[:1]}")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    perceptual_metrics.lpips_reference(features)


def test_baseline_and_gap_metric(trunk) -> None:
    base = perceptual_metrics.LinearTapMetric(trunk, perceptual_metrics.POOL_TAPS)
    gap = perceptual_metrics.GAPMetric(trunk, perceptual_metrics.POOL_TAPS)
    assert base.num_weights == gap.num_weights == 64 + 128 + 256 + 512 + 512
    x0, x1 = _pair(seed=1)
    with torch.no_grad():
        assert torch.allclose(gap(x0, x0), torch.zeros(3), atol=1e-5)
        assert torch.allclose(base(x0, x0), torch.zeros(3), atol=1e-8)
        d = gap(x0, x1)
        taps0, taps1 = trunk(x0, perceptual_metrics.POOL_TAPS), trunk(x1, perceptual_metrics.POOL_TAPS)
        g0 = torch.cat([taps0[t].mean((2, 3)) for t in perceptual_metrics.POOL_TAPS], 1)
        g1 = torch.cat([taps1[t].mean((2, 3)) for t in perceptual_metrics.POOL_TAPS], 1)
        torch.testing.assert_close(d, torch.sqrt(((g0 - g1) ** 2).mean(1)))
        gap.weight.data[:64] = 0  # pool1 weights off: pool1 differences no longer count
        g0[:, :64] = g1[:, :64]
        torch.testing.assert_close(gap(x0, x1), torch.sqrt(((g0 - g1) ** 2).mean(1)))
        # a larger perturbation gives a larger distance
        far = (x0 + 0.4 * (x1 - x0) / 0.1).clamp(0, 1)
        assert (base(x0, far) > base(x0, x1)).all()


def test_psnr_ssim_against_skimage() -> None:
    from skimage.metrics import peak_signal_noise_ratio

    x0, x1 = _pair(n=2, size=48, seed=2)
    ours = perceptual_metrics.psnr(x0, x1)
    for k in range(2):
        a, b = x0[k].permute(1, 2, 0).double().numpy(), x1[k].permute(1, 2, 0).double().numpy()
        assert ours[k].item() == pytest.approx(peak_signal_noise_ratio(a, b, data_range=1.0), rel=1e-5)
    s = perceptual_metrics.ssim(x0, x1)
    assert ((s > 0) & (s < 1)).all()
    assert torch.allclose(perceptual_metrics.ssim(x0, x0), torch.ones(2))
    assert perceptual_metrics.ClassicalMetric("psnr").metric_kind == "similarity"
    with pytest.raises(ValueError, match="same shape"):
        perceptual_metrics.psnr(x0, x1[:, :, :10])
    with pytest.raises(ValueError, match="unknown classical"):
        perceptual_metrics.ClassicalMetric("vif")


def test_evaluate_pairs_shares_the_trunk(trunk) -> None:
    family = perceptual_metrics.metric_family(trunk)
    family["psnr"] = perceptual_metrics.ClassicalMetric("psnr")
    batches = [_pair(n=2, seed=s) for s in range(2)]
    table, feats = evaluate.evaluate_pairs(family, batches, keep_features=True)
    assert list(table.columns) == ["lpips", "baseline", "gap", "psnr"] and len(table) == 4
    with torch.no_grad():
        direct = torch.cat([family["gap"](a, b) for a, b in batches]).numpy()
    np.testing.assert_allclose(table["gap"], direct, rtol=1e-5)
    assert feats["baseline"].shape == (4, 1472)
    assert evaluate.metric_kinds(family) == {"lpips": "distance", "baseline": "distance", "gap": "distance",
                                      "psnr": "similarity"}


def test_metric_trunk_same_conv_weights_for_every_pool() -> None:
    plain = perceptual_metrics.metric_trunk("max", seed=1)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        a = plain(x, ("relu1_2",))["relu1_2"]
    try:
        pass
    except ImportError:
        pytest.skip("shiftinv.models.vgg not available yet")
    blur = perceptual_metrics.metric_trunk("blur", seed=1)
    with torch.no_grad():
        b = blur(x, ("relu1_2",))["relu1_2"]
    torch.testing.assert_close(a, b)  # before the first pool, the two trunks are the same network


def test_evaluate_stimuli_matches_direct_calls_and_shift_study() -> None:
    import pandas as pd

    from shiftinv.perceptual import stimuli

    trunk = perceptual_metrics.metric_trunk("max", seed=2)
    metrics = {"gap": perceptual_metrics.GAPMetric(trunk), "lpips": perceptual_metrics.load_lpips_weights(perceptual_metrics.LinearTapMetric(trunk)),
               "psnr": perceptual_metrics.ClassicalMetric("psnr")}
    refs, names = stimuli.demo_references(32, stimuli.DEMO_IMAGES[:2])
    images, table = stimuli.make_kadid_style(refs, names, torch.Generator().manual_seed(0), ["white_noise"])
    table = table.iloc[::-1].reset_index(drop=True)  # order must not matter
    values, feats = evaluate.evaluate_stimuli(metrics, refs, images, table, batch_size=3, keep_features=True)
    x0 = refs[torch.tensor(np.ascontiguousarray(table["ref_index"].to_numpy()))]
    x1 = images[torch.tensor(np.ascontiguousarray(table["index"].to_numpy()))]
    with torch.no_grad():
        np.testing.assert_allclose(values["gap"], metrics["gap"](x0, x1).numpy(), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(values["lpips"], metrics["lpips"](x0, x1).numpy(), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(values["psnr"], perceptual_metrics.psnr(x0, x1).numpy(), rtol=1e-5)
    assert feats["gap"].shape == (len(table), 1472)

    table["score"] = table["level"].astype(float)
    summary, per_pair = evaluate.srcc_under_shifts(metrics, refs, images, table, [0, 4], "score", "distortion",
                                            baseline=values)
    assert len(per_pair) == 2 * len(table) and set(summary["shift"]) == {0, 4}
    s0 = summary[summary["shift"] == 0].set_index("metric")
    assert s0.loc["gap", "monotonicity"] == pytest.approx(1.0)  # more noise, larger distance
    mean = summary.pivot(index="metric", columns="shift", values="mean_distance")
    assert (mean.loc[["gap", "lpips"], 4] > mean.loc[["gap", "lpips"], 0]).all()  # a shift adds distance
    assert isinstance(summary, pd.DataFrame)


def test_backbone_weights_per_profile(tmp_path) -> None:
    from torchvision.models import VGG16_Weights

    assert perceptual_profiles.backbone_weights("demo", "ignored.pth") is None
    assert perceptual_profiles.backbone_weights("cifar") == "hed"  # the classification half's backbone
    assert perceptual_profiles.backbone_weights("paper", str(tmp_path / "w.pth")) == str(tmp_path / "w.pth")
    assert perceptual_profiles.backbone_weights("paper") is VGG16_Weights.IMAGENET1K_V1
    assert perceptual_profiles.backbone_weights("natural") == "hed"
    assert perceptual_profiles.backbone_weights("natural", "keras:/x.h5") == "keras:/x.h5"
    with pytest.raises(ValueError, match="PROFILE must be one of"):
        perceptual_profiles.backbone_weights("imagenet")


def test_perceptual_profiles_change_data_and_sizes() -> None:
    demo, cifar = perceptual_profiles.get_perceptual_profile("demo"), perceptual_profiles.get_perceptual_profile("cifar")
    assert perceptual_profiles.get_perceptual_profile("natural").replace(name="cifar") == cifar
    assert demo.backbone_weights() is None
    paper = perceptual_profiles.get_perceptual_profile("paper")
    # the authors' settings: native frames, their recipes, both RAID anchor protocols
    assert (paper.image_size, paper.recipe, paper.data, paper.raid_source) == (0, "paper", "datasets", "raid")
    assert paper.anchor_protocols == ("excluded", "included")
    smoke = perceptual_profiles.get_perceptual_profile("paper", smoke=True, device="cpu")
    assert smoke.image_size == 0 and smoke.torch_device().type == "cpu" and smoke.max_pairs_per_ref > 0
    natural = perceptual_profiles.get_perceptual_profile("natural")
    assert natural.weights == "hed" and natural.pools == ("max", "blur", "aps") and natural.n_images == 24
    assert "HED" in natural.backbone_label()
    p = perceptual_profiles.perceptual_profile_from_params("demo", False, vgg_weights="ignored.pth", image_size=-1, epochs=-1, recipe="")
    assert p == demo
    assert perceptual_profiles.perceptual_profile_from_params("paper", False, image_size=64, recipe="lpips").image_size == 64
    with pytest.raises(ValueError, match="multiple of 32"):
        perceptual_profiles.perceptual_profile_from_params("paper", False, image_size=100)
    with pytest.raises(ValueError, match="RECIPE"):
        perceptual_profiles.perceptual_profile_from_params("paper", False, recipe="keras")
    with pytest.raises(ValueError, match="unknown profile"):
        perceptual_profiles.get_perceptual_profile("typo")


def test_evaluate_table_streams_native_frames(tmp_path) -> None:
    """Disk streaming (one reference at a time) equals scoring the same pairs in memory."""
    from shiftinv.perceptual import images as perceptual_images
    from shiftinv.perceptual import iqa

    g = torch.Generator().manual_seed(0)
    rows = []
    for r in range(2):
        ref = torch.rand(3, 70, 100, generator=g)  # native frame, cropped to 64x96 for the metrics
        perceptual_images.save_image(ref, tmp_path / f"r{r}.png")
        for k in range(3):
            perceptual_images.save_image((ref + 0.05 * (k + 1) * torch.randn(ref.shape, generator=g)).clamp(0, 1),
                           tmp_path / f"d{r}{k}.png")
            rows.append({"ref": f"r{r}", "ref_path": str(tmp_path / f"r{r}.png"), "dist_path": str(tmp_path / f"d{r}{k}.png")})
    table = pd.DataFrame(rows)
    zoo = perceptual_zoo.metric_zoo(("max",), lpips_weights=False, classical=("psnr",), device="cpu")
    streamed, feats = evaluate.evaluate_table(zoo, table, None, batch_size=2, keep_features=True)
    refs, images, mem_table = iqa.load_into_memory(table, None, square=False)
    assert images.shape[-2:] == (64, 96)
    in_memory, mem_feats = evaluate.evaluate_stimuli(zoo, refs, images, mem_table, keep_features=True)
    for name in zoo:
        np.testing.assert_allclose(streamed[name], in_memory[name], rtol=1e-5)
    torch.testing.assert_close(feats["gap/max"], mem_feats["gap/max"])


@pytest.mark.gpu
def test_metrics_and_training_on_cuda_match_the_cpu() -> None:
    """DEVICE=cuda: the same distances and the same trained weights as on the CPU (to float tolerance)."""
    from shiftinv.perceptual import metric_training, stimuli

    refs, names = stimuli.demo_references(64, stimuli.DEMO_IMAGES[:2])
    images, table = stimuli.make_kadid_style(refs, names, torch.Generator().manual_seed(0), ["gaussian_blur", "jpeg"])
    out = {}
    for device in ("cpu", "cuda"):
        zoo = perceptual_zoo.metric_zoo(("max", "aps"), classical=(), device=device)
        values, feats = evaluate.evaluate_stimuli(zoo, refs, images, table, keep_features=True)
        gap = zoo["gap/max"]
        metric_training.train_metric(gap, feats["gap/max"], torch.tensor(table["level"].to_numpy(), dtype=torch.float32),
                        metric_training.recipe_config("paper", gap, epochs=3, lr=1e-2, score_kind="distortion"))
        out[device] = (values, gap.weight.detach().cpu())
    for name in ("lpips/max", "baseline/aps", "gap/aps"):
        np.testing.assert_allclose(out["cuda"][0][name], out["cpu"][0][name], rtol=1e-3, atol=1e-5)
    torch.testing.assert_close(out["cuda"][1], out["cpu"][1], rtol=1e-3, atol=1e-4)


# ----------------------------------------------------------------------------------------------
# The pipelines of notebooks 07-10


def test_profile_label_of_the_hed_trunk_is_the_weights_label() -> None:
    from shiftinv.models import pretrained

    assert perceptual_profiles.get_perceptual_profile("natural").backbone_label() == pretrained.label("hed")


def test_notebook_07_helpers_on_a_random_trunk() -> None:
    trunk = perceptual_metrics.metric_trunk("max", seed=2)
    zoo = {"lpips/max": perceptual_metrics.load_lpips_weights(perceptual_metrics.LinearTapMetric(trunk)), "gap/max": perceptual_metrics.GAPMetric(trunk),
           "psnr": perceptual_metrics.ClassicalMetric("psnr")}
    family = perceptual_zoo.family_table(zoo)
    assert list(family["metric"]) == ["lpips/max", "gap/max"] and (family["weights"] == 1472).all()
    weights_df = perceptual_zoo.lpips_weight_table(zoo["lpips/max"])
    assert len(weights_df) == 1472 and (weights_df.groupby("tap")["weight"].diff().dropna() <= 0).all()
    smoke = perceptual_profiles.get_perceptual_profile("demo", smoke=True)
    assert "unit tests" in perceptual_zoo.lpips_parity(smoke, zoo["lpips/max"], *_pair(1, 32))  # smoke runs skip the check
    refs, names = _pair(1, 32)[0], ["a"]
    from shiftinv.perceptual import stimuli

    images, table = stimuli.make_kadid_style(refs, names, torch.Generator().manual_seed(0), ["white_noise", "jpeg"])
    values, _ = evaluate.evaluate_stimuli(zoo, refs, images, table)
    long = perceptual_zoo.normalised_responses(values, evaluate.metric_kinds(zoo))
    assert long["normalised"].between(0, 1).all() and set(long["metric"]) == set(zoo)
    # PSNR is a similarity: negated, so that it grows with the level like a distance
    psnr = long[(long["metric"] == "psnr") & (long["distortion"] == "white_noise")].sort_values("level")
    assert psnr["normalised"].iloc[-1] == pytest.approx(1.0)


def test_notebook_08_pipeline_on_embedded_pairs(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SHIFTINV_RESULTS", str(tmp_path))
    profile = perceptual_profiles.get_perceptual_profile("demo", smoke=True).replace(n_refs=2, epochs=1, n_boot=20)
    gen = torch.Generator().manual_seed(0)
    sets = iqa_evaluation.iqa_pair_sets(profile, gen)
    assert list(sets) == ["embedded"] and "2 references x 3 distortions x 5 levels" in iqa_evaluation.describe_pair_sets(sets)
    assert iqa_evaluation.hygiene_report(sets) == "synthetic pairs, nothing to check"
    trunk = perceptual_metrics.metric_trunk("max", seed=0)
    zoo = {"baseline/max": perceptual_metrics.LinearTapMetric(trunk, perceptual_metrics.POOL_TAPS), "gap/max": perceptual_metrics.GAPMetric(trunk),
           "psnr": perceptual_metrics.ClassicalMetric("psnr")}
    names = iqa_evaluation.trainable_metrics(zoo)
    assert names == ["baseline/max", "gap/max"]
    scored = iqa_evaluation.score_pair_sets(zoo, sets, profile)
    splits = iqa_evaluation.iqa_splits(scored, names, profile)
    values, feats = scored[splits.test]
    n_train = int((values["ref_index"] < 1).sum())
    assert (splits.score_col, splits.score_kind) == ("level", "distortion")
    assert splits.train[0]["gap/max"].shape == (n_train, 1472) and len(splits.select[1]) == len(values) - n_train
    same = iqa_evaluation.rescore(zoo, values.copy(), feats, names)
    np.testing.assert_allclose(same["gap/max"], values["gap/max"], rtol=1e-5)  # same weights, same distances
    history = iqa_evaluation.train_metric_weights(zoo, names, splits, profile)
    assert set(history["metric"]) == set(names) and list(tmp_path.rglob("*"))  # checkpointed under results/
    result, per_distortion = iqa_evaluation.iqa_results(values, evaluate.metric_kinds(zoo), splits, gen, n_boot=20)
    assert list(result["monotonicity"]) == sorted(result["monotonicity"]) and per_distortion is not None
    fig, name, data = perceptual_plots.iqa_figure(result, per_distortion, len(values))
    assert name == "08_monotonicity" and set(data) == {"summary", "per_distortion"}


def test_notebook_09_source_and_protocols(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SHIFTINV_DATA", str(tmp_path))  # no Kodak images, no responses
    profile = perceptual_profiles.get_perceptual_profile("demo", smoke=True)
    assert raid.anchor_protocols(profile) == ("excluded",)
    assert raid.anchor_protocols(profile, "both") == ("excluded", "included")
    with pytest.raises(ValueError, match="ANCHORS"):
        raid.anchor_protocols(profile, "some")
    source, kodak, responses = raid.raid_inputs(profile)  # demo: embedded, whatever data there are
    assert source == "embedded" and kodak == str(tmp_path / "kodak") and responses == tmp_path / "raid" / "responses.csv"
    natural = perceptual_profiles.get_perceptual_profile("natural", smoke=True)
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'kodak'}.*RAID_SOURCE=embedded"):
        raid.raid_inputs(natural)  # no silent fall-back to stimuli without human responses
    assert raid.raid_inputs(natural.replace(raid_source="embedded"))[0] == "embedded"  # asked by name
    refs, images, table, human = raid.raid_stimuli(source, profile, torch.Generator().manual_seed(0))
    assert not human and tuple(images.shape[-2:]) == (profile.image_size,) * 2
    assert raid.anchor_rows(table, "included").all() and not raid.anchor_rows(table, "excluded")[table["level"] == 1].any()


def test_notebook_10_pairs_on_embedded_data() -> None:
    profile = perceptual_profiles.get_perceptual_profile("demo", smoke=True)
    refs, images, table, kind = evaluate.shift_pairs(profile, torch.Generator().manual_seed(0))
    assert kind == "distortion" and len(refs) == profile.n_refs_shift
    assert (table["score"] == table["level"]).all() and table["distortion"].nunique() == 2

"""Unit tests of shiftinv.models.vgg and shiftinv.models.layers (CPU, small widths and inputs)."""

from __future__ import annotations

import itertools

import pytest
import torch
import torchvision
from torch import nn

from shiftinv.models import accounting, layers, vgg
from shiftinv.shifts import invariance
from shiftinv.viz import equivariance_plots
from shiftinv.workbook import cache


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tiny models run fastest single-threaded on a shared CPU; restore afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

W = 0.125  # width of the test models: 8, 16, 32, 64, 64 channels


def _images(n: int = 2, size: int = 64, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g, dtype=dtype)


def _seeded_trunk(seed: int = 0, **kw) -> vgg.VGGTrunk:
    torch.manual_seed(seed)
    return vgg.build_trunk(width=W, **kw).double().eval()


# --------------------------------------------------------------------------- names and geometry


def test_layer_names_follow_torchvision_layout():
    assert len(vgg.LAYER_NAMES) == 31 and len(vgg.LAYER_NAMES_BN) == 44
    assert [vgg.LAYER_NAMES.index(t) for t in vgg.POOL_TAPS] == [4, 9, 16, 23, 30]
    assert [vgg.LAYER_NAMES.index(t) for t in vgg.LPIPS_TAPS] == [3, 8, 15, 22, 29]
    for batch_norm, tv in ((False, torchvision.models.vgg16), (True, torchvision.models.vgg16_bn)):
        with torch.device("meta"):
            ref = tv().features
            trunk = vgg.build_trunk(batch_norm=batch_norm)
        names = vgg.layer_names(batch_norm)
        kinds = {"conv": nn.Conv2d, "bn": nn.BatchNorm2d, "relu": nn.ReLU, "pool": nn.MaxPool2d}
        for name, layer in zip(names, ref):
            assert isinstance(layer, kinds[name.rstrip("0123456789_")]), name
        # same state-dict keys and shapes as torchvision's features
        ours = trunk.state_dict()
        theirs = {f"features.{k}": v for k, v in ref.state_dict().items()}
        assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}


def test_channels_stride_and_out_size_match_real_feature_maps():
    for pool, circular, size in [("max", False, 64), ("max", False, 72), ("blur", False, 64),
                                 ("blur", True, 64), ("aps", True, 64), ("aps", False, 96)]:
        trunk = _seeded_trunk(pool=pool, circular=circular)
        taps = vgg.POOL_TAPS + vgg.LPIPS_TAPS + ("conv3_1",)
        feats = trunk(_images(1, size), taps)
        assert list(feats) == list(taps)
        for tap, f in feats.items():
            side = trunk.out_size(tap, size)
            assert tuple(f.shape) == (1, trunk.channels(tap), side, side), (pool, circular, tap)
        assert [trunk.stride(t) for t in vgg.POOL_TAPS] == [2, 4, 8, 16, 32]
        assert trunk.stride("relu3_3") == 4
    assert [vgg.build_trunk(width=1.0).channels(t) for t in vgg.POOL_TAPS] == [64, 128, 256, 512, 512]


def test_width_scaling_keeps_13_convs_and_at_least_one_channel():
    trunk = vgg.build_trunk(width=0.001)
    convs = [m for m in trunk.features if isinstance(m, nn.Conv2d)]
    assert len(convs) == 13 and all(c.out_channels == 1 for c in convs)
    with pytest.raises(ValueError, match="width"):
        vgg.build_trunk(width=0)


def test_layer_table_receptive_field_of_vgg16():
    table = accounting.layer_table(vgg.build_trunk(width=W), 256).set_index("name")
    assert table.loc["pool5", "receptive_field"] == 212  # the classic VGG-16 value
    assert table.loc["pool5", "stride"] == 32 and table.loc["pool5", "out_size"] == 8
    blur = accounting.layer_table(vgg.build_trunk(width=W, pool="blur", blur_size=3), 256).set_index("name")
    assert blur.loc["pool1", "receptive_field"] == 8  # conv 5 + dense max 1 + blur 2


# --------------------------------------------------------------------------- feature access


def test_taps_equal_running_torchvision_sequential_and_stop_early():
    trunk = _seeded_trunk()
    x = _images(2, 32)
    feats = trunk(x, ("conv2_1", "relu1_2", "pool2"))
    h = (x - trunk.shift) / trunk.scale
    expect = {}
    for i, layer in enumerate(trunk.features[:10]):
        h = layer(h.clone())
        expect[vgg.LAYER_NAMES[i]] = h
    for t in ("conv2_1", "relu1_2", "pool2"):
        torch.testing.assert_close(feats[t], expect[t], rtol=0, atol=0)
    assert (feats["conv2_1"] < 0).any()  # a conv tap is not clobbered by the in-place ReLU after it
    calls = []
    hooks = [m.register_forward_hook(lambda *a, i=i: calls.append(i)) for i, m in enumerate(trunk.features)]
    trunk(x, ("relu1_2",))
    for hk in hooks:
        hk.remove()
    assert calls == [0, 1, 2, 3]


def test_bad_taps_and_inputs_give_clear_errors():
    trunk = vgg.build_trunk(width=W)
    with pytest.raises(ValueError, match="unknown layer name 'pool6'.*pool5"):
        trunk(torch.rand(1, 3, 32, 32), ("pool6",))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        trunk(torch.rand(3, 32, 32), ("pool1",))
    with pytest.raises(ValueError, match="pool must be one of"):
        vgg.build_trunk(pool="avg")
    with pytest.raises(ValueError, match="1..7"):
        vgg.build_trunk(pool="blur", blur_size=9)
    with pytest.raises(ValueError, match="head must be one of"):
        vgg.build_vgg16("gap", width=W)


def test_lpips_normalisation_matches_lpips_scaling_layer():
    lpips = pytest.importorskip("lpips")
    trunk = vgg.build_trunk(width=W, normalize="lpips")
    x = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(trunk.normalize_input(x), lpips.lpips.ScalingLayer()(2 * x - 1))
    imagenet = vgg.build_trunk(width=W).normalize_input(x)
    ref = torchvision.transforms.Normalize(vgg.IMAGENET_MEAN, vgg.IMAGENET_STD)(x)
    torch.testing.assert_close(imagenet, ref)


# --------------------------------------------------------------------------- heads


def test_heads_shapes_inputs_and_shared_trunk():
    trunk = _seeded_trunk()
    heads = {k: vgg.build_head(k, trunk, num_classes=7, input_size=64).double().eval() for k in vgg.HEAD_KINDS}
    assert heads["flatten"].in_features == 64 * 2 * 2
    assert heads["final_gap"].in_features == 64
    assert heads["multi_gap"].in_features == 8 + 16 + 32 + 64 + 64
    assert heads["gap_flatten"].in_features == 184 + 256
    assert heads["multi_gap"].taps == vgg.POOL_TAPS
    x = _images(3, 64)
    logits = vgg.run_heads(trunk, heads, x)
    for k, h in heads.items():
        assert logits[k].shape == (3, 7)
        torch.testing.assert_close(logits[k], h(trunk(x, h.taps)))
    assert set(vgg.union_taps(heads)) == set(vgg.POOL_TAPS)
    lp = vgg.build_head("multi_gap", trunk, num_classes=5, gap_taps=vgg.LPIPS_TAPS)
    assert lp.taps == vgg.LPIPS_TAPS and lp.in_features == 184
    with pytest.raises(ValueError, match="no GAP layers"):
        vgg.build_head("flatten", trunk, gap_taps=("pool1",))
    with pytest.raises(ValueError, match="sized for pool5 maps"):
        heads["flatten"](trunk(_images(1, 96), ("pool5",)))


def test_flatten_head_sizes_itself_from_input_size():
    with torch.device("meta"):
        m256 = vgg.build_vgg16("flatten")
        m224 = vgg.build_vgg16("flatten", input_size=224)
    assert m256.head.in_features == 8 * 8 * 512 and m224.head.in_features == 7 * 7 * 512


def test_parameter_table_reproduces_the_paper_exactly():
    t = accounting.parameter_table().set_index("head")
    assert (t["trunk"] == 14_714_688).all()
    assert t.loc["flatten", ["trainable", "total"]].tolist() == [5_243_040, 19_957_728]
    assert t.loc["final_gap", ["trainable", "total"]].tolist() == [82_080, 14_796_768]
    assert t.loc["multi_gap", ["trainable", "total"]].tolist() == [235_680, 14_950_368]
    assert t.loc["gap_flatten", ["trainable", "total"]].tolist() == [5_478_560, 20_193_248]
    assert t.loc["fc", "total"] == 138_357_544
    assert t.loc["multi_gap", "head_inputs"] == 1472 and t.loc["gap_flatten", "head_inputs"] == 34_240
    red = accounting.headline_reductions(accounting.parameter_table())
    assert round(100 * red["trainable"]) == 98  # 5.2M -> 82K
    assert 0.89 < red["total"] < 0.90  # 138.4M -> 14.8M is -89.3% (the paper rounds to 14M, -90%)
    # the stock model counted on the meta device equals torchvision's own count
    with torch.device("meta"):
        assert sum(p.numel() for p in torchvision.models.vgg16().parameters()) == t.loc["fc", "total"]


def test_frozen_backbone_gets_no_gradient_and_stays_in_eval():
    torch.manual_seed(0)
    model = vgg.build_vgg16("multi_gap", num_classes=4, width=W, batch_norm=True, input_size=32)
    model.train()
    assert model.head.training and not model.trunk.training
    loss = nn.functional.cross_entropy(model(torch.rand(2, 3, 32, 32)), torch.tensor([0, 3]))
    loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in model.trunk.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.head.parameters())
    running = model.trunk.features[1].running_mean.clone()
    model(torch.rand(2, 3, 32, 32))
    torch.testing.assert_close(model.trunk.features[1].running_mean, running)  # BN statistics untouched
    free = vgg.build_vgg16("final_gap", num_classes=4, width=W, freeze_backbone=False, input_size=32).train()
    assert free.trunk.training and all(p.requires_grad for p in free.parameters())


# --------------------------------------------------------------------------- weights


@pytest.fixture(scope="module")
def torchvision_vgg16(tmp_path_factory):
    """A randomly initialised torchvision VGG-16 and its state dict saved in two layouts."""
    torch.manual_seed(1)
    ref = torchvision.models.vgg16().eval()
    folder = tmp_path_factory.mktemp("weights")
    full, feats = folder / "vgg16_full.pth", folder / "vgg16_features.pth"
    cache.atomic_torch_save(ref.state_dict(), full)
    cache.atomic_torch_save(ref.features.state_dict(), feats)  # keys 0.weight, ...
    return ref, full, feats


@pytest.mark.slow
def test_torchvision_state_dict_loads_and_gives_the_same_outputs(torchvision_vgg16):
    ref, full, feats = torchvision_vgg16
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    xn = torchvision.transforms.Normalize(vgg.IMAGENET_MEAN, vgg.IMAGENET_STD)(x)
    with torch.no_grad():
        expect_conv = ref.features(xn)
        expect_logits = ref(xn)
        for path in (full, feats):
            trunk = vgg.build_trunk(weights=path)
            torch.testing.assert_close(trunk(x, ("pool5",))["pool5"], expect_conv, rtol=1e-5, atol=1e-6)
        model = vgg.build_vgg16("fc", num_classes=1000, weights=str(full), input_size=64).eval()
        torch.testing.assert_close(model(x), expect_logits, rtol=1e-5, atol=1e-6)


def test_weight_files_bad_input_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth.*not found.*VGG16_Weights"):
        vgg.build_trunk(weights=tmp_path / "nope.pth")
    small = vgg.build_trunk(width=W)
    path = tmp_path / "small.pth"
    cache.atomic_torch_save(small.state_dict(), path)
    vgg.build_trunk(width=W, weights=path)  # loads fine at its own width
    with pytest.raises(ValueError, match=r"features.0.weight has shape \(8, 3, 3, 3\).*\(64, 3, 3, 3\)"):
        vgg.build_trunk(weights=path)
    bn = tmp_path / "bn.pth"
    cache.atomic_torch_save(vgg.build_trunk(width=W, batch_norm=True).state_dict(), bn)
    with pytest.raises(ValueError, match="batch_norm=True"):
        vgg.build_trunk(width=W, weights=bn)
    vgg.build_trunk(width=W, batch_norm=True, weights=bn)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a loadable torch file"):
        vgg.build_trunk(weights=junk)
    listing = tmp_path / "list.pth"
    cache.atomic_torch_save([torch.zeros(1)], listing)
    with pytest.raises(ValueError, match="not a state dict"):
        vgg.build_trunk(weights=listing)
    nofeat = tmp_path / "nofeat.pth"
    cache.atomic_torch_save({"classifier.0.weight": torch.zeros(2, 2)}, nofeat)
    with pytest.raises(ValueError, match="no 'features"):
        vgg.build_trunk(weights=nofeat)
    with pytest.raises(ValueError, match="VGG16_BN_Weights"):
        vgg.build_trunk(batch_norm=True, weights=torchvision.models.VGG16_Weights.IMAGENET1K_V1)


def test_fc_head_checkpoint_with_other_class_count_loads_all_but_last_layer(tmp_path):
    torch.manual_seed(0)
    five = vgg.build_vgg16("fc", num_classes=5, width=W, input_size=32)
    path = tmp_path / "fc5.pth"
    cache.atomic_torch_save(five.state_dict(), path)  # our own layout: trunk.features.*, head.classifier.*
    with pytest.warns(UserWarning, match=r"classifier.\['6.bias', '6.weight'\] not loaded"):
        seven = vgg.build_vgg16("fc", num_classes=7, width=W, input_size=32, weights=path)
    torch.testing.assert_close(seven.head.classifier[3].weight, five.head.classifier[3].weight)
    torch.testing.assert_close(seven.trunk.features[0].weight, five.trunk.features[0].weight)
    assert seven.head.classifier[6].weight.shape == (7, 512)  # hidden 4096 * width


def test_weights_enum_goes_through_torchvision_get_state_dict(monkeypatch):
    asked = []
    small = vgg.build_trunk(width=W)
    sd = {f"features.{k}": v + 1 for k, v in small.features.state_dict().items()}

    def fake_get_state_dict(self, *args, **kwargs):
        asked.append(self)
        return sd

    monkeypatch.setattr(torchvision.models._api.WeightsEnum, "get_state_dict", fake_get_state_dict)
    trunk = vgg.build_trunk(width=W, weights=torchvision.models.VGG16_Weights.IMAGENET1K_V1)
    trunk2 = vgg.build_trunk(width=W, weights="IMAGENET1K_V1")
    assert asked == [torchvision.models.VGG16_Weights.IMAGENET1K_V1] * 2
    torch.testing.assert_close(trunk.features[0].weight, small.features[0].weight + 1)
    torch.testing.assert_close(trunk2.features[0].weight, trunk.features[0].weight)


# --------------------------------------------------------------------------- anti-aliasing layers

# Zhang (2019) antialiased-cnns reference filters (unnormalised), filt_size 1..7
ZHANG_FILTERS = {1: [1.0], 2: [1.0, 1.0], 3: [1.0, 2.0, 1.0], 4: [1.0, 3.0, 3.0, 1.0], 5: [1.0, 4.0, 6.0, 4.0, 1.0],
                 6: [1.0, 5.0, 10.0, 10.0, 5.0, 1.0], 7: [1.0, 6.0, 15.0, 20.0, 15.0, 6.0, 1.0]}


@pytest.mark.parametrize("size", range(1, 8))
def test_blurpool_filters_are_normalised_binomial(size):
    a = torch.tensor(ZHANG_FILTERS[size], dtype=torch.float64)
    expect = torch.outer(a, a) / torch.outer(a, a).sum()
    pool = layers.BlurPool(size, stride=1, pad="zeros")
    torch.testing.assert_close(pool.filt[0, 0].double(), expect)
    # the layer applies it depthwise: an impulse comes out as the (flipped = same) filter in every channel
    x = torch.zeros(1, 3, 9, 9, dtype=torch.float64)
    x[:, :, 4, 4] = 1.0
    y = pool(x)
    lo = 4 - size // 2
    for c in range(3):
        torch.testing.assert_close(y[0, c, lo:lo + size, lo:lo + size], expect)
        assert y[0, c].sum().item() == pytest.approx(1.0)


def test_blurpool_matches_antialiased_cnns_reference():
    aa = pytest.importorskip("antialiased_cnns")
    x = torch.rand(2, 5, 17, 16)
    for size, pad in itertools.product(range(1, 8), ("reflect", "zero")):
        ref = aa.BlurPool(5, pad_type="refl" if pad == "reflect" else "zero", filt_size=size, stride=2)
        ours = layers.BlurPool(size, stride=2, pad="reflect" if pad == "reflect" else "zeros")
        torch.testing.assert_close(ours(x), ref(x), msg=f"filt_size={size}, pad={pad}")


def test_blur_trunk_matches_antialiased_cnns_vgg():
    """Our pool="blur" trunk equals Zhang's anti-aliased VGG features (same weights, width 1/8)."""
    aa = pytest.importorskip("antialiased_cnns")
    for size in (2, 3, 5):
        ref = aa.vgg.make_layers(vgg.scaled_cfg(W), filter_size=size).double().eval()
        ours = vgg.build_trunk(width=W, pool="blur", blur_size=size, normalize="none").double().eval()
        convs = [m for m in ref if isinstance(m, nn.Conv2d)]
        ours.features.load_state_dict({f"{i}.{k}": v for i, m in enumerate(ours.features) if isinstance(m, nn.Conv2d)
                                       for k, v in convs.pop(0).state_dict().items()})
        x = _images(2, 96)
        with torch.no_grad():
            torch.testing.assert_close(ours(x, ("pool5",))["pool5"], ref(x))


def test_aps_downsample_is_shift_equivariant_and_keeps_largest_component():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 8, 8, generator=g, dtype=torch.float64)
    y = layers.APSDownsample()(x)
    comps = [x[:, :, i::2, j::2] for i in (0, 1) for j in (0, 1)]
    for n in range(4):
        best = max(range(4), key=lambda k: comps[k][n].norm().item())
        torch.testing.assert_close(y[n], comps[best][n])
    for dy, dx in [(1, 0), (0, 1), (1, 1), (3, 5)]:
        ys = layers.APSDownsample()(layers.circular_shift(x, dy, dx))
        # the output of a shifted input is a circular shift of the output (per sample)
        for n in range(4):
            assert any(torch.equal(ys[n], torch.roll(y[n], (a, b), (-2, -1))) for a in range(4) for b in range(4))
    with pytest.raises(ValueError, match="even height and width"):
        layers.APSDownsample()(torch.zeros(1, 1, 5, 6))


# --------------------------------------------------------------------------- exact invariance


def _gap_logits(trunk: vgg.VGGTrunk, x: torch.Tensor) -> torch.Tensor:
    torch.manual_seed(5)
    head = vgg.build_head("multi_gap", trunk, num_classes=6, input_size=x.shape[-1]).double()
    with torch.no_grad():
        return head(trunk(x, head.taps))


def _shifted_batch(x: torch.Tensor, shifts) -> torch.Tensor:
    return torch.cat([layers.circular_shift(x, dy, dx) for dy, dx in shifts])


def test_circular_padding_with_aps_is_exactly_invariant_to_every_circular_shift():
    trunk = _seeded_trunk(pool="aps", circular=True)
    x = _images(1, 64)
    shifts = [(dy, dx) for dy in range(0, 64, 9) for dx in range(0, 64, 11)] + [(1, 0), (0, 1), (63, 63), (17, 33)]
    logits = _gap_logits(trunk, _shifted_batch(x, shifts))  # (len(shifts), 6)
    ref = _gap_logits(trunk, x)
    torch.testing.assert_close(logits, ref.expand_as(logits), rtol=1e-10, atol=1e-10)
    # the same GAP model with plain max-pool is not invariant to these shifts
    plain = _gap_logits(_seeded_trunk(pool="max", circular=True), _shifted_batch(x, shifts))
    assert (plain - plain[:1]).abs().max() > 1e-4


def _gap5(trunk: vgg.VGGTrunk, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return trunk(x, ("pool5",))["pool5"].mean(dim=(2, 3))  # (N, C)


def test_circular_padding_with_max_pool_is_invariant_only_to_multiples_of_32():
    trunk = _seeded_trunk(pool="max", circular=True)
    x = _images(2, 64)
    ref, gap5 = _gap_logits(trunk, x), _gap5(trunk, x)
    for dy, dx in [(32, 0), (0, 32), (32, 32), (-32, 64)]:
        xs = layers.circular_shift(x, dy, dx)
        torch.testing.assert_close(_gap_logits(trunk, xs), ref, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(_gap5(trunk, xs), gap5, rtol=1e-10, atol=1e-10)
    for dy, dx in [(1, 0), (0, 1), (16, 0), (8, 8)]:  # float64 noise is ~1e-16
        moved = _gap5(trunk, layers.circular_shift(x, dy, dx))
        assert (moved - gap5).abs().max() > 1e-6 * gap5.abs().max(), (dy, dx)
    # without circular padding even a shift by 32 is not exact (the borders move)
    zero = _seeded_trunk(pool="max", circular=False)
    assert (_gap5(zero, layers.circular_shift(x, 32, 0)) - _gap5(zero, x)).abs().max() > 1e-6


def test_circular_blurpool_gap_is_invariant_to_multiples_of_16_only():
    """A binomial blur (size >= 2) zeroes the Nyquist frequencies that alias onto DC when
    subsampling by 2, so the mean after BlurPool equals the mean of the dense max-pool
    before it: GAP(pool5) inherits the period of pool4 (16 px), not 32 px."""
    trunk = _seeded_trunk(pool="blur", circular=True)
    x = _images(2, 64)
    gap5 = _gap5(trunk, x)
    for dy, dx in [(16, 0), (0, 48), (32, 16)]:
        torch.testing.assert_close(_gap5(trunk, layers.circular_shift(x, dy, dx)), gap5, rtol=1e-10, atol=1e-10)
    for dy, dx in [(1, 0), (0, 1), (8, 0), (4, 4)]:
        moved = _gap5(trunk, layers.circular_shift(x, dy, dx))
        assert (moved - gap5).abs().max() > 1e-6 * gap5.abs().max(), (dy, dx)


def test_gap_drift_is_zero_exactly_at_multiples_of_the_tap_stride():
    trunk = _seeded_trunk(pool="max", circular=True)
    drift = invariance.gap_drift_under_circular_shift(trunk, _images(1, 64), [0, 1, 8, 16, 32], batch_size=2)
    d = drift.pivot(index="shift", columns="tap", values="drift")
    assert d.loc[32].max() < 1e-12 and d.loc[0].max() == 0
    assert d.loc[16, "pool4"] < 1e-12 < d.loc[16, "pool5"]
    assert d.loc[8, "pool3"] < 1e-12 < d.loc[8, "pool4"]
    assert (d.loc[1] > 1e-8).all()


def test_describe_and_draw_architectures_read_the_modules():
    import matplotlib

    matplotlib.use("Agg")
    with torch.device("meta"):
        zoo = {k: vgg.build_vgg16(k) for k in ("flatten", "gap_flatten")}
        zoo["aps"] = vgg.build_vgg16("multi_gap", pool="aps", circular=True)
    d = accounting.describe_architecture(zoo["gap_flatten"]).set_index("stage")
    assert d.loc["block5", "reads"] == "GAP+Flatten" and d.loc["block5", "in_features"] == 512 + 32_768
    assert d.loc["head", "in_features"] == 34_240 and d.loc["block3", "size"] == 32
    assert d.loc[["block1", "block2", "block3", "block4", "block5"], "in_features"].sum() == 34_240
    assert "APS" in accounting.describe_architecture(zoo["aps"]).loc[1, "pool"]
    fig = equivariance_plots.draw_architectures(zoo)
    texts = " ".join(t.get_text() for ax in fig.axes for t in ax.texts)
    assert "34,240 → 160" in texts and "trainable 5,243,040" in texts
    matplotlib.pyplot.close(fig)

"""Metric-weight training: Pearson loss vs MOS, 2AFC ranking loss, checkpoints and resume."""

from __future__ import annotations

import pytest
import torch
from scipy import stats as sps

from shiftinv.perceptual import metric_training, metrics


class _FakeTrunk(torch.nn.Module):
    """Only ``channels`` is needed: training works on precomputed pair features."""

    def channels(self, tap: str) -> int:
        return {"a": 6, "b": 4}[tap]


def _problem(n: int = 256, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    feats = torch.rand(n, 10, generator=g)  # (N, D) non-negative, like LPIPS pair features
    w_true = torch.tensor([3.0, 0, 0, 2, 0, 0, 0, 1, 0, 0])
    mos = 5 - feats @ w_true + 0.05 * torch.randn(n, generator=g)  # quality: falls with the distance
    return feats, mos


def test_pearson_loss_matches_scipy_and_sign() -> None:
    g = torch.Generator().manual_seed(1)
    d, s = torch.rand(50, generator=g), torch.rand(50, generator=g)
    r = sps.pearsonr(d.numpy(), s.numpy()).statistic
    assert metric_training.pearson_loss(d, s, "quality").item() == pytest.approx(1 + r, abs=1e-5)
    assert metric_training.pearson_loss(d, s, "distortion").item() == pytest.approx(1 - r, abs=1e-5)
    assert metric_training.pearson_loss(d, 5 - 2 * d, "quality").item() == pytest.approx(0, abs=1e-5)
    with pytest.raises(ValueError, match="equal length"):
        metric_training.pearson_loss(d, s[:10])


@pytest.mark.parametrize("cls", [metrics.LinearTapMetric, metrics.GAPMetric])
def test_pearson_training_improves_selection_srcc(cls) -> None:
    feats, mos = _problem()
    metric = cls(_FakeTrunk(), ("a", "b"))
    if cls is metrics.GAPMetric:
        feats = feats - 0.5  # GAP differences have both signs
        mos = 5 - torch.sqrt(((torch.tensor([3.0, 0, 0, 2, 0, 0, 0, 1, 0, 0]) * feats) ** 2).mean(1))
    before = -sps.spearmanr(metric.distance_from_features(feats).detach().numpy(), mos.numpy()).statistic
    hist = metric_training.train_metric(metric, feats[:192], mos[:192], metric_training.MetricTrainConfig(epochs=30, lr=0.05),
                           val_features=feats[192:], val_scores=mos[192:])
    after = -sps.spearmanr(metric.distance_from_features(feats[192:]).detach().numpy(), mos[192:].numpy()).statistic
    assert after > before + 0.1 and after > 0.9
    assert len(hist) == 30 and hist["val_srcc"].max() == pytest.approx(after, abs=1e-6)
    if cls is metrics.LinearTapMetric:
        assert (metric.weight >= 0).all()


def test_resume_gives_the_same_result_as_one_run(tmp_path) -> None:
    feats, mos = _problem()
    cfg4 = metric_training.MetricTrainConfig(epochs=4, lr=0.05)
    straight = metrics.LinearTapMetric(_FakeTrunk(), ("a", "b"))
    metric_training.train_metric(straight, feats, mos, cfg4)

    ckpt = tmp_path / "metric.pt"
    metric_training.train_metric(metrics.LinearTapMetric(_FakeTrunk(), ("a", "b")), feats, mos, cfg4, checkpoint=ckpt)
    assert torch.load(ckpt, weights_only=True)["epoch"] == 4
    with pytest.raises(ValueError, match="different run"):  # another configuration refuses it
        metric_training.train_metric(metrics.LinearTapMetric(_FakeTrunk(), ("a", "b")), feats, mos,
                        metric_training.MetricTrainConfig(epochs=2, lr=0.05), checkpoint=ckpt)
    half = tmp_path / "half.pt"
    # simulate the interruption: train with a checkpoint, stop at epoch 2 via a truncated config copy
    interrupted = metrics.LinearTapMetric(_FakeTrunk(), ("a", "b"))
    _train_until(interrupted, feats, mos, cfg4, half, stop_after=2)
    assert torch.load(half, weights_only=True)["epoch"] == 2
    fresh = metrics.LinearTapMetric(_FakeTrunk(), ("a", "b"))  # new process: weights start at 1 again
    hist = metric_training.train_metric(fresh, feats, mos, cfg4, checkpoint=half)
    assert hist["epoch"].tolist() == [1, 2, 3, 4]
    torch.testing.assert_close(fresh.weight, straight.weight)


def _train_until(metric, feats, mos, cfg, ckpt, stop_after: int) -> None:
    """Run ``train_metric`` but raise after ``stop_after`` checkpoints (a killed process)."""
    from shiftinv.workbook import cache

    calls = {"n": 0}
    real = cache.atomic_torch_save

    def save_then_maybe_die(obj, path):
        real(obj, path)
        calls["n"] += 1
        if calls["n"] == stop_after:
            raise KeyboardInterrupt

    cache.atomic_torch_save = save_then_maybe_die
    try:
        with pytest.raises(KeyboardInterrupt):
            metric_training.train_metric(metric, feats, mos, cfg, checkpoint=ckpt)
    finally:
        cache.atomic_torch_save = real


def test_2afc_training_learns_the_preference() -> None:
    g = torch.Generator().manual_seed(3)
    f0, f1 = torch.rand(300, 10, generator=g), torch.rand(300, 10, generator=g)
    w_true = torch.tensor([4.0, 0, 0, 0, 0, 0, 0, 0, 0, 1])
    judge = (f0 @ w_true > f1 @ w_true).float()  # p1 judged closer when its true distance is smaller
    metric = metrics.LinearTapMetric(_FakeTrunk(), ("a", "b"))
    def acc() -> float:
        with torch.no_grad():
            pred = (metric.distance_from_features(f0) > metric.distance_from_features(f1)).float()
        return float((pred == judge).float().mean())
    before = acc()
    metric_training.train_metric(metric, (f0, f1), judge, metric_training.MetricTrainConfig(loss="2afc", epochs=25, lr=0.02))
    assert acc() > max(before + 0.1, 0.85)
    with pytest.raises(ValueError, match=r"features=\(F0, F1\)"):
        metric_training.train_metric(metric, f0, judge, metric_training.MetricTrainConfig(loss="2afc"))


def test_shape_errors() -> None:
    metric = metrics.GAPMetric(_FakeTrunk(), ("a",))
    with pytest.raises(ValueError, match=r"\(N, 6\)"):
        metric_training.train_metric(metric, torch.rand(10, 5), torch.rand(10))
    with pytest.raises(ValueError, match="loss must be"):
        metric_training.train_metric(metric, torch.rand(10, 6), torch.rand(10), metric_training.MetricTrainConfig(loss="mse"))


def test_paper_recipe_baseline_init_is_signed_and_stays_unclamped() -> None:
    """05a: signed glorot-uniform 1x1 weights, never clamped (the lpips recipe clamps at 0)."""
    feats, mos = _problem()
    metric = metrics.LinearTapMetric(_FakeTrunk(), ("a", "b"))
    cfg = metric_training.recipe_config("paper", metric, epochs=1, lr=1e-3)
    assert (cfg.init, cfg.nonnegative, cfg.select) == ("glorot", False, "val_loss")
    assert metric_training.recipe_config("paper", metric).epochs == 1500
    metric_training.initialise_weights(metric, "glorot", seed=0)
    w0 = metric.weight.detach().clone()
    limits = torch.tensor([(6 / 7) ** 0.5] * 6 + [(6 / 5) ** 0.5] * 4)  # per tap: sqrt(6 / (C + 1))
    assert (w0.abs() <= limits).all() and (w0 < 0).any() and (w0 > 0).any()
    metric_training.train_metric(metric, feats, mos, cfg, val_features=feats[:64], val_scores=mos[:64])
    w1 = metric.weight.detach()
    assert not torch.equal(w0, w1)  # one step moved it
    assert (w1 < 0).any()  # still signed after a training step: nothing clamped
    clamped = metrics.LinearTapMetric(_FakeTrunk(), ("a", "b"))
    metric_training.train_metric(clamped, feats, mos, metric_training.recipe_config("lpips", clamped, epochs=1))
    assert (clamped.weight >= 0).all()


def test_recipes_select_the_stated_epoch() -> None:
    feats, mos = _problem()
    gap = metrics.GAPMetric(_FakeTrunk(), ("a", "b"))
    cfg = metric_training.recipe_config("paper", gap, epochs=5, lr=0.05)
    assert (cfg.init, cfg.select) == ("ones", "train_loss")
    hist = metric_training.train_metric(gap, feats - 0.5, mos, cfg)
    best = hist.loc[hist["train_loss"].idxmin(), "epoch"]
    assert 1 <= best <= 5
    base = metrics.LinearTapMetric(_FakeTrunk(), ("a", "b"))
    hist = metric_training.train_metric(base, feats[:192], mos[:192], metric_training.recipe_config("paper", base, epochs=6, lr=0.05),
                           val_features=feats[192:], val_scores=mos[192:])
    with torch.no_grad():
        kept = metric_training.pearson_loss(base.distance_from_features(feats[192:]), mos[192:]).item()
    assert kept == pytest.approx(hist["val_loss"].min(), abs=1e-5)
    with pytest.raises(ValueError, match="recipe"):
        metric_training.recipe_config("keras", base)


def test_diverging_training_stops_and_caches_nothing(tmp_path) -> None:
    feats, mos = _problem()
    metric = metrics.LinearTapMetric(_FakeTrunk(), ("a", "b"))
    ckpt = tmp_path / "w.pt"
    bad = feats.clone()
    bad[5, 3] = float("inf")  # one broken pair feature makes the loss non-finite
    cfg = metric_training.MetricTrainConfig(epochs=3, lr=1e-3)
    with pytest.raises(FloatingPointError, match="non-finite .* epoch 1.*learning rate"):
        metric_training.train_metric(metric, bad, mos, cfg, checkpoint=ckpt)
    assert not ckpt.exists()


def test_a_damaged_checkpoint_is_set_aside_and_training_starts_over(tmp_path) -> None:
    feats, mos = _problem()
    cfg = metric_training.MetricTrainConfig(epochs=3, lr=0.05)
    straight = metrics.LinearTapMetric(_FakeTrunk(), ("a", "b"))
    metric_training.train_metric(straight, feats, mos, cfg)
    ckpt = tmp_path / "metric.pt"
    ckpt.write_bytes(b"\x00" * 16)
    again = metrics.LinearTapMetric(_FakeTrunk(), ("a", "b"))
    hist = metric_training.train_metric(again, feats, mos, cfg, checkpoint=ckpt)
    assert hist["epoch"].tolist() == [1, 2, 3] and (tmp_path / "metric.pt.corrupt").exists()
    torch.testing.assert_close(again.weight, straight.weight, rtol=0, atol=0)

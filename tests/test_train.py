"""Training loop: learning, exact resume, cached features == frozen trunk, train-or-load, L2, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from shiftinv.study import feature_data, training
from shiftinv.study.datasets import TensorImages
from shiftinv.workbook import cache, checkpoints


class TinyTrunk(nn.Module):
    """Two conv stages with taps 'a' (stride 2) and 'b' (stride 4)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.b = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))

    def forward(self, x: torch.Tensor, taps=("a", "b")) -> dict[str, torch.Tensor]:
        a = self.a(x)
        b = self.b(a)
        return {k: v for k, v in (("a", a), ("b", b)) if k in taps}


class TinyHead(nn.Module):
    """GAP of 'a' and 'b' concatenated with Flatten('b') -> linear (like the gap_flatten head)."""

    def __init__(self, classes: int = 3, size: int = 16) -> None:
        super().__init__()
        s = size // 4
        self.fc = nn.Linear(4 + 6 + 6 * s * s, classes)

    def forward(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        g = [feats[t].mean(dim=(2, 3)) for t in ("a", "b")]
        return self.fc(torch.cat([*g, feats["b"].flatten(1)], 1))


def blobs(n: int = 96, size: int = 16, seed: int = 0) -> TensorImages:
    """Three classes: a bright square in the top-left, centre or bottom-right, with noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.rand(n, 3, size, size, generator=g) * 0.3
    for i, c in enumerate(y.tolist()):
        o = [1, 6, 11][c]
        x[i, :, o : o + 4, o : o + 4] += 0.7
    return TensorImages(x.clamp(0, 1), y.long())


CFG = training.TrainConfig(epochs=4, batch_size=16, lr=3e-3, patience=10, seed=1, device="cpu")


def test_fit_learns_and_keeps_best_epoch() -> None:
    torch.manual_seed(0)
    trunk, head = TinyTrunk(), TinyHead()
    model = nn.Sequential()
    model.trunk, model.head = trunk, head  # type: ignore[assignment]
    model.forward = lambda x: head(trunk(x))  # type: ignore[method-assign]
    data = blobs()
    acc0, _ = feature_data.evaluate(model, data, device="cpu")
    result = training.fit(model, data, blobs(48, seed=1), training.TrainConfig(epochs=8, batch_size=16, lr=3e-3, device="cpu"))
    assert len(result.history) == 8
    best = max(r["val_acc"] for r in result.history)
    assert result.best_val_acc == pytest.approx(best)
    assert feature_data.evaluate(model, blobs(48, seed=1), device="cpu")[0] == pytest.approx(best)
    assert best > max(acc0, 0.6)


def test_early_stopping_stops_after_patience() -> None:
    torch.manual_seed(0)
    head = nn.Linear(5, 2)
    feats = feature_data.FeatureData({"x": torch.zeros(20, 5)}, torch.arange(20) % 2)  # nothing to learn
    model = nn.Sequential()
    model.lin = head  # type: ignore[assignment]
    model.forward = lambda f: head(f["x"])  # type: ignore[method-assign]
    result = training.fit(model, feats, feats, training.TrainConfig(epochs=50, patience=3, device="cpu"))
    assert result.stopped_early and len(result.history) == result.best_epoch + 3


def _run(tmp: Path | None, stop_after: int | None = None, init_seed: int = 0) -> tuple[dict, training.TrainResult | None]:
    torch.manual_seed(init_seed)
    trunk, head = TinyTrunk(), TinyHead()
    model = nn.Sequential()
    model.trunk, model.head = trunk, head  # type: ignore[assignment]
    model.forward = lambda x: head(trunk(x))  # type: ignore[method-assign]

    def interrupt(epoch: int, record: dict) -> None:
        if stop_after is not None and epoch == stop_after:
            raise KeyboardInterrupt

    cfg = training.TrainConfig(epochs=5, batch_size=16, lr=3e-3, patience=10, seed=3, device="cpu", shift_aug=2,
                            shift_mode="zero")
    try:
        result = training.fit(model, blobs(), blobs(48, seed=1), cfg, checkpoint=tmp, on_epoch_end=interrupt)
    except KeyboardInterrupt:
        return {}, None
    return {k: v.clone() for k, v in model.state_dict().items()}, result


def test_interrupted_run_resumes_to_the_same_weights(tmp_path: Path) -> None:
    reference, ref_result = _run(None)
    ckpt = tmp_path / "run.ckpt.pt"
    assert _run(ckpt, stop_after=2)[1] is None  # interrupted after epoch 2
    assert ckpt.exists() and cache.safe_torch_load(ckpt)["epoch"] == 2
    resumed, result = _run(ckpt)  # a fresh process would rebuild the model the same way
    assert result is not None and ref_result is not None
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4, 5]
    assert [r["val_acc"] for r in result.history] == [r["val_acc"] for r in ref_result.history]
    for k in reference:
        torch.testing.assert_close(resumed[k], reference[k], rtol=0, atol=0)


def test_head_on_cached_features_equals_head_through_frozen_trunk() -> None:
    torch.manual_seed(0)
    trunk = TinyTrunk().eval()
    for p in trunk.parameters():
        p.requires_grad_(False)
    head_a = TinyHead()
    head_b = training.clone_module(head_a)
    data, val = blobs(), blobs(48, seed=1)
    cfg = training.TrainConfig(epochs=3, batch_size=16, lr=3e-3, l2=1e-3, seed=5, device="cpu")
    res_a = training.fit(head_a, data, val, cfg, extractor=lambda x: trunk(x))
    # GAP-only tap 'a' stored as (N, C, 1, 1): the head's GAP maps it to the same vector.
    f_train = feature_data.extract_features(lambda x: trunk(x), data, gap_only=("a",), batch_size=32, device="cpu")
    f_val = feature_data.extract_features(lambda x: trunk(x), val, gap_only=("a",), batch_size=32, device="cpu")
    assert f_train.features["a"].shape == (96, 4, 1, 1) and f_train.features["b"].shape == (96, 6, 4, 4)
    res_b = training.fit(head_b, f_train, f_val, cfg)
    assert [r["val_acc"] for r in res_a.history] == [r["val_acc"] for r in res_b.history]
    for (k, va), (_, vb) in zip(head_a.state_dict().items(), head_b.state_dict().items()):
        torch.testing.assert_close(va, vb, rtol=1e-4, atol=1e-5, msg=k)


def test_l2_penalty_shrinks_the_head() -> None:
    x = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
    data = feature_data.FeatureData({"x": x}, (x[:, 0] > 0).long())
    norms = []
    for l2 in (0.0, 0.5):
        torch.manual_seed(0)
        lin = nn.Linear(8, 2)
        model = nn.Sequential()
        model.lin = lin  # type: ignore[assignment]
        model.forward = lambda f, lin=lin: lin(f["x"])  # type: ignore[method-assign]
        cfg = training.TrainConfig(epochs=10, batch_size=8, lr=1e-2, l2=l2, patience=99, device="cpu")
        training.fit(model, data, data, cfg)
        norms.append(float(lin.weight.detach().norm()))
    assert norms[1] < 0.7 * norms[0]


def test_train_or_load_trains_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SHIFTINV_RESULTS", str(tmp_path))
    data = blobs()
    feats = feature_data.extract_features(lambda x: TinyTrunk()(x), data, device="cpu")
    torch.manual_seed(0)
    head = TinyHead()
    first = training.train_or_load("tiny", {"what": "test"}, head, feats, feats, CFG)
    weights = {k: v.clone() for k, v in head.state_dict().items()}
    monkeypatch.setattr(training, "fit", lambda *a, **k: pytest.fail("should have loaded from the cache"))
    torch.manual_seed(1)
    other = TinyHead()
    second = training.train_or_load("tiny", {"what": "test"}, other, feats, feats, CFG)
    assert second.history == first.history
    for k in weights:
        torch.testing.assert_close(other.state_dict()[k], weights[k])
    assert not list(tmp_path.rglob("*.ckpt.pt"))  # the per-epoch checkpoint is gone once finished


def test_shift_augmentation_needs_images() -> None:
    feats = feature_data.FeatureData({"x": torch.zeros(4, 2)}, torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="augmentation needs images"):
        training.fit(nn.Linear(2, 2), feats, feats, training.TrainConfig(shift_aug=3, device="cpu"))


def test_random_shifts_are_seeded_and_bounded() -> None:
    a = training.random_shifts(100, 4, torch.Generator().manual_seed(0))
    b = training.random_shifts(100, 4, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.abs().max() <= 4 and a.shape == (100, 2)


def test_diverging_learning_rate_stops_with_a_clear_error_and_caches_nothing(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SHIFTINV_RESULTS", str(tmp_path))
    torch.manual_seed(0)
    trunk, head = TinyTrunk(), TinyHead()
    model = nn.Sequential()
    model.trunk, model.head = trunk, head  # type: ignore[assignment]
    model.forward = lambda x: head(trunk(x))  # type: ignore[method-assign]
    cfg = training.TrainConfig(epochs=3, batch_size=16, lr=1e6, device="cpu")
    with pytest.raises(checkpoints.TrainingDiverged) as info:
        training.train_or_load("tiny_net", {"what": "diverging"}, model, blobs(), blobs(48, seed=1), cfg,
                            desc="tiny/flatten")
    message = str(info.value)
    assert "tiny/flatten" in message and "epoch 1" in message and "learning rate 1e+06" in message
    assert "Lower the learning rate" in message
    assert not list(tmp_path.rglob("*.pt"))  # neither the result nor a checkpoint
    assert not training.is_cached("tiny_net", {"what": "diverging"}, cfg)


def test_nan_weights_stop_training(tmp_path: Path) -> None:
    lin = nn.Linear(5, 2)
    model = nn.Sequential()
    model.lin = lin  # type: ignore[assignment]
    model.forward = lambda f: lin(f["x"]) * 0.0 + lin.bias.detach().sum() * 0  # type: ignore[method-assign]
    feats = feature_data.FeatureData({"x": torch.randn(20, 5)}, torch.arange(20) % 2)
    with torch.no_grad():
        lin.weight[0, 0] = float("nan")
    with pytest.raises(checkpoints.TrainingDiverged, match="non-finite|loss is nan"):
        training.fit(model, feats, feats, training.TrainConfig(epochs=2, batch_size=10, device="cpu"), desc="nan head")


def test_checkpoint_resumes_only_its_own_run_and_sets_aside_a_corrupt_file(tmp_path: Path) -> None:
    assert checkpoints.Checkpoint(None, {"run": 1}).resume() is None
    assert not checkpoints.Checkpoint(None, {"run": 1}).save(1, lambda: {"w": torch.ones(1)})
    path = tmp_path / "run.ckpt.pt"
    ckpt = checkpoints.Checkpoint(path, {"run": 1}, every=2)
    assert ckpt.resume() is None  # nothing written yet
    assert not ckpt.save(1, lambda: pytest.fail("state asked for although no write was due"))
    assert not path.exists()
    assert ckpt.save(2, lambda: {"w": torch.full((2,), 2.0)})
    saved = checkpoints.Checkpoint(path, {"run": 1}).resume()
    assert saved is not None and saved["epoch"] == 2 and torch.equal(saved["w"], torch.full((2,), 2.0))
    assert ckpt.save(3, lambda: {"w": torch.zeros(2)}, last=True)  # the last epoch is always written
    assert cache.safe_torch_load(path)["epoch"] == 3
    with pytest.raises(ValueError, match="different run"):
        checkpoints.Checkpoint(path, {"run": 2}).resume()
    path.write_bytes(b"not a torch file")  # a damaged checkpoint: set aside, start over
    assert checkpoints.Checkpoint(path, {"run": 1}).resume() is None
    assert not path.exists() and (tmp_path / "run.ckpt.pt.corrupt").exists()


def test_divergence_names_the_reason() -> None:
    assert checkpoints.divergence(0.7, [("w", torch.ones(3))], first_loss=0.5) == ""
    assert "non-finite training loss" in checkpoints.divergence(float("nan"))
    assert "jumped" in checkpoints.divergence(2e3, first_loss=1.5)
    assert checkpoints.divergence(900.0, first_loss=0.1) == ""  # the reference is at least 1 nat
    bad = torch.tensor([1.0, float("inf")])
    assert checkpoints.divergence(parameters=[("a", torch.ones(2)), ("b", bad)]) == "non-finite weights in b"
    assert checkpoints.divergence(parameters=[("steps", torch.tensor([1, 2]))]) == ""  # integer buffers are skipped


def test_fit_refuses_the_checkpoint_of_other_initial_weights(tmp_path: Path) -> None:
    ckpt = tmp_path / "run.ckpt.pt"
    assert _run(ckpt, stop_after=1)[1] is None
    with pytest.raises(ValueError, match="different run"):  # same model and config, other initial weights
        _run(ckpt, init_seed=1)


@pytest.mark.parametrize("mode", ["zero", "mosaic", "circular"])
def test_shift_augmentation_moves_each_image_by_its_drawn_shift(mode: str) -> None:
    """The augmentation of :func:`training.fit`: ``translation.shift_each`` of ``random_shifts``, image by image
    what ``translation.translate`` gives (the per-image loop it replaced)."""
    from shiftinv.shifts import translation

    x = blobs(12).batch(torch.arange(12))[0]
    offsets = training.random_shifts(12, 6, torch.Generator().manual_seed(4))
    reference = torch.cat([translation.translate(x[i : i + 1], dx, dy, mode) for i, (dx, dy) in enumerate(offsets.tolist())])
    assert torch.equal(translation.shift_each(x, offsets, mode), reference)

"""Seeds trained side by side (``study.seeded_heads``) equal separate runs of ``training.fit``."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from shiftinv.models import vgg
from shiftinv.study import feature_data, seeded_heads, training
from shiftinv.workbook import runtime


def _features(n: int, seed: int) -> feature_data.FeatureData:
    g = torch.Generator().manual_seed(seed)
    feats = {"pool4": torch.randn(n, 8, 2, 2, generator=g), "pool5": torch.randn(n, 8, 2, 2, generator=g)}
    labels = (feats["pool5"][:, 0].mean((1, 2)) > 0).long() + 2 * (feats["pool4"][:, 1].mean((1, 2)) > 0).long()
    return feature_data.FeatureData(feats, labels)


def _heads(kind: str, seeds: tuple[int, ...]) -> dict[int, vgg.Head]:
    trunk = vgg.build_trunk(width=1 / 64)
    out = {}
    for s in seeds:
        runtime.seed_everything(s)
        out[s] = vgg.build_head(kind, trunk, num_classes=4, input_size=64,
                                gap_taps=("pool4", "pool5") if kind != "flatten" else None)
    return out


@pytest.mark.parametrize("kind,monitor", [("flatten", "val_acc"), ("multi_gap", "val_loss")])
def test_stacked_seeds_equal_separate_runs(kind: str, monitor: str) -> None:
    train, val = _features(90, 0), _features(40, 1)
    cfg = training.TrainConfig(epochs=7, batch_size=16, lr=3e-2, patience=2, l2=1e-3, device="cpu", amp=False)
    stacked = _heads(kind, (3, 11, 5))
    results = seeded_heads.fit_seeds(stacked, train, val, cfg, monitor=monitor)
    for s, head in _heads(kind, (3, 11, 5)).items():
        alone = training.fit(head, train.select(head.taps), val.select(head.taps),
                             dataclasses.replace(cfg, seed=s, monitor=monitor))
        assert torch.allclose(head.linear.weight, stacked[s].linear.weight, atol=1e-5), s
        assert torch.allclose(head.linear.bias, stacked[s].linear.bias, atol=1e-5), s
        assert results[s].best_epoch == alone.best_epoch and len(results[s].history) == len(alone.history)
        assert results[s].best_val_acc == pytest.approx(alone.best_val_acc)


def test_train_or_load_seeds_caches_and_recovers_a_damaged_file(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SHIFTINV_RESULTS", str(tmp_path))
    train, val = _features(60, 0), _features(20, 1)
    cfg = training.TrainConfig(epochs=3, batch_size=16, patience=5, device="cpu", amp=False)
    calls = []

    def data(split: feature_data.FeatureData):
        return lambda: calls.append(1) or split

    first = _heads("multi_gap", (0, 1))
    seeded_heads.train_or_load_seeds("heads", {"t": 1}, first, data(train), data(val), cfg)
    assert len(calls) == 2
    again = _heads("multi_gap", (0, 1))
    seeded_heads.train_or_load_seeds("heads", {"t": 1}, again, data(train), data(val), cfg)
    assert len(calls) == 2 and torch.equal(again[1].linear.weight, first[1].linear.weight)  # loaded, no data asked
    (path,) = (tmp_path / "heads").glob("*.pt")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # cut in half
    third = _heads("multi_gap", (0, 1))
    seeded_heads.train_or_load_seeds("heads", {"t": 1}, third, data(train), data(val), cfg)
    assert len(calls) == 4 and torch.allclose(third[1].linear.weight, first[1].linear.weight, atol=1e-6)
    assert list((tmp_path / "heads").glob("*.corrupt*"))  # the damaged file is kept aside

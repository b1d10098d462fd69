"""Batches for training and evaluating heads: images or trunk features, the batch order, evaluation.

:class:`FeatureData` holds trunk features computed once (:func:`extract_features`) so that heads on a
frozen trunk train without running the trunk again; :func:`iterate_batches` gives the batches of
one epoch in an order drawn from a seeded generator; :func:`evaluate` is the loss and accuracy of
a model on them. Used by :mod:`shiftinv.study.training` and the model set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ..workbook import runtime

Inputs = Tensor | dict[str, Tensor]


Extractor = Callable[[Tensor], Any]


@dataclass
class FeatureData:
    """Trunk features computed once: ``features[tap]`` is (N, C, h, w) (or (N, C, 1, 1) when only
    its global average is needed) and ``labels`` (N,). ``batch`` returns float32 features."""

    features: dict[str, Tensor]
    labels: Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def batch(self, index: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        return {k: v[index].float() for k, v in self.features.items()}, self.labels[index]

    def select(self, taps: tuple[str, ...] | list[str]) -> "FeatureData":
        """The same data restricted to ``taps`` (no copy)."""
        missing = [t for t in taps if t not in self.features]
        if missing:
            raise KeyError(f"features for taps {missing} were not extracted; have {sorted(self.features)}")
        return FeatureData({t: self.features[t] for t in taps}, self.labels)


# ----------------------------------------------------------------------------- batching


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))


def _default_workers() -> int:
    """DataLoader workers for on-disk datasets: ``$SHIFTINV_WORKERS``, else up to 8 with a GPU, 0 without."""
    if "SHIFTINV_WORKERS" in os.environ:
        return int(os.environ["SHIFTINV_WORKERS"])
    return min(8, (os.cpu_count() or 1) // 2) if torch.cuda.is_available() else 0


def iterate_batches(data: Any, order: Tensor, batch_size: int,
                    num_workers: int | None = None) -> Iterator[tuple[Inputs, Tensor]]:
    """Batches ``(inputs, labels (B,))`` of ``data`` in the given index order (in-memory data indexed
    directly; on-disk datasets through a DataLoader with ``num_workers`` decoding processes, default
    :func:`_default_workers`)."""
    if num_workers is None:
        num_workers = _default_workers()
    if hasattr(data, "batch"):
        for start in range(0, len(order), batch_size):
            yield data.batch(order[start : start + batch_size])
    else:
        loader = DataLoader(data, batch_size=batch_size, sampler=order.tolist(), num_workers=num_workers,
                            pin_memory=torch.cuda.is_available())
        for x, y in loader:
            yield x, torch.as_tensor(y)


def to_device(inputs: Inputs, device: torch.device) -> Inputs:
    if isinstance(inputs, dict):
        return {k: v.to(device, non_blocking=True) for k, v in inputs.items()}
    return inputs.to(device, non_blocking=True)


# ----------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Any,
    extractor: Extractor | None = None,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    amp: bool = True,
) -> tuple[float, float]:
    """Accuracy in [0, 1] and mean cross-entropy (nats) of ``model`` on ``data``.

    ``data`` is in-memory (``batch``) or a torch Dataset; ``extractor`` (frozen trunk) maps image
    batches to the model's inputs.
    """
    device = runtime.default_device(str(device) if device is not None else None)
    was_training = model.training
    model.eval()
    autocast = runtime.autocast(device, runtime.resolve_amp(device, amp))
    correct, loss, n = 0, 0.0, 0
    for x, y in iterate_batches(data, torch.arange(len(data)), batch_size):
        x, y = to_device(x, device), y.to(device)
        with autocast:
            logits = model(extractor(x) if extractor is not None else x).float()
        correct += int((logits.argmax(1) == y).sum())
        loss += float(F.cross_entropy(logits, y, reduction="sum"))
        n += int(y.shape[0])
    model.train(was_training)
    if n == 0:
        raise ValueError("evaluation data is empty")
    return correct / n, loss / n


@torch.no_grad()
def per_item_outcomes(model: nn.Module, data: Any, batch_size: int = 256,
                      device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """Per-item ``(correct (N,) bool, cross-entropy (N,) float32 in nats)`` of ``model`` on ``data``
    (in-memory data or a torch Dataset), in float32, in order."""
    device = runtime.default_device(str(device) if device is not None else None)
    was_training = model.training
    model.eval()
    correct, losses = [], []
    for x, y in iterate_batches(data, torch.arange(len(data)), batch_size):
        logits = model(to_device(x, device)).float()
        y = y.to(device)
        correct.append((logits.argmax(1) == y).cpu())
        losses.append(F.cross_entropy(logits, y, reduction="none").cpu())
    model.train(was_training)
    if not correct:
        raise ValueError("evaluation data is empty")
    return torch.cat(correct), torch.cat(losses)


@torch.no_grad()
def extract_features(
    extractor: Callable[[Tensor], Mapping[str, Tensor]],
    data: Any,
    gap_only: tuple[str, ...] | list[str] = (),
    batch_size: int = 256,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    amp: bool | str = False,
    desc: str = "features",
    channels_last: bool = False,
) -> FeatureData:
    """Run a frozen trunk once over ``data`` and keep its tap outputs (on the CPU).

    Args:
        extractor: ``images (B, 3, H, W) -> {tap: (B, C, h, w)}`` (e.g. ``lambda x: trunk(x, taps)``).
        data: in-memory data (``batch``) or a torch Dataset of (image, label).
        gap_only: taps whose spatial mean is all the heads need: stored as (N, C, 1, 1), which a
            GAP head maps to the same vector (exact), at a fraction of the memory.
        dtype: storage dtype (float16 halves memory for ImageNet-size runs).
        amp: precision of the trunk pass (:func:`shiftinv.workbook.runtime.resolve_amp`: ``"bf16"`` on
            a CPU with AVX-512 BF16 / AMX is about 3x faster than float32; the features then agree with
            float32 to about 0.5% relative).
        channels_last: NHWC batches (faster convolutions with oneDNN on CPUs); the extractor's modules
            should be NHWC too (``module.to(memory_format=torch.channels_last)``).
    Returns:
        :class:`FeatureData` with ``features[tap]`` (N, C, h, w) and ``labels`` (N,).
    """
    with runtime.reproducible():
        device = runtime.default_device(str(device) if device is not None else None)
        autocast = runtime.autocast(device, runtime.resolve_amp(device, amp))
        chunks: dict[str, list[Tensor]] = {}
        labels: list[Tensor] = []
        order = torch.arange(len(data))
        total = (len(order) + batch_size - 1) // batch_size
        for x, y in runtime.progress(iterate_batches(data, order, batch_size), total=total, desc=desc, leave=False):
            x = to_device(x, device)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast:
                feats = extractor(x)
            for tap, f in feats.items():
                f = f.float()
                if tap in gap_only:
                    f = f.mean(dim=(2, 3), keepdim=True)
                chunks.setdefault(tap, []).append(f.to("cpu", dtype))
            labels.append(y.cpu())
    return FeatureData({t: torch.cat(c) for t, c in chunks.items()}, torch.cat(labels).long())

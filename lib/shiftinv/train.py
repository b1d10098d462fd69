"""Training loop: Adam, early stopping on validation accuracy, resumable atomic checkpoints.

One loop serves both recipes of the workbook:

- a whole network trained from scratch (the demo trunk): ``fit(model, images...)``;
- a head on a frozen trunk (the paper): either through the trunk each batch
  (``fit(head, images..., extractor=trunk_fn)``, needed with shift augmentation) or, with no
  augmentation, on trunk features computed once (:func:`extract_features`, then
  ``fit(head, features...)``). The two give the same head (same seed, same batches;
  ``tests/test_train.py`` checks it), the second at a fraction of the cost.

Runs on CUDA with mixed precision (bf16 where supported, else fp16 with a gradient scaler)
when a GPU is there, on the CPU in float32 otherwise. Each epoch writes a checkpoint atomically;
a run started again with the same checkpoint path resumes after the last finished epoch and ends
with exactly the weights of an uninterrupted run (the batch order and the augmentation shifts of
epoch ``e`` come from a generator seeded by ``(seed, e)``, so nothing depends on what ran before).
:func:`train_or_load` keys the finished result by the configuration (``utils.cached``).
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from . import shifts, utils

__all__ = [
    "TrainConfig",
    "TrainResult",
    "FeatureData",
    "fit",
    "evaluate",
    "extract_features",
    "random_shifts",
    "train_or_load",
    "is_cached",
    "TrainingDiverged",
]


class TrainingDiverged(FloatingPointError):
    """Training produced a non-finite loss or non-finite weights (the message says where)."""

Inputs = Tensor | dict[str, Tensor]
Extractor = Callable[[Tensor], Any]


class Batchable(Protocol):
    """In-memory data: ``len`` and ``batch(index (B,)) -> (inputs, labels (B,))``."""

    def __len__(self) -> int: ...

    def batch(self, index: Tensor) -> tuple[Inputs, Tensor]: ...


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


@dataclass(frozen=True)
class TrainConfig:
    """Everything that shapes a training run (part of the cache key).

    Attributes:
        epochs: maximum number of epochs.
        batch_size: training batch size (the paper: 32).
        lr: Adam learning rate (the paper: 1e-3).
        patience: stop after this many epochs without a better validation accuracy (paper: 25).
        l2: Keras-style L2 penalty ``l2 * sum(w ** 2)`` on the weight matrices of the trained model's
            ``nn.Linear`` layers (the paper: 1e-4 on the flatten and multi-GAP heads); 0 = none.
        shift_aug: maximum absolute random shift in px for augmentation (0 = none); needs images.
        shift_mode: how shifted images are extended (``shifts.MODES``: "mosaic" or "zero").
        seed: seeds batch order and augmentation of every epoch.
        amp: mixed precision on CUDA (ignored on the CPU).
        device: "cpu", "cuda", ... (default: CUDA when available).
        eval_batch_size: batch size for validation and feature extraction.
        channels_last: NHWC memory format for image batches and the model (faster convolutions
            on CPUs with oneDNN; the numbers are the same up to float rounding).
    """

    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    patience: int = 25
    l2: float = 0.0
    shift_aug: int = 0
    shift_mode: str = "mosaic"
    seed: int = 666
    amp: bool = True
    device: str | None = None
    eval_batch_size: int = 256
    channels_last: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainResult:
    """What a run returns: per-epoch history (epoch, train_loss, val_loss, val_acc, seconds),
    the best epoch (1-based) and its validation accuracy, and whether it stopped early."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_acc: float = 0.0
    stopped_early: bool = False
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------- batching


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))


def _default_workers() -> int:
    """DataLoader workers for on-disk datasets: ``$SHIFTINV_WORKERS``, else up to 8 with a GPU, 0 without."""
    if "SHIFTINV_WORKERS" in os.environ:
        return int(os.environ["SHIFTINV_WORKERS"])
    return min(8, (os.cpu_count() or 1) // 2) if torch.cuda.is_available() else 0


def _batches(data: Any, order: Tensor, batch_size: int, num_workers: int | None = None) -> Iterator[tuple[Inputs, Tensor]]:
    """Batches of ``data`` in the given index order (in-memory data indexed directly; on-disk
    datasets through a DataLoader with ``num_workers`` decoding processes, default :func:`_default_workers`)."""
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


def _to(inputs: Inputs, device: torch.device) -> Inputs:
    if isinstance(inputs, dict):
        return {k: v.to(device, non_blocking=True) for k, v in inputs.items()}
    return inputs.to(device, non_blocking=True)


def random_shifts(n: int, max_shift: int, generator: torch.Generator) -> Tensor:
    """(n, 2) integer ``(dx, dy)`` drawn uniformly from ``[-max_shift, max_shift]``."""
    return torch.randint(-max_shift, max_shift + 1, (n, 2), generator=generator)


def _augment(x: Tensor, offsets: Tensor, mode: str) -> Tensor:
    """Shift image ``i`` of ``x`` (N, C, H, W) by ``offsets[i]`` = (dx, dy) (``shifts.translate``)."""
    return torch.cat([shifts.translate(x[i : i + 1], int(dx), int(dy), mode) for i, (dx, dy) in enumerate(offsets.tolist())])


def _autocast(device: torch.device, amp: bool) -> tuple[contextlib.AbstractContextManager, bool]:
    """Autocast context for ``device`` and whether fp16 needs a gradient scaler."""
    if device.type == "cuda" and amp:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype), dtype == torch.float16
    return contextlib.nullcontext(), False


def _l2_penalty(model: nn.Module) -> Tensor:
    terms = [m.weight.float().pow(2).sum() for m in model.modules() if isinstance(m, nn.Linear)]
    return torch.stack(terms).sum() if terms else torch.zeros(())


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
    device = utils.default_device(str(device) if device is not None else None)
    was_training = model.training
    model.eval()
    autocast, _ = _autocast(device, amp)
    correct, loss, n = 0, 0.0, 0
    for x, y in _batches(data, torch.arange(len(data)), batch_size):
        x, y = _to(x, device), y.to(device)
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
def extract_features(
    extractor: Callable[[Tensor], Mapping[str, Tensor]],
    data: Any,
    gap_only: tuple[str, ...] | list[str] = (),
    batch_size: int = 256,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    amp: bool = False,
    desc: str = "features",
) -> FeatureData:
    """Run a frozen trunk once over ``data`` and keep its tap outputs (on the CPU).

    Args:
        extractor: ``images (B, 3, H, W) -> {tap: (B, C, h, w)}`` (e.g. ``lambda x: trunk(x, taps)``).
        data: in-memory data (``batch``) or a torch Dataset of (image, label).
        gap_only: taps whose spatial mean is all the heads need: stored as (N, C, 1, 1), which a
            GAP head maps to the same vector (exact), at a fraction of the memory.
        dtype: storage dtype (float16 halves memory for ImageNet-size runs).
    Returns:
        :class:`FeatureData` with ``features[tap]`` (N, C, h, w) and ``labels`` (N,).
    """
    with utils.reproducible():
        device = utils.default_device(str(device) if device is not None else None)
        autocast, _ = _autocast(device, amp)
        chunks: dict[str, list[Tensor]] = {}
        labels: list[Tensor] = []
        order = torch.arange(len(data))
        total = (len(order) + batch_size - 1) // batch_size
        for x, y in utils.progress(_batches(data, order, batch_size), total=total, desc=desc, leave=False):
            with autocast:
                feats = extractor(_to(x, device))
            for tap, f in feats.items():
                f = f.float()
                if tap in gap_only:
                    f = f.mean(dim=(2, 3), keepdim=True)
                chunks.setdefault(tap, []).append(f.to("cpu", dtype))
            labels.append(y.cpu())
    return FeatureData({t: torch.cat(c) for t, c in chunks.items()}, torch.cat(labels).long())


# ----------------------------------------------------------------------------- training


def fit(
    model: nn.Module,
    train: Any,
    val: Any,
    cfg: TrainConfig,
    *,
    extractor: Extractor | None = None,
    checkpoint: Path | str | None = None,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    desc: str = "train",
) -> TrainResult:
    """Train ``model`` with Adam and early stopping; leave it with its best validation weights.

    Args:
        model: the trained module (a whole network, or a head). Its initial weights are the
            caller's (seed before building it).
        train, val: in-memory data (``TensorImages``, :class:`FeatureData`) or torch Datasets.
        cfg: :class:`TrainConfig`.
        extractor: frozen feature extractor applied to image batches (after augmentation),
            evaluated without gradients, e.g. ``lambda x: trunk(x, head.taps)``; its modules must
            be in eval mode (the caller's job).
        checkpoint: file written atomically after every epoch; if it exists, training resumes
            from it (same result as an uninterrupted run).
        on_epoch_end: called with ``(epoch, record)`` after each epoch is checkpointed (tests use it
            to simulate an interruption).
    Returns:
        :class:`TrainResult`; ``model`` holds the weights of the best epoch.
    """
    if cfg.shift_aug and extractor is None and isinstance(train, FeatureData):
        raise ValueError("shift augmentation needs images, not cached features: pass images and an extractor")
    device = utils.default_device(cfg.device)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    optim = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    autocast, needs_scaler = _autocast(device, cfg.amp)
    scaler = torch.amp.GradScaler("cuda") if needs_scaler else None

    state: dict[str, Any] = {"epoch": 0, "best_acc": -1.0, "best_epoch": 0, "bad": 0, "history": [], "best": None}
    ckpt = Path(checkpoint) if checkpoint is not None else None
    saved = utils.load_or_set_aside(ckpt) if ckpt is not None else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        optim.load_state_dict(saved["optim"])
        if scaler is not None and saved.get("scaler"):
            scaler.load_state_dict(saved["scaler"])
        state = {k: saved[k] for k in state} | ({"first_loss": saved["first_loss"]} if "first_loss" in saved else {})
    with utils.reproducible():
        return _fit_epochs(model, train, val, cfg, extractor, ckpt, on_epoch_end, desc, device, optim,
                           autocast, scaler, state)


#: A batch loss above this factor times the run's first batch loss (or 1 nat) counts as divergence.
DIVERGENCE_FACTOR = 1e3


def _diverged(desc: str, epoch: int, cfg: TrainConfig, what: str) -> TrainingDiverged:
    return TrainingDiverged(
        f"training of {desc!r} diverged in epoch {epoch}: {what} (learning rate {cfg.lr:g}, batch size "
        f"{cfg.batch_size}). Nothing was cached. Lower the learning rate (e.g. lr={cfg.lr / 10:g} in its "
        "TrainConfig) and run again.")


def _fit_epochs(model: nn.Module, train: Any, val: Any, cfg: TrainConfig, extractor: Extractor | None,
                ckpt: Path | None, on_epoch_end: Callable[[int, dict[str, float]], None] | None, desc: str,
                device: torch.device, optim: torch.optim.Optimizer, autocast: Any, scaler: Any,
                state: dict[str, Any]) -> TrainResult:
    """The epochs of :func:`fit` (after set-up and resume); see there."""
    start = time.perf_counter()
    epochs = utils.progress(range(state["epoch"] + 1, cfg.epochs + 1), desc=desc, leave=False,
                            total=cfg.epochs, initial=state["epoch"])
    stopped = state["bad"] >= cfg.patience
    for epoch in epochs if not stopped else []:
        t0 = time.perf_counter()
        model.train()
        gen = _epoch_generator(cfg.seed, epoch)
        order = torch.randperm(len(train), generator=gen)
        total_loss, seen = 0.0, 0
        for x, y in _batches(train, order, cfg.batch_size):
            if cfg.shift_aug:
                x = _augment(x, random_shifts(x.shape[0], cfg.shift_aug, gen), cfg.shift_mode)
            x, y = _to(x, device), y.to(device)
            if cfg.channels_last and isinstance(x, Tensor) and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast:
                if extractor is not None:
                    with torch.no_grad():
                        x = extractor(x)
                    if isinstance(x, dict):
                        x = {k: v.float() for k, v in x.items()}
                logits = model(x)
                loss = F.cross_entropy(logits.float(), y)
            total = loss + cfg.l2 * _l2_penalty(model).to(device) if cfg.l2 else loss
            optim.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(total).backward()
                scaler.step(optim)
                scaler.update()
            else:
                total.backward()
                optim.step()
            batch_loss = float(loss.detach())
            if not math.isfinite(batch_loss):
                raise _diverged(desc, epoch, cfg, f"the training loss is {batch_loss}")
            ref = state.setdefault("first_loss", batch_loss)
            if batch_loss > DIVERGENCE_FACTOR * max(ref, 1.0):
                raise _diverged(desc, epoch, cfg, f"the training loss jumped to {batch_loss:.3g} "
                                f"(first batch: {ref:.3g})")
            total_loss += batch_loss * int(y.shape[0])
            seen += int(y.shape[0])
        bad = [n for n, p in model.named_parameters() if p.is_floating_point() and not bool(torch.isfinite(p).all())]
        if bad:
            raise _diverged(desc, epoch, cfg, f"non-finite weights in {', '.join(bad[:3])}")
        val_acc, val_loss = evaluate(model, val, extractor, cfg.eval_batch_size, device, cfg.amp)
        record = {"epoch": epoch, "train_loss": total_loss / max(seen, 1), "val_loss": val_loss,
                  "val_acc": val_acc, "seconds": time.perf_counter() - t0}
        state["history"].append(record)
        if val_acc > state["best_acc"]:
            state.update(best_acc=val_acc, best_epoch=epoch, bad=0,
                         best={k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
        else:
            state["bad"] += 1
        state["epoch"] = epoch
        if hasattr(epochs, "set_postfix"):
            epochs.set_postfix(val_acc=f"{val_acc:.3f}", best=f"{state['best_acc']:.3f}")
        if ckpt is not None:
            utils.atomic_torch_save(
                {"model": model.state_dict(), "optim": optim.state_dict(),
                 "scaler": scaler.state_dict() if scaler is not None else {}, **state}, ckpt)
        if on_epoch_end is not None:
            on_epoch_end(epoch, record)
        if state["bad"] >= cfg.patience:
            stopped = True
            break
    if hasattr(epochs, "close"):
        epochs.close()
    if state["best"] is not None:
        model.load_state_dict(state["best"])
    return TrainResult(
        history=list(state["history"]),
        best_epoch=int(state["best_epoch"]),
        best_val_acc=float(state["best_acc"]),
        stopped_early=bool(stopped),
        seconds=time.perf_counter() - start,
    )


def train_or_load(
    name: str,
    key: Mapping[str, Any],
    model: nn.Module,
    train: Any,
    val: Any,
    cfg: TrainConfig,
    *,
    extractor: Extractor | None = None,
    refresh: bool = False,
    desc: str | None = None,
    code: Any = None,
) -> TrainResult:
    """Train ``model`` (see :func:`fit`) or load the result of an earlier identical run.

    The cache key is ``key`` (what the model and the data are; JSON-serialisable) plus ``cfg`` plus
    the code version (:func:`shiftinv.utils.code_version`) of this module and of ``code`` (default:
    the caller's module, e.g. :mod:`shiftinv.classify`, with every package module it imports).
    The finished run (weights + history) is stored under ``results/<name>/<hash>.pt``; while it
    runs, a per-epoch checkpoint ``<hash>.ckpt.pt`` beside it lets an interrupted run resume.
    A run that diverges raises :class:`TrainingDiverged` and leaves nothing cached.
    """
    code = _code(code)
    config = {"key": dict(key), "train": cfg.to_dict()}
    ckpt = utils.cache_path(name, config, ".ckpt.pt", code=code)

    def compute() -> dict[str, Any]:
        try:
            result = fit(model, train, val, cfg, extractor=extractor, checkpoint=ckpt, desc=desc or name)
        except TrainingDiverged:
            ckpt.unlink(missing_ok=True)
            raise
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        utils.check_finite(state, f"weights of {desc or name!r}")
        return {"state": state, "result": result.as_dict()}

    out = utils.cached(name, config, compute, code=code, refresh=refresh, require_finite=True)
    ckpt.unlink(missing_ok=True)
    model.load_state_dict(out["state"])
    model.to(utils.default_device(cfg.device))
    return TrainResult(**out["result"])


def _code(code: Any, depth: int = 2) -> list[str]:
    """This module plus ``code`` (default: the modules of the caller's caller, ``depth`` frames up)."""
    given = utils._module_names(code) if code is not None else utils.caller_modules(depth)
    return sorted({__name__, *given})


def is_cached(name: str, key: Mapping[str, Any], cfg: TrainConfig, *, code: Any = None) -> bool:
    """Whether :func:`train_or_load` with these arguments (called from the same module) would load
    a finished run instead of training (honours ``$SHIFTINV_REFRESH``)."""
    path = utils.cache_path(name, {"key": dict(key), "train": cfg.to_dict()}, code=_code(code))
    return path.is_file() and not utils.refresh_requested(path)


def clone_module(module: nn.Module) -> nn.Module:
    """A deep copy (e.g. a freshly initialised head reused for two equivalent runs)."""
    return copy.deepcopy(module)

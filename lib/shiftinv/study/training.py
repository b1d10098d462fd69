"""Training loop: Adam, early stopping on validation accuracy, resumable atomic checkpoints.

One loop serves both recipes of the workbook:

- a whole network trained from scratch (the demo trunk): ``fit(model, images...)``;
- a head on a frozen trunk (the paper): either through the trunk each batch
  (``fit(head, images..., extractor=trunk_fn)``, needed with shift augmentation) or, with no
  augmentation, on trunk features computed once (:func:`extract_features`, then
  ``fit(head, features...)``). The two give the same head (same seed, same batches;
  ``tests/test_train.py`` checks it), the second at a fraction of the cost.

Runs on CUDA with mixed precision (``runtime.resolve_amp``: bf16 where supported, else fp16 with a
gradient scaler) when a GPU is there, on the CPU in float32 otherwise. Each epoch writes a
checkpoint atomically (:class:`Checkpoint`, also used by :mod:`shiftinv.perceptual.metric_training`); a run
started again with the same checkpoint path resumes after the last finished epoch and ends with
exactly the weights of an uninterrupted run (the batch order and the augmentation shifts of epoch
``e`` come from a generator seeded by ``(seed, e)``, so nothing depends on what ran before).
:func:`train_or_load` keys the finished result by the configuration (``cache.cached``).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..shifts import translation
from ..workbook import cache, runtime
from ..workbook.checkpoints import Checkpoint, TrainingDiverged, divergence
from .feature_data import (
    Extractor,
    FeatureData,
    Inputs,
    epoch_generator,
    evaluate,
    iterate_batches,
    to_device,
)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that shapes a training run (part of the cache key).

    Attributes:
        epochs: maximum number of epochs.
        batch_size: training batch size (the paper: 32).
        lr: Adam learning rate (the paper: 1e-3).
        patience: stop after this many epochs without a better ``monitor`` (paper: 25).
        monitor: what early stopping watches: ``"val_acc"`` (the authors' May-2026 script) or
            ``"val_loss"`` (their Nov-2024 script and MNIST helper); the best epoch's weights are kept.
        l2: Keras-style L2 penalty ``l2 * sum(w ** 2)`` on the weight matrices of the trained model's
            ``nn.Linear`` layers (the paper: 1e-4 on the flatten and multi-GAP heads); 0 = none.
        shift_aug: maximum absolute random shift in px for augmentation (0 = none); needs images.
        shift_mode: how shifted images are extended (``translation.MODES``: "mosaic" or "zero").
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
    monitor: str = "val_acc"

    def __post_init__(self) -> None:
        counts = {"epochs": self.epochs, "batch_size": self.batch_size, "patience": self.patience,
                  "eval_batch_size": self.eval_batch_size}
        bad = [f"{k}={v!r} (a whole number >= 1)" for k, v in counts.items() if v < 1]
        bad += [f"{k}={v!r} (>= 0)" for k, v in {"l2": self.l2, "shift_aug": self.shift_aug}.items() if not v >= 0]
        if not (self.lr > 0 and math.isfinite(self.lr)):
            bad.append(f"lr={self.lr!r} (a positive number)")
        if self.monitor not in ("val_acc", "val_loss"):
            bad.append(f"monitor={self.monitor!r} ('val_acc' or 'val_loss')")
        if bad:
            raise ValueError(f"TrainConfig: {', '.join(bad)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainResult:
    """What a run returns: per-epoch history (epoch, train_loss, val_loss, val_acc, seconds),
    the best epoch (1-based) and its validation accuracy, whether it stopped early, and (from
    :func:`train_or_load`) whether it was ``loaded`` from the cache instead of trained now."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_acc: float = 0.0
    stopped_early: bool = False
    seconds: float = 0.0
    loaded: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def random_shifts(n: int, max_shift: int, generator: torch.Generator) -> Tensor:
    """(n, 2) integer ``(dx, dy)`` drawn uniformly from ``[-max_shift, max_shift]``: one shift per
    image of a batch, applied with :func:`shiftinv.shifts.translation.shift_each`."""
    return torch.randint(-max_shift, max_shift + 1, (n, 2), generator=generator)


def _l2_penalty(model: nn.Module) -> Tensor:
    terms = [m.weight.float().pow(2).sum() for m in model.modules() if isinstance(m, nn.Linear)]
    return torch.stack(terms).sum() if terms else torch.zeros(())


# ----------------------------------------------------------------------------- training


@dataclass
class _FitRun:
    """What the steps of :func:`fit` share: the trained model, its data, optimiser and precision."""

    model: nn.Module
    train: Any
    val: Any
    cfg: TrainConfig
    extractor: Extractor | None
    desc: str
    device: torch.device
    optim: torch.optim.Optimizer
    autocast: contextlib.AbstractContextManager
    scaler: Any  # torch.amp.GradScaler for fp16, else None


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
        checkpoint: file written atomically after every epoch (:class:`Checkpoint`); if it exists
            and was written by the same run (``cfg`` and initial weights), training resumes from
            it (same result as an uninterrupted run).
        on_epoch_end: called with ``(epoch, record)`` after each epoch is checkpointed (tests use it
            to simulate an interruption).
    Returns:
        :class:`TrainResult`; ``model`` holds the weights of the best epoch.
    """
    if cfg.shift_aug and extractor is None and isinstance(train, FeatureData):
        raise ValueError("shift augmentation needs images, not cached features: pass images and an extractor")
    # the initial-weights hash is only needed to recognise this run's checkpoint
    initial = cache.state_fingerprint(model) if checkpoint is not None else None
    ckpt = Checkpoint(checkpoint, {"train": cfg.to_dict(), "initial": initial})
    run = _fit_setup(model, train, val, cfg, extractor, desc)
    state = _fit_resume(run, ckpt.resume(lambda saved: _check_fit_checkpoint(run, saved)))
    # a head on cached features runs one thread (its steps are tiny: a second thread only adds synchronisation,
    # see seeded_heads.HEAD_THREADS); a network on images runs the workbook's fixed thread count
    with runtime.reproducible(threads=1 if isinstance(train, FeatureData) and extractor is None else None):
        return _fit_epochs(run, state, ckpt, on_epoch_end)


def _fit_setup(model: nn.Module, train: Any, val: Any, cfg: TrainConfig, extractor: Extractor | None,
               desc: str) -> _FitRun:
    """Move ``model`` to the device (NHWC if asked) and build its Adam optimiser, autocast context and
    (fp16 only) gradient scaler."""
    device = runtime.default_device(cfg.device)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    optim = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    policy = runtime.resolve_amp(device, cfg.amp)
    scaler = torch.amp.GradScaler("cuda") if policy == "fp16" else None
    return _FitRun(model, train, val, cfg, extractor, desc, device, optim, runtime.autocast(device, policy), scaler)


def _fit_resume(run: _FitRun, saved: Mapping[str, Any] | None) -> dict[str, Any]:
    """The loop state of :func:`_fit_epochs` (finished ``epoch``, ``best_acc``, ``best_epoch``, epochs
    without improvement ``bad``, ``history``, ``best`` weights, ``first_loss``): fresh, or restored
    from a checkpoint together with the model, optimiser and scaler states."""
    state: dict[str, Any] = {"epoch": 0, "best_acc": -1.0, "best_score": None, "best_epoch": 0, "bad": 0,
                             "history": [], "best": None}
    if saved is None:
        return state
    run.model.load_state_dict(saved["model"])
    run.optim.load_state_dict(saved["optim"])
    if run.scaler is not None and saved.get("scaler"):
        run.scaler.load_state_dict(saved["scaler"])
    return {k: saved[k] for k in state} | ({"first_loss": saved["first_loss"]} if "first_loss" in saved else {})


def _check_fit_checkpoint(run: _FitRun, saved: Mapping[str, Any]) -> None:
    """Raise ``KeyError``/``ValueError`` when ``saved`` does not hold a loop state :func:`_fit_resume`
    can restore into ``run`` (checked before restoring anything)."""
    missing = {"model", "optim", "epoch", "best_acc", "best_score", "best_epoch", "bad", "history", "best"} - set(saved)
    if missing:
        raise KeyError(f"missing entries {sorted(missing)}")
    check_weights_fit(run.model, saved["model"])


def check_weights_fit(model: nn.Module, state: Mapping[str, Tensor]) -> None:
    """Raise a ``ValueError`` when ``state`` does not have exactly the names and shapes of ``model``'s
    state dict (a cached or checkpointed file of another model; checked before loading anything)."""
    own = model.state_dict()
    if set(state) != set(own) or any(tuple(state[k].shape) != tuple(v.shape) for k, v in own.items()):
        raise ValueError("the weights are those of another model (names or shapes differ)")


def _diverged(run: _FitRun, epoch: int, what: str) -> TrainingDiverged:
    cfg = run.cfg
    return TrainingDiverged(
        f"training of {run.desc!r} diverged in epoch {epoch}: {what} (learning rate {cfg.lr:g}, batch size "
        f"{cfg.batch_size}). Nothing was cached. Lower the learning rate (e.g. lr={cfg.lr / 10:g} in its "
        "TrainConfig) and run again.")


def _fit_epochs(run: _FitRun, state: dict[str, Any], ckpt: Checkpoint,
                on_epoch_end: Callable[[int, dict[str, float]], None] | None) -> TrainResult:
    """The epochs of :func:`fit` after set-up and resume: train, validate, checkpoint, stop early."""
    cfg, start = run.cfg, time.perf_counter()
    epochs = runtime.progress(range(state["epoch"] + 1, cfg.epochs + 1), desc=run.desc, leave=False,
                            total=cfg.epochs, initial=state["epoch"])
    stopped = state["bad"] >= cfg.patience
    for epoch in epochs if not stopped else []:
        t0 = time.perf_counter()
        train_loss = _train_epoch(run, epoch, state)
        record = _end_epoch(run, epoch, state, train_loss, t0)
        if hasattr(epochs, "set_postfix"):
            epochs.set_postfix(val_acc=f"{record['val_acc']:.3f}", best=f"{state['best_acc']:.3f}")
        ckpt.save(epoch, lambda: {"model": run.model.state_dict(), "optim": run.optim.state_dict(),
                                  "scaler": run.scaler.state_dict() if run.scaler is not None else {}, **state})
        if on_epoch_end is not None:
            on_epoch_end(epoch, record)
        if state["bad"] >= cfg.patience:
            stopped = True
            break
    if hasattr(epochs, "close"):
        epochs.close()
    if state["best"] is not None:
        run.model.load_state_dict(state["best"])
    return TrainResult(history=list(state["history"]), best_epoch=int(state["best_epoch"]),
                       best_val_acc=float(state["best_acc"]), stopped_early=bool(stopped),
                       seconds=time.perf_counter() - start)


def _train_epoch(run: _FitRun, epoch: int, state: dict[str, Any]) -> float:
    """One pass over the training data in the order (and with the shifts) of generator ``(seed,
    epoch)``; raises :class:`TrainingDiverged` on a diverging batch loss. Returns the mean loss (nats)."""
    cfg = run.cfg
    run.model.train()
    gen = epoch_generator(cfg.seed, epoch)
    order = torch.randperm(len(run.train), generator=gen)
    total_loss, seen = 0.0, 0
    for x, y in iterate_batches(run.train, order, cfg.batch_size):
        if cfg.shift_aug:  # one shift per image, drawn after the batch order from the same generator
            x = translation.shift_each(x, random_shifts(x.shape[0], cfg.shift_aug, gen), cfg.shift_mode)
        x, y = to_device(x, run.device), y.to(run.device)
        if cfg.channels_last and isinstance(x, Tensor) and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        batch_loss = _train_step(run, x, y)
        why = divergence(batch_loss, first_loss=state.get("first_loss", batch_loss))
        if why:
            raise _diverged(run, epoch, why)
        state.setdefault("first_loss", batch_loss)  # the reference of the jump check, kept on resume
        total_loss += batch_loss * int(y.shape[0])
        seen += int(y.shape[0])
    return total_loss / max(seen, 1)


def _train_step(run: _FitRun, x: Inputs, y: Tensor) -> float:
    """One Adam step on batch ``x`` (images or features) with labels ``y`` (B,); the batch's mean
    cross-entropy (nats, without the L2 penalty)."""
    cfg = run.cfg
    with run.autocast:
        if run.extractor is not None:
            with torch.no_grad():
                x = run.extractor(x)
            if isinstance(x, dict):
                x = {k: v.float() for k, v in x.items()}
        logits = run.model(x)
        loss = F.cross_entropy(logits.float(), y)
    total = loss + cfg.l2 * _l2_penalty(run.model).to(run.device) if cfg.l2 else loss
    run.optim.zero_grad(set_to_none=True)
    if run.scaler is not None:
        run.scaler.scale(total).backward()
        run.scaler.step(run.optim)
        run.scaler.update()
    else:
        total.backward()
        run.optim.step()
    return float(loss.detach())


def _end_epoch(run: _FitRun, epoch: int, state: dict[str, Any], train_loss: float, t0: float) -> dict[str, float]:
    """Check the weights, validate, and update ``state`` (history, best weights, patience count);
    the epoch's record ``epoch, train_loss, val_loss, val_acc, seconds``."""
    why = divergence(parameters=run.model.named_parameters())
    if why:
        raise _diverged(run, epoch, why)
    cfg = run.cfg
    val_acc, val_loss = evaluate(run.model, run.val, run.extractor, cfg.eval_batch_size, run.device, cfg.amp)
    record = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
              "val_acc": val_acc, "seconds": time.perf_counter() - t0}
    state["history"].append(record)
    score = val_acc if cfg.monitor == "val_acc" else -val_loss
    if state.get("best_score") is None or score > state["best_score"]:
        state.update(best_acc=val_acc, best_score=score, best_epoch=epoch, bad=0,
                     best={k: v.detach().cpu().clone() for k, v in run.model.state_dict().items()})
    else:
        state["bad"] += 1
    state["epoch"] = epoch
    return record


#: Training data as :func:`train_or_load` takes it: the data, or a zero-argument function returning it.
LazyData = Any


def resolve_data(data: LazyData) -> Any:
    """``data()`` when ``data`` is a zero-argument function (lazy data: computed only when training
    is needed), else ``data`` itself (datasets, :class:`FeatureData` and tensors have a length)."""
    return data() if callable(data) and not hasattr(data, "__len__") else data


def train_or_load(
    name: str,
    key: Mapping[str, Any],
    model: nn.Module,
    train: LazyData,
    val: LazyData,
    cfg: TrainConfig,
    *,
    extractor: Extractor | None = None,
    refresh: bool = False,
    desc: str | None = None,
    code: Any = None,
) -> TrainResult:
    """Train ``model`` (see :func:`fit`) or load the result of an earlier identical run.

    ``train``/``val``: the data, or zero-argument functions returning it (:func:`resolve_data`),
    called only when training happens: so a cached file that turns out to be damaged (set aside,
    ``*.corrupt``) is retrained in the same call, with its data, instead of failing.
    The cache key is ``key`` (what the model and the data are; JSON-serialisable) plus ``cfg`` plus
    the code version (:func:`shiftinv.workbook.cache.code_version`) of this module and of ``code`` (default:
    the caller's module, e.g. :mod:`shiftinv.study.modelset`, with every package module it imports).
    The finished run (weights + history) is stored under ``results/<name>/<hash>.pt``; while it
    runs, a per-epoch checkpoint ``<hash>.ckpt.pt`` beside it lets an interrupted run resume.
    "Cached" is decided by loading the file and checking its weights against ``model`` (names,
    shapes, finite values), never by its existence; the result's ``loaded`` says which happened.
    A run that diverges raises :class:`TrainingDiverged` and leaves nothing cached.
    """
    code = _code(code)
    config = {"key": dict(key), "train": cfg.to_dict()}
    ckpt = cache.cache_path(name, config, ".ckpt.pt", code=code)
    trained = []

    def compute() -> dict[str, Any]:
        trained.append(True)
        try:
            result = fit(model, resolve_data(train), resolve_data(val), cfg, extractor=extractor, checkpoint=ckpt,
                         desc=desc or name)
        except TrainingDiverged:
            ckpt.unlink(missing_ok=True)
            raise
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        runtime.check_finite(state, f"weights of {desc or name!r}")
        return {"state": state, "result": result.as_dict()}

    def fits_model(value: Mapping[str, Any]) -> None:  # checked before loading: a bad file leaves the model as is
        TrainResult(**value["result"])
        check_weights_fit(model, value["state"])
        runtime.check_finite(value["state"], f"cached weights of {desc or name!r}")

    out = cache.cached(name, config, compute, code=code, refresh=refresh, require_finite=True, validate=fits_model)
    ckpt.unlink(missing_ok=True)
    model.load_state_dict(out["state"])
    model.to(runtime.default_device(cfg.device))
    return dataclasses.replace(TrainResult(**out["result"]), loaded=not trained)


def _code(code: Any, depth: int = 2) -> list[str]:
    """This module plus ``code`` (default: the modules of the caller's caller, ``depth`` frames up)."""
    given = cache.module_names(code) if code is not None else cache.caller_modules(depth)
    return sorted({__name__, *given})


def is_cached(name: str, key: Mapping[str, Any], cfg: TrainConfig, *, code: Any = None) -> bool:
    """Whether :func:`train_or_load` with these arguments (called from the same module) would load
    a finished run instead of training (honours ``$SHIFTINV_REFRESH``). Decided by loading the file:
    a damaged one is set aside (``*.corrupt``) and counts as not cached. Callers that pass lazy data
    to :func:`train_or_load` read ``TrainResult.loaded`` instead."""
    path = cache.cache_path(name, {"key": dict(key), "train": cfg.to_dict()}, code=_code(code))
    if cache.refresh_requested(path):
        return False
    saved = cache.load_or_set_aside(path, lambda v: (v["value"]["state"], TrainResult(**v["value"]["result"])))
    return saved is not None


def clone_module(module: nn.Module) -> nn.Module:
    """A deep copy (e.g. a freshly initialised head reused for two equivalent runs)."""
    return copy.deepcopy(module)

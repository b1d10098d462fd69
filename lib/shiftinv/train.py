"""Training loop: Adam, early stopping on validation accuracy, resumable atomic checkpoints.

One loop serves both recipes of the workbook:

- a whole network trained from scratch (the demo trunk): ``fit(model, images...)``;
- a head on a frozen trunk (the paper): either through the trunk each batch
  (``fit(head, images..., extractor=trunk_fn)``, needed with shift augmentation) or, with no
  augmentation, on trunk features computed once (:func:`extract_features`, then
  ``fit(head, features...)``). The two give the same head (same seed, same batches;
  ``tests/test_train.py`` checks it), the second at a fraction of the cost.

Runs on CUDA with mixed precision (``utils.resolve_amp``: bf16 where supported, else fp16 with a
gradient scaler) when a GPU is there, on the CPU in float32 otherwise. Each epoch writes a
checkpoint atomically (:class:`Checkpoint`, also used by :mod:`shiftinv.metric_train`); a run
started again with the same checkpoint path resumes after the last finished epoch and ends with
exactly the weights of an uninterrupted run (the batch order and the augmentation shifts of epoch
``e`` come from a generator seeded by ``(seed, e)``, so nothing depends on what ran before).
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
from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol

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
    "iterate_batches",
    "Checkpoint",
    "divergence",
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


def _to(inputs: Inputs, device: torch.device) -> Inputs:
    if isinstance(inputs, dict):
        return {k: v.to(device, non_blocking=True) for k, v in inputs.items()}
    return inputs.to(device, non_blocking=True)


def random_shifts(n: int, max_shift: int, generator: torch.Generator) -> Tensor:
    """(n, 2) integer ``(dx, dy)`` drawn uniformly from ``[-max_shift, max_shift]``: one shift per
    image of a batch, applied with :func:`shiftinv.shifts.shift_each`."""
    return torch.randint(-max_shift, max_shift + 1, (n, 2), generator=generator)


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
    autocast = utils.autocast(device, utils.resolve_amp(device, amp))
    correct, loss, n = 0, 0.0, 0
    for x, y in iterate_batches(data, torch.arange(len(data)), batch_size):
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
        autocast = utils.autocast(device, utils.resolve_amp(device, amp))
        chunks: dict[str, list[Tensor]] = {}
        labels: list[Tensor] = []
        order = torch.arange(len(data))
        total = (len(order) + batch_size - 1) // batch_size
        for x, y in utils.progress(iterate_batches(data, order, batch_size), total=total, desc=desc, leave=False):
            with autocast:
                feats = extractor(_to(x, device))
            for tap, f in feats.items():
                f = f.float()
                if tap in gap_only:
                    f = f.mean(dim=(2, 3), keepdim=True)
                chunks.setdefault(tap, []).append(f.to("cpu", dtype))
            labels.append(y.cpu())
    return FeatureData({t: torch.cat(c) for t, c in chunks.items()}, torch.cat(labels).long())


# ----------------------------------------------------------------------------- checkpoints


#: A batch loss above this factor times the run's first batch loss (or 1 nat) counts as divergence.
DIVERGENCE_FACTOR = 1e3


def divergence(loss: float | None = None, parameters: Iterable[tuple[str, Tensor]] = (),
               first_loss: float | None = None) -> str:
    """Why a run counts as diverged, or ``""``: a non-finite ``loss``, a ``loss`` above
    :data:`DIVERGENCE_FACTOR` times ``max(first_loss, 1)`` (when ``first_loss`` is given), or
    non-finite values in the named float ``parameters``. Checked in this order."""
    if loss is not None and not math.isfinite(loss):
        return f"non-finite training loss ({loss})"
    if loss is not None and first_loss is not None and loss > DIVERGENCE_FACTOR * max(first_loss, 1.0):
        return f"the training loss jumped to {loss:.3g} (first batch: {first_loss:.3g})"
    bad = [n for n, p in parameters if p.is_floating_point() and not bool(torch.isfinite(p).all())]
    return f"non-finite weights in {', '.join(bad[:3])}" if bad else ""


class Checkpoint:
    """The resumable state of one training run, written atomically after finished epochs.

    Shared by :func:`fit` and :func:`shiftinv.metric_train.train_metric`. ``path`` None means no
    checkpoint (:meth:`resume` returns None, :meth:`save` does nothing). ``run_id`` (JSON-like:
    configuration, weights fingerprint, data size) is stored in the file; a file of another run
    is refused with a ``ValueError``, an unreadable one is set aside (``<name>.corrupt``,
    :func:`shiftinv.utils.load_or_set_aside`) and the run starts over. ``every``: epochs between
    writes (the last epoch is always written).
    """

    def __init__(self, path: Path | str | None, run_id: Mapping[str, Any], every: int = 1) -> None:
        self.path = Path(path) if path is not None else None
        self.run_id = dict(run_id)
        self.every = max(1, int(every))

    def resume(self) -> dict[str, Any] | None:
        """The saved state (with ``epoch``: finished epochs), or None when there is nothing to resume."""
        saved = utils.load_or_set_aside(self.path) if self.path is not None else None
        if saved is not None and saved.get("run_id") != self.run_id:
            raise ValueError(f"checkpoint '{self.path}' was written by a different run ({saved.get('run_id')}); "
                             "delete it or pass another checkpoint path")
        return saved

    def save(self, epoch: int, state: Callable[[], Mapping[str, Any]], last: bool = False) -> bool:
        """Write ``{run_id, epoch, **state()}`` after finished epoch ``epoch`` (1-based) when it is
        due (``epoch % every == 0`` or ``last``); ``state`` is called only then. Whether it wrote."""
        if self.path is None or not (epoch % self.every == 0 or last):
            return False
        utils.atomic_torch_save({"run_id": self.run_id, "epoch": int(epoch), **state()}, self.path)
        return True


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
    ckpt = Checkpoint(checkpoint, {"train": cfg.to_dict(), "initial": utils.state_fingerprint(model)})
    run = _fit_setup(model, train, val, cfg, extractor, desc)
    state = _fit_resume(run, ckpt.resume())
    with utils.reproducible():
        return _fit_epochs(run, state, ckpt, on_epoch_end)


def _fit_setup(model: nn.Module, train: Any, val: Any, cfg: TrainConfig, extractor: Extractor | None,
               desc: str) -> _FitRun:
    """Move ``model`` to the device (NHWC if asked) and build its Adam optimiser, autocast context and
    (fp16 only) gradient scaler."""
    device = utils.default_device(cfg.device)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    optim = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    policy = utils.resolve_amp(device, cfg.amp)
    scaler = torch.amp.GradScaler("cuda") if policy == "fp16" else None
    return _FitRun(model, train, val, cfg, extractor, desc, device, optim, utils.autocast(device, policy), scaler)


def _fit_resume(run: _FitRun, saved: Mapping[str, Any] | None) -> dict[str, Any]:
    """The loop state of :func:`_fit_epochs` (finished ``epoch``, ``best_acc``, ``best_epoch``, epochs
    without improvement ``bad``, ``history``, ``best`` weights, ``first_loss``): fresh, or restored
    from a checkpoint together with the model, optimiser and scaler states."""
    state: dict[str, Any] = {"epoch": 0, "best_acc": -1.0, "best_epoch": 0, "bad": 0, "history": [], "best": None}
    if saved is None:
        return state
    run.model.load_state_dict(saved["model"])
    run.optim.load_state_dict(saved["optim"])
    if run.scaler is not None and saved.get("scaler"):
        run.scaler.load_state_dict(saved["scaler"])
    return {k: saved[k] for k in state} | ({"first_loss": saved["first_loss"]} if "first_loss" in saved else {})


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
    epochs = utils.progress(range(state["epoch"] + 1, cfg.epochs + 1), desc=run.desc, leave=False,
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
    gen = _epoch_generator(cfg.seed, epoch)
    order = torch.randperm(len(run.train), generator=gen)
    total_loss, seen = 0.0, 0
    for x, y in iterate_batches(run.train, order, cfg.batch_size):
        if cfg.shift_aug:  # one shift per image, drawn after the batch order from the same generator
            x = shifts.shift_each(x, random_shifts(x.shape[0], cfg.shift_aug, gen), cfg.shift_mode)
        x, y = _to(x, run.device), y.to(run.device)
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
    if val_acc > state["best_acc"]:
        state.update(best_acc=val_acc, best_epoch=epoch, bad=0,
                     best={k: v.detach().cpu().clone() for k, v in run.model.state_dict().items()})
    else:
        state["bad"] += 1
    state["epoch"] = epoch
    return record


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
    given = utils.module_names(code) if code is not None else utils.caller_modules(depth)
    return sorted({__name__, *given})


def is_cached(name: str, key: Mapping[str, Any], cfg: TrainConfig, *, code: Any = None) -> bool:
    """Whether :func:`train_or_load` with these arguments (called from the same module) would load
    a finished run instead of training (honours ``$SHIFTINV_REFRESH``)."""
    path = utils.cache_path(name, {"key": dict(key), "train": cfg.to_dict()}, code=_code(code))
    return path.is_file() and not utils.refresh_requested(path)


def clone_module(module: nn.Module) -> nn.Module:
    """A deep copy (e.g. a freshly initialised head reused for two equivalent runs)."""
    return copy.deepcopy(module)

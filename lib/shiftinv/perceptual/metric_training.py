"""Training the weights of a learned metric (LPIPS-style or GAP) on a frozen trunk.

Two recipes:

- ``"pearson"`` (the paper's): maximise the Pearson correlation between the distances of a
  batch of pairs and their human scores (TID2008 train / TID2013 selection). The loss is
  ``1 - s * r`` with ``s = stats.agreement_sign("distance", score_kind)`` (so ``0`` = perfect
  agreement, ``2`` = perfect disagreement).
- ``"2afc"`` (LPIPS's, on BAPPS): for triplets (ref, p0, p1) with ``judge`` = the fraction of
  people who judged p1 closer to the reference, the ``lpips`` package's ``BCERankingLoss`` (a
  small network on ``(d0, d1)`` trained jointly with the metric weights, as in lpips' trainer).

Two weight recipes for the Pearson loss (:func:`recipe_config`):

- ``"paper"`` (the authors' scripts, LPIPS/05a and 05b): the retrained baseline starts from
  *signed* glorot-uniform 1x1 weights (``U(-a, a)``, ``a = sqrt(6 / (C + 1))`` per tap, as Keras
  initialises a ``Conv2D(1, 1)`` on C channels), is never clamped, trains up to 1,500 epochs and
  keeps the epoch with the lowest TID2013 validation loss; the GAP metric starts at 1 and keeps the
  epoch with the lowest training loss (05b stops early on the training set itself).
- ``"lpips"`` (LPIPS's own): weights start at 1, are clamped at 0 after every step (so the
  distance stays a distance), 30 epochs, the epoch with the best validation SRCC is kept.

Because the trunk is frozen, each metric is linear (LPIPS) or a weighted norm (GAP) of a fixed
per-pair feature vector (:meth:`shiftinv.perceptual.metrics.PerceptualMetric.pair_features`): training
works on those (N, D) tensors, computed once, on the device of the metric's weights. A non-finite
loss or weight stops training with a ``FloatingPointError`` before anything is checkpointed.

Runs checkpoint every ``checkpoint_every`` epochs with :class:`shiftinv.workbook.checkpoints.Checkpoint`, the
one checkpoint-and-resume helper of the workbook (weights, optimizer, generator state, history,
best weights so far, written atomically) and resume from the checkpoint when it exists and was
written under the same configuration.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..workbook import checkpoints
from . import stats
from .metrics import LinearTapMetric, PerceptualMetric


def pearson_loss(distances: Tensor, scores: Tensor, score_kind: str = "quality") -> Tensor:
    """``1 - s * pearson(distances, scores)``, (N,) x2 -> scalar; ``s`` from the sign convention."""
    if distances.shape != scores.shape or distances.dim() != 1 or distances.numel() < 3:
        raise ValueError(f"need two 1-d tensors of equal length >= 3, got {tuple(distances.shape)} and "
                         f"{tuple(scores.shape)}")
    sign = stats.agreement_sign("distance", score_kind)
    d = distances - distances.mean()
    s = scores.to(distances.dtype) - scores.mean()
    r = (d * s).sum() / (d.norm() * s.norm() + 1e-12)
    return 1 - sign * r


def ranking_loss_2afc(head: torch.nn.Module, d0: Tensor, d1: Tensor, judge: Tensor) -> Tensor:
    """LPIPS's 2AFC loss: ``lpips.BCERankingLoss`` ``head`` on distances (N,) and ``judge`` (N,) in [0, 1]."""
    shape = (-1, 1, 1, 1)
    return head(d0.view(shape), d1.view(shape), (judge.to(d0.dtype) * 2 - 1).view(shape))


@dataclass(frozen=True)
class MetricTrainConfig:
    """Training hyper-parameters (the paper's: Adam 1e-3, batch 32)."""
    loss: str = "pearson"       # "pearson" | "2afc"
    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-3
    seed: int = 666
    score_kind: str = "quality"  # of the training scores (pearson)
    nonnegative: bool = True     # clamp LPIPS-style weights at 0 after each step
    init: str = "keep"           # "keep" (the metric's current weights) | "ones" | "glorot" (signed, per tap)
    select: str = "val_srcc"     # epoch kept: "val_srcc" (highest) | "val_loss" | "train_loss" (lowest)
    checkpoint_every: int = 1    # epochs between checkpoints (and always after the last)

    def __post_init__(self) -> None:
        """Refuse a configuration that would train nothing or fail later (``EPOCHS=-5``, an unknown loss)."""
        counts = {"epochs": self.epochs, "batch_size": self.batch_size, "checkpoint_every": self.checkpoint_every}
        bad = [f"{k}={v!r} (a whole number >= 1)" for k, v in counts.items() if v < 1]
        if not (self.lr > 0 and np.isfinite(self.lr)):
            bad.append(f"lr={self.lr!r} (a positive number)")
        if bad:
            raise ValueError(f"MetricTrainConfig: {', '.join(bad)}")
        if self.loss not in ("pearson", "2afc"):
            raise ValueError(f"loss must be 'pearson' or '2afc', got {self.loss!r}")
        if self.select not in SELECTIONS:
            raise ValueError(f"select must be one of {SELECTIONS}, got {self.select!r}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")


INITS = ("keep", "ones", "glorot")


SELECTIONS = ("val_srcc", "val_loss", "train_loss")


RECIPES = ("paper", "lpips")


def recipe_config(recipe: str, metric: PerceptualMetric, epochs: int | None = None, lr: float = 1e-3,
                  seed: int = 0, score_kind: str = "quality") -> MetricTrainConfig:
    """The :class:`MetricTrainConfig` of a named recipe for ``metric`` (see the module docstring).

    ``"paper"``: baseline (LinearTapMetric) = signed glorot init, no clamp, up to 1,500 epochs,
    lowest validation loss; GAP metric = init 1, up to 1,500 epochs, lowest training loss.
    ``"lpips"``: init 1, clamp at 0, 30 epochs, highest validation SRCC. ``epochs`` overrides.
    """
    if recipe not in RECIPES:
        raise ValueError(f"unknown metric-training recipe {recipe!r}; choose from {RECIPES}")
    if recipe == "lpips":
        return MetricTrainConfig(epochs=epochs or 30, lr=lr, seed=seed, score_kind=score_kind, nonnegative=True,
                           init="ones", select="val_srcc")
    n = epochs or 1500
    every = max(1, n // 50)
    if isinstance(metric, LinearTapMetric):
        return MetricTrainConfig(epochs=n, lr=lr, seed=seed, score_kind=score_kind, nonnegative=False, init="glorot",
                           select="val_loss", checkpoint_every=every)
    return MetricTrainConfig(epochs=n, lr=lr, seed=seed, score_kind=score_kind, nonnegative=False, init="ones",
                       select="train_loss", checkpoint_every=every)


def initialise_weights(metric: PerceptualMetric, init: str, seed: int = 0) -> None:
    """Set ``metric.weight`` in place: ``"ones"``, or ``"glorot"``: per tap of C channels, uniform
    in ``(-a, a)`` with ``a = sqrt(6 / (C + 1))`` (Keras' glorot-uniform of a ``Conv2D(1, 1)``),
    drawn from a generator seeded with ``seed``; ``"keep"`` leaves the weights alone."""
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    if init == "keep":
        return
    with torch.no_grad():
        if init == "ones":
            metric.weight.fill_(1.0)
            return
        g = torch.Generator().manual_seed(seed)
        parts = [(torch.rand(c, generator=g) * 2 - 1) * (6 / (c + 1)) ** 0.5 for c in metric.sizes]
        metric.weight.copy_(torch.cat(parts).to(metric.weight.device))


def _metric_id(metric: PerceptualMetric) -> dict[str, Any]:
    return {"class": type(metric).__name__, "taps": list(metric.taps), "dim": metric.num_weights}


def train_metric(metric: PerceptualMetric, features: Tensor | tuple[Tensor, Tensor], targets: Tensor,
                 config: MetricTrainConfig = MetricTrainConfig(), checkpoint: Path | str | None = None,
                 val_features: Tensor | None = None, val_scores: Tensor | None = None,
                 val_score_kind: str = "quality") -> pd.DataFrame:
    """Fit ``metric.weight`` on precomputed pair features; return the per-epoch history.

    Args:
        metric: the metric whose ``weight`` (D,) is trained (its trunk is not used here).
        features: ``"pearson"``: (N, D) pair features; ``"2afc"``: a tuple ``(F0, F1)`` of (N, D)
            features of (ref, p0) and (ref, p1).
        targets: (N,) human scores (``"pearson"``) or 2AFC judgements in [0, 1] (``"2afc"``).
        config: hyper-parameters; its ``seed`` seeds the only generator used (batch order).
        checkpoint: file to write after every ``config.checkpoint_every`` epochs and to resume from
            (:class:`shiftinv.workbook.checkpoints.Checkpoint`: refused when written under another configuration,
            set aside when unreadable).
        val_features, val_scores: optional selection set (N', D) / (N',); the weights with the best
            validation SRCC (sign-corrected) are loaded into ``metric`` at the end. Without it,
            the last weights are kept.

    Returns:
        history with columns ``epoch, train_loss, val_loss, val_srcc`` (``val_loss``: the Pearson
        loss on the whole selection set; NaN for 2afc).

    Raises:
        FloatingPointError: (:class:`shiftinv.workbook.checkpoints.TrainingDiverged`) a non-finite loss or weight
            (nothing non-finite is checkpointed).
    """
    pairs, targets = _check_metric_inputs(metric, features, targets, config)
    n = pairs[0].shape[0]
    run = _MetricRun(metric, config, pairs, targets, *_metric_optimiser(metric, config))
    ckpt = checkpoints.Checkpoint(checkpoint, {"config": asdict(config), "metric": _metric_id(metric), "n": n},
                                  every=config.checkpoint_every)
    start = _resume_metric(run, ckpt.resume(lambda saved: _check_metric_checkpoint(run, saved)), checkpoint)
    for epoch in range(start, config.epochs):
        train_loss = _metric_epoch(run, epoch)
        val_srcc, val_loss = _validate_metric(run, val_features, val_scores, val_score_kind)
        run.history.append({"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss, "val_srcc": val_srcc})
        score = {"val_srcc": val_srcc, "val_loss": -val_loss, "train_loss": -train_loss}[config.select]
        if np.isfinite(score) and score > run.best["val"]:
            run.best = {"val": score, "weight": metric.weight.detach().clone()}
        ckpt.save(epoch + 1, lambda: _metric_checkpoint_state(run), last=epoch + 1 == config.epochs)
    if np.isfinite(run.best["val"]):
        with torch.no_grad():
            metric.weight.copy_(run.best["weight"])
    return pd.DataFrame(run.history, columns=["epoch", "train_loss", "val_loss", "val_srcc"])


def _check_metric_inputs(metric: PerceptualMetric, features: Tensor | tuple[Tensor, Tensor], targets: Tensor,
                  config: MetricTrainConfig) -> tuple[tuple[Tensor, ...], Tensor]:
    """``(pairs, targets)`` on the device of ``metric.weight``: ``pairs`` is ``(F,)`` (pearson) or
    ``(F0, F1)`` (2afc), each (N, D); ``targets`` (N,). Raises ``ValueError`` on a bad configuration
    or shape."""
    device = metric.weight.device  # the configuration checked itself (MetricTrainConfig.__post_init__)
    features = tuple(f.to(device) for f in features) if isinstance(features, tuple) else features.to(device)
    targets = targets.to(device)
    pairs = features if config.loss == "2afc" else (features,)
    if config.loss == "2afc" and not (isinstance(features, tuple) and len(features) == 2):
        raise ValueError("2afc training needs features=(F0, F1), the pair features of (ref, p0) and (ref, p1)")
    n = pairs[0].shape[0]
    for f in pairs:
        if f.dim() != 2 or f.shape != (n, metric.num_weights):
            raise ValueError(f"features must be (N, {metric.num_weights}) for this metric, got {tuple(f.shape)}")
    if targets.shape != (n,):
        raise ValueError(f"targets must be ({n},), got {tuple(targets.shape)}")
    return pairs, targets


@dataclass
class _MetricRun:
    """What the steps of :func:`train_metric` share: the metric, its data, the optimiser, the
    batch-order generator, the history and the best weights so far (``best["val"]``: the selection
    value as a score to maximise, ``-loss`` for the loss selections)."""

    metric: PerceptualMetric
    config: MetricTrainConfig
    pairs: tuple[Tensor, ...]
    targets: Tensor
    head: torch.nn.Module | None
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    history: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.best = self.best or {"val": -np.inf, "weight": self.metric.weight.detach().clone()}


def _metric_optimiser(metric: PerceptualMetric, config: MetricTrainConfig
               ) -> tuple[torch.nn.Module | None, torch.optim.Optimizer, torch.Generator]:
    """Initialise ``metric.weight`` (``config.init``) and return the 2AFC ranking head (None for
    pearson; seeded with ``config.seed`` without touching the global generator), the Adam optimiser
    of the weights (and head) and the generator of the batch order."""
    initialise_weights(metric, config.init, config.seed)
    head = None
    params = [metric.weight]
    if config.loss == "2afc":
        import lpips

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            head = lpips.BCERankingLoss().to(metric.weight.device)
        params += list(head.parameters())
    optimizer = torch.optim.Adam(params, lr=config.lr)
    return head, optimizer, torch.Generator().manual_seed(config.seed)


def _check_metric_checkpoint(run: _MetricRun, state: Mapping[str, Any]) -> None:
    """Raise ``KeyError``/``ValueError`` when ``state`` cannot be restored into ``run`` (checked before
    anything is restored: the checkpoint is then set aside and training starts over)."""
    missing = {"weight", "optimizer", "head", "generator", "history", "best_val", "best_weight"} - set(state)
    if missing:
        raise KeyError(f"missing entries {sorted(missing)}")
    for key in ("weight", "best_weight"):
        if tuple(state[key].shape) != tuple(run.metric.weight.shape):
            raise ValueError(f"{key} has shape {tuple(state[key].shape)}, the metric {tuple(run.metric.weight.shape)}")
    if not (torch.isfinite(state["weight"]).all() and torch.isfinite(state["best_weight"]).all()):
        raise ValueError("non-finite weights")


def _resume_metric(run: _MetricRun, state: dict[str, Any] | None, checkpoint: Path | str | None) -> int:
    """Restore ``run`` from a checkpoint's ``state`` (weights, optimiser, head, generator, history,
    best; checked by :func:`_check_metric_checkpoint`); the number of finished epochs (0 without one)."""
    if state is None:
        return 0
    with torch.no_grad():
        run.metric.weight.copy_(state["weight"])
    run.optimizer.load_state_dict(state["optimizer"])
    if run.head is not None:
        run.head.load_state_dict(state["head"])
    run.generator.set_state(state["generator"])
    run.history = list(state["history"])
    run.best = {"val": state["best_val"], "weight": state["best_weight"]}
    return int(state["epoch"])


def _metric_checkpoint_state(run: _MetricRun) -> dict[str, Any]:
    """What a checkpoint stores besides the run id and epoch (see :func:`_resume_metric`)."""
    return {"weight": run.metric.weight.detach().clone(), "optimizer": run.optimizer.state_dict(),
            "head": run.head.state_dict() if run.head is not None else {},
            "generator": run.generator.get_state(), "history": run.history,
            "best_val": run.best["val"], "best_weight": run.best["weight"]}


def _metric_epoch(run: _MetricRun, epoch: int) -> float:
    """One pass in the generator's batch order (batches of fewer than 3 pairs skipped); each step
    is followed by the clamp (``nonnegative`` LPIPS weights) and the divergence check. Returns the
    mean batch loss (NaN when no batch ran)."""
    metric, config, pairs, targets = run.metric, run.config, run.pairs, run.targets
    n = pairs[0].shape[0]
    order = torch.randperm(n, generator=run.generator)
    losses = []
    for b in range(0, n, config.batch_size):
        idx = order[b:b + config.batch_size]
        if idx.numel() < 3:
            continue
        if config.loss == "pearson":
            loss = pearson_loss(metric.distance_from_features(pairs[0][idx]), targets[idx], config.score_kind)
        else:
            d0 = metric.distance_from_features(pairs[0][idx])
            d1 = metric.distance_from_features(pairs[1][idx])
            loss = ranking_loss_2afc(run.head, d0, d1, targets[idx])
        run.optimizer.zero_grad()
        loss.backward()
        run.optimizer.step()
        if config.nonnegative and isinstance(metric, LinearTapMetric):
            with torch.no_grad():
                metric.weight.clamp_(min=0)
        _check_metric_step(metric, loss.detach(), epoch, config)
        losses.append(loss.item())
    return float(np.mean(losses)) if losses else float("nan")


def _check_metric_step(metric: PerceptualMetric, loss: Tensor, epoch: int, config: MetricTrainConfig) -> None:
    why = checkpoints.divergence(loss.item(), [("weight", metric.weight)])
    if why:
        raise checkpoints.TrainingDiverged(
            f"metric training diverged: {why} in epoch {epoch + 1} (loss {loss.item():.4g}, lr {config.lr}). "
            "Nothing of this epoch was checkpointed; lower the learning rate (MetricTrainConfig.lr / the "
            "notebook's METRIC_LR) and rerun.")


def _validate_metric(run: _MetricRun, val_features: Tensor | None, val_scores: Tensor | None,
              val_score_kind: str) -> tuple[float, float]:
    """Sign-corrected SRCC and Pearson loss (NaN for 2afc) on the selection set; NaNs without one."""
    if val_features is None or val_scores is None:
        return float("nan"), float("nan")
    metric, device = run.metric, run.metric.weight.device
    with torch.no_grad():
        d = metric.distance_from_features(val_features.to(device))
        loss = pearson_loss(d, val_scores.to(device), val_score_kind).item() if run.config.loss == "pearson" \
            else float("nan")
        d = d.cpu().numpy()
    return stats.agreement_sign("distance", val_score_kind) * stats.srcc(d, val_scores.cpu().numpy()), loss

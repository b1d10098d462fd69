"""Every seed of a linear head trained at once, on trunk features computed once.

A head of the workbook (flatten, final GAP, multi GAP, GAP + flatten, GAP at one depth) is one
``nn.Linear`` on a fixed vector of trunk features (``Head.pooled``). Its seeds (initial weights and
batch order) are independent runs of the same recipe; here they run **side by side**: the weights of
``S`` seeds are stacked into one ``(S, K, D)`` tensor, each seed draws its own batch from its own
epoch order (``feature_data.epoch_generator(seed, epoch)``, as :func:`shiftinv.study.training.fit`
does), and one batched matrix product serves them all. Adam and the L2 penalty act element-wise,
so the stacked run gives each seed the weights of its own separate run (up to float rounding;
``tests/test_seeded_heads.py`` checks it against :func:`~shiftinv.study.training.fit`), at about
the cost of one: the per-step overhead of a small linear head dominates its arithmetic.

Early stopping is per seed (``TrainConfig.patience`` epochs without a better ``monitor``): a seed
that has stopped keeps its best weights and its history ends there; the run ends when every seed
has stopped or after ``epochs``. :func:`train_or_load_seeds` caches the finished group by its
configuration (``cache.cached``: a damaged file is set aside and the group trained again) and
checkpoints every epoch, so an interrupted run resumes.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from ..models import vgg
from ..workbook import cache, runtime
from ..workbook.checkpoints import Checkpoint, TrainingDiverged, divergence
from .feature_data import FeatureData, epoch_generator
from . import training
from .training import TrainConfig, TrainResult

#: Threads of the stacked head training (see :func:`fit_seeds`).
HEAD_THREADS = 1


#: What early stopping may watch: validation accuracy (higher is better) or loss (lower is better).
MONITORS = ("val_acc", "val_loss")


def head_vectors(head: vgg.Head, data: FeatureData, batch_size: int = 4096) -> tuple[Tensor, Tensor]:
    """``(vectors (N, D) float32, labels (N,))``: what ``head``'s linear layer reads for every item of
    ``data`` (``Head.pooled`` of its taps), computed once."""
    if head.kind == "fc":
        raise ValueError("the fc head is not a single linear layer: train it with training.fit")
    parts = []
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            feats, _ = data.batch(torch.arange(start, min(start + batch_size, len(data))))
            parts.append(head.pooled(feats).float())
    return torch.cat(parts), data.labels


@dataclasses.dataclass
class _Stack:
    """The stacked weights of ``S`` seeds: ``weight`` (S, K, D), ``bias`` (S, K), their optimiser."""

    seeds: tuple[int, ...]
    weight: Tensor
    bias: Tensor
    optim: torch.optim.Optimizer

    @classmethod
    def of(cls, heads: Mapping[int, vgg.Head], lr: float, device: torch.device) -> "_Stack":
        seeds = tuple(heads)
        w = torch.stack([heads[s].linear.weight.detach().float() for s in seeds]).to(device).requires_grad_(True)
        b = torch.stack([heads[s].linear.bias.detach().float() for s in seeds]).to(device).requires_grad_(True)
        return cls(seeds, w, b, torch.optim.Adam([w, b], lr=lr))

    def logits(self, x: Tensor) -> Tensor:
        """(S, B, D) -> (S, B, K)."""
        return torch.baddbmm(self.bias[:, None, :], x, self.weight.transpose(1, 2))


def fit_seeds(heads: Mapping[int, vgg.Head], train: FeatureData, val: FeatureData, cfg: TrainConfig, *,
              monitor: str = "val_acc", checkpoint: Any = None, desc: str = "heads") -> dict[int, TrainResult]:
    """Train the linear layer of every head of ``heads`` (``{seed: Head}``, one kind, each initialised by
    the caller) on ``train`` features, seed ``s`` drawing its batches in the order of
    ``epoch_generator(s, epoch)``; early stopping per seed on ``monitor`` over ``val``.

    Leaves each head with the weights of its best epoch and returns ``{seed: TrainResult}`` (the
    history of a seed ends at its stop). ``cfg.seed`` is ignored (each head's seed is its key);
    ``cfg.l2`` penalises the weight matrices as :func:`~shiftinv.study.training.fit` does.
    """
    if monitor not in MONITORS:
        raise ValueError(f"monitor must be one of {MONITORS}, got {monitor!r}")
    if not heads:
        raise ValueError("heads is empty: pass {seed: Head}")
    kinds = {h.kind for h in heads.values()}
    if len(kinds) != 1:
        raise ValueError(f"fit_seeds trains one head kind at a time, got {sorted(kinds)}")
    device = runtime.default_device(cfg.device)
    first = next(iter(heads.values()))
    x_train, y_train = (t.to(device) for t in head_vectors(first, train))
    x_val, y_val = (t.to(device) for t in head_vectors(first, val))
    stack = _Stack.of(heads, cfg.lr, device)
    run_id = {"train": cfg.to_dict(), "monitor": monitor, "seeds": list(stack.seeds),
              "initial": cache.state_fingerprint(*heads.values()), "n": [len(train), len(val)]}
    ckpt = Checkpoint(checkpoint, run_id)
    state = _resume(stack, ckpt.resume(lambda saved: _check_checkpoint(stack, saved)))
    # one thread: a small linear head's steps are a few microseconds of arithmetic each; a second thread only
    # adds synchronisation, which on a loaded machine costs milliseconds per operation (measured: 0.9 s per
    # epoch on one thread against 42 s on two, 10,000 items, multi GAP). Fixed, so the rounding is too.
    with runtime.reproducible(threads=HEAD_THREADS):
        _epochs(stack, state, ckpt, (x_train, y_train), (x_val, y_val), cfg, monitor, desc)
    return _finish(stack, state, heads)


def _check_checkpoint(stack: _Stack, saved: Mapping[str, Any]) -> None:
    """Raise ``KeyError`` / ``ValueError`` unless ``saved`` can be restored into ``stack`` (checked before
    anything is restored: a damaged or foreign checkpoint is set aside and the run starts over)."""
    missing = {"weight", "bias", "optim", "epoch", "best", "best_epoch", "bad", "stopped", "history",
               "best_weight", "best_bias", "first_loss", "seconds"} - set(saved)
    if missing:
        raise KeyError(f"missing entries {sorted(missing)}")
    for name in ("weight", "bias", "best_weight", "best_bias"):
        ref = stack.weight if "weight" in name else stack.bias
        if tuple(saved[name].shape) != tuple(ref.shape) or not torch.isfinite(saved[name]).all():
            raise ValueError(f"{name} has shape {tuple(saved[name].shape)} (expected {tuple(ref.shape)}) or "
                             "non-finite values")


def _resume(stack: _Stack, saved: Mapping[str, Any] | None) -> dict[str, Any]:
    """Per-seed loop state (best score, best epoch, epochs without improvement, stopped, history,
    best weights), fresh or restored from a checkpoint together with the stacked weights."""
    s = len(stack.seeds)
    state: dict[str, Any] = {"epoch": 0, "best": [None] * s, "best_epoch": [0] * s, "bad": [0] * s,
                             "stopped": [False] * s, "history": [[] for _ in range(s)],
                             "best_weight": stack.weight.detach().clone(), "best_bias": stack.bias.detach().clone(),
                             "first_loss": [None] * s, "seconds": 0.0}
    if saved is None:
        return state
    with torch.no_grad():
        stack.weight.copy_(saved["weight"])
        stack.bias.copy_(saved["bias"])
    stack.optim.load_state_dict(saved["optim"])
    return {k: saved[k] for k in state}


def _epochs(stack: _Stack, state: dict[str, Any], ckpt: Checkpoint, train: tuple[Tensor, Tensor],
            val: tuple[Tensor, Tensor], cfg: TrainConfig, monitor: str, desc: str) -> None:
    """Train until every seed has stopped or ``cfg.epochs`` epochs; checkpoint after each epoch."""
    bar = runtime.progress(range(state["epoch"] + 1, cfg.epochs + 1), desc=f"{desc} x{len(stack.seeds)} seeds",
                           leave=False, total=cfg.epochs, initial=state["epoch"])
    for epoch in bar if not all(state["stopped"]) else []:
        t0 = time.perf_counter()
        train_loss = _train_epoch(stack, state, train, cfg, epoch, desc)
        _validate(stack, state, val, cfg, monitor, epoch, train_loss, time.perf_counter() - t0)
        state["epoch"] = epoch
        ckpt.save(epoch, lambda: {"weight": stack.weight.detach(), "bias": stack.bias.detach(),
                                  "optim": stack.optim.state_dict(), **state})
        if all(state["stopped"]):
            break
    if hasattr(bar, "close"):
        bar.close()


def _train_epoch(stack: _Stack, state: dict[str, Any], train: tuple[Tensor, Tensor], cfg: TrainConfig,
                 epoch: int, desc: str) -> list[float]:
    """One epoch: seed ``s`` visits the items in the order of its generator ``(s, epoch)``. Returns the
    mean training loss per seed (nats, without the L2 penalty)."""
    x, y = train
    n, device = x.shape[0], x.device
    orders = torch.stack([torch.randperm(n, generator=epoch_generator(s, epoch)) for s in stack.seeds]).to(device)
    totals = torch.zeros(len(stack.seeds), dtype=torch.float64)
    for start in range(0, n, cfg.batch_size):
        idx = orders[:, start : start + cfg.batch_size]  # (S, B)
        logits = stack.logits(x[idx])  # (S, B, K)
        losses = F.cross_entropy(logits.flatten(0, 1), y[idx].flatten(), reduction="none").view(idx.shape).mean(1)
        total = losses.sum() + (cfg.l2 * stack.weight.pow(2).sum() if cfg.l2 else 0.0)
        stack.optim.zero_grad(set_to_none=True)
        total.backward()
        stack.optim.step()
        batch = losses.detach().double().cpu()
        for i, value in enumerate(batch.tolist()):
            why = divergence(value, first_loss=state["first_loss"][i] if state["first_loss"][i] is not None else value)
            if why:
                raise TrainingDiverged(f"training of {desc!r} seed {stack.seeds[i]} diverged in epoch {epoch}: {why} "
                                       f"(learning rate {cfg.lr:g}); nothing was cached. Lower the learning rate.")
            if state["first_loss"][i] is None:
                state["first_loss"][i] = value
        totals += batch * idx.shape[1]
    return (totals / n).tolist()


def _validate(stack: _Stack, state: dict[str, Any], val: tuple[Tensor, Tensor], cfg: TrainConfig, monitor: str,
              epoch: int, train_loss: list[float], seconds: float) -> None:
    """Validation accuracy and loss of every seed; per seed, record the epoch, keep the best weights
    and count epochs without improvement until ``cfg.patience`` stops it."""
    x, y = val
    with torch.no_grad():
        acc = torch.zeros(len(stack.seeds), dtype=torch.float64)
        loss = torch.zeros(len(stack.seeds), dtype=torch.float64)
        for start in range(0, x.shape[0], cfg.eval_batch_size):
            xb, yb = x[start : start + cfg.eval_batch_size], y[start : start + cfg.eval_batch_size]
            logits = stack.logits(xb.expand(len(stack.seeds), -1, -1))  # (S, B, K)
            acc += (logits.argmax(2) == yb).sum(1).double().cpu()
            loss += F.cross_entropy(logits.transpose(1, 2), yb.expand(len(stack.seeds), -1),
                                    reduction="none").sum(1).double().cpu()
    acc, loss = acc / x.shape[0], loss / x.shape[0]
    if not torch.isfinite(stack.weight).all() or not torch.isfinite(stack.bias).all():
        raise TrainingDiverged(f"non-finite head weights in epoch {epoch}; nothing was cached. Lower the learning rate.")
    for i in range(len(stack.seeds)):
        if state["stopped"][i]:
            continue
        state["history"][i].append({"epoch": epoch, "train_loss": train_loss[i], "val_loss": float(loss[i]),
                                    "val_acc": float(acc[i]), "seconds": seconds})
        score = float(acc[i]) if monitor == "val_acc" else -float(loss[i])
        if state["best"][i] is None or score > state["best"][i]:
            state["best"][i], state["best_epoch"][i], state["bad"][i] = score, epoch, 0
            state["best_weight"][i] = stack.weight.detach()[i].clone()
            state["best_bias"][i] = stack.bias.detach()[i].clone()
        else:
            state["bad"][i] += 1
            state["stopped"][i] = state["bad"][i] >= cfg.patience


def _finish(stack: _Stack, state: dict[str, Any], heads: Mapping[int, vgg.Head]) -> dict[int, TrainResult]:
    """Copy each seed's best weights into its head; the per-seed :class:`TrainResult`."""
    out = {}
    for i, s in enumerate(stack.seeds):
        head = heads[s]
        with torch.no_grad():
            head.linear.weight.copy_(state["best_weight"][i].to(head.linear.weight))
            head.linear.bias.copy_(state["best_bias"][i].to(head.linear.bias))
        hist = state["history"][i]
        best = next((r for r in hist if r["epoch"] == state["best_epoch"][i]), {})
        out[s] = TrainResult(history=list(hist), best_epoch=int(state["best_epoch"][i]),
                             best_val_acc=float(best.get("val_acc", 0.0)), stopped_early=bool(state["stopped"][i]),
                             seconds=sum(r["seconds"] for r in hist))
    return out


def train_or_load_seeds(name: str, key: Mapping[str, Any], heads: Mapping[int, vgg.Head],
                        train: Callable[[], FeatureData], val: Callable[[], FeatureData], cfg: TrainConfig, *,
                        monitor: str = "val_acc", refresh: bool = False, desc: str | None = None,
                        load_only: bool = False) -> dict[int, TrainResult]:
    """:func:`fit_seeds`, or the cached result of an identical run (``results/<name>/``), loaded into ``heads``.

    ``train`` / ``val`` are called only when the group must be trained (so a cached group costs no
    trunk pass, and a damaged cache file, set aside by ``cache.cached``, trains again with its data).
    The key is ``key`` (what the heads and data are), ``cfg``, ``monitor``, the seeds and the code
    behind them. "Cached" is decided by loading the file and checking every seed's weights against its
    head (names, shapes, finite values); ``load_only`` raises ``LookupError`` instead of training.
    Each result's ``loaded`` says whether it came from the cache.
    """
    config = {"key": dict(key), "train": cfg.to_dict(), "monitor": monitor, "seeds": [int(s) for s in heads]}
    ckpt = cache.cache_path(name, config, ".ckpt.pt", code=[__name__])

    def compute() -> dict[str, Any]:
        results = fit_seeds(heads, train(), val(), cfg, monitor=monitor, checkpoint=ckpt, desc=desc or name)
        return {"state": {str(s): {k: v.detach().cpu() for k, v in heads[s].state_dict().items()} for s in heads},
                "results": {str(s): r.as_dict() for s, r in results.items()}}

    def fits(value: Mapping[str, Any]) -> None:  # checked before loading: a bad file leaves the heads as they are
        for s, head in heads.items():
            TrainResult(**value["results"][str(s)])
            training.check_weights_fit(head, value["state"][str(s)])
            runtime.check_finite(value["state"][str(s)], f"cached weights of {desc or name!r} seed {s}")

    trained: list[bool] = []

    def counted() -> dict[str, Any]:
        if load_only:
            raise LookupError(f"{desc or name} (seeds {list(heads)}) is not in the cache")
        trained.append(True)
        return compute()

    out = cache.cached(name, config, counted, code=[__name__], refresh=refresh, require_finite=True, validate=fits)
    ckpt.unlink(missing_ok=True)
    device = runtime.default_device(cfg.device)
    for s, head in heads.items():
        head.load_state_dict(out["state"][str(s)])
        head.to(device)
    return {s: dataclasses.replace(TrainResult(**out["results"][str(s)]), loaded=not trained) for s in heads}

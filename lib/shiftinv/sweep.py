"""The sweep engine: per-shift loss, accuracy and logits of several heads over a grid of shifts.

One call evaluates any number of heads that share a frozen trunk on every
``(shift, image)`` pair:

- the trunk runs once per shifted image, with the union of the heads' taps;
- many shifts are batched into one forward pass; the shifted images are
  gathered on the model's device from the test images with one indexing
  operation (:func:`shiftinv.shifts.shift_windows`); results accumulate in
  device tensors, so the loop has no host synchronisation (on GPU: bf16
  autocast and ``channels_last`` by default);
- partial results are written atomically to ``out_path`` as the sweep goes
  (every ``save_every`` seconds) and a re-run resumes from them;
- under ``torch.distributed`` (``torchrun``) the batches are dealt out to the
  ranks and gathered at the end; each batch holds exactly the same images as in
  a single-process run, so a sharded sweep gives the same numbers.

The protocol the engine relies on (see :mod:`shiftinv.models`):
``trunk(x, taps) -> {tap: (B, C, h, w)}`` and ``head(feats) -> (B, K)`` logits,
``head.taps`` naming the maps it reads.

Command line (single process or ``torchrun --nproc-per-node 2 -m shiftinv.sweep run ...``;
``python -m shiftinv.sweep --help``):

- ``export --profile demo --out models.pt`` reads the trunks and heads notebook 03 trained
  (``results/``, via :func:`shiftinv.classify.train_or_load_models`, refusing to train unless
  ``--train-missing``) and writes them to one file (:func:`models_state` documents the layout);
- ``run --models models.pt --out sweep.pt`` sweeps them over the profile's shift grid and test
  images (or ``--images`` / ``--shifts`` / ``--mode``), heads named ``"trunk/head"``; ``--profile``
  reads the cache directly. ``--dtype float32|bf16`` (default bf16 on CUDA, float32 on the CPU).
  Untrained weights only with ``--random-weights``. Bad input exits with status 2 and a message.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import utils
from .shifts import MODES, shift_windows, window_indices

__all__ = ["SweepResult", "RESPONSES", "sweep", "sweep_models", "reference_sweep", "main", "export_models", "load_models",
           "models_state", "build_models", "MODELS_FORMAT"]

FIELDS: tuple[str, ...] = ("loss", "correct", "pred", "p_true")
#: Per-image responses :meth:`SweepResult.per_image` reads (the one reader of sweep results).
RESPONSES: tuple[str, ...] = ("loss", "accuracy", "p_true", "true_logit", "pred_change")


# ----------------------------------------------------------------------------- result


@dataclass
class SweepResult:
    """Per-shift, per-image outcomes of one or several heads.

    Attributes:
        shifts: (S, 2) int64 ``(dx, dy)`` (content moves right / down).
        labels: (N,) int64 true classes.
        mode: shift protocol (:data:`shiftinv.shifts.MODES`).
        loss: ``{head: (S, N) float32}`` cross-entropy (nats) of each shifted image.
        correct: ``{head: (S, N) bool}`` top-1 correct.
        pred: ``{head: (S, N) int64}`` top-1 class.
        p_true: ``{head: (S, N) float32}`` softmax probability of the true class.
        logits: ``{head: (S, N, K) float32}`` when the sweep kept them, else ``{}``.
        meta: free-form description (config, timings).
    """

    shifts: Tensor
    labels: Tensor
    mode: str
    loss: dict[str, Tensor]
    correct: dict[str, Tensor]
    pred: dict[str, Tensor]
    p_true: dict[str, Tensor]
    logits: dict[str, Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def heads(self) -> tuple[str, ...]:
        return tuple(self.loss)

    @property
    def num_shifts(self) -> int:
        return int(self.shifts.shape[0])

    @property
    def num_images(self) -> int:
        return int(self.labels.shape[0])

    def index(self, dx: int, dy: int) -> int:
        """Row of shift ``(dx, dy)`` in the per-shift tensors; ``KeyError`` when absent."""
        hit = ((self.shifts[:, 0] == dx) & (self.shifts[:, 1] == dy)).nonzero()
        if hit.numel() == 0:
            raise KeyError(f"shift ({dx}, {dy}) is not in this sweep (it has {self.num_shifts} shifts)")
        return int(hit[0, 0])

    def check_head(self, head: str) -> str:
        if head not in self.loss:
            raise KeyError(f"unknown head {head!r}; this sweep has heads {self.heads}")
        return head

    def per_image(self, head: str, field: str = "loss") -> Tensor:
        """(S, N) response of every image at every shift (rows as in :attr:`shifts`).

        Args:
            field: ``"loss"`` (cross-entropy, nats, float32), ``"accuracy"`` (top-1 correct, bool),
                ``"p_true"`` (softmax probability of the true class), ``"true_logit"`` (logit of the
                true class; needs a sweep run with ``keep_logits=True``) or ``"pred_change"`` (top-1
                differs from the unshifted image's, bool; needs the shift (0, 0)).
        """
        self.check_head(head)
        if field == "loss":
            return self.loss[head]
        if field == "accuracy":
            return self.correct[head]
        if field == "p_true":
            return self.p_true[head]
        if field == "true_logit":
            if head not in self.logits:
                raise ValueError("field 'true_logit' needs the logits: run the sweep with keep_logits=True")
            lg = self.logits[head]  # (S, N, K)
            return lg.gather(2, self.labels.view(1, -1, 1).expand(lg.shape[0], -1, 1))[..., 0]
        if field == "pred_change":
            try:
                z = self.index(0, 0)
            except KeyError:
                raise ValueError("field 'pred_change' needs the unshifted image: include (0, 0) in the sweep's "
                                 "shifts") from None
            return self.pred[head] != self.pred[head][z]
        raise ValueError(f"field must be one of {RESPONSES}, got {field!r}")

    def to_state(self) -> dict[str, Any]:
        """Plain dict of tensors / strings (loadable with ``weights_only=True``)."""
        return {
            "shifts": self.shifts, "labels": self.labels, "mode": self.mode,
            "loss": self.loss, "correct": self.correct, "pred": self.pred, "p_true": self.p_true,
            "logits": self.logits, "meta": self.meta,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "SweepResult":
        return cls(**{k: state[k] for k in ("shifts", "labels", "mode", "loss", "correct", "pred", "p_true", "logits", "meta")})

    def save(self, path: Path | str) -> Path:
        """Write atomically (``utils.atomic_torch_save``)."""
        return utils.atomic_torch_save({"complete": True, "result": self.to_state()}, path)

    @classmethod
    def load(cls, path: Path | str) -> "SweepResult":
        state = utils.safe_torch_load(path)
        if not state.get("complete", False):
            raise ValueError(f"'{path}' holds a partial sweep; re-run sweep(..., out_path='{path}') to finish it")
        return cls.from_state(state["result"])

    def select(self, heads: Sequence[str]) -> "SweepResult":
        """A view with only ``heads``."""
        for h in heads:
            self.check_head(h)
        pick = lambda d: {h: d[h] for h in heads if h in d}  # noqa: E731
        return SweepResult(self.shifts, self.labels, self.mode, pick(self.loss), pick(self.correct),
                           pick(self.pred), pick(self.p_true), pick(self.logits), dict(self.meta))

    @staticmethod
    def merge(results: Mapping[str, "SweepResult"]) -> "SweepResult":
        """Combine results of several models on the same shifts/images; heads named ``model/head``."""
        first = next(iter(results.values()))
        out = SweepResult(first.shifts, first.labels, first.mode, {}, {}, {}, {}, {}, {"models": {}})
        for model, r in results.items():
            if not (torch.equal(r.shifts, first.shifts) and torch.equal(r.labels, first.labels) and r.mode == first.mode):
                raise ValueError(f"cannot merge '{model}': its shifts, labels or mode differ from the first result")
            for h in r.heads:
                name = f"{model}/{h}"
                for attr in ("loss", "correct", "pred", "p_true", "logits"):
                    src = getattr(r, attr)
                    if h in src:
                        getattr(out, attr)[name] = src[h]
            out.meta["models"][model] = r.meta
        return out


# ----------------------------------------------------------------------------- adapters


class _WholeModelTrunk(nn.Module):
    """Trunk adapter for a plain ``model(x) -> logits``: hands the input through."""

    def __init__(self) -> None:
        super().__init__()

    def forward(self, x: Tensor, taps: Sequence[str]) -> dict[str, Tensor]:
        return {"input": x}


class _WholeModelHead(nn.Module):
    taps = ("input",)

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, feats: Mapping[str, Tensor]) -> Tensor:
        return self.model(feats["input"])


def _resolve_model(trunk: Any, heads: Mapping[str, Any] | None) -> tuple[Any, dict[str, Any]]:
    if heads is not None:
        heads = dict(heads)
        if not heads:
            raise ValueError("heads is empty: pass {name: head} with at least one head")
        for name, h in heads.items():
            if not hasattr(h, "taps"):
                raise TypeError(f"head {name!r} has no .taps attribute (the trunk layers it reads)")
        return trunk, heads
    if hasattr(trunk, "trunk") and hasattr(trunk, "head"):  # VGGClassifier
        return trunk.trunk, {"model": trunk.head}
    if callable(trunk):
        return _WholeModelTrunk(), {"model": _WholeModelHead(trunk)}
    raise TypeError("pass a trunk and {name: head}, a VGGClassifier, or a callable model(x) -> logits")


def _union_taps(trunk: Any, heads: Mapping[str, Any]) -> tuple[str, ...]:
    taps = list(dict.fromkeys(t for h in heads.values() for t in h.taps))
    if hasattr(trunk, "index"):  # keep the trunk's layer order
        taps.sort(key=trunk.index)
    return tuple(taps)


def rank_and_world() -> tuple[int, int]:
    """``(rank, world size)`` under ``torch.distributed``, ``(0, 1)`` in a single process."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _rank_path(out_path: Path, rank: int, world: int) -> Path:
    return out_path if world == 1 else out_path.with_name(f"{out_path.stem}.rank{rank}of{world}{out_path.suffix}")


# ----------------------------------------------------------------------------- engine


def _plan(num_shifts: int, num_images: int, batch_size: int) -> list[tuple[int, int, int, int]]:
    """Batches as ``(s0, s1, n0, n1)``: shifts [s0, s1) x images [n0, n1), shift-major."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    per = max(1, batch_size // num_images)  # shifts per batch when all images fit
    step = min(num_images, batch_size)  # images per batch
    plan = []
    for s0 in range(0, num_shifts, per):
        s1 = min(num_shifts, s0 + per)
        for n0 in range(0, num_images, step):
            plan.append((s0, s1, n0, min(num_images, n0 + step)))
    return plan


def sweep(
    trunk: Any, heads: Mapping[str, Any] | None, images: Tensor, labels: Tensor,
    shifts: Sequence[tuple[int, int]] | Tensor, mode: str = "mosaic", *, batch_size: int = 64,
    device: str | torch.device | None = None, out_path: Path | str | None = None, keep_logits: bool = False,
    amp: str | bool | None = None, channels_last: bool | None = None,
    out_size: tuple[int, int] | int | None = None, save_every: float = 60.0, progress: bool = True,
) -> SweepResult:
    """Evaluate every head on every shifted image.

    Args:
        trunk: ``trunk(x, taps) -> {tap: map}``; or a ``VGGClassifier`` / any
            ``model(x) -> logits`` with ``heads=None`` (one head named ``"model"``).
        heads: ``{name: head}``, ``head(feats) -> (B, K)`` logits, ``head.taps``.
        images: (N, C, H, W) in [0, 1] (for ``mode="crop"`` the larger sources).
        labels: (N,) int class indices.
        shifts: (S, 2) integer ``(dx, dy)``, e.g. :func:`shiftinv.shifts.shift_grid`.
        mode: shift protocol (:data:`shiftinv.shifts.MODES`).
        batch_size: shifted images per forward pass (``batch_size // N`` shifts
            per pass when all images fit, else chunks of images of one shift).
        device: where to run (default: CUDA if available). Images, labels and
            results live there during the sweep; results are returned on the CPU.
        out_path: file for partial / final results (resumed if present; a file
            from another configuration is refused). Under torch.distributed each
            rank keeps ``<stem>.rank{r}of{w}<suffix>``, rank 0 writes the final file.
        keep_logits: also return ``(S, N, K)`` logits per head (memory: S*N*K*4 bytes).
        amp: :func:`shiftinv.utils.resolve_amp` policy (``"bf16"``/``"fp16"``/``"off"``/``True``/``False``);
            default bf16 on CUDA, off on the CPU. Losses are computed in float32.
        channels_last: memory format of the batches (default: on CUDA only).
        out_size: ``"crop"`` window / canvas size (see :func:`shiftinv.shifts.shift_windows`).
        save_every: seconds between checkpoints of partial results (0: every batch).
        progress: show a progress bar (``utils.progress``).

    Returns:
        :class:`SweepResult` on the CPU (every rank gets the full result).
    """
    if mode not in MODES:
        raise ValueError(f"unknown shift mode {mode!r}; choose one of {MODES}")
    trunk, heads = _resolve_model(trunk, heads)
    dev = utils.default_device(str(device) if device is not None else None)
    amp = utils.resolve_amp(dev, amp)
    labels, shifts_cpu, out_size = _check_sweep_inputs(images, labels, shifts, mode, out_size)
    taps = _union_taps(trunk, heads)
    config = _sweep_config(trunk, heads, images, labels, shifts_cpu, mode, taps, keep_logits, out_size)
    final_path = Path(out_path) if out_path is not None else None
    finished = _load_finished(final_path, config)
    if finished is not None:
        return finished
    run = _SweepRun(trunk, heads, taps, mode, out_size, bool(keep_logits), dev, config, batch_size, final_path,
                    num_s=shifts_cpu.shape[0], num_n=images.shape[0])
    modules, training, cl = _prepare_modules(trunk, heads, dev, channels_last)
    x_all = images.to(dev, images.dtype if images.is_floating_point() else torch.float32)  # float64 kept
    started = time.monotonic()
    try:
        run.execute(x_all, labels.to(dev), shifts_cpu.to(dev), cl, amp, save_every, progress)
    finally:
        for m, t in zip(modules, training):
            m.train(t)
    return run.finish(x_all, shifts_cpu, labels, amp, cl, started)


def _check_sweep_inputs(images: Tensor, labels: Tensor, shifts: Sequence[tuple[int, int]] | Tensor, mode: str,
                        out_size: tuple[int, int] | int | None
                        ) -> tuple[Tensor, Tensor, tuple[int, int] | None]:
    """Validated ``(labels (N,) int64, shifts (S, 2) int64 on the CPU, out_size (h, w) or None)``.

    Every shift is checked here once, on the CPU, with a clear message; the batches skip the checks.
    """
    if images.dim() != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
    labels = torch.as_tensor(labels).long().reshape(-1)
    if labels.shape[0] != images.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
    shifts_cpu = torch.as_tensor(shifts).reshape(-1, 2)
    if shifts_cpu.is_floating_point() and not torch.equal(shifts_cpu, shifts_cpu.round()):
        raise ValueError("the sweep takes integer shifts only (sub-pixel: use shiftinv.shifts.translate)")
    shifts_cpu = shifts_cpu.long()
    num_s, num_n = shifts_cpu.shape[0], images.shape[0]
    if num_s == 0 or num_n == 0:
        raise ValueError(f"nothing to sweep: {num_s} shifts, {num_n} images")
    if isinstance(out_size, int):
        out_size = (out_size, out_size)
    h, w = images.shape[-2:]
    oh, ow = out_size if out_size is not None and mode in ("crop", "zero", "mean") else (h, w)
    if mode == "crop" and out_size is None:
        raise ValueError("mode 'crop' needs out_size=(h, w): the window taken inside the larger source images")
    window_indices(shifts_cpu, mode, h, w, oh, ow)  # raises clearly on a shift out of range
    return labels, shifts_cpu, out_size


def _sweep_config(trunk: Any, heads: Mapping[str, Any], images: Tensor, labels: Tensor, shifts: Tensor, mode: str,
                  taps: Sequence[str], keep_logits: bool, out_size: tuple[int, int] | None) -> dict[str, Any]:
    """What identifies a sweep: a finished or partial file is reused only for an equal config."""
    return {
        "mode": mode, "shifts": utils.config_hash({"s": shifts.tolist()}), "num_shifts": int(shifts.shape[0]),
        "images": [list(images.shape), round(float(images.double().sum()), 4)],
        "labels": utils.config_hash({"l": labels.tolist()}), "heads": list(heads), "taps": list(taps),
        "keep_logits": bool(keep_logits), "out_size": list(out_size) if out_size else None,
        "params": utils.state_fingerprint(trunk, *heads.values()),
    }


def _load_finished(final_path: Path | None, config: Mapping[str, Any]) -> SweepResult | None:
    """The finished result in ``final_path`` when it holds a sweep of ``config``, else ``None``."""
    if final_path is None or not final_path.exists():
        return None
    state = utils.safe_torch_load(final_path)
    if state.get("complete") and state["result"]["meta"].get("config") == config:
        return SweepResult.from_state(state["result"])
    return None


def _prepare_modules(trunk: Any, heads: Mapping[str, Any], dev: torch.device, channels_last: bool | None
                     ) -> tuple[list[nn.Module], list[bool], bool]:
    """Move the modules to ``dev`` in eval mode (channels-last by default on CUDA).

    Returns ``(modules, their previous training flags, channels_last)``.
    """
    modules = [m for m in (trunk, *heads.values()) if isinstance(m, nn.Module)]
    training = [m.training for m in modules]
    for m in modules:
        m.to(dev).eval()
    cl = (dev.type == "cuda") if channels_last is None else bool(channels_last)
    if cl:
        for m in modules:
            m.to(memory_format=torch.channels_last)
    return modules, training, cl


class _SweepRun:
    """One :func:`sweep` call on one rank: its batch plan, device accumulators and checkpoint file.

    The accumulators are ``{field: {head: (S, N)}}`` device tensors (``logits``: (S, N, K)), allocated
    at the first batch (when the number of classes is known); ``done`` marks finished batches.
    """

    def __init__(self, trunk: Any, heads: Mapping[str, Any], taps: tuple[str, ...], mode: str,
                 out_size: tuple[int, int] | None, keep_logits: bool, dev: torch.device, config: dict[str, Any],
                 batch_size: int, final_path: Path | None, *, num_s: int, num_n: int) -> None:
        self.trunk, self.heads, self.taps, self.mode, self.out_size = trunk, heads, taps, mode, out_size
        self.keep_logits, self.dev, self.config, self.batch_size = keep_logits, dev, config, batch_size
        self.num_s, self.num_n = num_s, num_n
        self.rank, self.world = rank_and_world()
        self.final_path = final_path
        self.part_path = _rank_path(final_path, self.rank, self.world) if final_path is not None else None
        self.plan = _plan(num_s, num_n, batch_size)
        self.acc: dict[str, dict[str, Tensor]] | None = None
        self.done = torch.zeros(len(self.plan), dtype=torch.bool)
        self._resume()

    def _resume(self) -> None:
        """Load this rank's partial results; refuse a file of another configuration."""
        if self.part_path is None or not self.part_path.exists():
            return
        state = utils.safe_torch_load(self.part_path)
        if state.get("config") != self.config or state.get("batch_size") != self.batch_size:
            raise ValueError(
                f"'{self.part_path}' holds a sweep of another configuration (model, images, shifts, mode or batch "
                "size differ); delete it or choose another out_path"
            )
        if not state.get("complete"):
            self.acc = {f: {k: v.to(self.dev) for k, v in d.items()} for f, d in state["acc"].items()}
            self.done = state["done"].clone()

    def save_partial(self) -> None:
        if self.part_path is None or self.acc is None:
            return
        cpu = {f: {k: v.cpu() for k, v in d.items()} for f, d in self.acc.items()}
        utils.atomic_torch_save({"complete": False, "config": self.config, "batch_size": self.batch_size,
                                 "acc": cpu, "done": self.done}, self.part_path)

    def execute(self, x_all: Tensor, y_all: Tensor, s_all: Tensor, cl: bool, amp: str, save_every: float,
                progress: bool) -> None:
        """Run this rank's unfinished batches (x_all (N, C, H, W), y_all (N,), s_all (S, 2) on the device)."""
        todo = [i for i in range(len(self.plan)) if i % self.world == self.rank and not self.done[i]]
        last_save = time.monotonic()
        bar = utils.progress(
            total=sum((self.plan[i][1] - self.plan[i][0]) * (self.plan[i][3] - self.plan[i][2]) for i in todo),
            unit="img", desc=f"sweep {self.mode} x{len(self.heads)} heads"
            + (f" [rank {self.rank}]" if self.world > 1 else ""),
            disable=(not progress) or os.environ.get("SHIFTINV_PROGRESS", "1") == "0")
        try:
            with torch.inference_mode(), utils.autocast(self.dev, amp):
                for i in todo:
                    s0, s1, n0, n1 = self.plan[i]
                    x = shift_windows(x_all[n0:n1], s_all[s0:s1], self.mode, out_size=self.out_size,
                                      channels_last=cl, validate=False)  # (B, C, h, w), B = (s1-s0)*(n1-n0)
                    feats = self.trunk(x, self.taps)
                    y = y_all[n0:n1].repeat(s1 - s0)  # (B,)
                    for name, head in self.heads.items():
                        self._record(name, head(feats).float(), y, self.plan[i])
                    self.done[i] = True
                    bar.update((s1 - s0) * (n1 - n0))
                    now = time.monotonic()
                    if self.part_path is not None and now - last_save >= save_every:
                        self.save_partial()
                        last_save = now
        finally:
            bar.close()

    def _record(self, name: str, logits: Tensor, y: Tensor, batch: tuple[int, int, int, int]) -> None:
        """Write one head's outcomes of one batch (logits (B, K) float32, y (B,)) into the accumulators."""
        s0, s1, n0, n1 = batch
        if self.acc is None:
            self.acc = _alloc(tuple(self.heads), self.num_s, self.num_n, logits.shape[1], self.keep_logits, self.dev)
        shape = (s1 - s0, n1 - n0)
        a = {f: self.acc[f][name] for f in self.acc}
        a["loss"][s0:s1, n0:n1] = F.cross_entropy(logits, y, reduction="none").view(shape)
        pred = logits.argmax(dim=1)
        a["pred"][s0:s1, n0:n1] = pred.view(shape)
        a["correct"][s0:s1, n0:n1] = (pred == y).view(shape)
        a["p_true"][s0:s1, n0:n1] = logits.softmax(1).gather(1, y[:, None]).view(shape)
        if self.keep_logits:
            a["logits"][s0:s1, n0:n1] = logits.view(*shape, -1)

    def finish(self, x_all: Tensor, shifts: Tensor, labels: Tensor, amp: str, cl: bool, started: float
               ) -> SweepResult:
        """Gather the ranks' accumulators into a CPU :class:`SweepResult`; write the final file (rank 0)."""
        if self.acc is None:  # this rank had nothing to do (more ranks than batches) or resumed complete
            k = _num_classes(self.trunk, self.heads, x_all, shifts.to(self.dev), self.mode, self.out_size, self.taps)
            self.acc = _alloc(tuple(self.heads), self.num_s, self.num_n, k, self.keep_logits, self.dev)
        if self.world > 1:
            self.save_partial()  # this rank's share is safe before the collective
        elapsed = time.monotonic() - started
        if self.world > 1:
            _all_reduce(self.acc, self.dev)
        cpu = {f: {k: v.cpu() for k, v in d.items()} for f, d in self.acc.items()}
        result = SweepResult(
            shifts=shifts, labels=labels.cpu(), mode=self.mode, loss=cpu["loss"],
            correct={k: v.bool() for k, v in cpu["correct"].items()}, pred=cpu["pred"], p_true=cpu["p_true"],
            logits=cpu.get("logits", {}),
            meta={"config": self.config, "device": str(self.dev), "world_size": self.world,
                  "batch_size": self.batch_size, "amp": amp, "channels_last": cl, "seconds": elapsed},
        )
        if self.final_path is not None and self.rank == 0:
            result.save(self.final_path)
        if self.world > 1:
            torch.distributed.barrier()
        if self.part_path is not None and self.part_path != self.final_path and self.part_path.exists():
            self.part_path.unlink()
        return result


def _alloc(names: Sequence[str], s: int, n: int, k: int, keep_logits: bool, dev: torch.device) -> dict[str, dict[str, Tensor]]:
    acc = {
        "loss": {h: torch.zeros(s, n, device=dev) for h in names},
        "correct": {h: torch.zeros(s, n, dtype=torch.uint8, device=dev) for h in names},
        "pred": {h: torch.zeros(s, n, dtype=torch.long, device=dev) for h in names},
        "p_true": {h: torch.zeros(s, n, device=dev) for h in names},
    }
    if keep_logits:
        acc["logits"] = {h: torch.zeros(s, n, k, device=dev) for h in names}
    return acc


def _num_classes(trunk: Any, heads: Mapping[str, Any], x: Tensor, s: Tensor, mode: str, out_size: Any, taps: Sequence[str]) -> int:
    with torch.inference_mode():
        feats = trunk(shift_windows(x[:1], s[:1], mode, out_size=out_size, validate=False), taps)
        return int(next(iter(heads.values()))(feats).shape[1])


def _all_reduce(acc: dict[str, dict[str, Tensor]], dev: torch.device) -> None:
    """Sum the ranks' accumulators (each (shift, image) was filled by exactly one rank; others hold 0)."""
    for d in acc.values():
        for k, v in d.items():
            t = v if v.dtype != torch.uint8 else v.to(torch.int32)
            torch.distributed.all_reduce(t)
            d[k] = t if v.dtype != torch.uint8 else t.to(torch.uint8)


def sweep_models(
    models: Mapping[str, tuple[Any, Mapping[str, Any] | None]],
    images: Tensor,
    labels: Tensor,
    shifts: Sequence[tuple[int, int]] | Tensor,
    mode: str = "mosaic",
    *,
    out_path: Path | str | None = None,
    **kwargs: Any,
) -> SweepResult:
    """Sweep several models whose trunks differ: ``{model: (trunk, {head: Head})}``.

    Each trunk is swept once with all its heads (see :func:`sweep`); the results
    are merged with heads named ``"model/head"``. ``out_path`` becomes one file per
    model, ``<stem>.<model><suffix>``.
    """
    if not models:
        raise ValueError("models is empty: pass {name: (trunk, {head_name: head})}")
    results = {}
    for name, (trunk, heads) in models.items():
        path = None
        if out_path is not None:
            p = Path(out_path)
            path = p.with_name(f"{p.stem}.{name}{p.suffix}")
        results[name] = sweep(trunk, heads, images, labels, shifts, mode, out_path=path, **kwargs)
    return SweepResult.merge(results)


def reference_sweep(
    models: Mapping[str, Callable[[Tensor], Tensor]],
    images: Tensor,
    labels: Tensor,
    shifts: Sequence[tuple[int, int]],
    mode: str = "mosaic",
    *,
    batch_size: int = 64,
    out_size: tuple[int, int] | int | None = None,
    shift: Callable[[Tensor, int, int], Tensor] | None = None,
    device: str | torch.device | None = None,
) -> SweepResult:
    """The straightforward loop: for every model, for every shift, translate and run the whole model.

    The baseline that :func:`sweep` is tested against and that :func:`shiftinv.bench.run_baseline`
    times (``models``: ``{name: model(x) -> logits}``, each run separately, in float32).

    Args:
        images: (N, C, H, W); labels: (N,) int.
        shift: ``shift(images, dx, dy) -> (N, C, h, w)`` shifted images (default
            :func:`shiftinv.shifts.translate` in ``mode`` with ``out_size``).
        device: where the models run; each batch of ``batch_size`` shifted images is moved there
            (default: the images' device, no move).

    Returns:
        :class:`SweepResult` with (S, N) tensors on ``device`` (no logits).
    """
    from .shifts import translate

    if shift is None:
        shift = lambda x, dx, dy: translate(x, dx, dy, mode, out_size=out_size)  # noqa: E731
    labels = torch.as_tensor(labels).long()
    y = labels if device is None else labels.to(device)
    out = {f: {} for f in FIELDS}
    with torch.inference_mode():
        for name, model in models.items():
            rows: dict[str, list[Tensor]] = {f: [] for f in FIELDS}
            for dx, dy in shifts:
                x = shift(images, dx, dy)
                logits = torch.cat([model(x[i : i + batch_size] if device is None else x[i : i + batch_size].to(device))
                                    for i in range(0, len(x), batch_size)]).float()
                pred = logits.argmax(1)
                rows["loss"].append(F.cross_entropy(logits, y, reduction="none"))
                rows["pred"].append(pred)
                rows["correct"].append(pred == y)
                rows["p_true"].append(logits.softmax(1).gather(1, y[:, None])[:, 0])
            for f in FIELDS:
                out[f][name] = torch.stack(rows[f])
    return SweepResult(torch.as_tensor(shifts).long().reshape(-1, 2), labels, mode,
                       out["loss"], out["correct"], out["pred"], out["p_true"], {}, {"reference": True})


# ----------------------------------------------------------------------------- command line

#: ``format`` field of the file ``python -m shiftinv.sweep export`` writes (see :func:`export_models`).
MODELS_FORMAT = "shiftinv.sweep/models-v1"
_TRUNK_SPEC = ("width", "batch_norm", "pool", "blur_size", "blur_pad", "circular", "normalize")
_DATA_FIELDS = ("dataset", "data_root", "image_size", "digit_size", "max_train", "max_val", "max_test", "seed",
                "n_sweep", "shift_mode", "shift_radius", "grid_step", "sweep_batch")


class CommandError(Exception):
    """A problem with the command line's input, reported as one message (no traceback)."""


def _parse_shifts(text: str) -> list[tuple[int, int]]:
    """``"R"`` or ``"R:STEP"`` -> :func:`shift_grid`; ``"diag:A:B"`` -> diagonal shifts."""
    from .shifts import diagonal_shifts, shift_grid

    parts = text.split(":")
    try:
        if parts[0] == "diag":
            return diagonal_shifts(int(parts[1]), int(parts[2]))
        return shift_grid(int(parts[0]), int(parts[1]) if len(parts) > 1 else 1)
    except (ValueError, IndexError):
        raise argparse.ArgumentTypeError(f"--shifts must be 'R', 'R:STEP' or 'diag:A:B', got {text!r}") from None


@contextlib.contextmanager
def _loading_only(results: Path) -> Any:
    """Make :func:`shiftinv.train.fit` refuse to run: models must come from the cache (notebook 03)."""
    from . import train

    original = train.fit

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise CommandError(
            f"a model of this profile is not in the cache under '{results}' (trained by notebook 03 with the "
            "same profile and parameters). Run notebook 03 first (e.g. `make figures NOTEBOOKS=03`, or "
            "`python -m shiftinv.notebooks 03`), point SHIFTINV_RESULTS at its results folder, or pass "
            "--train-missing to train the missing models now."
        )

    train.fit = refuse
    try:
        yield
    finally:
        train.fit = original


def models_state(ms: Any) -> dict[str, Any]:
    """The trained trunks and heads of a :class:`shiftinv.classify.ModelSet` as a plain dict.

    The documented layout (``format`` :data:`MODELS_FORMAT`), loadable with ``weights_only=True``::

        {"format": "shiftinv.sweep/models-v1",
         "profile": {...},                       # classify.Profile.to_dict(): data, shifts, seed, ...
         "trunks": {trunk: {"spec": {width, batch_norm, pool, blur_size, blur_pad, circular, normalize},
                            "state": VGGTrunk.state_dict()}},
         "heads": {trunk: {head: {"kind", "num_classes", "input_size", "gap_taps": [...],
                                  "state": Head.state_dict()}}},
         "summary": {"model": [...], "test_acc": [...]}}   # notebook 03's test accuracy per model
    """
    p = ms.profile
    trunks = {name: {"spec": {k: getattr(t, k) for k in _TRUNK_SPEC},
                     "state": {k: v.detach().cpu() for k, v in t.state_dict().items()}}
              for name, t in ms.trunks.items()}
    heads = {t: {h: {"kind": m.kind, "num_classes": m.num_classes, "input_size": p.image_size,
                     "gap_taps": list(m.gap_taps), "state": {k: v.detach().cpu() for k, v in m.state_dict().items()}}
                 for h, m in hs.items()} for t, hs in ms.heads.items()}
    summary = {"model": [str(m) for m in ms.summary["model"]],
               "test_acc": [float(a) for a in ms.summary["test_acc"]]}
    return {"format": MODELS_FORMAT, "profile": p.to_dict(), "trunks": trunks, "heads": heads, "summary": summary}


def export_models(profile: Any, out: Path | str | None = None, train_missing: bool = False) -> dict[str, Any]:
    """Load a profile's trunks and heads from notebook 03's cache (:func:`shiftinv.classify.train_or_load_models`)
    and return (and, with ``out``, write atomically) :func:`models_state`.

    Without ``train_missing`` a model absent from the cache raises :class:`CommandError` instead of
    being trained. BlurPool/APS trunks that reuse the plain trunk's conv weights get their BatchNorm
    statistics re-estimated on the training images exactly as in notebook 03 (deterministic).
    """
    from . import classify, paths

    guard = contextlib.nullcontext() if train_missing else _loading_only(paths.results_dir())
    with guard:
        ms = classify.train_or_load_models(profile)
    state = models_state(ms)
    if out is not None:
        utils.atomic_torch_save(state, out)
    return state


def load_models(path: Path | str) -> tuple[dict[str, Any], dict[str, tuple[Any, dict[str, Any]]]]:
    """Read a file written by ``export``: ``(state, {trunk: (VGGTrunk, {head: Head})})`` (eval mode)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CommandError(f"models file not found: '{path}'. Write one with "
                           "`python -m shiftinv.sweep export --profile demo --out models.pt`.")
    try:
        state = utils.safe_torch_load(path)
    except ValueError as exc:
        raise CommandError(f"{exc} (is '{path}' a file written by `python -m shiftinv.sweep export`?)") from None
    return state, build_models(state, f"'{path}'")


def build_models(state: Any, where: str = "the models state") -> dict[str, tuple[Any, dict[str, Any]]]:
    """``{trunk: (VGGTrunk, {head: Head})}`` (eval mode) from a :func:`models_state` dict."""
    from . import models

    if not isinstance(state, dict) or state.get("format") != MODELS_FORMAT:
        got = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CommandError(f"{where} is not a models file of format {MODELS_FORMAT!r} (found {got!r}); "
                           "write one with `python -m shiftinv.sweep export`.")
    built: dict[str, tuple[Any, dict[str, Any]]] = {}
    try:
        for tname, t in state["trunks"].items():
            trunk = models.build_trunk(**t["spec"])
            trunk.load_state_dict(t["state"])
            heads = {}
            for hname, h in state["heads"].get(tname, {}).items():
                gap = None if h["kind"] in ("flatten", "fc") else tuple(h["gap_taps"])
                head = models.build_head(h["kind"], trunk, h["num_classes"], h["input_size"], gap_taps=gap)
                head.load_state_dict(h["state"])
                heads[hname] = head.eval()
            built[tname] = (trunk.eval(), heads)
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise CommandError(f"{where} is damaged or from another version ({type(exc).__name__}: {exc}); "
                           "export it again.") from None
    return built


def _profile_from_state(d: dict[str, Any], device: str | None) -> Any:
    """The exported profile (its data and sweep settings) as a :class:`shiftinv.classify.Profile`."""
    from . import classify

    p = classify.get_profile(d["name"], bool(d["smoke"]))
    return p.replace(**{k: d[k] for k in _DATA_FIELDS if k in d}, device=device)


def _profile_test_images(profile: Any, n: int | None) -> tuple[Tensor, Tensor]:
    """The first ``n`` (default ``n_sweep``) test images of the profile, as notebook 04 sweeps them
    (:meth:`shiftinv.classify.ModelSet.test_tensors`)."""
    from . import classify
    from . import data as data_mod

    splits = classify.load_data(profile)
    n = profile.n_sweep if n is None else n
    return data_mod.as_tensors(data_mod.take(splits.test, n, profile.seed + 3))


def _select(built: dict[str, tuple[Any, dict[str, Any]]], wanted: str | None) -> dict[str, tuple[Any, dict[str, Any]]]:
    if not wanted:
        return built
    names = [w for w in wanted.split(",") if w]
    out: dict[str, tuple[Any, dict[str, Any]]] = {}
    every = [f"{t}/{h}" for t, (_, hs) in built.items() for h in hs]
    for w in names:
        hits = [n for n in every if n == w or n.split("/")[0] == w]
        if not hits:
            raise CommandError(f"--heads: no model {w!r}; the file has {every} (a name or a trunk name)")
        for n in hits:
            t, h = n.split("/")
            out.setdefault(t, (built[t][0], {}))[1][h] = built[t][1][h]
    return out


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every default; ``None`` / ``False`` defaults are described in the help text itself."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "(default" in text or action.default in (None, False, "", argparse.SUPPRESS) or action.required:
            return text
        return super()._get_help_string(action) or text


def _sweep_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m shiftinv.sweep`` with its two sub-commands, ``export`` and ``run``."""
    parser = argparse.ArgumentParser(
        prog="python -m shiftinv.sweep", formatter_class=_HelpFormatter,
        description="Sweep trained VGG-16 heads over a grid of shifts (one process, or sharded under torchrun). "
                    "`export` writes the trunks and heads notebook 03 trained (read from results/) to one file; "
                    "`run` (the default sub-command) sweeps them.",
        epilog="Example: python -m shiftinv.sweep export --profile demo --out models.pt && "
               "torchrun --nproc-per-node 2 -m shiftinv.sweep run --models models.pt --out sweep.pt")
    sub = parser.add_subparsers(dest="command")
    _add_export_parser(sub)
    run = sub.add_parser("run", formatter_class=_HelpFormatter, help="sweep trained heads over shifts (default sub-command)",
                         description="Sweep heads over a shift grid. Weights: --models FILE (from `export`), or "
                                     "--profile NAME (read from notebook 03's cache directly), or --weights plus "
                                     "--head-weights; untrained weights only with --random-weights.")
    _add_model_arguments(run)
    _add_data_arguments(run)
    return parser


def _add_export_parser(sub: Any) -> None:
    """``export``: a profile's trained trunks and heads (notebook 03's cache) to one file."""
    ex = sub.add_parser("export", formatter_class=_HelpFormatter,
                        help="write a profile's trained trunks and heads (notebook 03's cache) to one file",
                        description=f"Read the trunks and heads notebook 03 trained for a profile from the cache "
                                    f"(SHIFTINV_RESULTS, default results/) and write them to one torch file "
                                    f"(format {MODELS_FORMAT!r}, documented in shiftinv.sweep.models_state). "
                                    "Nothing is trained unless --train-missing is given.")
    ex.add_argument("--profile", default="demo", help="demo | cifar | paper (as notebook 03's PROFILE)")
    ex.add_argument("--smoke", action="store_true", help="the profile's smoke sizes (as SMOKE=True)")
    ex.add_argument("--data-dir", default="", help="notebook 03's IMAGENET_DIR / CIFAR_DIR ('' = the default)")
    ex.add_argument("--weights", default="", help="notebook 03's VGG_WEIGHTS ('' = the profile's default)")
    ex.add_argument("--device", default="", help="notebook 03's DEVICE ('' = CUDA if present; part of the cache key, "
                                                "so give what notebook 03 was given)")
    ex.add_argument("--train-missing", action="store_true", help="train models missing from the cache instead of failing")
    ex.add_argument("--out", type=Path, required=True, help="models file to write (.pt)")


def _add_model_arguments(run: argparse.ArgumentParser) -> None:
    """``run``: where the trained models come from, and the architecture of untrained ones."""
    src = run.add_argument_group("trained models")
    src.add_argument("--models", type=Path, help="file written by `python -m shiftinv.sweep export`")
    src.add_argument("--profile", default=None, help="read this profile's models from notebook 03's cache (with --smoke, "
                                                     "--data-dir, --weights as there; models cached with notebook 03's "
                                                     "default DEVICE) instead of --models")
    src.add_argument("--smoke", action="store_true", help="with --profile: the smoke sizes")
    src.add_argument("--data-dir", default="", help="with --profile: IMAGENET_DIR / CIFAR_DIR")
    src.add_argument("--heads", default=None,
                     help="comma-separated models: 'trunk/head' or trunk names with --models/--profile (default: all); "
                          "head kinds with --head-weights/--random-weights (default: flatten,final_gap,multi_gap,gap_flatten)")
    src.add_argument("--head-weights", type=Path, help="torch file {head_kind: state_dict} of trained heads (with --weights)")
    src.add_argument("--weights", default=None, help="trunk weights: a VGG16_Weights name or a state-dict path "
                                                     "(with --profile: notebook 03's VGG_WEIGHTS)")
    src.add_argument("--random-weights", action="store_true",
                     help="allow untrained (seeded random) heads/trunk: for timing only, accuracies are meaningless")
    arch = run.add_argument_group("architecture (only with --head-weights / --random-weights)")
    arch.add_argument("--num-classes", type=int, default=160)
    arch.add_argument("--width", type=float, default=1.0, help="channel width multiplier of the trunk")
    arch.add_argument("--pool", default="max", choices=("max", "blur", "aps"))
    arch.add_argument("--circular", action="store_true", help="circular padding in the trunk")


def _add_data_arguments(run: argparse.ArgumentParser) -> None:
    """``run``: the images and shifts, and how to compute."""
    data = run.add_argument_group("images and shifts")
    data.add_argument("--images", type=Path, help="ImageFolder-style folder (class sub-folders) of test images "
                                                  "(default with --models/--profile: the profile's test split)")
    data.add_argument("--n-images", type=int, default=None, help="with the profile's test split: how many "
                                                                  "(default: the profile's n_sweep, as notebook 04)")
    data.add_argument("--synthetic", type=int, default=0, help="use N random images instead (smoke runs)")
    data.add_argument("--size", type=int, default=256, help="input side in px for --images/--synthetic (resized to it)")
    data.add_argument("--resize", default="tf", choices=("tf", "antialias"),
                      help="--images resizing: tf = the authors' tf.image.resize (bilinear, no antialiasing)")
    data.add_argument("--shifts", type=_parse_shifts, default=None,
                      help="'R', 'R:STEP' or 'diag:A:B' (default: the profile's 2-D grid with --models/--profile, else '2')")
    data.add_argument("--mode", default=None, choices=MODES, help="shift protocol (default: the profile's, else mosaic)")
    comp = run.add_argument_group("computation")
    comp.add_argument("--batch-size", type=int, default=None, help="shifted images per forward pass "
                                                                  "(default: the profile's sweep_batch, else 64)")
    comp.add_argument("--dtype", default=None, choices=("float32", "bf16"),
                      help="compute dtype (default: bf16 autocast on CUDA, float32 on the CPU); float32 for the "
                           "reference paper sweep, bf16 for speed")
    comp.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA if available; "
                                                     "under torchrun each rank takes cuda:LOCAL_RANK)")
    comp.add_argument("--out", type=Path, required=True, help="result file (.pt, SweepResult); resumed if interrupted")
    comp.add_argument("--seed", type=int, default=0, help="seed of --synthetic images and --random-weights")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m shiftinv.sweep [export|run] ...`` (``run`` under ``torchrun`` shards the sweep)."""
    import sys

    args_in = list(sys.argv[1:] if argv is None else argv)
    if not args_in or args_in[0] not in ("export", "run", "-h", "--help"):
        args_in = ["run", *args_in]  # `run` is the default sub-command
    args = _sweep_parser().parse_args(args_in)
    try:
        if args.command == "export":
            return _export_command(args)
        return _run_command(args)
    except (CommandError, FileNotFoundError, ValueError, KeyError) as exc:
        print(f"python -m shiftinv.sweep {args.command}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _export_command(args: argparse.Namespace) -> int:
    from . import classify

    profile = classify.profile_from_params(args.profile, args.smoke, data_dir=args.data_dir, weights=args.weights,
                                           device=args.device)
    state = export_models(profile, args.out, train_missing=args.train_missing)
    names = [f"{t}/{h}" for t, hs in state["heads"].items() for h in hs]
    print(f"exported {len(names)} models of profile {profile.name} (smoke={profile.smoke}) -> {args.out}: "
          f"{', '.join(names)}")
    return 0


def _run_command(args: argparse.Namespace) -> int:
    """``run``: choose the models, images and shifts, sweep, report the mean accuracy (rank 0)."""
    from . import classify

    distributed = _init_distributed(args)
    g = utils.seed_everything(args.seed)
    trained = args.models is not None or args.profile is not None
    profile, chosen = _trained_models(args) if trained else (None, _given_models(args))
    images, labels = _run_images(args, profile, chosen, g)
    shifts = args.shifts if args.shifts is not None else (
        classify.sweep_shifts(profile, "grid") if profile is not None else _parse_shifts("2"))
    mode = args.mode or (profile.shift_mode if profile is not None else "mosaic")
    batch = args.batch_size or (profile.sweep_batch if profile is not None else 64)
    # --dtype: None (the default policy: bf16 on CUDA, off elsewhere), float32 (no autocast) or bf16
    kw = dict(batch_size=batch, device=args.device, amp="off" if args.dtype == "float32" else args.dtype)
    if trained:
        result = sweep_models(chosen, images, labels, shifts, mode, out_path=args.out, **kw)
    else:
        trunk, heads = chosen["model"]
        result = sweep(trunk, heads, images, labels, shifts, mode, out_path=args.out, **kw)
    rank, _ = rank_and_world()
    if rank == 0:
        if trained:
            result.save(args.out)  # the merged result ("trunk/head"; per-trunk files beside it for resuming)
        acc = {h: round(float(result.correct[h].float().mean()), 4) for h in result.heads}
        meta = next(iter(result.meta["models"].values())) if trained else result.meta
        note = "" if trained or args.head_weights is not None else " (RANDOM WEIGHTS: accuracies are meaningless)"
        print(f"swept {result.num_shifts} shifts x {result.num_images} images ({mode}, {meta['amp']}) "
              f"-> {args.out}; mean accuracy{note} {acc}")
    if distributed:
        torch.distributed.barrier()
    return 0


def _init_distributed(args: argparse.Namespace) -> bool:
    """Join the ``torchrun`` process group when there is one (NCCL on CUDA: this rank takes cuda:LOCAL_RANK)."""
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and args.device != "cpu" else "gloo"
        torch.distributed.init_process_group(backend)
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            args.device = args.device or f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return distributed


def _trained_models(args: argparse.Namespace) -> tuple[Any, dict[str, tuple[Any, dict[str, Any]]]]:
    """``(profile, {trunk: (VGGTrunk, {head: Head})})`` from ``--models FILE`` or ``--profile NAME``."""
    from . import classify

    if args.models is not None and args.profile is not None:
        raise CommandError("give either --models FILE or --profile NAME, not both")
    if args.head_weights is not None:
        raise CommandError("--head-weights is for a trunk given by --weights; --models/--profile carry their heads")
    if args.models is not None:
        state, built = load_models(args.models)
    else:
        # notebook 03's default DEVICE (""): the device is part of its cache keys; for models cached
        # under another DEVICE use `export --device ...` and --models
        p = classify.profile_from_params(args.profile, args.smoke, data_dir=args.data_dir,
                                         weights=args.weights or "")
        state = export_models(p)
        built = build_models(state, f"profile {p.name}")
    return _profile_from_state(state["profile"], args.device), _select(built, args.heads)


def _given_models(args: argparse.Namespace) -> dict[str, tuple[Any, dict[str, Any]]]:
    """``{"model": (trunk, {kind: head})}`` from ``--weights`` / ``--head-weights`` (or random weights)."""
    from . import models

    if args.head_weights is None and not args.random_weights:
        raise CommandError(
            "no trained weights given. Sweep the models notebook 03 trained with --models FILE (write it with "
            "`python -m shiftinv.sweep export --profile demo --out models.pt`) or --profile NAME; or give "
            "--weights and --head-weights; or pass --random-weights to sweep untrained models (timing only).")
    if args.head_weights is not None and args.weights is None and not args.random_weights:
        raise CommandError("--head-weights without --weights would put trained heads on a random trunk; "
                           "give --weights (or --random-weights to allow it)")
    trunk = models.build_trunk(width=args.width, pool=args.pool, circular=args.circular, weights=args.weights)
    kinds = (args.heads or "flatten,final_gap,multi_gap,gap_flatten").split(",")
    heads = {k: models.build_head(k, trunk, args.num_classes, args.size) for k in kinds if k}
    if args.head_weights is not None:
        states = utils.safe_torch_load(args.head_weights)
        for k, head in heads.items():
            if k not in states:
                raise CommandError(f"{args.head_weights} has no weights for head {k!r} (it has {sorted(states)})")
            try:
                head.load_state_dict(states[k])
            except RuntimeError as exc:
                raise CommandError(f"{args.head_weights}: head {k!r} does not fit this architecture "
                                   f"(--width/--num-classes/--size?): {exc}") from None
    return {"model": (trunk, heads)}


def _run_images(args: argparse.Namespace, profile: Any, chosen: Mapping[str, tuple[Any, Mapping[str, Any]]],
                g: torch.Generator) -> tuple[Tensor, Tensor]:
    """(N, 3, size, size) images in [0, 1] and (N,) labels: ``--synthetic``, ``--images`` or the profile's test split."""
    size = profile.image_size if profile is not None else args.size
    if args.synthetic:
        num_classes = next(iter(next(iter(chosen.values()))[1].values())).num_classes
        images = torch.rand(args.synthetic, 3, size, size, generator=g)
        labels = torch.randint(0, num_classes, (args.synthetic,), generator=g)
        return images, labels
    if args.images is not None:
        return _load_folder(args.images, size, args.resize)
    if profile is not None:
        return _profile_test_images(profile, args.n_images)
    raise CommandError("give --images FOLDER or --synthetic N (or --models/--profile for the profile's test split)")


def _load_folder(folder: Path, size: int, resize: str = "tf") -> tuple[Tensor, Tensor]:
    """(N, 3, size, size) in [0, 1] and (N,) labels from an ImageFolder (resized whole, no crop, like the paper;
    ``resize``: ``"tf"`` the authors' tf.image.resize without antialiasing, ``"antialias"``)."""
    from torchvision import datasets

    from .data import resize_transform
    from .paths import require_dir

    require_dir(folder, "sweep test images", "Pass --images pointing to an ImageFolder (one sub-folder per class).")
    ds = datasets.ImageFolder(str(folder), transform=resize_transform(size, resize))
    xs, ys = zip(*[ds[i] for i in range(len(ds))])
    return torch.stack(xs), torch.tensor(ys)


if __name__ == "__main__":
    raise SystemExit(main())

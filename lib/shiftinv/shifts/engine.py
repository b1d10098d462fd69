"""The sweep engine: per-shift loss, accuracy and logits of several heads over a grid of shifts.

One call evaluates any number of heads that share a frozen trunk on every
``(shift, image)`` pair:

- the trunk runs once per shifted image, with the union of the heads' taps;
- many shifts are batched into one forward pass; the shifted images are
  gathered on the model's device from the test images with one indexing
  operation (:func:`shiftinv.shifts.translation.shift_windows`); results accumulate in
  device tensors, so the loop has no host synchronisation (on GPU: bf16
  autocast and ``channels_last`` by default);
- partial results are written atomically to ``out_path`` as the sweep goes
  (every ``save_every`` seconds) and a re-run resumes from them;
- under ``torch.distributed`` (``torchrun``) the batches are dealt out to the
  ranks and gathered at the end; each batch holds exactly the same images as in
  a single-process run, so a sharded sweep gives the same numbers.

The protocol the engine relies on (see :mod:`shiftinv.models.vgg`):
``trunk(x, taps) -> {tap: (B, C, h, w)}`` and ``head(feats) -> (B, K)`` logits,
``head.taps`` naming the maps it reads.

What a sweep returns (:class:`~shiftinv.shifts.sweep_result.SweepResult`) is in
:mod:`shiftinv.shifts.sweep_result`; the command line (``torchrun``) in :mod:`shiftinv.commands.sweep`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..workbook import cache, runtime
from .sweep_result import SweepResult
from .translation import MODES, shift_windows, window_indices

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


def _at_least_float32(t: Any) -> Any:
    """``t`` in float32 when it is a half-precision float tensor (bf16 / fp16); anything else unchanged
    (a float64 pass stays float64)."""
    if torch.is_tensor(t) and t.is_floating_point() and t.element_size() < 4:
        return t.float()
    return t


def float_features(feats: Any) -> Any:
    """A trunk's output in at least float32: ``{tap: map}`` (or a tensor) from a bf16 / fp16 pass, so that heads
    run in float32 (they are small, and were trained in float32 on cached features; a bf16 head would add its own
    rounding, e.g. a global average summed in bf16). Float32 and float64 outputs pass unchanged."""
    if isinstance(feats, Mapping):
        return {k: _at_least_float32(v) for k, v in feats.items()}
    return _at_least_float32(feats)


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
        shifts: (S, 2) integer ``(dx, dy)``, e.g. :func:`shiftinv.shifts.translation.shift_grid`.
        mode: shift protocol (:data:`shiftinv.shifts.translation.MODES`).
        batch_size: shifted images per forward pass (``batch_size // N`` shifts
            per pass when all images fit, else chunks of images of one shift).
        device: where to run (default: CUDA if available). Images, labels and
            results live there during the sweep; results are returned on the CPU.
        out_path: file for partial / final results (resumed if present; a file
            from another configuration is refused). Under torch.distributed each
            rank keeps ``<stem>.rank{r}of{w}<suffix>``, rank 0 writes the final file.
        keep_logits: also return ``(S, N, K)`` logits per head (memory: S*N*K*4 bytes).
        amp: :func:`shiftinv.workbook.runtime.resolve_amp` policy (``"bf16"``/``"fp16"``/``"off"``/``True``/``False``);
            default bf16 on CUDA, off on the CPU. Losses are computed in float32.
        channels_last: memory format of the batches (default: on CUDA only).
        out_size: ``"crop"`` window / canvas size (see :func:`shiftinv.shifts.translation.shift_windows`).
        save_every: seconds between checkpoints of partial results (0: every batch).
        progress: show a progress bar (``runtime.progress``).

    Returns:
        :class:`SweepResult` on the CPU (every rank gets the full result).
    """
    if mode not in MODES:
        raise ValueError(f"unknown shift mode {mode!r}; choose one of {MODES}")
    trunk, heads = _resolve_model(trunk, heads)
    dev = runtime.default_device(str(device) if device is not None else None)
    amp = runtime.resolve_amp(dev, amp)
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
        raise ValueError("the sweep takes integer shifts only (sub-pixel: use shiftinv.shifts.translation.translate)")
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
        "mode": mode, "shifts": cache.config_hash({"s": shifts.tolist()}), "num_shifts": int(shifts.shape[0]),
        "images": [list(images.shape), round(float(images.double().sum()), 4)],
        "labels": cache.config_hash({"l": labels.tolist()}), "heads": list(heads), "taps": list(taps),
        "keep_logits": bool(keep_logits), "out_size": list(out_size) if out_size else None,
        "params": cache.state_fingerprint(trunk, *heads.values()),
    }


def _load_finished(final_path: Path | None, config: Mapping[str, Any]) -> SweepResult | None:
    """The finished result in ``final_path`` when it holds a sweep of ``config``, else ``None``."""
    state = _read_sweep_file(final_path)
    if state is not None and state["complete"] and state["result"]["meta"].get("config") == config:
        return SweepResult.from_state(state["result"])
    return None


def _read_sweep_file(path: Path | None) -> dict[str, Any] | None:
    """What the sweep file ``path`` holds (finished or partial), or ``None`` when there is none.

    A file that cannot be loaded (truncated, damaged) is set aside (``*.corrupt``) and counts as
    none, so the sweep runs again. A file that loads but is not a sweep (another result written
    to the same path, e.g. a models file) raises a ``ValueError``: it is never overwritten.
    """
    state = cache.load_or_set_aside(path) if path is not None else None
    if state is None:
        return None
    try:
        if state["complete"]:
            SweepResult.from_state(state["result"])
        else:
            state["acc"], state["done"], state["config"]
    except cache.INVALID_CONTENT as err:
        raise ValueError(f"'{path}' exists and is not a sweep result ({type(err).__name__}: {err}), so the sweep "
                         "does not overwrite it: pass another out_path, or move that file away") from None
    return state


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
        state = _read_sweep_file(self.part_path)
        if state is None:  # nothing to resume, or a damaged file set aside
            return
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
        cache.atomic_torch_save({"complete": False, "config": self.config, "batch_size": self.batch_size,
                                 "acc": cpu, "done": self.done}, self.part_path)

    def execute(self, x_all: Tensor, y_all: Tensor, s_all: Tensor, cl: bool, amp: str, save_every: float,
                progress: bool) -> None:
        """Run this rank's unfinished batches (x_all (N, C, H, W), y_all (N,), s_all (S, 2) on the device)."""
        todo = [i for i in range(len(self.plan)) if i % self.world == self.rank and not self.done[i]]
        last_save = time.monotonic()
        bar = runtime.progress(
            total=sum((self.plan[i][1] - self.plan[i][0]) * (self.plan[i][3] - self.plan[i][2]) for i in todo),
            unit="img", desc=f"sweep {self.mode} x{len(self.heads)} heads"
            + (f" [rank {self.rank}]" if self.world > 1 else ""),
            disable=(not progress) or os.environ.get("SHIFTINV_PROGRESS", "1") == "0")
        try:
            whole = isinstance(self.trunk, _WholeModelTrunk)
            with torch.inference_mode():
                for i in todo:
                    s0, s1, n0, n1 = self.plan[i]
                    x = shift_windows(x_all[n0:n1], s_all[s0:s1], self.mode, out_size=self.out_size,
                                      channels_last=cl, validate=False)  # (B, C, h, w), B = (s1-s0)*(n1-n0)
                    with runtime.autocast(self.dev, amp):  # the trunk in the asked precision ...
                        feats = self.trunk(x, self.taps)
                    if whole:  # a plain model(x) is all "head": it runs in the asked precision too
                        with runtime.autocast(self.dev, amp):
                            outs = {name: _at_least_float32(head(feats)) for name, head in self.heads.items()}
                    else:  # ... heads on a trunk in float32, as they were trained
                        feats = float_features(feats)
                        outs = {name: _at_least_float32(head(feats)) for name, head in self.heads.items()}
                    y = y_all[n0:n1].repeat(s1 - s0)  # (B,)
                    for name, logits in outs.items():
                        self._record(name, logits, y, self.plan[i])
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

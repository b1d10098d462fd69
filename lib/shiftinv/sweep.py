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

Command line (single process or ``torchrun --nproc-per-node 2 -m shiftinv.sweep ...``):
see ``python -m shiftinv.sweep --help``.
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
from .shifts import MODES, _window_indices, shift_windows

__all__ = ["SweepResult", "sweep", "sweep_models", "reference_sweep", "main"]

FIELDS: tuple[str, ...] = ("loss", "correct", "pred", "p_true")


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


def _fingerprint(modules: Sequence[Any]) -> list[float]:
    """Cheap checksum of the parameters (sum and sum of squares), to refuse resuming another model."""
    total, sq = 0.0, 0.0
    for m in modules:
        if isinstance(m, nn.Module):
            for p in m.parameters():
                p64 = p.detach().double()
                total += float(p64.sum())
                sq += float((p64 * p64).sum())
    return [round(total, 6), round(sq, 6)]


def _resolve_amp(device: torch.device, amp: str | bool | None) -> str:
    """``"off"``, ``"bf16"`` or ``"fp16"`` (default: bf16 on CUDA, off elsewhere)."""
    if amp is None:
        return "bf16" if device.type == "cuda" else "off"
    if amp is True:
        return "bf16"
    if amp is False or amp == "off":
        return "off"
    names = {"bf16": "bf16", "bfloat16": "bf16", "fp16": "fp16", "float16": "fp16"}
    if amp not in names:
        raise ValueError(f"amp must be None, False, True, 'bf16' or 'fp16'; got {amp!r}")
    return names[amp]


def _autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    if amp == "off":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def _dist() -> tuple[int, int]:
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
    trunk: Any,
    heads: Mapping[str, Any] | None,
    images: Tensor,
    labels: Tensor,
    shifts: Sequence[tuple[int, int]] | Tensor,
    mode: str = "mosaic",
    *,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    out_path: Path | str | None = None,
    keep_logits: bool = False,
    amp: str | bool | None = None,
    channels_last: bool | None = None,
    out_size: tuple[int, int] | int | None = None,
    save_every: float = 60.0,
    progress: bool = True,
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
        amp: autocast dtype (``"bf16"``/``"fp16"``/``True``/``False``); default
            bf16 on CUDA, off on the CPU. Losses are computed in float32.
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
    amp = _resolve_amp(dev, amp)
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
    _window_indices(shifts_cpu, mode, h, w, oh, ow)  # validates every shift once, on the CPU (raises clearly)

    rank, world = _dist()
    taps = _union_taps(trunk, heads)
    names = tuple(heads)
    config = {
        "mode": mode, "shifts": utils.config_hash({"s": shifts_cpu.tolist()}), "num_shifts": num_s,
        "images": [list(images.shape), round(float(images.double().sum()), 4)],
        "labels": utils.config_hash({"l": labels.tolist()}), "heads": list(names), "taps": list(taps),
        "keep_logits": bool(keep_logits), "out_size": list(out_size) if out_size else None,
        "params": _fingerprint([trunk, *heads.values()]),
    }

    final_path = Path(out_path) if out_path is not None else None
    if final_path is not None and final_path.exists():
        state = utils.safe_torch_load(final_path)
        if state.get("complete") and state["result"]["meta"].get("config") == config:
            return SweepResult.from_state(state["result"])
    part_path = _rank_path(final_path, rank, world) if final_path is not None else None

    # device-side accumulators, (S, N) per head; done marks finished batches
    plan = _plan(num_s, num_n, batch_size)
    mine = [i for i in range(len(plan)) if i % world == rank]
    acc: dict[str, dict[str, Tensor]] | None = None
    done = torch.zeros(len(plan), dtype=torch.bool)
    if part_path is not None and part_path.exists():
        state = utils.safe_torch_load(part_path)
        if state.get("config") != config or state.get("batch_size") != batch_size:
            raise ValueError(
                f"'{part_path}' holds a sweep of another configuration (model, images, shifts, mode or batch "
                "size differ); delete it or choose another out_path"
            )
        if not state.get("complete"):
            acc = {f: {k: v.to(dev) for k, v in d.items()} for f, d in state["acc"].items()}
            done = state["done"].clone()

    modules = [m for m in (trunk, *heads.values()) if isinstance(m, nn.Module)]
    training = [m.training for m in modules]
    for m in modules:
        m.to(dev).eval()
    cl = (dev.type == "cuda") if channels_last is None else bool(channels_last)
    if cl:
        for m in modules:
            m.to(memory_format=torch.channels_last)
    x_all = images.to(dev, images.dtype if images.is_floating_point() else torch.float32)  # float64 kept
    y_all = labels.to(dev)
    s_all = shifts_cpu.to(dev)
    todo = [i for i in mine if not done[i]]
    started = time.monotonic()
    last_save = started
    bar = utils.progress(total=sum((plan[i][1] - plan[i][0]) * (plan[i][3] - plan[i][2]) for i in todo),
                         unit="img", desc=f"sweep {mode} x{len(names)} heads" + (f" [rank {rank}]" if world > 1 else ""),
                         disable=(not progress) or os.environ.get("SHIFTINV_PROGRESS", "1") == "0")

    def save_partial() -> None:
        if part_path is None or acc is None:
            return
        cpu = {f: {k: v.cpu() for k, v in d.items()} for f, d in acc.items()}
        utils.atomic_torch_save({"complete": False, "config": config, "batch_size": batch_size,
                                 "acc": cpu, "done": done}, part_path)

    try:
        with torch.inference_mode(), _autocast(dev, amp):
            for i in todo:
                s0, s1, n0, n1 = plan[i]
                x = shift_windows(x_all[n0:n1], s_all[s0:s1], mode, out_size=out_size, channels_last=cl,
                                  validate=False)  # (B, C, h, w) with B = (s1-s0)*(n1-n0), shift-major
                feats = trunk(x, taps)
                y = y_all[n0:n1].repeat(s1 - s0)  # (B,)
                for name, head in heads.items():
                    logits = head(feats).float()  # (B, K)
                    if acc is None:
                        acc = _alloc(names, num_s, num_n, logits.shape[1], keep_logits, dev)
                    shape = (s1 - s0, n1 - n0)
                    a = {f: acc[f][name] for f in acc}
                    a["loss"][s0:s1, n0:n1] = F.cross_entropy(logits, y, reduction="none").view(shape)
                    pred = logits.argmax(dim=1)
                    a["pred"][s0:s1, n0:n1] = pred.view(shape)
                    a["correct"][s0:s1, n0:n1] = (pred == y).view(shape)
                    a["p_true"][s0:s1, n0:n1] = logits.softmax(1).gather(1, y[:, None]).view(shape)
                    if keep_logits:
                        a["logits"][s0:s1, n0:n1] = logits.view(*shape, -1)
                done[i] = True
                bar.update((s1 - s0) * (n1 - n0))
                now = time.monotonic()
                if part_path is not None and now - last_save >= save_every:
                    save_partial()
                    last_save = now
    finally:
        bar.close()
        for m, t in zip(modules, training):
            m.train(t)
    if acc is None:  # this rank had nothing to do (more ranks than batches) or resumed complete
        acc = _alloc(names, num_s, num_n, _num_classes(trunk, heads, x_all, s_all, mode, out_size, taps), keep_logits, dev)
    if world > 1:
        save_partial()  # this rank's share is safe before the collective
    elapsed = time.monotonic() - started

    if world > 1:
        _all_reduce(acc, dev)
    cpu = {f: {k: v.cpu() for k, v in d.items()} for f, d in acc.items()}
    result = SweepResult(
        shifts=shifts_cpu, labels=labels.cpu(), mode=mode,
        loss=cpu["loss"], correct={k: v.bool() for k, v in cpu["correct"].items()}, pred=cpu["pred"], p_true=cpu["p_true"],
        logits=cpu.get("logits", {}),
        meta={"config": config, "device": str(dev), "world_size": world, "batch_size": batch_size,
              "amp": amp, "channels_last": cl, "seconds": elapsed},
    )
    if final_path is not None and rank == 0:
        result.save(final_path)
    if world > 1:
        torch.distributed.barrier()
    if part_path is not None and part_path != final_path and part_path.exists():
        part_path.unlink()
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
) -> SweepResult:
    """The straightforward loop: for every model, for every shift, translate and run the whole model.

    The baseline that :func:`sweep` is benchmarked and tested against
    (``models``: ``{name: model(x) -> logits}``, each run separately, in float32 on
    the images' device).
    """
    from .shifts import translate

    labels = torch.as_tensor(labels).long()
    out = {f: {} for f in FIELDS}
    with torch.inference_mode():
        for name, model in models.items():
            rows: dict[str, list[Tensor]] = {f: [] for f in FIELDS}
            for dx, dy in shifts:
                x = translate(images, dx, dy, mode, out_size=out_size)
                logits = torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]).float()
                pred = logits.argmax(1)
                rows["loss"].append(F.cross_entropy(logits, labels, reduction="none"))
                rows["pred"].append(pred)
                rows["correct"].append(pred == labels)
                rows["p_true"].append(logits.softmax(1).gather(1, labels[:, None])[:, 0])
            for f in FIELDS:
                out[f][name] = torch.stack(rows[f])
    return SweepResult(torch.as_tensor(shifts).long().reshape(-1, 2), labels, mode,
                       out["loss"], out["correct"], out["pred"], out["p_true"], {}, {"reference": True})


# ----------------------------------------------------------------------------- command line


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


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m shiftinv.sweep`` (or under ``torchrun``): sweep VGG-16 heads over a shift grid."""
    parser = argparse.ArgumentParser(prog="python -m shiftinv.sweep", description=main.__doc__)
    parser.add_argument("--images", type=Path, help="ImageFolder-style folder (class sub-folders) of test images")
    parser.add_argument("--synthetic", type=int, default=0, help="use N random images instead of --images (smoke runs)")
    parser.add_argument("--size", type=int, default=256, help="input side in pixels (images are resized to it)")
    parser.add_argument("--heads", default="flatten,final_gap,multi_gap,gap_flatten", help="comma-separated head kinds")
    parser.add_argument("--head-weights", type=Path, help="torch file {head_kind: state_dict} of trained heads")
    parser.add_argument("--weights", default=None, help="trunk weights: a VGG16_Weights name or a state-dict path")
    parser.add_argument("--num-classes", type=int, default=160)
    parser.add_argument("--width", type=float, default=1.0, help="channel width multiplier of the trunk")
    parser.add_argument("--pool", default="max", choices=("max", "blur", "aps"))
    parser.add_argument("--circular", action="store_true", help="circular padding in the trunk")
    parser.add_argument("--shifts", type=_parse_shifts, default=_parse_shifts("2"), help="'R', 'R:STEP' or 'diag:A:B'")
    parser.add_argument("--mode", default="mosaic", choices=MODES)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", type=Path, required=True, help="result file (.pt); resumed if interrupted")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from . import models

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and args.device != "cpu" else "gloo"
        torch.distributed.init_process_group(backend)
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            args.device = args.device or f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    g = utils.seed_everything(args.seed)
    if args.synthetic:
        images = torch.rand(args.synthetic, 3, args.size, args.size, generator=g)
        labels = torch.randint(0, args.num_classes, (args.synthetic,), generator=g)
    elif args.images is not None:
        images, labels = _load_folder(args.images, args.size)
    else:
        parser.error("give --images FOLDER or --synthetic N")
    trunk = models.build_trunk(width=args.width, pool=args.pool, circular=args.circular, weights=args.weights)
    heads = {k: models.build_head(k, trunk, args.num_classes, args.size) for k in args.heads.split(",") if k}
    if args.head_weights is not None:
        states = utils.safe_torch_load(args.head_weights)
        for k, head in heads.items():
            if k not in states:
                raise KeyError(f"{args.head_weights} has no weights for head {k!r} (it has {sorted(states)})")
            head.load_state_dict(states[k])
    result = sweep(trunk, heads, images, labels, args.shifts, args.mode, batch_size=args.batch_size,
                   device=args.device, out_path=args.out)
    rank, _ = _dist()
    if rank == 0:
        acc = {h: round(float(result.correct[h].float().mean()), 4) for h in result.heads}
        print(f"swept {result.num_shifts} shifts x {result.num_images} images in {result.meta['seconds']:.1f} s "
              f"-> {args.out}; mean accuracy {acc}")
    if distributed:
        torch.distributed.destroy_process_group()
    return 0


def _load_folder(folder: Path, size: int) -> tuple[Tensor, Tensor]:
    """(N, 3, size, size) in [0, 1] and (N,) labels from an ImageFolder (resized, no crop, like the paper)."""
    from torchvision import datasets, transforms

    from .paths import require_dir

    require_dir(folder, "sweep test images", "Pass --images pointing to an ImageFolder (one sub-folder per class).")
    ds = datasets.ImageFolder(str(folder), transform=transforms.Compose(
        [transforms.Resize((size, size)), transforms.ToTensor()]))
    xs, ys = zip(*[ds[i] for i in range(len(ds))])
    return torch.stack(xs), torch.tensor(ys)


if __name__ == "__main__":
    raise SystemExit(main())

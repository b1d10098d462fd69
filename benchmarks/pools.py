"""The anti-aliased trunks' cost against the plain one, and the two kernels behind it (part of ``make bench``).

BlurPool and APS evaluate a max densely (stride 1) and pad the maps (APS pads circularly, every conv of the
APS trunk too). On channels-last maps, which every bf16 trunk pass uses, PyTorch's ``F.max_pool2d(x, 2, 1)``
and ``F.pad(..., mode="circular")`` take slow paths (its reflect and replicate kernels do not: the workbook uses
them); the workbook computes the same values with elementwise maxima of shifted views (``layers.dense_max2x2``)
and concatenated views (``layers.pad2d``). This measures both kernels against PyTorch's on one map, and the images per second of the
three trunks (max, BlurPool, APS with circular padding) in bf16 channels-last, and a training step of the max and
APS trunks (the APS selection and the dense max take PyTorch's differentiable paths there), each the fastest
of ``repeats`` runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from shiftinv.models import layers, vgg
from shiftinv.workbook import runtime


def _best(fn: Callable[[], Any], repeats: int, device: torch.device) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def run_pools(width: float, input_size: int, device: torch.device, batch: int = 16, repeats: int = 3
              ) -> dict[str, Any]:
    """Kernel seconds (PyTorch's against the workbook's, same values checked) on a (batch, 64, S/2, S/2) bf16
    channels-last map, and trunk images per second per pooling (bf16 autocast, channels-last)."""
    input_size = max(input_size, 64)  # BlurPool's reflect padding needs pool5's input to be at least 2x2
    amp = "bf16" if device.type == "cpu" else "off"
    dtype = torch.bfloat16 if device.type == "cpu" else torch.float32
    x = torch.randn(batch, 64, input_size // 2, input_size // 2, device=device, dtype=dtype)
    x = x.contiguous(memory_format=torch.channels_last)
    kernels = {
        "dense 2x2 max": (lambda: F.max_pool2d(x, 2, 1), lambda: layers.dense_max2x2(x)),
        "circular pad": (lambda: F.pad(x, (1, 1, 1, 1), mode="circular"),
                         lambda: layers.pad2d(x, (1, 1, 1, 1), "circular")),
    }
    out: dict[str, Any] = {"batch": batch, "input_size": input_size, "width": width, "kernels": {}, "trunks": {}}
    with torch.no_grad():
        for name, (theirs, ours) in kernels.items():
            if not torch.equal(theirs(), ours()):
                raise AssertionError(f"{name}: the workbook's kernel gives other values than PyTorch's")
            a, b = _best(theirs, repeats, device), _best(ours, repeats, device)
            out["kernels"][name] = {"torch_s": a, "workbook_s": b, "speedup": a / b}
        images = torch.rand(batch, 3, input_size, input_size, device=device).contiguous(memory_format=torch.channels_last)
        trunks = {pool: vgg.build_trunk(width=width, pool=pool, circular=pool == "aps").to(device).eval()
                  .to(memory_format=torch.channels_last) for pool in ("max", "blur", "aps")}
        seconds = {pool: float("inf") for pool in trunks}
        with runtime.autocast(device, amp):
            for trunk in trunks.values():  # oneDNN builds its kernels on the first passes: none of that is timed
                trunk(images, ("pool5",))
            for _ in range(2):  # round-robin, best of each: a trunk measured first is not penalised
                for pool, trunk in trunks.items():
                    seconds[pool] = min(seconds[pool], _best(lambda: trunk(images, ("pool5",)), repeats, device))
        out["trunks"] = {pool: {"images_per_s": batch / s} for pool, s in seconds.items()}
    plain = out["trunks"]["max"]["images_per_s"]
    for t in out["trunks"].values():
        t["relative_to_max"] = t["images_per_s"] / plain
    out["training"] = _training_steps(width, input_size, device, batch, repeats)
    return out


def _training_steps(width: float, input_size: int, device: torch.device, batch: int, repeats: int
                    ) -> dict[str, dict[str, float]]:
    """Seconds of one training step (forward and backward to the input weights, float32 channels-last) of the
    max and APS trunks: the cost of training an APS trunk of its own (the ``demo`` profile does)."""
    images = torch.rand(batch, 3, input_size, input_size, device=device).contiguous(memory_format=torch.channels_last)
    steps: dict[str, dict[str, float]] = {}
    for pool in ("max", "aps"):
        trunk = vgg.build_trunk(width=width, batch_norm=True, pool=pool, circular=pool == "aps").to(device).train()
        trunk = trunk.to(memory_format=torch.channels_last)

        def step() -> None:
            trunk.zero_grad()
            trunk(images, ("pool5",))["pool5"].square().mean().backward()

        steps[pool] = {"step_s": _best(step, repeats, device)}
    for t in steps.values():
        t["relative_to_max"] = t["step_s"] / steps["max"]["step_s"]
    return steps


def format_lines(p: dict[str, Any]) -> list[str]:
    """The benchmark table's lines for :func:`run_pools`'s report."""
    lines = [f"pooling kernels on a ({p['batch']}, 64, {p['input_size'] // 2}, {p['input_size'] // 2}) channels-last map "
             "(PyTorch -> workbook, same values):"]
    lines += [f"  {k:<16}{v['torch_s'] * 1e3:>8.2f} ms -> {v['workbook_s'] * 1e3:6.2f} ms  ({v['speedup']:.2f}x)"
              for k, v in p["kernels"].items()]
    lines.append("trunks (bf16 channels-last): " + ", ".join(
        f"{k} {v['images_per_s']:.1f} img/s ({v['relative_to_max']:.2f}x max)" for k, v in p["trunks"].items()))
    if "training" in p:
        lines.append(f"training steps (float32 channels-last, batch {p['batch']}, forward + backward): " + ", ".join(
            f"{k} {v['step_s'] * 1e3:.0f} ms ({v['relative_to_max']:.2f}x max)" for k, v in p["training"].items()))
    return lines

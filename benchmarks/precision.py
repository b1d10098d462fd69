"""The VGG-16 trunk's throughput in float32 against bf16 on one machine, as a ratio (part of ``make bench``).

A frozen trunk's passes dominate every profile's time (features, sweeps, transforms). On a CPU with
AVX-512 BF16 / AMX, oneDNN runs bf16 convolutions (autocast, channels-last) about three times faster
than float32; this measures it here: images per second of the same trunk on the same batch in float32
(contiguous), float32 channels-last, and bf16 channels-last, each the fastest of ``repeats`` runs, with
the relative error of the bf16 pool5 maps against float32. The profiles' own agreement with float32 on
their numbers (accuracy per shift, relative loss) is measured by :mod:`shiftinv.study.precision`.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch
from torch import nn

from shiftinv.workbook import runtime

#: The ways a trunk pass can run: (name, autocast policy, channels-last).
WAYS: tuple[tuple[str, str, bool], ...] = (("float32", "off", False), ("float32 channels-last", "off", True),
                                            ("bf16 channels-last", "bf16", True))


def run_precision(trunk: nn.Module, input_size: int, device: torch.device, batch: int = 16, repeats: int = 3,
                  seed: int = 0) -> dict[str, Any]:
    """Images per second of ``trunk`` (every pool tap) per way of :data:`WAYS`, and ``bf16_speedup`` (bf16
    channels-last over plain float32) with ``bf16_pool5_rel_error`` (``||bf16 - fp32|| / ||fp32||``)."""
    x = torch.rand(batch, 3, input_size, input_size, generator=torch.Generator().manual_seed(seed)).to(device)
    taps = ("pool1", "pool2", "pool3", "pool4", "pool5")
    out: dict[str, Any] = {"batch": batch, "input_size": input_size, "repeats": repeats, "ways": {}}
    ref = None
    for name, amp, cl in WAYS:
        model = copy.deepcopy(trunk).to(device).eval()
        xb = x.contiguous(memory_format=torch.channels_last) if cl else x
        if cl:
            model = model.to(memory_format=torch.channels_last)
        best, pool5 = float("inf"), None
        with torch.no_grad(), runtime.autocast(device, amp):
            model(xb, taps)  # warm-up: oneDNN picks its kernels on the first call
            for _ in range(repeats):
                t0 = time.perf_counter()
                pool5 = model(xb, taps)["pool5"].float()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                best = min(best, time.perf_counter() - t0)
        ref = pool5 if ref is None else ref
        out["ways"][name] = {"images_per_s": batch / best, "seconds": best,
                             "pool5_rel_error": float((pool5 - ref).norm() / ref.norm())}
    ways = out["ways"]
    out["bf16_speedup"] = ways["bf16 channels-last"]["images_per_s"] / ways["float32"]["images_per_s"]
    out["bf16_pool5_rel_error"] = ways["bf16 channels-last"]["pool5_rel_error"]
    out["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    return out


def format_lines(p: dict[str, Any]) -> list[str]:
    """The benchmark table's lines for :func:`run_precision`'s report."""
    lines = [f"trunk passes at {p['input_size']} px, batch {p['batch']} ({p['cpu_capability']}):"]
    lines += [f"  {name:<24}{w['images_per_s']:>8.1f} img/s   pool5 vs float32 {w['pool5_rel_error']:.1e}"
              for name, w in p["ways"].items()]
    lines.append(f"  bf16 channels-last / float32: {p['bf16_speedup']:.2f}x")
    return lines

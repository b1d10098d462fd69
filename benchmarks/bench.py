"""Speed benchmark: how close the translation sweep and head training run to the device's limit.

One run on one device measures (``python -m benchmarks.bench``, ``make bench``):

1. **peak**      the practical peak of the device: a large matrix product (bf16 on a
   GPU, float32 on a CPU), in TFLOP/s.
2. **flops**     the FLOPs of one forward pass of the VGG-16 trunk (and of the four heads)
   at the benchmark's input size, counted by :class:`torch.utils.flop_counter.FlopCounterMode`.
3. **baseline**  the straightforward protocol, as the authors' code runs it: four separate
   models (flatten, final GAP, multi GAP, GAP + flatten), each re-running the same frozen
   trunk, one forward pass per model per shift, float32, the shifted images built on the
   CPU with NumPy from the mirrored mosaic (``numpy.pad(mode="symmetric")``).
4. **engine**    :func:`shiftinv.shifts.engine.sweep` on the same images and shifts: the four heads
   share one trunk pass, many shifts are batched into one forward pass, the windows are
   gathered on the device (bf16 autocast and channels-last on a GPU).
5. **training**  head training on trunk features cached once against re-running the frozen
   trunk every epoch (:mod:`shiftinv.study.training`).
6. **precision** the trunk's images per second in float32 against bf16 (channels-last) on the same
   machine, as a ratio, with the bf16 maps' relative error (:mod:`benchmarks.precision`); and the
   BlurPool / APS trunks against the plain one with the pooling and padding kernels behind them
   (:mod:`benchmarks.pools`).

It reports shifted images per second, achieved TFLOP/s (trunk + head FLOPs of every
shifted image, counted once per trunk pass) and their fraction of the peak, the engine's
speed-up over the baseline, the agreement of the two runs' per-shift accuracy and loss,
and the projected time of the paper's full protocol (``N`` test images x 10,201 shifts x
4 models). Results go to ``results/bench/bench_<device>.json`` with the device, the
library versions and the settings; a table is printed.

Default sizes depend on the device: small on a CPU (96 px, a 3 x 3 shift grid, two
images: well under two minutes on two cores), paper-sized on a GPU (256 px, a
21 x 21 grid over [-50, 50] with step 5, 64 images). Every size is a command-line flag.
The weights are seeded random ones (speed does not depend on them; no pretrained
weights are needed); the labels are the multi-GAP head's top-1 on the unshifted
images, so per-shift accuracy is the fraction of predictions a shift leaves unchanged.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmarks.reference import mosaic_numpy
from shiftinv.workbook import cache, paths, runtime

#: Version of the JSON layout written by :func:`run_benchmark`.
SCHEMA = "benchmarks.bench/1"


#: The four heads of the paper, all on one frozen VGG-16 trunk.
PAPER_HEADS: tuple[str, ...] = ("flatten", "final_gap", "multi_gap", "gap_flatten")


#: The paper's grid: every integer dx, dy in [-50, 50].
PAPER_SHIFTS = 101 * 101


#: ImageNet-160 test set: 160 classes x 50 ILSVRC-2012 validation images.
PAPER_TEST_IMAGES = 160 * 50


# ----------------------------------------------------------------------------- settings


@dataclass
class BenchSettings:
    """Sizes and switches of one benchmark run (every field is a CLI flag)."""

    device: str = "cpu"
    input_size: int = 96           # px (multiple of 32); the paper uses 256
    width: float = 1.0             # channel multiplier of the VGG-16 trunk (1.0 = VGG-16)
    num_classes: int = 160
    images: int = 2                # test images swept
    radius: int = 1                # shifts: every (dx, dy) with |dx|, |dy| <= radius ...
    step: int = 1                  # ... on a grid of this step (paper: radius 50, step 1)
    baseline_batch: int = 64       # images per forward pass in the baseline (one shift at a time)
    repeats: int = 2               # engine and baseline alternate this often; the fastest run of each counts
    batch_size: int | None = None  # shifted images per forward pass in the engine (None: chosen to fit)
    bf16: bool = False             # bf16 autocast in the engine (GPU)
    channels_last: bool = True     # channels-last memory format in the engine (faster on CPUs too)
    compile: bool = False          # torch.compile the engine's trunk
    train_images: int = 8          # head training: images per epoch (+ a quarter for validation)
    train_epochs: int = 3
    train_batch: int = 8
    train_head: str = "multi_gap"
    peak_size: int = 2048          # side of the square matrices of the peak measurement
    paper_test_images: int = PAPER_TEST_IMAGES
    seed: int = 0
    skip_baseline: bool = False
    skip_training: bool = False
    skip_precision: bool = False   # the trunk in float32 against bf16 (benchmarks/precision.py)

    def shifts(self) -> list[tuple[int, int]]:
        from shiftinv.shifts.translation import shift_grid

        return shift_grid(self.radius, self.step)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the bad setting and what to do."""
        positive = ("input_size", "num_classes", "images", "step", "baseline_batch", "repeats", "train_images",
                    "train_epochs", "train_batch", "peak_size", "paper_test_images")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.radius < 0:
            raise ValueError(f"--radius must be >= 0, got {self.radius}")
        if self.radius > self.input_size:
            raise ValueError(f"--radius {self.radius} exceeds the image size {self.input_size}: the mirrored "
                             "mosaic pads by one image size, so shifts must stay within it")
        if self.width <= 0:
            raise ValueError(f"--width must be > 0, got {self.width}")
        if self.input_size % 32:
            raise ValueError(f"--input-size must be a multiple of 32 (five stride-2 pools), got {self.input_size}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1 (or omitted to choose it), got {self.batch_size}")
        if self.train_head not in PAPER_HEADS:
            raise ValueError(f"--train-head must be one of {PAPER_HEADS}, got {self.train_head!r}")


def default_settings(device: str | None = None) -> BenchSettings:
    """Sizes for the device: small on a CPU (under two minutes), paper-sized on a GPU."""
    dev = runtime.default_device(device)
    if dev.type == "cuda":
        return BenchSettings(device=str(dev), input_size=256, images=64, radius=50, step=5,
                             baseline_batch=64, bf16=True, channels_last=True, train_images=2048,
                             train_epochs=5, train_batch=256, peak_size=8192)
    return BenchSettings(device=str(dev))


# ----------------------------------------------------------------------------- timing helpers


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def _timer(device: torch.device, out: dict[str, float]) -> Iterator[None]:
    """Wall-clock seconds of the block into ``out["seconds"]`` (device work included), and the
    process's CPU seconds (all threads) into ``out["cpu_seconds"]``: on a shared CPU the wall
    clock depends on the other processes, the CPU time much less."""
    _sync(device)
    start, cpu = time.perf_counter(), time.process_time()
    yield
    _sync(device)
    out["seconds"] = time.perf_counter() - start
    out["cpu_seconds"] = time.process_time() - cpu


def _reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_memory(device: torch.device) -> int | None:
    return int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None


# ----------------------------------------------------------------------------- 1. peak


def measure_peak(device: torch.device | str, size: int = 2048, repeats: int = 5,
                 dtype: torch.dtype | None = None) -> dict[str, Any]:
    """Practical peak of the device: best time of a ``size x size`` matrix product.

    Uses bf16 on a GPU and float32 on a CPU unless ``dtype`` is given.

    Returns:
        ``{"tflops", "dtype", "size", "seconds"}`` with ``seconds`` the best time of one
        product (``2 * size**3`` FLOPs).
    """
    device = torch.device(device)
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(size, size, generator=gen).to(device=device, dtype=dtype)
    b = torch.randn(size, size, generator=gen).to(device=device, dtype=dtype)
    c = a @ b  # warm-up (kernel selection)
    inner = 10 if device.type == "cuda" else 1
    best = math.inf
    deadline = time.perf_counter() + 0.5  # at least `repeats` tries, and at least half a second of them
    tries = 0
    while tries < repeats or time.perf_counter() < deadline:
        tries += 1
        timing: dict[str, float] = {}
        with _timer(device, timing):
            for _ in range(inner):
                c = torch.mm(a, b, out=c) if c.dtype == dtype else a @ b
        best = min(best, timing["seconds"] / inner)
    flop = 2.0 * size**3
    return {"tflops": flop / best / 1e12, "dtype": str(dtype).replace("torch.", ""), "size": size,
            "seconds": best}


# ----------------------------------------------------------------------------- 2. flops


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of ``fn()`` (multiply-adds count 2) as counted by ``FlopCounterMode``."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn()
    return int(counter.get_total_flops())


def bench_images(n: int, size: int, seed: int = 0) -> tuple[Tensor, str]:
    """``n`` test images (N, 3, size, size) in [0, 1] and where they came from.

    Real photographs from ``<data>/imagenet_sample`` when that folder exists (resized
    without cropping, as in the paper), otherwise seeded smooth random images.
    """
    folder = paths.data_dir() / "imagenet_sample"
    files = sorted(folder.glob("*.JPEG")) if folder.is_dir() else []
    if len(files) >= n:
        from PIL import Image

        out = []
        for path in files[:n]:
            with Image.open(path) as im:
                arr = np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.float32)
            out.append(torch.from_numpy(arr / 255.0).permute(2, 0, 1))
        return torch.stack(out), f"{folder} (first {n} of {len(files)} files)"
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, max(size // 16, 2), max(size // 16, 2), generator=gen)
    fine = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    noise = 0.1 * torch.rand(n, 3, size, size, generator=gen)
    return (0.9 * fine + noise).clamp(0, 1), "synthetic (seeded smooth noise)"


# ----------------------------------------------------------------------------- models


def _build_models(s: BenchSettings, device: torch.device
                  ) -> tuple[nn.Module, dict[str, nn.Module], dict[str, nn.Module]]:
    """One shared trunk with the four paper heads, and four separate full models with equal weights.

    Returns:
        ``(trunk, heads, models)``: ``models[k](x)`` computes the same logits as
        ``heads[k](trunk(x, heads[k].taps))``.
    """
    from shiftinv.models import vgg

    torch.manual_seed(s.seed)
    trunk = vgg.build_trunk(width=s.width).eval()
    heads = {k: vgg.build_head(k, trunk, num_classes=s.num_classes, input_size=s.input_size).eval()
             for k in PAPER_HEADS}
    separate: dict[str, nn.Module] = {}
    for k in PAPER_HEADS:
        model = vgg.build_vgg16(head=k, num_classes=s.num_classes, input_size=s.input_size, width=s.width)
        model.trunk.load_state_dict(trunk.state_dict())
        model.head.load_state_dict(heads[k].state_dict())
        separate[k] = model.eval().to(device)
    trunk = trunk.to(device)
    heads = {k: h.to(device) for k, h in heads.items()}
    for p in list(trunk.parameters()) + [p for h in heads.values() for p in h.parameters()]:
        p.requires_grad_(False)
    return trunk, heads, separate


def _flops_per_image(trunk: nn.Module, heads: Mapping[str, nn.Module], size: int) -> dict[str, int]:
    """FLOPs of one image: the trunk up to the deepest tap of any head, and each head."""
    taps = sorted({t for h in heads.values() for t in h.taps})
    device = next(trunk.parameters()).device
    x = torch.rand(1, 3, size, size, device=device)
    trunk_flops = count_flops(lambda: trunk(x, taps))
    with torch.no_grad():
        feats = trunk(x, taps)
    head_flops = {k: count_flops(lambda h=h: h(feats)) for k, h in heads.items()}
    return {"trunk": trunk_flops, "heads": sum(head_flops.values()), **{f"head_{k}": v for k, v in head_flops.items()}}


# ----------------------------------------------------------------------------- 3. baseline


def run_baseline(models: Mapping[str, nn.Module], images: Tensor, labels: Tensor,
                 shifts: Sequence[tuple[int, int]], batch: int, device: torch.device) -> dict[str, Any]:
    """The straightforward sweep, timed: :func:`benchmarks.reference.reference_sweep` with the shifted
    images built on the CPU by :func:`mosaic_numpy`, one shift at a time, float32.

    Args:
        models: name -> full model (trunk + head), logits (N, K) from images (N, 3, H, W).
        images: (N, 3, H, W) float in [0, 1], on the CPU.
        labels: (N,) int64.
        shifts: S pairs (dx, dy).
        batch: images per forward pass.
    Returns:
        ``{"seconds", "forward_passes", "accuracy": {model: (S,)}, "loss": {model: (S,)}}``
        with per-shift mean accuracy (fraction) and mean cross-entropy.
    """
    from benchmarks.reference import reference_sweep

    cpu = images.float().cpu()
    with torch.no_grad():  # warm-up, untimed: first-call allocations and kernel selection of each model
        for model in models.values():
            model(cpu[:batch].to(device))
    timing: dict[str, float] = {}
    with _timer(device, timing):
        result = reference_sweep(models, cpu, labels, shifts, batch_size=batch, device=device,
                                 shift=lambda x, dx, dy: torch.from_numpy(mosaic_numpy(x.numpy(), dx, dy)))
    passes = len(models) * len(shifts) * math.ceil(len(cpu) / batch)
    return {"seconds": timing["seconds"], "cpu_seconds": timing["cpu_seconds"], "forward_passes": passes,
            "accuracy": {k: v.cpu().double().mean(1) for k, v in result.correct.items()},
            "loss": {k: v.cpu().double().mean(1) for k, v in result.loss.items()}}


# ----------------------------------------------------------------------------- 4. engine


def choose_batch_size(trunk: nn.Module, heads: Mapping[str, nn.Module], input_size: int, device: torch.device,
                      bf16: bool, channels_last: bool, memory_fraction: float = 0.6, cap: int = 1024) -> int:
    """Shifted images per forward pass: on a GPU, as many as fit in ``memory_fraction`` of the free
    memory (measured with a trial pass of 8 images); on a CPU, 32 (larger batches gain nothing there)."""
    if device.type != "cuda":
        return 32
    from shiftinv.models.vgg import run_heads

    trial = 8
    x = torch.rand(trial, 3, input_size, input_size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
        run_heads(trunk, heads, x)  # type: ignore[arg-type]
    per_image = max(1, (torch.cuda.max_memory_allocated(device) - base) // trial)
    free, _ = torch.cuda.mem_get_info(device)
    fit = int(memory_fraction * free // per_image)
    return max(1, min(cap, fit))


def run_engine(trunk: nn.Module, heads: Mapping[str, nn.Module], images: Tensor, labels: Tensor,
               shifts: Sequence[tuple[int, int]], s: BenchSettings, device: torch.device) -> dict[str, Any]:
    """:func:`shiftinv.shifts.engine.sweep` on the same images and shifts as the baseline.

    All heads share one trunk pass per shifted image; ``batch_size`` shifted images per
    forward pass (chosen to fit when ``s.batch_size`` is None); windows gathered on the
    device; bf16 autocast / channels-last / ``torch.compile`` as the settings say. One
    untimed warm-up sweep over the first batch's shifts precedes the timed sweep.

    Returns:
        ``{"seconds", "warmup_seconds", "batch_size", "bf16", "channels_last", "compile",
        "peak_memory_bytes", "trunk_passes", "accuracy": {head: (S,)}, "loss": {head: (S,)}}``
        with per-shift mean accuracy (fraction) and mean cross-entropy (float64, CPU).
    """
    from shiftinv.shifts.engine import sweep

    batch = s.batch_size or choose_batch_size(trunk, heads, s.input_size, device, s.bf16, s.channels_last)
    engine_trunk: nn.Module = trunk
    if s.compile:  # static shapes: the warm-up below compiles every batch shape of the timed run
        engine_trunk = torch.compile(trunk, dynamic=False)  # type: ignore[assignment]
    kwargs = dict(mode="mosaic", batch_size=batch, device=device, amp="bf16" if s.bf16 else False,
                  channels_last=s.channels_last, progress=True)
    # warm-up (untimed): on a GPU or with torch.compile, every batch shape of the timed run (cuDNN
    # autotuning, compilation: the full batch and the last, partial one); else one shift, as the baseline
    per_pass = min(len(shifts), max(1, batch // max(1, len(images))))
    if device.type == "cuda" or s.compile:
        warm_sizes = sorted({per_pass, len(shifts) % per_pass} - {0})
    else:
        warm_sizes = [1]
    warm: dict[str, float] = {}
    with _timer(device, warm):
        for size in warm_sizes:
            sweep(engine_trunk, heads, images, labels, list(shifts[:size]), **kwargs)  # type: ignore[arg-type]
    _reset_peak_memory(device)
    timing: dict[str, float] = {}
    with _timer(device, timing):
        result = sweep(engine_trunk, heads, images, labels, list(shifts), **kwargs)  # type: ignore[arg-type]
    return {"seconds": timing["seconds"], "cpu_seconds": timing["cpu_seconds"], "warmup_seconds": warm["seconds"],
            "batch_size": batch,
            "bf16": s.bf16, "channels_last": s.channels_last, "compile": s.compile,
            "peak_memory_bytes": _peak_memory(device), "trunk_passes": len(shifts) * len(images),
            "accuracy": {k: v.double().mean(1) for k, v in result.correct.items()},
            "loss": {k: v.double().mean(1) for k, v in result.loss.items()}}


# ----------------------------------------------------------------------------- 5. training


def run_training(trunk: nn.Module, head_kind: str, images: Tensor, labels: Tensor, val_images: Tensor,
                 val_labels: Tensor, epochs: int, batch_size: int, num_classes: int, input_size: int,
                 device: torch.device, seed: int = 0) -> dict[str, Any]:
    """Head training on a frozen trunk: trunk re-run every epoch against trunk features cached once.

    Both runs use :func:`shiftinv.study.training.fit` with the same seed, so they see the same batches;
    the cached run's time includes :func:`shiftinv.study.feature_data.extract_features` for the training
    and validation images. Early stopping is off (patience > epochs) so both run every epoch.

    Args:
        images, labels: (N, 3, H, W) in [0, 1] and (N,) training data.
        val_images, val_labels: validation data (evaluated after every epoch, as in training).
    Returns:
        ``{"rerun": {"seconds", ...}, "cached": {"seconds", "extract_seconds", ...},
        "speedup", "max_weight_diff"}``; ``max_weight_diff`` compares the two trained heads.
    """
    from shiftinv.models import vgg
    from shiftinv.study import feature_data, training
    from shiftinv.study.datasets import TensorImages

    cfg = training.TrainConfig(epochs=epochs, batch_size=batch_size, patience=epochs + 1, seed=seed,
                        device=str(device), amp=device.type == "cuda", eval_batch_size=max(batch_size, 64))
    train_set = TensorImages(images.cpu(), labels.cpu())
    val_set = TensorImages(val_images.cpu(), val_labels.cpu())

    def new_head() -> nn.Module:
        torch.manual_seed(seed)
        return vgg.build_head(head_kind, trunk, num_classes=num_classes, input_size=input_size)

    head_rerun = new_head()
    taps = tuple(head_rerun.taps)
    extractor = lambda x: trunk(x, taps)  # noqa: E731
    out: dict[str, Any] = {"head": head_kind, "epochs": epochs, "train_images": len(train_set),
                           "val_images": len(val_set), "batch_size": batch_size}
    timing: dict[str, float] = {}
    with _timer(device, timing):
        training.fit(head_rerun, train_set, val_set, cfg, extractor=extractor, desc="bench: trunk every epoch")
    out["rerun"] = {"seconds": timing["seconds"], "cpu_seconds": timing["cpu_seconds"],
                    "trunk_passes": epochs * (len(train_set) + len(val_set))}

    head_cached = new_head()
    gap_only = tuple(t for t in head_cached.gap_taps if t != head_cached.flatten_tap)
    total: dict[str, float] = {}
    extract: dict[str, float] = {}
    with _timer(device, total):
        with _timer(device, extract):
            kw = dict(gap_only=gap_only, batch_size=cfg.eval_batch_size, device=device, amp=cfg.amp)
            train_feats = feature_data.extract_features(extractor, train_set, desc="bench: features", **kw)
            val_feats = feature_data.extract_features(extractor, val_set, desc="bench: features", **kw)
        training.fit(head_cached, train_feats, val_feats, cfg, desc="bench: cached features")
    out["cached"] = {"seconds": total["seconds"], "cpu_seconds": total["cpu_seconds"],
                     "extract_seconds": extract["seconds"], "trunk_passes": len(train_set) + len(val_set)}
    out["speedup"] = out["rerun"]["seconds"] / total["seconds"]
    sd_a, sd_b = head_rerun.state_dict(), head_cached.state_dict()
    out["max_weight_diff"] = max(float((sd_a[k].float() - sd_b[k].float()).abs().max()) for k in sd_a)
    return out


# ----------------------------------------------------------------------------- report


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    from shiftinv import __version__

    try:  # from the installed metadata: importing torchvision takes seconds
        tv = version("torchvision")
    except PackageNotFoundError:
        tv = "not installed"
    out = {"python": platform.python_version(), "torch": torch.__version__,
           "torchvision": tv, "numpy": np.__version__, "shiftinv": __version__}
    if torch.cuda.is_available():
        out["cuda"] = str(torch.version.cuda)
        out["cudnn"] = str(torch.backends.cudnn.version())
    return out


def _device_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"type": device.type, "torch_threads": torch.get_num_threads(),
                            "cpu_count": os.cpu_count(), "platform": platform.platform(),
                            "processor": platform.processor() or platform.machine()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(name=props.name, memory_bytes=int(props.total_memory),
                    cudnn_allow_tf32=bool(torch.backends.cudnn.allow_tf32),  # the float32 baseline's convs
                    matmul_allow_tf32=bool(torch.backends.cuda.matmul.allow_tf32),
                    capability=f"{props.major}.{props.minor}", multiprocessors=props.multi_processor_count)
    else:
        info["name"] = _cpu_name()
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _throughput(seconds: float, shifted_images: int, trunk_passes: int, flops: Mapping[str, int],
                head_evals: int, peak_tflops: float) -> dict[str, float]:
    """Images/s, achieved TFLOP/s (every trunk pass + head evaluation counted) and fraction of peak."""
    done = trunk_passes * flops["trunk"] + head_evals * flops["heads_mean"]
    tflops = done / seconds / 1e12
    return {"shifted_images_per_s": shifted_images / seconds, "tflops": tflops,
            "fraction_of_peak": tflops / peak_tflops, "flops": float(done)}


def run_benchmark(settings: BenchSettings, out_path: Path | None = None) -> dict[str, Any]:
    """Run every part of the benchmark and write the JSON report; return it.

    Args:
        settings: sizes and switches (see :class:`BenchSettings`).
        out_path: where to write the JSON (default ``results/bench/bench_<device type>.json``).
    Returns:
        the report (also written): schema, device, versions, settings, peak, flops,
        baseline, engine, speedup, agreement, training, projection, json_path.
    """
    settings.validate()
    s = settings
    device = runtime.default_device(s.device)
    shifts = s.shifts()
    report: dict[str, Any] = {"schema": SCHEMA, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                              "device": _device_info(device), "versions": _versions(),
                              "settings": {**asdict(s), "num_shifts": len(shifts), "heads": list(PAPER_HEADS)}}
    report["peak"] = measure_peak(device, size=s.peak_size)
    trunk, heads, separate = _build_models(s, device)
    per_image = _flops_per_image(trunk, heads, s.input_size)
    per_image["heads_mean"] = per_image["heads"] / len(heads)
    report["flops"] = {"per_image": per_image, "input_size": s.input_size, "width": s.width,
                       "counter": "torch.utils.flop_counter.FlopCounterMode (multiply-add = 2 FLOPs)"}
    images, source = bench_images(s.images, s.input_size, s.seed)
    with torch.no_grad():  # labels: the multi-GAP head's float32 top-1 on the unshifted images, so that
        # per-shift accuracy measures how often a shift changes the prediction (random weights have no classes)
        labels = heads["multi_gap"](trunk(images.to(device), heads["multi_gap"].taps)).argmax(1).cpu()
    report["settings"]["image_source"] = source
    report["settings"]["labels"] = "top-1 of the multi_gap head (float32) on the unshifted images"
    # engine and baseline alternate `repeats` times; each keeps its fastest run (the one least
    # slowed down by other processes); all runs' times are kept in the report
    engine_runs: list[dict[str, Any]] = []
    base_runs: list[dict[str, Any]] = []
    for _ in range(s.repeats):
        engine_runs.append(run_engine(trunk, heads, images, labels, shifts, s, device))
        if not s.skip_baseline:
            base_runs.append(run_baseline(separate, images, labels, shifts, s.baseline_batch, device))
    base_rate = _compare_runs(report, engine_runs, base_runs, len(shifts) * s.images, len(heads))
    if not s.skip_training:
        report["training"] = _bench_training(s, trunk, device)
    if not s.skip_precision:
        from benchmarks import precision

        report["precision"] = precision.run_precision(trunk, s.input_size, device, seed=s.seed)
        from benchmarks import pools

        report["pools"] = pools.run_pools(s.width, s.input_size, device)
    report["projection"] = _projection(s, report, base_rate)
    report["targets"] = _targets(report)
    path = Path(out_path) if out_path is not None else paths.results_dir() / "bench" / f"bench_{device.type}.json"
    report["json_path"] = str(path)
    cache.atomic_write_bytes(path, (json.dumps(report, indent=2, default=_json_default) + "\n").encode())
    return report


def _compare_runs(report: dict[str, Any], engine_runs: Sequence[Mapping[str, Any]],
                  base_runs: Sequence[Mapping[str, Any]], shifted: int, num_heads: int) -> float | None:
    """Fill ``report``'s engine, baseline, speed-up and agreement from the fastest run of each;
    return the baseline's shifted images per second (``None`` without a baseline)."""
    per_image, peak = report["flops"]["per_image"], report["peak"]["tflops"]
    engine = min(engine_runs, key=lambda r: r["seconds"])
    report["engine"] = {k: v for k, v in engine.items() if k not in ("accuracy", "loss")}
    report["engine"]["all_seconds"] = [r["seconds"] for r in engine_runs]
    report["engine"].update(_throughput(engine["seconds"], shifted, shifted, per_image, shifted * num_heads, peak))
    if not base_runs:
        return None
    base = min(base_runs, key=lambda r: r["seconds"])
    report["baseline"] = {k: v for k, v in base.items() if k not in ("accuracy", "loss")}
    report["baseline"]["all_seconds"] = [r["seconds"] for r in base_runs]
    # each of the four models re-runs the trunk: 4 trunk passes and one head per shifted image
    report["baseline"].update(_throughput(base["seconds"], shifted, shifted * num_heads, per_image,
                                          shifted * num_heads, peak))
    report["speedup"] = base["seconds"] / engine["seconds"]
    report["speedup_cpu_time"] = base["cpu_seconds"] / max(engine["cpu_seconds"], 1e-9)
    # where the speed-up comes from: fewer trunk passes (4 heads share one), and faster passes
    # (batching shifts, bf16, channels-last: the achieved TFLOP/s)
    report["speedup_breakdown"] = {
        "trunk_pass_ratio": (shifted * num_heads) / engine["trunk_passes"],
        "flop_ratio": report["baseline"]["flops"] / report["engine"]["flops"],
        "throughput_ratio": report["engine"]["tflops"] / report["baseline"]["tflops"]}
    heads = list(engine["accuracy"])
    acc_diff = max(float((engine["accuracy"][k] - base["accuracy"][k]).abs().max()) for k in heads)
    loss_diff = max(float(((engine["loss"][k] - base["loss"][k]).abs()
                           / base["loss"][k].abs().clamp_min(1e-12)).max()) for k in heads)
    report["agreement"] = {"max_accuracy_diff_pp": 100.0 * acc_diff, "max_loss_rel_diff": loss_diff,
                           "engine_dtype": "bfloat16" if engine["bf16"] else "float32",
                           "baseline_dtype": "float32"}
    return shifted / base["seconds"]


def _bench_training(s: BenchSettings, trunk: nn.Module, device: torch.device) -> dict[str, Any]:
    """:func:`run_training` on seeded images and random labels (``s.train_images`` + a quarter for validation)."""
    gen = torch.Generator().manual_seed(s.seed + 1)
    n_val = max(2, s.train_images // 4)
    train_x, _ = bench_images(s.train_images + n_val, s.input_size, s.seed + 1)
    train_y = torch.randint(0, s.num_classes, (s.train_images + n_val,), generator=gen)
    return run_training(
        trunk, s.train_head, train_x[: s.train_images], train_y[: s.train_images],
        train_x[s.train_images:], train_y[s.train_images:], s.train_epochs, s.train_batch,
        s.num_classes, s.input_size, device, s.seed)


def _projection(s: BenchSettings, report: Mapping[str, Any], base_rate: float | None) -> dict[str, Any]:
    """Hours of the paper's full protocol at the measured rates (and scaled to 256 px, full width)."""
    total = s.paper_test_images * PAPER_SHIFTS
    out: dict[str, Any] = {
        "test_images": s.paper_test_images, "shifts": PAPER_SHIFTS, "models": len(PAPER_HEADS),
        "shifted_images": total,
        "engine_hours": total / report["engine"]["shifted_images_per_s"] / 3600,
        "baseline_hours": (total / base_rate / 3600) if base_rate else None,
        "note": (f"at the measured sizes (input {s.input_size} px, width {s.width}); "
                 "scale by the FLOP ratio for other sizes"),
    }
    if s.input_size != 256 or s.width != 1.0:
        # the projection that matters is at the paper's size: scale by the FLOPs per image
        scale = _paper_trunk_flops() / report["flops"]["per_image"]["trunk"]
        out["paper_size_scale"] = scale
        out["engine_hours_at_256px"] = out["engine_hours"] * scale
        if base_rate:
            out["baseline_hours_at_256px"] = out["baseline_hours"] * scale
    return out


def _targets(report: Mapping[str, Any]) -> dict[str, Any]:
    """The issues' acceptance numbers, checked on this report (``None``: not measured here).

    CPU (issue 4): engine >= 3x the baseline. GPU (issue 7): engine >= 40% of the bf16 peak,
    >= 20x the baseline, per-shift accuracy within 0.5 percentage points of the float32 baseline.
    """
    on_gpu = report["device"]["type"] == "cuda"
    speedup = report.get("speedup")
    out: dict[str, Any] = {"speedup_required": 20.0 if on_gpu else 3.0, "speedup": speedup,
                           "speedup_met": None if speedup is None else speedup >= (20.0 if on_gpu else 3.0)}
    if on_gpu:
        frac = report["engine"]["fraction_of_peak"]
        out.update(fraction_of_peak_required=0.40, fraction_of_peak=frac, fraction_of_peak_met=frac >= 0.40)
    if "agreement" in report:
        diff = report["agreement"]["max_accuracy_diff_pp"]
        out.update(accuracy_diff_pp_allowed=0.5, accuracy_diff_pp=diff, accuracy_met=diff <= 0.5)
    return out


def _paper_trunk_flops() -> int:
    """FLOPs of the full-width VGG-16 trunk up to pool5 at 256 px (counted on the meta device)."""
    from shiftinv.models import vgg

    with torch.device("meta"):
        trunk = vgg.build_trunk(width=1.0)
        x = torch.empty(1, 3, 256, 256)
        return count_flops(lambda: trunk(x, ("pool5",)))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Tensor):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


def format_table(report: Mapping[str, Any]) -> str:
    """A short plain-text table of a report (what the CLI prints; paste into the README)."""
    s = report["settings"]
    dev = report["device"]
    lines = [
        f"device: {dev.get('name')} ({dev['type']}, {dev['torch_threads']} threads); "
        f"torch {report['versions']['torch']}",
        f"sizes: {s['images']} images x {s['num_shifts']} shifts (radius {s['radius']}, step {s['step']}) at "
        f"{s['input_size']} px, width {s['width']}; 4 heads {', '.join(s['heads'])}",
        f"peak ({report['peak']['dtype']} {report['peak']['size']}^2 matmul): {report['peak']['tflops']:.3f} TFLOP/s",
        f"trunk FLOPs per image: {report['flops']['per_image']['trunk'] / 1e9:.2f} GFLOP; "
        f"4 heads: {report['flops']['per_image']['heads'] / 1e6:.2f} MFLOP",
        "",
        f"{'run':<44}{'seconds':>10}{'img/s':>10}{'TFLOP/s':>10}{'of peak':>9}",
    ]

    def row(name: str, part: Mapping[str, Any]) -> str:
        return (f"{name:<44}{part['seconds']:>10.2f}{part['shifted_images_per_s']:>10.1f}"
                f"{part['tflops']:>10.3f}{100 * part['fraction_of_peak']:>8.1f}%")

    if "baseline" in report:
        lines.append(row("baseline (per model, per shift)", report["baseline"]))
    e = report["engine"]
    flags = ["bf16" if e["bf16"] else "fp32"] + ["ch-last"] * e["channels_last"] + ["compiled"] * e["compile"]
    lines.append(row(f"engine ({', '.join(flags)}, batch {e['batch_size']})", e))
    if "speedup" in report:
        a = report["agreement"]
        cpu_note = f" (CPU time: {report['speedup_cpu_time']:.2f}x)" if dev["type"] == "cpu" else ""
        lines.append(f"engine speed-up over baseline: {report['speedup']:.2f}x{cpu_note}  "
                     f"(per-shift accuracy differs by at most {a['max_accuracy_diff_pp']:.3f} pp, "
                     f"loss by {100 * a['max_loss_rel_diff']:.3f}%)")
        b = report["speedup_breakdown"]
        lines.append(f"  = {b['flop_ratio']:.2f}x fewer FLOPs (one trunk pass for 4 heads) "
                     f"x {b['throughput_ratio']:.2f}x higher TFLOP/s (batched shifts"
                     f"{', bf16' if e['bf16'] else ''}{', channels-last' if e['channels_last'] else ''})")
    if e.get("peak_memory_bytes"):
        lines.append(f"engine peak GPU memory: {e['peak_memory_bytes'] / 2**30:.2f} GiB")
    if "training" in report:
        t = report["training"]
        lines.append(f"head training ({t['head']}, {t['epochs']} epochs, {t['train_images']} images): trunk every "
                     f"epoch {t['rerun']['seconds']:.2f} s, cached features {t['cached']['seconds']:.2f} s "
                     f"-> {t['speedup']:.2f}x")
    if "precision" in report:
        from benchmarks import precision

        lines += precision.format_lines(report["precision"])
    if "pools" in report:
        from benchmarks import pools

        lines += pools.format_lines(report["pools"])
    lines.append(_projection_line(report["projection"], s["input_size"]))
    t = report["targets"]
    met = {k[: -len("_met")]: v for k, v in t.items() if k.endswith("_met") and v is not None}
    if met:
        lines.append("targets: " + ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in met.items())
                     + f" (speed-up >= {t['speedup_required']:.0f}x"
                     + (", >= 40% of peak" if "fraction_of_peak_met" in t else "")
                     + (", accuracy within 0.5 pp" if "accuracy_met" in t else "") + ")")
    lines.append(f"JSON: {report['json_path']}")
    return "\n".join(lines)


def _projection_line(p: Mapping[str, Any], input_size: int) -> str:
    """The table's line on the paper protocol's projected hours."""
    proj = (f"paper protocol ({p['test_images']} images x {p['shifts']} shifts x 4 models): "
            f"engine {p['engine_hours']:.1f} h")
    if p.get("baseline_hours") is not None:
        proj += f", baseline {p['baseline_hours']:.1f} h"
    proj += f" at {input_size} px"
    if "engine_hours_at_256px" in p:
        proj += f"; at 256 px / full width x{p['paper_size_scale']:.1f}: engine {p['engine_hours_at_256px']:.1f} h"
        if p.get("baseline_hours_at_256px") is not None:
            proj += f", baseline {p['baseline_hours_at_256px']:.1f} h"
    return proj


# ----------------------------------------------------------------------------- CLI


def _bench_parser(defaults: BenchSettings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default results/bench/bench_<device>.json)")
    for f in fields(BenchSettings):
        flag = "--" + f.name.replace("_", "-")
        value = getattr(defaults, f.name)
        if isinstance(value, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=value)
        elif f.name == "batch_size":
            parser.add_argument(flag, type=int, default=value, help="engine batch (default: chosen to fit)")
        else:
            parser.add_argument(flag, type=type(value), default=value)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m benchmarks.bench [--device cuda] [--images 8] [--radius 2] ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # the device decides the default sizes: read it first
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--device", default=None)
    known, _ = pre.parse_known_args(argv)
    try:
        defaults = default_settings(known.device)
    except RuntimeError as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 2
    args = _bench_parser(defaults).parse_args(argv)
    settings = BenchSettings(**{f.name: getattr(args, f.name) for f in fields(BenchSettings)})
    try:
        report = run_benchmark(settings, args.out)
    except ValueError as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 2
    print(format_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

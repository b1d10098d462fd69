"""Tests of the speed benchmark (benchmarks.bench): pieces against references, then a tiny full run."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from benchmarks import bench, reference
from shiftinv.shifts.translation import translate


def test_mosaic_numpy_matches_shift_engine_convention() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 9, 7, generator=gen)
    for dx, dy in [(0, 0), (3, -2), (-7, 9), (7, 0), (1, 1)]:
        ours = torch.from_numpy(reference.mosaic_numpy(x.numpy(), dx, dy))
        torch.testing.assert_close(ours, translate(x, dx, dy, "mosaic"), rtol=0, atol=0)


def test_mosaic_numpy_moves_content_right_and_down() -> None:
    x = np.zeros((1, 1, 8, 8), dtype=np.float32)
    x[0, 0, 2, 3] = 1.0
    out = reference.mosaic_numpy(x, 2, 1)
    assert out[0, 0, 3, 5] == 1.0 and out.sum() == 1.0


def test_mosaic_numpy_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="N, C, H, W"):
        reference.mosaic_numpy(np.zeros((3, 8, 8), np.float32), 0, 0)
    with pytest.raises(ValueError, match="pads by the image size"):
        reference.mosaic_numpy(np.zeros((1, 3, 8, 8), np.float32), 9, 0)


def test_count_flops_of_a_matmul_and_a_conv() -> None:
    a, b = torch.rand(16, 32), torch.rand(32, 8)
    assert bench.count_flops(lambda: a @ b) == 2 * 16 * 32 * 8
    conv = torch.nn.Conv2d(3, 4, 3, padding=1, bias=False)
    x = torch.rand(1, 3, 10, 10)
    assert bench.count_flops(lambda: conv(x)) == 2 * (3 * 9) * 4 * 10 * 10


def test_paper_trunk_flops_match_vgg16_arithmetic() -> None:
    # VGG-16 conv layers at 256 px: sum over layers of 2 * Cin * 9 * Cout * H * W
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
    flops, cin, side = 0, 3, 256
    for v in cfg:
        if v == "M":
            side //= 2
        else:
            flops += 2 * cin * 9 * v * side * side
            cin = v
    counted = bench._paper_trunk_flops()
    assert counted == pytest.approx(flops, rel=0.01)  # max-pool comparisons are not counted


def test_measure_peak_reports_positive_tflops() -> None:
    peak = bench.measure_peak("cpu", size=128, repeats=2)
    assert peak["dtype"] == "float32" and peak["size"] == 128
    assert peak["tflops"] > 0 and peak["seconds"] > 0


def test_default_settings_are_small_on_cpu() -> None:
    s = bench.default_settings("cpu")
    assert s.device == "cpu" and s.input_size < 256 and not s.bf16
    assert len(s.shifts()) == (2 * s.radius + 1) ** 2


@pytest.mark.parametrize(
    "change, message",
    [({"images": 0}, "--images"), ({"input_size": 100}, "multiple of 32"), ({"radius": 200}, "radius"),
     ({"train_head": "nope"}, "--train-head"), ({"width": 0}, "--width")],
)
def test_settings_validation(change: dict, message: str) -> None:
    s = bench.BenchSettings(**change)
    with pytest.raises(ValueError, match=message):
        s.validate()


TINY = ["--device", "cpu", "--input-size", "32", "--width", "0.125", "--images", "3", "--radius", "2",
        "--step", "2", "--train-images", "6", "--train-epochs", "2", "--train-batch", "4", "--peak-size", "256",
        "--paper-test-images", "100", "--repeats", "1"]


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    assert bench.main(TINY + ["--out", str(out)]) == 0
    return json.loads(out.read_text())


@pytest.mark.slow
def test_tiny_run_writes_every_field(tiny_report: dict) -> None:
    r = tiny_report
    assert r["schema"] == bench.SCHEMA
    assert r["device"]["type"] == "cpu" and r["device"]["name"]
    assert {"python", "torch", "torchvision", "numpy", "shiftinv"} <= set(r["versions"])
    assert r["settings"]["num_shifts"] == 9 and r["settings"]["heads"] == list(bench.PAPER_HEADS)
    for part in ("engine", "baseline"):
        p = r[part]
        assert p["seconds"] > 0 and p["shifted_images_per_s"] > 0 and p["tflops"] > 0
        assert 0 < p["fraction_of_peak"]
    assert r["engine"]["trunk_passes"] == 9 * 3
    # the baseline runs the trunk once per model: four times the engine's FLOPs
    b = r["speedup_breakdown"]
    assert b["trunk_pass_ratio"] == 4.0
    assert 1.0 < b["flop_ratio"] <= 4.0
    assert b["flop_ratio"] * b["throughput_ratio"] == pytest.approx(r["speedup"], rel=1e-6)
    assert r["speedup"] == pytest.approx(r["baseline"]["seconds"] / r["engine"]["seconds"])
    t = r["training"]
    assert t["rerun"]["seconds"] > 0 and t["cached"]["seconds"] > 0 and t["cached"]["extract_seconds"] > 0
    assert t["speedup"] == pytest.approx(t["rerun"]["seconds"] / t["cached"]["seconds"])
    q = r["precision"]
    assert set(q["ways"]) == {"float32", "float32 channels-last", "bf16 channels-last"}
    assert q["ways"]["float32"]["pool5_rel_error"] == 0.0 and 0 < q["bf16_pool5_rel_error"] < 0.05
    assert q["bf16_speedup"] == pytest.approx(q["ways"]["bf16 channels-last"]["images_per_s"]
                                              / q["ways"]["float32"]["images_per_s"])
    k = r["pools"]
    assert set(k["trunks"]) == {"max", "blur", "aps"} and k["trunks"]["max"]["relative_to_max"] == 1.0
    assert set(k["kernels"]) == {"dense 2x2 max", "circular pad"}  # values checked equal there
    assert all(v["speedup"] == pytest.approx(v["torch_s"] / v["workbook_s"]) for v in k["kernels"].values())
    assert set(k["training"]) == {"max", "aps"} and k["training"]["max"]["relative_to_max"] == 1.0
    assert all(v["step_s"] > 0 for v in k["training"].values())
    p = r["projection"]
    assert p["shifts"] == 10_201 and p["test_images"] == 100
    assert p["engine_hours"] == pytest.approx(100 * 10_201 / r["engine"]["shifted_images_per_s"] / 3600)
    assert p["engine_hours_at_256px"] > p["engine_hours"]


@pytest.mark.slow
def test_tiny_run_engine_agrees_with_baseline(tiny_report: dict) -> None:
    # same float32 model, same shifted images built two independent ways: same per-shift numbers
    a = tiny_report["agreement"]
    assert a["engine_dtype"] == "float32"
    assert a["max_accuracy_diff_pp"] == 0.0
    assert a["max_loss_rel_diff"] < 1e-4


@pytest.mark.slow
def test_tiny_run_cached_training_gives_the_same_head(tiny_report: dict) -> None:
    assert tiny_report["training"]["max_weight_diff"] < 1e-4


@pytest.mark.slow
def test_cli_prints_table_and_rejects_bad_sizes(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "b.json"
    args = [*TINY, "--radius", "0", "--images", "1", "--skip-training", "--out", str(out)]
    assert bench.main(args) == 0
    printed = capsys.readouterr().out
    assert "speed-up over baseline" in printed and str(out) in printed
    assert "training" not in json.loads(out.read_text())
    assert bench.main(["--device", "cpu", "--input-size", "100"]) == 2
    assert "multiple of 32" in capsys.readouterr().err


def test_module_entry_point_help() -> None:
    done = subprocess.run([sys.executable, "-m", "benchmarks.bench", "--help"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and "--radius" in done.stdout and "--bf16" in done.stdout


@pytest.mark.slow
def test_engine_is_faster_than_baseline_with_four_heads(tiny_report: dict) -> None:
    # issue 4: >= 3x on the CPU; tiny sizes under a shared CPU are noisy, so the test asks for 2x
    assert tiny_report["speedup"] >= 2.0


@pytest.mark.gpu
def test_gpu_bench_bf16_agrees_with_float32(tmp_path) -> None:
    out = tmp_path / "gpu.json"
    assert bench.main(["--device", "cuda", "--images", "8", "--radius", "4", "--step", "2",
                       "--train-images", "64", "--train-epochs", "2", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["device"]["type"] == "cuda" and r["peak"]["dtype"] == "bfloat16"
    assert r["engine"]["bf16"] and r["engine"]["peak_memory_bytes"] > 0
    assert r["agreement"]["max_accuracy_diff_pp"] <= 0.5 * 100 / 8 + 1e-9  # at most one image of eight flips
    assert r["speedup"] > 1.0


@pytest.mark.slow
def test_tiny_run_checks_the_issue_targets(tiny_report: dict) -> None:
    t = tiny_report["targets"]
    assert t["speedup_required"] == 3.0 and t["speedup_met"] == (tiny_report["speedup"] >= 3.0)
    assert t["accuracy_met"] is True and "fraction_of_peak_met" not in t

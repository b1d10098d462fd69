"""The sweep engine against the straightforward per-model, per-shift loop; resume; sharding."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Mapping, Sequence

import pytest
import torch
import torch.multiprocessing as mp
from torch import Tensor, nn

from benchmarks.reference import reference_sweep
from shiftinv.commands import models_file
from shiftinv.commands import sweep as sweep_command
from shiftinv.shifts.engine import sweep, sweep_models
from shiftinv.shifts.sweep_result import SweepResult
from shiftinv.shifts.translation import shift_grid

# ----------------------------------------------------------------------------- stand-ins (shiftinv.models.vgg protocol)


class TinyTrunk(nn.Module):
    """trunk(x, taps) -> {tap: map}; runs only up to the deepest tap; counts its calls."""

    names = ("conv1", "pool1", "conv2", "pool2")

    def __init__(self, seed: int = 0, circular: bool = False) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        pad = "circular" if circular else "zeros"
        self.layers = nn.ModuleList([
            nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, padding_mode=pad), nn.ReLU()),
            nn.MaxPool2d(2),
            nn.Sequential(nn.Conv2d(4, 6, 3, padding=1, padding_mode=pad), nn.ReLU()),
            nn.MaxPool2d(2),
        ])
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        self.calls = 0
        self.fail_after: int | None = None

    def index(self, tap: str) -> int:
        return self.names.index(tap)

    def stride(self, tap: str) -> int:
        return 2 ** sum(1 for n in self.names[: self.index(tap) + 1] if n.startswith("pool"))

    def forward(self, x: Tensor, taps: Sequence[str]) -> dict[str, Tensor]:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("simulated interruption")
        out, last = {}, max(self.index(t) for t in taps)
        for i in range(last + 1):
            x = self.layers[i](x)
            if self.names[i] in taps:
                out[self.names[i]] = x
        return {t: out[t] for t in taps}


class TinyHead(nn.Module):
    def __init__(self, gap: Sequence[str], flatten: str | None, size: int, k: int = 5, seed: int = 1) -> None:
        super().__init__()
        chans = {"conv1": 4, "pool1": 4, "conv2": 6, "pool2": 6}
        self.gap, self.flatten = tuple(gap), flatten
        self.taps = tuple(dict.fromkeys(self.gap + ((flatten,) if flatten else ())))
        n = sum(chans[t] for t in self.gap) + (6 * (size // 4) ** 2 if flatten else 0)
        torch.manual_seed(seed)
        self.linear = nn.Linear(n, k)

    def forward(self, feats: Mapping[str, Tensor]) -> Tensor:
        parts = [feats[t].mean(dim=(2, 3)) for t in self.gap]
        if self.flatten:
            parts.append(feats[self.flatten].flatten(1))
        return self.linear(torch.cat(parts, 1))


class Whole(nn.Module):
    def __init__(self, trunk: TinyTrunk, head: TinyHead) -> None:
        super().__init__()
        self.trunk, self.head = trunk, head

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.trunk(x, self.head.taps))


def make_model(size: int = 12) -> tuple[TinyTrunk, dict[str, TinyHead]]:
    trunk = TinyTrunk(seed=0)
    heads = {
        "flatten": TinyHead((), "pool2", size, seed=1),
        "final_gap": TinyHead(("pool2",), None, size, seed=2),
        "multi_gap": TinyHead(("pool1", "pool2"), None, size, seed=3),
        "gap_flatten": TinyHead(("pool1", "pool2"), "pool2", size, seed=4),
    }
    return trunk, heads


def make_data(n: int = 5, size: int = 12) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(7)
    return torch.rand(n, 3, size, size, generator=g), torch.randint(0, 5, (n,), generator=g)


GRID = shift_grid(2)  # 25 shifts
SMALL_GRID = shift_grid(1) + [(2, -2), (-2, 1)]  # 11 shifts


# ----------------------------------------------------------------------------- equivalence


@pytest.mark.parametrize("mode", ["mosaic", "circular", "zero", "mean"])
def test_sweep_equals_straightforward_loop(mode: str) -> None:
    trunk, heads = make_model()
    images, labels = make_data()
    res = sweep(trunk, heads, images, labels, SMALL_GRID, mode, batch_size=12, device="cpu", keep_logits=True)
    ref = reference_sweep({k: Whole(trunk, h) for k, h in heads.items()}, images, labels, SMALL_GRID, mode)
    assert res.heads == tuple(heads) and res.num_shifts == 11 and res.num_images == 5
    for k in heads:
        assert torch.allclose(res.loss[k], ref.loss[k], atol=1e-5)
        assert torch.allclose(res.p_true[k], ref.p_true[k], atol=1e-6)
        assert torch.equal(res.pred[k], ref.pred[k]) and torch.equal(res.correct[k], ref.correct[k])
        assert res.logits[k].shape == (11, 5, 5)
        assert torch.allclose(res.loss[k], torch.nn.functional.cross_entropy(
            res.logits[k].reshape(-1, 5), labels.repeat(11), reduction="none").view(11, 5), atol=1e-6)
    # shift (0, 0) is the unshifted image
    z = res.index(0, 0)
    direct = Whole(trunk, heads["final_gap"])(images)
    assert torch.allclose(res.logits["final_gap"][z], direct, atol=1e-5)


def test_trunk_runs_once_per_batch_for_all_heads() -> None:
    trunk, heads = make_model()
    images, labels = make_data()
    sweep(trunk, heads, images, labels, GRID, batch_size=10, device="cpu")  # 2 shifts x 5 images per pass
    assert trunk.calls == 13  # ceil(25 / 2) passes, not 25 x 4
    res = sweep(trunk, heads, images, labels, GRID[:2], device="cpu")
    assert res.meta["amp"] == "off" and res.meta["channels_last"] is False
    with pytest.raises(ValueError, match="amp must be"):
        sweep(trunk, heads, images, labels, GRID[:2], device="cpu", amp="int8")
    trunk.calls = 0
    sweep(trunk, heads, images, labels, GRID[:3], batch_size=2, device="cpu")  # noqa  # images split in 3 chunks
    assert trunk.calls == 9


def test_plain_model_and_sweep_models() -> None:
    trunk, heads = make_model()
    images, labels = make_data()
    whole = Whole(trunk, heads["multi_gap"])
    res = sweep(whole, None, images, labels, GRID[:4], device="cpu")  # VGGClassifier-like (.trunk, .head)
    res2 = sweep(lambda x: whole(x), None, images, labels, GRID[:4], device="cpu")  # any callable
    assert res.heads == ("model",) and torch.allclose(res.loss["model"], res2.loss["model"], atol=1e-6)
    other = TinyTrunk(seed=5)
    merged = sweep_models({"a": (trunk, heads), "b": (other, {"g": TinyHead(("pool2",), None, 12)})},
                          images, labels, GRID[:4], device="cpu")
    assert set(merged.heads) == {"a/flatten", "a/final_gap", "a/multi_gap", "a/gap_flatten", "b/g"}
    assert torch.equal(merged.loss["a/multi_gap"], res.loss["model"])


# ----------------------------------------------------------------------------- resume


def test_interrupted_sweep_resumes(tmp_path: Path) -> None:
    trunk, heads = make_model()
    images, labels = make_data()
    full = sweep(trunk, heads, images, labels, GRID, batch_size=10, device="cpu")
    out = tmp_path / "sweep.pt"
    trunk.calls, trunk.fail_after = 0, 5
    with pytest.raises(RuntimeError, match="simulated"):
        sweep(trunk, heads, images, labels, GRID, batch_size=10, device="cpu", out_path=out, save_every=0)
    assert out.exists()
    with pytest.raises(ValueError, match="partial sweep"):
        SweepResult.load(out)
    trunk.calls, trunk.fail_after = 0, None
    resumed = sweep(trunk, heads, images, labels, GRID, batch_size=10, device="cpu", out_path=out, save_every=0)
    assert trunk.calls == 13 - 5  # only the missing batches ran
    for k in heads:
        assert torch.equal(resumed.loss[k], full.loss[k]) and torch.equal(resumed.correct[k], full.correct[k])
    trunk.calls = 0
    again = sweep(trunk, heads, images, labels, GRID, batch_size=10, device="cpu", out_path=out)
    assert trunk.calls == 0 and torch.equal(again.loss["flatten"], full.loss["flatten"])
    loaded = SweepResult.load(out)
    assert torch.equal(loaded.pred["multi_gap"], full.pred["multi_gap"])


def test_partial_file_of_another_configuration_is_refused(tmp_path: Path) -> None:
    trunk, heads = make_model()
    images, labels = make_data()
    out = tmp_path / "sweep.pt"
    trunk.fail_after = 2
    with pytest.raises(RuntimeError):
        sweep(trunk, heads, images, labels, GRID, batch_size=10, device="cpu", out_path=out, save_every=0)
    trunk.fail_after = None
    with pytest.raises(ValueError, match="another configuration"):
        sweep(trunk, heads, images, labels, GRID, "circular", batch_size=10, device="cpu", out_path=out)


def test_bad_input_messages() -> None:
    trunk, heads = make_model()
    images, labels = make_data()
    with pytest.raises(ValueError, match="unknown shift mode"):
        sweep(trunk, heads, images, labels, GRID, "roll", device="cpu")
    with pytest.raises(ValueError, match="5 images but 4 labels"):
        sweep(trunk, heads, images, labels[:4], GRID, device="cpu")
    with pytest.raises(ValueError, match=r"\|dx\| <= 12"):
        sweep(trunk, heads, images, labels, [(13, 0)], device="cpu")
    with pytest.raises(ValueError, match="integer shifts"):
        sweep(trunk, heads, images, labels, [(0.5, 0.0)], device="cpu")
    with pytest.raises(ValueError, match="heads is empty"):
        sweep(trunk, {}, images, labels, GRID, device="cpu")


# ----------------------------------------------------------------------------- sharding


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), SHIFTINV_PROGRESS="0")
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        trunk, heads = make_model()
        images, labels = make_data()
        res = sweep(trunk, heads, images, labels, GRID, batch_size=10, device="cpu", keep_logits=True,
                    out_path=Path(out_dir) / "sharded.pt", save_every=0)
        torch.save(res.to_state(), Path(out_dir) / f"rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def test_sharded_sweep_equals_single_process(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    trunk, heads = make_model()
    images, labels = make_data()
    single = sweep(trunk, heads, images, labels, GRID, batch_size=10, device="cpu", keep_logits=True)
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        state = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        sharded = SweepResult.from_state(state)
        assert sharded.meta["world_size"] == 2
        for k in heads:
            for f in ("loss", "correct", "pred", "p_true", "logits"):
                assert torch.equal(getattr(sharded, f)[k], getattr(single, f)[k]), (rank, k, f)
    final = SweepResult.load(tmp_path / "sharded.pt")
    assert torch.equal(final.loss["multi_gap"], single.loss["multi_gap"])
    assert not list(tmp_path.glob("sharded.rank*"))  # per-rank partial files are cleaned up


@pytest.mark.slow
def test_command_line_under_torchrun(tmp_path: Path) -> None:
    pytest.importorskip("shiftinv.models.vgg")
    out = tmp_path / "cli.pt"
    args = ["--synthetic", "3", "--size", "32", "--width", "0.0625", "--num-classes", "4", "--shifts", "1",
            "--device", "cpu", "--random-weights"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(_free_port()),
           "-m", "shiftinv.commands.sweep", *args, "--out", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1", SHIFTINV_PROGRESS="0")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "swept 9 shifts x 3 images" in proc.stdout and "RANDOM WEIGHTS" in proc.stdout
    sharded = SweepResult.load(out)
    single_out = tmp_path / "single.pt"
    assert sweep_command.main([*args, "--out", str(single_out)]) == 0
    single = SweepResult.load(single_out)
    for k in ("flatten", "final_gap", "multi_gap", "gap_flatten"):
        assert torch.equal(sharded.loss[k], single.loss[k]), k


@pytest.mark.slow
def test_torchrun_sweeps_the_models_notebook_03_trained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Demo profile at smoke size: train via classify into a fresh cache, export, sweep with torchrun
    (2 processes, gloo), and compare with the library's sweep of the same models."""
    from shiftinv.study import analysis, modelset, profiles

    results = tmp_path / "results"
    monkeypatch.setenv("SHIFTINV_RESULTS", str(results))
    profile = profiles.get_profile("demo", smoke=True)
    ms = modelset.train_or_load_models(profile)  # what notebook 03 caches
    library = analysis.translation_sweep(ms, "grid", seeds=False)  # what notebook 04 sweeps (main seeds)
    models_path = tmp_path / "models.pt"
    assert sweep_command.main(["export", "--profile", "demo", "--smoke", "--out", str(models_path)]) == 0
    state = torch.load(models_path, weights_only=True)
    assert state["format"] == models_file.MODELS_FORMAT and set(state["trunks"]) == {"vgg", "blur", "aps"}
    out = tmp_path / "cli.pt"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(_free_port()),
           "-m", "shiftinv.commands.sweep", "run", "--models", str(models_path), "--device", "cpu", "--dtype", "float32",
           "--out", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1", SHIFTINV_PROGRESS="0", SHIFTINV_RESULTS=str(results))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cli = SweepResult.load(out)
    assert cli.heads == library.heads == tuple(ms.names())
    assert torch.equal(cli.shifts, library.shifts) and torch.equal(cli.labels, library.labels)
    for h in library.heads:
        assert torch.equal(cli.correct[h].float().mean(1), library.correct[h].float().mean(1)), h  # per-shift accuracy
        torch.testing.assert_close(cli.loss[h], library.loss[h], atol=1e-5, rtol=1e-5)
    assert any(library.correct[h].any() for h in library.heads)  # something to agree on
    # --profile reads the same cache directly (one process)
    direct = tmp_path / "direct.pt"
    assert sweep_command.main(["run", "--profile", "demo", "--smoke", "--heads", "vgg", "--device", "cpu",
                           "--out", str(direct)]) == 0
    d = SweepResult.load(direct)
    assert d.heads == tuple(h for h in library.heads if h.startswith("vgg/"))
    assert torch.equal(d.correct["vgg/multi_gap"], library.correct["vgg/multi_gap"])


def test_command_line_refuses_random_weights_and_bad_files(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    out = str(tmp_path / "r.pt")
    base = ["--synthetic", "2", "--size", "32", "--width", "0.0625", "--num-classes", "2", "--shifts", "1",
            "--device", "cpu", "--out", out]
    assert sweep_command.main(base) == 2
    assert "no trained weights" in capsys.readouterr().err and not Path(out).exists()
    assert sweep_command.main(["run", "--models", str(tmp_path / "none.pt"), "--out", out]) == 2
    assert "models file not found" in capsys.readouterr().err
    (tmp_path / "junk.pt").write_bytes(b"junk")
    assert sweep_command.main(["run", "--models", str(tmp_path / "junk.pt"), "--out", out]) == 2
    assert "written by `python -m shiftinv.commands.sweep export`" in capsys.readouterr().err
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    assert sweep_command.main(["run", "--models", str(tmp_path / "other.pt"), "--out", out]) == 2
    assert "not a models file" in capsys.readouterr().err
    torch.save({"flatten": {}}, tmp_path / "heads.pt")
    assert sweep_command.main([*base, "--head-weights", str(tmp_path / "heads.pt")]) == 2
    assert "without --weights" in capsys.readouterr().err
    monkeypatch.setenv("SHIFTINV_RESULTS", str(tmp_path / "empty"))
    assert sweep_command.main(["export", "--profile", "demo", "--smoke", "--out", str(tmp_path / "m.pt")]) == 2
    err = capsys.readouterr().err
    assert "not in the cache" in err and "Traceback" not in err and not (tmp_path / "m.pt").exists()
    # the command line shows its defaults
    with pytest.raises(SystemExit):
        sweep_command.main(["run", "--help"])
    text = capsys.readouterr().out
    assert "(default: 256)" in text and "--random-weights" in text and "float32" in text
    # the message reaches the shell: non-zero exit status, no traceback
    proc = subprocess.run([sys.executable, "-m", "shiftinv.commands.sweep", *base], capture_output=True, text=True,
                          env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=120)
    assert proc.returncode == 2 and "no trained weights" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.gpu
def test_gpu_sweep_agrees_with_cpu_and_has_no_host_sync_per_batch() -> None:
    import warnings

    trunk, heads = make_model(size=16)
    images, labels = make_data(n=4, size=16)
    cpu = sweep(trunk, heads, images, labels, GRID, batch_size=8, device="cpu")
    counts = []
    for batch in (100, 8):  # 1 pass vs 13 passes: the number of host syncs must not grow with the passes
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                gpu = sweep(trunk, heads, images, labels, GRID, batch_size=batch, device="cuda", amp=False)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        counts.append(sum("synchroniz" in str(w.message) for w in caught))
        for k in heads:
            assert torch.allclose(gpu.loss[k], cpu.loss[k], atol=1e-4)
    assert counts[0] == counts[1], counts
    bf16 = sweep(trunk, heads, images, labels, GRID, batch_size=8, device="cuda")  # bf16 + channels_last default
    assert bf16.meta["amp"] == "bf16" and bf16.meta["channels_last"] and (bf16.correct["final_gap"] == cpu.correct["final_gap"]).float().mean() > 0.8


def test_crop_protocol_matches_loop_and_select() -> None:
    """Zhang's protocol: windows of 8 px inside 12 px sources."""
    trunk = TinyTrunk(seed=0)
    heads = {"gap": TinyHead(("pool2",), None, 8, seed=2), "flat": TinyHead((), "pool2", 8, seed=3)}
    images, labels = make_data(n=3, size=12)
    grid = shift_grid(2, step=2)
    res = sweep(trunk, heads, images, labels, grid, "crop", out_size=8, device="cpu")
    ref = reference_sweep({k: Whole(trunk, h) for k, h in heads.items()}, images, labels, grid, "crop", out_size=8)
    for k in heads:
        assert torch.allclose(res.loss[k], ref.loss[k], atol=1e-5)
    only = res.select(["gap"])
    assert only.heads == ("gap",) and torch.equal(only.loss["gap"], res.loss["gap"])
    with pytest.raises(KeyError, match="unknown head"):
        res.select(["nope"])
    with pytest.raises(ValueError, match="out_size"):
        sweep(trunk, heads, images, labels, grid, "crop", device="cpu")
    merged = SweepResult.merge({"engine": res, "loop": ref})
    assert merged.heads == ("engine/gap", "engine/flat", "loop/gap", "loop/flat")
    circ = sweep(trunk, heads, images[:, :, :8, :8], labels, grid, "circular", device="cpu")
    with pytest.raises(ValueError, match="cannot merge 'b'"):
        SweepResult.merge({"a": res, "b": circ})


def test_command_line_reads_an_image_folder(tmp_path: Path) -> None:
    pytest.importorskip("shiftinv.models.vgg")
    from PIL import Image

    for k, cls in enumerate(("cat", "dog")):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        arr = (torch.rand(40, 48, 3, generator=torch.Generator().manual_seed(k)) * 255).byte().numpy()
        Image.fromarray(arr).save(tmp_path / "imgs" / cls / "a.png")
    args = ["--size", "32", "--width", "0.0625", "--num-classes", "2", "--heads", "final_gap,multi_gap",
            "--shifts", "diag:-1:1", "--device", "cpu", "--random-weights", "--out", str(tmp_path / "r.pt")]
    assert sweep_command.main(["--images", str(tmp_path / "imgs"), *args]) == 0
    res = SweepResult.load(tmp_path / "r.pt")
    assert res.heads == ("final_gap", "multi_gap") and res.labels.tolist() == [0, 1]
    assert res.shifts.tolist() == [[-1, -1], [0, 0], [1, 1]]
    assert sweep_command.main(["--images", str(tmp_path / "nowhere"), *args]) == 2

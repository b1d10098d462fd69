"""The shift audit: oracle fixtures per measure, theorems at random weights, agreement with the
workbook's notebooks 04-05, black box = white box, loaders, bad input, report and command."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from shiftinv.audit import cli, grid, images, loaders, measures, models, periods, protocol, report, run
from shiftinv.models import vgg
from shiftinv.shifts import invariance, sweep, translation
from shiftinv.shifts.sweep_result import SweepResult


def tiny_net(seed: int = 0, circular: bool = True, classes: int = 5) -> nn.Module:
    """Two conv + stride-2 max-pool blocks (total stride 4), GAP, linear; float64."""
    torch.manual_seed(seed)
    pad = "circular" if circular else "zeros"
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, padding_mode=pad), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1, padding_mode=pad), nn.ReLU(), nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, classes)).double()


def tiny_images(n: int = 6, size: int = 32, margin: int = 4, labelled: bool = True, seed: int = 0) -> images.AuditImages:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g, dtype=torch.float64)
    labels = torch.arange(n) % 5 if labelled else None
    return images.from_tensors(x, margin, labels=labels)


PRESET = protocol.get_preset("smoke")  # radius 4, grid step 4, line -4..3, diagonal -2..2, crop + circular


# ----------------------------------------------------------------------------- oracle fixtures


def hand_result() -> SweepResult:
    """A line of 4 offsets dx = -1..2 (dy = 0) plus (1, 1), 2 images, 3 classes, known predictions."""
    shifts = torch.tensor([[-1, 0], [0, 0], [1, 0], [2, 0], [1, 1]])
    pred = torch.tensor([[0, 2], [0, 1], [1, 1], [0, 1], [1, 2]])  # (S, N)
    labels = torch.tensor([0, 1])
    p_true = torch.tensor([[0.6, 0.1], [0.7, 0.5], [0.2, 0.6], [0.5, 0.4], [0.3, 0.2]])
    logits = torch.zeros(5, 2, 3)
    logits[:, 0, 0] = torch.tensor([1.0, 2.0, 2.0, 4.0, 2.0])  # image 0 output: its first logit only
    logits[:, 1, 1] = 1.0
    h = "m"
    return SweepResult(shifts, labels, "circular", {h: torch.zeros(5, 2)}, {h: pred == labels}, {h: pred}, {h: p_true},
                       {h: logits})


def test_measures_on_hand_computed_predictions() -> None:
    r = hand_result()
    # consistency over all 5 offsets: image 0 predicts 0,0,1,0,1 -> (3/5)^2 + (2/5)^2; image 1: 2,1,1,1,2
    cons = invariance.expected_consistency(r, "m", per_image=True)
    assert cons.tolist() == pytest.approx([0.52, 0.52])
    line = r.select_shifts([(-1, 0), (0, 0), (1, 0), (2, 0)])
    # neighbours: image 0: 0->0 same, 0->1 flip, 1->0 flip = 2/3; image 1: 2->1, 1->1, 1->1 = 1/3
    assert measures.flip_probability(line, "m").tolist() == pytest.approx([2 / 3, 1 / 3])
    # first change vs (0, 0): image 0 at (1, 0) (radius 1); image 1 at (-1, 0) (radius 1)
    assert measures.min_change_radius(r, "m").tolist() == [1.0, 1.0]
    still = r.select_shifts([(0, 0), (2, 0)])
    assert measures.min_change_radius(still, "m").tolist() == [math.inf, math.inf]
    # diagonal (0, 0) -> (1, 1): top-1 changes for both; |p(1,1) - p(0,0)| = 0.4 and 0.3
    diag = invariance.diagonal_stability(r.select_shifts([(0, 0), (1, 1)]), "m", per_image=True)
    assert diag["p_top1_change"].tolist() == [1.0, 1.0]
    assert diag["mean_abs_change"].tolist() == pytest.approx([0.4, 0.3])
    # output change of image 0: |f(s) - f(0)| / |f(0)| = 0.5, 0, 0, 1, 0 -> mean 0.3; image 1 constant
    assert measures.output_change(r, "m", "logits").tolist() == pytest.approx([0.3, 0.0])


def grid_result() -> tuple[SweepResult, protocol.Preset]:
    """The 3x3 grid of radius 1 (dy-major), 2 images: image 0 (label 0) wrong only at (1, 1); image 1
    (label 1) predicted 3 at (0, 0) and (1, 0), right elsewhere."""
    shifts = torch.tensor(translation.shift_grid(1))
    pred = torch.tensor([[0, 0, 0, 0, 0, 0, 0, 0, 2], [1, 1, 1, 1, 3, 3, 1, 1, 1]]).T  # (S, N)
    labels = torch.tensor([0, 1])
    h = "m"
    r = SweepResult(shifts, labels, "circular", {h: torch.zeros(9, 2)}, {h: pred == labels}, {h: pred},
                    {h: torch.full((9, 2), 0.5)}, {h: torch.ones(9, 2, 4)})
    return r, protocol.Preset("hand", radius=1, grid_step=1, line_half=1, diagonal=1, protocols=("circular",))


def test_summary_and_comparisons_on_hand_computed_frames() -> None:
    r, preset = grid_result()
    frame = measures.per_image_measures(r, "m", preset, labelled=True)
    assert frame.consistency.tolist() == pytest.approx([65 / 81, 53 / 81])  # (8/9)^2 + (1/9)^2, (7/9)^2 + (2/9)^2
    assert frame.accuracy_over_grid.tolist() == pytest.approx([8 / 9, 7 / 9])
    assert frame.correct_everywhere.tolist() == [0.0, 0.0]
    assert frame.correct_unshifted.tolist() == [1.0, 0.0]
    assert frame.min_change_radius.tolist() == [1.0, 1.0]
    w = measures.resamples(2, n_boot=200)
    s = measures.summarise(frame, r, "m", w).set_index("measure")
    # accuracy per offset: 1, 1, 1, 1, 0.5, 0.5, 1, 1, 0.5 -> range 0.5, worst 0.5
    assert s.loc["accuracy_range", "value"] == pytest.approx(0.5)
    assert s.loc["worst_offset_accuracy", "value"] == pytest.approx(0.5)
    assert s.loc["consistency_if_correct", "value"] == pytest.approx(65 / 81)
    assert s.loc["consistency_if_wrong", "value"] == pytest.approx(53 / 81)
    assert s.loc["consistency", "lo"] <= s.loc["consistency", "value"] <= s.loc["consistency", "hi"]
    other = frame.assign(consistency=frame.consistency - 0.25)
    c = measures.compare({("a", "p"): frame, ("b", "p"): other}, w, [(("a", "p"), ("b", "p"))]).set_index("measure")
    assert c.loc["consistency", "difference"] == pytest.approx(0.25)
    assert c.loc["consistency", "lo"] == pytest.approx(0.25) and bool(c.loc["consistency", "clear"])
    assert not bool(c.loc["flip_probability", "clear"])


# ----------------------------------------------------------------------------- theorems at random weights


def test_aps_with_circular_padding_has_consistency_one_under_circular_shifts() -> None:
    torch.manual_seed(0)
    trunk = vgg.build_trunk(width=1 / 32, pool="aps", circular=True, normalize="none")
    head = vgg.build_head("final_gap", trunk, num_classes=7, input_size=32)
    model = models.from_module(vgg.VGGClassifier(trunk, head, input_size=32).double(), "aps", 32)
    imgs = tiny_images(4, 32, margin=4, labelled=False)
    preset = protocol.get_preset("smoke", protocols=("circular",), equivariance_images=0)
    result = run.audit([model], imgs, preset, progress=False)
    assert result.value("aps", "circular", "consistency") == 1.0
    assert result.value("aps", "circular", "flip_probability") == 0.0
    logits = result.grids["aps", "circular"].logits["aps"]  # (S, N, K): every offset gives the same output
    assert float((logits - logits[:1]).abs().max()) < 1e-5


def test_circular_network_of_stride_s_repeats_with_period_s() -> None:
    model = models.from_module(tiny_net(), "tiny", 32)
    imgs = tiny_images(3, 32, margin=4)
    g = grid.run_grid(model, imgs, PRESET, "circular", labels=imgs.labels, progress=False)
    logits = g.logits["tiny"]
    for dx, dy in [(4, 0), (-4, 0), (0, 4), (4, 4), (-4, -4)]:  # multiples of the total stride 4
        assert torch.allclose(logits[g.index(dx, dy)], logits[g.index(0, 0)], atol=1e-5)
    assert not torch.allclose(logits[g.index(1, 0)], logits[g.index(0, 0)], atol=1e-5)
    spectrum = periods.line_spectrum(g, "tiny", PRESET, (2, 4))
    off = spectrum[~np.isclose((spectrum.frequency * 4) % 1, 0)]  # frequencies not multiples of 1/4
    assert off.power.max() < 1e-8 and spectrum.power.sum() == pytest.approx(1.0)
    assert periods.predicted_periods(model, 8) == ((2, 4), "strides")
    assert periods.predicted_periods(model, 6) == ((2,), "strides")  # a period must fit twice in the line


def test_layer_equivariance_is_zero_at_multiples_of_each_stride() -> None:
    model = models.from_module(tiny_net(), "tiny", 32)
    table = periods.layer_equivariance(model, tiny_images(2).centre(), 2)
    assert set(table.stride) == {1, 2, 4}
    zero_phase = table[table.phase == 0]
    assert len(zero_phase) == table.layer.nunique() and zero_phase.max_error.max() < 1e-20
    assert table[table.phase > 0].mean_error.min() > 1e-6  # pools alias at every other phase


def test_batched_equals_looped_and_grid_indexed_equals_direct() -> None:
    net = tiny_net(circular=False)
    model = models.from_module(net, "tiny", 32)
    imgs = tiny_images(3, 32, margin=4)
    batched = grid.run_grid(model, imgs, PRESET, "crop", labels=imgs.labels, batch_size=64, progress=False)
    looped = grid.run_grid(model, imgs, PRESET, "crop", labels=imgs.labels, batch_size=1, progress=False)
    assert torch.allclose(batched.logits["tiny"], looped.logits["tiny"], atol=1e-6)
    direct = torch.stack([net(translation.translate(imgs.sources, dx, dy, "crop", out_size=32))
                          for dx, dy in PRESET.shifts()]).float()  # (S, N, K), one forward per offset
    assert torch.allclose(direct, batched.logits["tiny"], atol=1e-5)
    pred = direct.argmax(-1)
    grid_rows = [PRESET.shifts().index(s) for s in PRESET.grid()]
    counts = torch.stack([torch.bincount(pred[grid_rows, n], minlength=5) for n in range(3)]).double()
    by_hand = ((counts / len(grid_rows)) ** 2).sum(1)
    frame = measures.per_image_measures(batched, "tiny", PRESET, labelled=True)
    assert frame.consistency.tolist() == pytest.approx(by_hand.tolist())


# ----------------------------------------------------------------------------- agreement


def test_black_box_callable_gives_the_same_numbers_as_the_module() -> None:
    net = tiny_net(circular=False)
    imgs = tiny_images(4, 32, margin=4)
    white = models.from_module(net, "net", 32)
    black = models.from_callable(lambda x: net(x).detach().numpy(), "net", 32)
    preset = protocol.get_preset("smoke", equivariance_images=0)
    a = run.audit([white], imgs, preset, progress=False).summary
    b = run.audit([black], imgs, preset, progress=False).summary
    assert a.measure.tolist() == b.measure.tolist()
    assert np.allclose(a.value, b.value, equal_nan=True) and np.allclose(a.lo, b.lo, equal_nan=True)


def test_workbook_heads_agree_with_the_notebooks_sweeps() -> None:
    """The audit's grid of a workbook head equals notebook 04's sweep (trunk + heads, zero canvas)
    on the same images and shifts, and its pool layers' equivariance equals notebook 05's."""
    torch.manual_seed(0)
    trunk = vgg.build_trunk(width=1 / 32, batch_norm=True).eval()
    heads = {k: vgg.build_head(k, trunk, num_classes=10, input_size=32).eval() for k in ("flatten", "multi_gap")}
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 1, 2, 3])
    preset = protocol.get_preset("smoke", protocols=("zero",), equivariance_images=0)
    imgs = images.from_tensors(x, preset.radius, labels=labels)
    notebook = sweep(trunk, heads, x, labels, preset.shifts(), "zero", progress=False, keep_logits=True)
    for k, head in heads.items():
        model = models.from_module(vgg.VGGClassifier(trunk, head, input_size=32), k, 32)
        g = grid.run_grid(model, imgs, preset, "zero", labels=labels, progress=False)
        assert torch.allclose(g.logits[k], notebook.logits[k], atol=1e-5)
        assert torch.equal(g.correct[k], notebook.correct[k])
        ours = measures.per_image_measures(g, k, preset, labelled=True).diag_top1_change.mean()
        theirs = invariance.diagonal_stability(notebook.select_shifts(preset.diagonal_shifts()), k)
        assert ours == pytest.approx(theirs["p_top1_change"])
    both = [models.from_module(vgg.VGGClassifier(trunk, h, input_size=32), k, 32) for k, h in heads.items()]
    shared = grid.run_grids(both, imgs, preset, "zero", labels={k: labels for k in heads}, progress=False)
    assert shared["flatten"].meta["config"]["heads"] == ["flatten", "multi_gap"]  # one trunk pass for both heads
    for k in heads:
        assert torch.allclose(shared[k].logits[k], notebook.logits[k], atol=1e-5)
    model = models.from_module(vgg.VGGClassifier(trunk, heads["multi_gap"], input_size=32), "m", 32)
    ours = periods.layer_equivariance(model, x, 2, max_shift=4).set_index(["layer", "phase"])  # nb 05: 0..4
    theirs = invariance.error_by_phase(invariance.equivariance_error(trunk, x[:2], ["pool1", "pool2"], mode="circular"))
    for tap, row in theirs.iterrows():
        layer = f"trunk.features.{trunk.index(row.tap)}"
        assert ours.loc[(layer, row.phase_x), "mean_error"] == pytest.approx(row.mean_error, rel=1e-4, abs=1e-9)


@pytest.mark.slow
def test_trained_workbook_heads_agree_with_notebook_04(session_tmp: Path) -> None:
    """The demo (smoke) heads notebook 03 trains, audited on notebook 04's images and grid."""
    from shiftinv.study import analysis

    ms = loaders.workbook_model_set("demo", smoke=True)
    p = ms.profile
    preset = protocol.Preset("nb04", radius=p.shift_radius, grid_step=p.grid_step, line_half=2,
                             diagonal=p.diag_radius, protocols=("zero",), equivariance_images=0)
    x, y = ms.test_tensors()
    imgs = images.from_tensors(x, preset.radius, labels=y)
    nb04 = analysis.translation_sweep(ms, "grid", trunks=["vgg"], heads=["flatten"])
    result = run.audit(loaders.workbook_models(ms, ["vgg/flatten"]), imgs, preset, progress=False)
    g = result.grids["vgg/flatten", "zero"].select_shifts(nb04.shifts.tolist())
    assert torch.equal(g.correct["vgg/flatten"], nb04.correct["vgg/flatten"])


# ----------------------------------------------------------------------------- precision, resume


def test_bf16_opt_in_runs_on_the_cpu_and_reports_its_agreement() -> None:
    model = models.from_module(tiny_net(circular=False).float(), "tiny", 32)
    imgs = tiny_images(3, 32, margin=4)
    imgs.sources = imgs.sources.float()
    result = run.audit([model], imgs, protocol.get_preset("smoke", equivariance_images=0), amp="bf16", progress=False)
    assert result.grids["tiny", "crop"].meta["amp"] == "bf16"
    info = result.amp["tiny"]
    assert info["amp"] == "bf16" and info["pairs"] == 3 * 8
    assert 0.0 < info["max_abs_diff"] < 0.1 and 0.5 <= info["top1_agreement"] <= 1.0


@pytest.mark.gpu
def test_audit_on_cuda_matches_the_cpu_and_bf16_agrees() -> None:
    net = tiny_net(circular=False).float()
    imgs = tiny_images(4, 32, margin=4)
    imgs.sources = imgs.sources.float()
    preset = protocol.get_preset("smoke", equivariance_images=1)
    cpu = run.audit([models.from_module(net, "t", 32)], imgs, preset, device="cpu", progress=False).summary
    gpu = run.audit([models.from_module(net, "t", 32)], imgs, preset, device="cuda", progress=False).summary
    assert np.allclose(cpu.value, gpu.value, atol=1e-4, equal_nan=True)
    low = run.audit([models.from_module(net, "t", 32)], imgs, preset, device="cuda", amp="bf16", progress=False)
    assert low.amp["t"]["top1_agreement"] >= 0.9


def test_finished_grid_is_read_back_and_other_images_get_their_own_file(tmp_path: Path) -> None:
    model = models.from_module(tiny_net(), "tiny", 32)
    imgs = tiny_images(3, 32, margin=4)
    first = grid.run_grid(model, imgs, PRESET, "circular", labels=imgs.labels, out_dir=tmp_path, progress=False)
    files = list((tmp_path / "grids").glob("*.sweep.pt"))
    assert len(files) == 1
    again = grid.run_grid(model, imgs, PRESET, "circular", labels=imgs.labels, out_dir=tmp_path, progress=False)
    assert again.meta["seconds"] == first.meta["seconds"]  # read back, not recomputed
    other = tiny_images(3, 32, margin=4, seed=5)
    grid.run_grid(model, other, PRESET, "circular", labels=other.labels, out_dir=tmp_path, progress=False)
    assert len(list((tmp_path / "grids").glob("*.sweep.pt"))) == 2


# ----------------------------------------------------------------------------- input


def _write_png(path: Path, size: tuple[int, int], seed: int = 0) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def test_image_folder_keeps_good_files_and_names_bad_ones(tmp_path: Path) -> None:
    for i in range(3):
        _write_png(tmp_path / f"ok{i}.png", (60, 50), i)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    _write_png(tmp_path / "small.png", (40, 40))
    full = tmp_path / "ok0.png"
    (tmp_path / "truncated.png").write_bytes(full.read_bytes()[:200])
    imgs = images.load_images(tmp_path, 32, 8, resize="none")
    assert imgs.names == ["ok0.png", "ok1.png", "ok2.png"] and imgs.sources.shape == (3, 3, 48, 48)
    bad = dict(imgs.bad)
    assert set(bad) == {"broken.jpg", "small.png", "truncated.png"}
    assert "too small for the shift radius" in bad["small.png"] and "truncated" in bad["truncated.png"]
    resized = images.load_images(tmp_path, 32, 8)  # resize="shorter": the small one is scaled up
    assert "small.png" in resized.names and not resized.labelled
    with pytest.raises(ValueError, match="no label"):
        images.load_images(tmp_path, 32, 8, labels={"ok0.png": 1})


def test_image_folder_layout_and_labels_file(tmp_path: Path) -> None:
    for k, cls in enumerate(("cat", "dog")):
        (tmp_path / "tree" / cls).mkdir(parents=True)
        _write_png(tmp_path / "tree" / cls / "a.png", (40, 40), k)
    tree = images.load_images(tmp_path / "tree", 32, 4)
    assert tree.classes == ["cat", "dog"] and tree.labels.tolist() == [0, 1]
    (tmp_path / "flat").mkdir()
    _write_png(tmp_path / "flat" / "x.png", (40, 40))
    (tmp_path / "labels.csv").write_text("file,label\nx.png,7\n")
    assert images.load_images(tmp_path / "flat", 32, 4, labels=tmp_path / "labels.csv").labels.tolist() == [7]
    (tmp_path / "bad.csv").write_text("file,label\nx.png,cat\n")
    with pytest.raises(ValueError, match="line 2"):
        images.load_images(tmp_path / "flat", 32, 4, labels=tmp_path / "bad.csv")


def test_loaders_read_torchscript_factory_and_torchvision_and_refuse_pickles(tmp_path: Path) -> None:
    net = tiny_net(circular=False).float()
    torch.jit.script(net).save(str(tmp_path / "net.ts"))
    scripted = loaders.load_model(str(tmp_path / "net.ts"), input_size=32)
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(scripted(x), net(x), atol=1e-6)
    torch.save(net.state_dict(), tmp_path / "sd.pt")
    with pytest.raises(ValueError, match="state dict, not a model"):
        loaders.load_model(str(tmp_path / "sd.pt"))
    torch.save(net, tmp_path / "whole.pt")
    with pytest.raises(ValueError, match="runs code"):
        loaders.load_model(str(tmp_path / "whole.pt"))
    assert loaders.load_model(str(tmp_path / "whole.pt"), allow_pickle=True, input_size=32).white_box
    tv = torch.nn.Module()
    import torchvision

    tv = torchvision.models.get_model("mobilenet_v3_small", weights=None)
    torch.save(tv.state_dict(), tmp_path / "mnv3.pt")
    m = loaders.load_model("torchvision:mobilenet_v3_small", weights=tmp_path / "mnv3.pt")
    assert m.input_size == (224, 224) and m.mean.flatten().tolist() == pytest.approx([0.485, 0.456, 0.406])
    with pytest.raises(ValueError, match="does not fit"):
        loaders.load_model("torchvision:resnet18", weights=tmp_path / "mnv3.pt")
    with pytest.raises(FileNotFoundError, match="no such file"):
        loaders.load_model("nothing_here.pt")


def test_timm_name_reads_its_own_input_size_and_normalisation(tmp_path: Path) -> None:
    timm = pytest.importorskip("timm")
    net = timm.create_model("resnet10t", pretrained=False, num_classes=4)
    torch.save(net.state_dict(), tmp_path / "r10.pt")
    with pytest.raises(ValueError, match="does not fit"):  # 1000 classes as built, 4 in the file
        loaders.load_model("timm:resnet10t", weights=tmp_path / "r10.pt")
    full = timm.create_model("resnet10t", pretrained=False)
    torch.save(full.state_dict(), tmp_path / "full.pt")
    m = loaders.load_model("timm:resnet10t", weights=tmp_path / "full.pt")
    cfg = full.pretrained_cfg
    assert m.input_size == (cfg["input_size"][-1],) * 2 and m.std.flatten().tolist() == pytest.approx(list(cfg["std"]))
    x = torch.rand(1, 3, *m.input_size)
    assert torch.allclose(m(x), full.eval()((x - m.mean) / m.std), atol=1e-5)


def test_bad_model_output_and_sizes_are_clear_errors() -> None:
    m = models.from_callable(lambda x: {"logits": x}, "dict", 32)
    with pytest.raises(TypeError, match="returned a dict"):
        m(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="32x32 px inputs"):
        models.from_module(tiny_net(), "t", 32)(torch.rand(1, 3, 16, 16).double())
    with pytest.raises(ValueError, match="prepared for 24 px"):
        grid.run_grid(models.from_module(tiny_net(), "t", 32), tiny_images(2, 24), PRESET, "crop",
                      labels=torch.zeros(2, dtype=torch.long), progress=False)
    with pytest.raises(ValueError, match="unknown preset"):
        protocol.get_preset("fast")


# ----------------------------------------------------------------------------- report and command


def test_report_and_command_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        _write_png(folder / f"im{i}.png", (48, 40), i)
    (folder / "broken.png").write_bytes(b"\x89PNG garbage")
    torch.jit.script(tiny_net(circular=False).float()).save(str(tmp_path / "net.ts"))
    out = tmp_path / "out"
    argv = ["--model", str(tmp_path / "net.ts"), "--input-size", "32", "--images", str(folder),
            "--preset", "smoke", "--out", str(out), "--no-progress"]
    assert cli.main(argv) == 0
    data = json.loads((out / "audit.json").read_text())
    assert data["images"]["count"] == 3 and data["images"]["left_out"][0][0] == "broken.png"
    assert data["protocol"]["preset"] == "smoke" and "crop" in data["protocol"]["protocols"]
    page = (out / "report.html").read_text()
    assert "How every number was measured" in page and page.count("data:image/png;base64,") >= 5
    assert "consistency" in (out / "per_image.csv").read_text().splitlines()[0]
    assert cli.main(["--model", "nope.pt", "--images", str(folder)]) == 2
    assert "nope.pt" in capsys.readouterr().err


@pytest.mark.shared_data
def test_litert_mobilenet_is_audited_as_a_black_box(shared_data: Path) -> None:
    pytest.importorskip("ai_edge_litert")
    model = loaders.load_model(str(shared_data / "models" / "mobilenet_v2_1.0_224_quant.tflite"))
    assert model.input_size == (224, 224) and not model.white_box
    folder = shared_data / "imagenet_sample"
    labels = images.imagenet_sample_labels(folder)
    assert len(labels) == 200 and labels["n01440764_tench.JPEG"] == 0
    imgs = images.load_images(folder, 224, 0, labels=labels, max_images=4)
    out = model(imgs.centre())  # (4, 1000) log-probabilities, background dropped
    assert out.shape == (4, 1000) and float(out.exp().sum(1).min()) > 0.9
    assert int((out.argmax(1) == imgs.labels).sum()) >= 2

"""``python -m shiftinv.study.sweep_cli export|run``: the translation sweep of notebook 03's models
from the command line, on one or several GPUs (``torchrun``), with the engine of
:mod:`shiftinv.shifts.sweep`.

Command line (single process or ``torchrun --nproc-per-node 2 -m shiftinv.study.sweep_cli run ...``;
``python -m shiftinv.study.sweep_cli --help``):

- ``export --profile demo --out models.pt`` reads the trunks and heads notebook 03 trained
  (``results/``, via :func:`shiftinv.study.modelset.train_or_load_models`, refusing to train unless
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
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor

from ..shifts.sweep import rank_and_world, sweep, sweep_models
from ..shifts.translation import MODES
from ..workbook import cache, runtime

# ----------------------------------------------------------------------------- command line

#: ``format`` field of the file ``python -m shiftinv.study.sweep_cli export`` writes (see :func:`export_models`).
MODELS_FORMAT = "shiftinv.sweep/models-v1"


_TRUNK_SPEC = ("width", "batch_norm", "pool", "blur_size", "blur_pad", "circular", "normalize")


_DATA_FIELDS = ("dataset", "data_root", "image_size", "digit_size", "max_train", "max_val", "max_test", "seed",
                "n_sweep", "shift_mode", "shift_radius", "grid_step", "sweep_batch")


class CommandError(Exception):
    """A problem with the command line's input, reported as one message (no traceback)."""


def _parse_shifts(text: str) -> list[tuple[int, int]]:
    """``"R"`` or ``"R:STEP"`` -> :func:`shift_grid`; ``"diag:A:B"`` -> diagonal shifts."""
    from ..shifts.translation import diagonal_shifts, shift_grid

    parts = text.split(":")
    try:
        if parts[0] == "diag":
            return diagonal_shifts(int(parts[1]), int(parts[2]))
        return shift_grid(int(parts[0]), int(parts[1]) if len(parts) > 1 else 1)
    except (ValueError, IndexError):
        raise argparse.ArgumentTypeError(f"--shifts must be 'R', 'R:STEP' or 'diag:A:B', got {text!r}") from None


@contextlib.contextmanager
def _loading_only(results: Path) -> Any:
    """Make :func:`shiftinv.study.training.fit` refuse to run: models must come from the cache (notebook 03)."""
    from . import training

    original = training.fit

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise CommandError(
            f"a model of this profile is not in the cache under '{results}' (trained by notebook 03 with the "
            "same profile and parameters). Run notebook 03 first (e.g. `make figures NOTEBOOKS=03`, or "
            "`python -m shiftinv.workbook.runner 03`), point SHIFTINV_RESULTS at its results folder, or pass "
            "--train-missing to train the missing models now."
        )

    training.fit = refuse
    try:
        yield
    finally:
        training.fit = original


def models_state(ms: Any) -> dict[str, Any]:
    """The trained trunks and heads of a :class:`shiftinv.study.modelset.ModelSet` as a plain dict.

    The documented layout (``format`` :data:`MODELS_FORMAT`), loadable with ``weights_only=True``::

        {"format": "shiftinv.sweep/models-v1",
         "profile": {...},                       # profiles.Profile.to_dict(): data, shifts, seed, ...
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
    """Load a profile's trunks and heads from notebook 03's cache (:func:`shiftinv.study.modelset.train_or_load_models`)
    and return (and, with ``out``, write atomically) :func:`models_state`.

    Without ``train_missing`` a model absent from the cache raises :class:`CommandError` instead of
    being trained. BlurPool/APS trunks that reuse the plain trunk's conv weights get their BatchNorm
    statistics re-estimated on the training images exactly as in notebook 03 (deterministic).
    """
    from ..workbook import paths
    from . import modelset

    guard = contextlib.nullcontext() if train_missing else _loading_only(paths.results_dir())
    with guard:
        ms = modelset.train_or_load_models(profile)
    state = models_state(ms)
    if out is not None:
        cache.atomic_torch_save(state, out)
    return state


def load_models(path: Path | str) -> tuple[dict[str, Any], dict[str, tuple[Any, dict[str, Any]]]]:
    """Read a file written by ``export``: ``(state, {trunk: (VGGTrunk, {head: Head})})`` (eval mode)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CommandError(f"models file not found: '{path}'. Write one with "
                           "`python -m shiftinv.study.sweep_cli export --profile demo --out models.pt`.")
    try:
        state = cache.safe_torch_load(path)
    except ValueError as exc:
        raise CommandError(f"{exc} (is '{path}' a file written by `python -m shiftinv.study.sweep_cli export`?)") from None
    return state, build_models(state, f"'{path}'")


def build_models(state: Any, where: str = "the models state") -> dict[str, tuple[Any, dict[str, Any]]]:
    """``{trunk: (VGGTrunk, {head: Head})}`` (eval mode) from a :func:`models_state` dict."""
    from ..models import vgg

    if not isinstance(state, dict) or state.get("format") != MODELS_FORMAT:
        got = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CommandError(f"{where} is not a models file of format {MODELS_FORMAT!r} (found {got!r}); "
                           "write one with `python -m shiftinv.study.sweep_cli export`.")
    built: dict[str, tuple[Any, dict[str, Any]]] = {}
    try:
        for tname, t in state["trunks"].items():
            trunk = vgg.build_trunk(**t["spec"])
            trunk.load_state_dict(t["state"])
            heads = {}
            for hname, h in state["heads"].get(tname, {}).items():
                gap = None if h["kind"] in ("flatten", "fc") else tuple(h["gap_taps"])
                head = vgg.build_head(h["kind"], trunk, h["num_classes"], h["input_size"], gap_taps=gap)
                head.load_state_dict(h["state"])
                heads[hname] = head.eval()
            built[tname] = (trunk.eval(), heads)
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise CommandError(f"{where} is damaged or from another version ({type(exc).__name__}: {exc}); "
                           "export it again.") from None
    return built


def _profile_from_state(d: dict[str, Any], device: str | None) -> Any:
    """The exported profile (its data and sweep settings) as a :class:`shiftinv.study.profiles.Profile`."""
    from . import profiles

    p = profiles.get_profile(d["name"], bool(d["smoke"]))
    return p.replace(**{k: d[k] for k in _DATA_FIELDS if k in d}, device=device)


def _profile_test_images(profile: Any, n: int | None) -> tuple[Tensor, Tensor]:
    """The first ``n`` (default ``n_sweep``) test images of the profile, as notebook 04 sweeps them
    (:meth:`shiftinv.study.modelset.ModelSet.test_tensors`)."""
    from . import datasets, modelset

    splits = modelset.load_data(profile)
    n = profile.n_sweep if n is None else n
    return datasets.as_tensors(datasets.take(splits.test, n, profile.seed + 3))


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
    """The parser of ``python -m shiftinv.study.sweep_cli`` with its two sub-commands, ``export`` and ``run``."""
    parser = argparse.ArgumentParser(
        prog="python -m shiftinv.study.sweep_cli", formatter_class=_HelpFormatter,
        description="Sweep trained VGG-16 heads over a grid of shifts (one process, or sharded under torchrun). "
                    "`export` writes the trunks and heads notebook 03 trained (read from results/) to one file; "
                    "`run` (the default sub-command) sweeps them.",
        epilog="Example: python -m shiftinv.study.sweep_cli export --profile demo --out models.pt && "
               "torchrun --nproc-per-node 2 -m shiftinv.study.sweep_cli run --models models.pt --out sweep.pt")
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
                                    f"(format {MODELS_FORMAT!r}, documented in shiftinv.study.sweep_cli.models_state). "
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
    src.add_argument("--models", type=Path, help="file written by `python -m shiftinv.study.sweep_cli export`")
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
    """``python -m shiftinv.study.sweep_cli [export|run] ...`` (``run`` under ``torchrun`` shards the sweep)."""
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
        print(f"python -m shiftinv.study.sweep_cli {args.command}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _export_command(args: argparse.Namespace) -> int:
    from . import profiles

    profile = profiles.profile_from_params(args.profile, args.smoke, data_dir=args.data_dir, weights=args.weights,
                                           device=args.device)
    state = export_models(profile, args.out, train_missing=args.train_missing)
    names = [f"{t}/{h}" for t, hs in state["heads"].items() for h in hs]
    print(f"exported {len(names)} models of profile {profile.name} (smoke={profile.smoke}) -> {args.out}: "
          f"{', '.join(names)}")
    return 0


def _run_command(args: argparse.Namespace) -> int:
    """``run``: choose the models, images and shifts, sweep, report the mean accuracy (rank 0)."""
    from . import analysis

    distributed = _init_distributed(args)
    g = runtime.seed_everything(args.seed)
    trained = args.models is not None or args.profile is not None
    profile, chosen = _trained_models(args) if trained else (None, _given_models(args))
    images, labels = _run_images(args, profile, chosen, g)
    shifts = args.shifts if args.shifts is not None else (
        analysis.sweep_shifts(profile, "grid") if profile is not None else _parse_shifts("2"))
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
    from . import profiles

    if args.models is not None and args.profile is not None:
        raise CommandError("give either --models FILE or --profile NAME, not both")
    if args.head_weights is not None:
        raise CommandError("--head-weights is for a trunk given by --weights; --models/--profile carry their heads")
    if args.models is not None:
        state, built = load_models(args.models)
    else:
        # notebook 03's default DEVICE (""): the device is part of its cache keys; for models cached
        # under another DEVICE use `export --device ...` and --models
        p = profiles.profile_from_params(args.profile, args.smoke, data_dir=args.data_dir,
                                         weights=args.weights or "")
        state = export_models(p)
        built = build_models(state, f"profile {p.name}")
    return _profile_from_state(state["profile"], args.device), _select(built, args.heads)


def _given_models(args: argparse.Namespace) -> dict[str, tuple[Any, dict[str, Any]]]:
    """``{"model": (trunk, {kind: head})}`` from ``--weights`` / ``--head-weights`` (or random weights)."""
    from ..models import vgg

    if args.head_weights is None and not args.random_weights:
        raise CommandError(
            "no trained weights given. Sweep the models notebook 03 trained with --models FILE (write it with "
            "`python -m shiftinv.study.sweep_cli export --profile demo --out models.pt`) or --profile NAME; or give "
            "--weights and --head-weights; or pass --random-weights to sweep untrained models (timing only).")
    if args.head_weights is not None and args.weights is None and not args.random_weights:
        raise CommandError("--head-weights without --weights would put trained heads on a random trunk; "
                           "give --weights (or --random-weights to allow it)")
    trunk = vgg.build_trunk(width=args.width, pool=args.pool, circular=args.circular, weights=args.weights)
    kinds = (args.heads or "flatten,final_gap,multi_gap,gap_flatten").split(",")
    heads = {k: vgg.build_head(k, trunk, args.num_classes, args.size) for k in kinds if k}
    if args.head_weights is not None:
        states = cache.safe_torch_load(args.head_weights)
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

    from ..workbook.paths import require_dir
    from .datasets import resize_transform

    require_dir(folder, "sweep test images", "Pass --images pointing to an ImageFolder (one sub-folder per class).")
    ds = datasets.ImageFolder(str(folder), transform=resize_transform(size, resize))
    xs, ys = zip(*[ds[i] for i in range(len(ds))])
    return torch.stack(xs), torch.tensor(ys)


if __name__ == "__main__":
    raise SystemExit(main())

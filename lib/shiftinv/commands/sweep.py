"""``shiftinv-sweep export|run`` (``python -m shiftinv.commands.sweep``): the translation sweep of
notebook 03's models from the command line, on one or several GPUs (``torchrun``), with the engine of
:mod:`shiftinv.shifts.engine`.

- ``export --profile demo --out models.pt`` reads the trunks and heads notebook 03 trained
  (``results/``, via :func:`shiftinv.study.modelset.train_or_load_models`, loading only unless
  ``--train-missing``) and writes them to one file (layout: :func:`~shiftinv.commands.models_file.models_state`). A
  model missing from the cache is reported before anything is computed; ``SHIFTINV_REFRESH``
  (``make ... REFRESH=1``) does not apply to reading the cache, only to ``--train-missing``.
- ``run --models models.pt --out sweep.pt`` sweeps them over the profile's shift grid and test
  images (or ``--images`` / ``--shifts`` / ``--mode``), heads named ``"trunk/head"``; ``--profile``
  reads the cache directly. ``--dtype float32|bf16`` (default bf16 on CUDA, float32 on the CPU).
  Untrained weights only with ``--random-weights``. The result is a
  :class:`shiftinv.shifts.SweepResult` file; the command prints how to read it.

``--out`` is checked before any work: not a folder, writable, not one of the inputs, and an existing
file is replaced only when it is a result of the same command (a models file for ``export``, a sweep
result for ``run``, which then resumes or recomputes it). Bad input exits with status 2 and a message.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from ..shifts.engine import rank_and_world, sweep, sweep_models
from ..shifts.translation import MODES
from ..study import profiles
from ..workbook import cache, runtime
from . import CommandError
from .models_file import (COMMAND, MODELS_FORMAT, Models, build_models, export_models, load_models,
                          profile_from_state, select_models)

# ----------------------------------------------------------------------------- outputs, checked first


def _result_kind(path: Path) -> str:
    """``"models"`` (an ``export`` file), ``"sweep"`` (a sweep result, complete or partial), or what else
    ``path`` holds, in words. Memory-mapped: a large result is not read into memory."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # noqa: BLE001 (any unreadable file is "something else")
        return f"not a readable torch file ({type(exc).__name__})"
    if isinstance(state, dict) and state.get("format") == MODELS_FORMAT:
        return "models"
    if isinstance(state, dict) and "complete" in state and ("result" in state or "acc" in state):
        return "sweep"
    return f"a torch file of another kind ({type(state).__name__})"


def check_output(out: Path, inputs: Sequence[Path | None], kind: str) -> Path:
    """``out`` when the command may write its ``kind`` of result (``"models"`` or ``"sweep"``) there,
    else :class:`CommandError` saying why, before any work is done.

    Refused: a folder; a place that cannot be written; one of ``inputs``; an existing file that is not a
    result of the same ``kind`` (it would be lost).
    """
    out = Path(out).expanduser()
    names = {"models": "a models file", "sweep": "a sweep result"}
    what = f"{names[kind]} (`{COMMAND} {'export' if kind == 'models' else 'run'}`)"
    if out.is_dir():
        raise CommandError(f"--out '{out}' is a folder; name a file in it, e.g. '{out / (kind + '.pt')}'")
    for given in inputs:
        if given is not None and out.resolve() == Path(given).expanduser().resolve():
            raise CommandError(f"--out '{out}' is also an input of this command; writing the result there would "
                               "destroy it. Choose another --out.")
    parent = next(p for p in (out.absolute().parent, *out.absolute().parents) if p.exists())
    try:  # a real write: permissions, read-only file systems, /proc ... (root passes os.access everywhere)
        with tempfile.TemporaryFile(dir=parent, prefix=".shiftinv-write-test-"):
            pass
    except OSError as err:
        raise CommandError(f"cannot write --out '{out}': '{parent}' is not a writable folder ({err.strerror}). "
                           "Choose another --out.") from None
    if out.exists():
        found = _result_kind(out)
        if found != kind:
            raise CommandError(f"--out '{out}' exists and is not {what} but {names.get(found, found)}; it is left "
                               "as it is. Choose "
                               "another --out, or delete the file if it is not needed.")
    return out


# ----------------------------------------------------------------------------- command line


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


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every default; ``None`` / ``False`` defaults are described in the help text itself."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "(default" in text or action.default in (None, False, "", argparse.SUPPRESS) or action.required:
            return text
        return super()._get_help_string(action) or text


_READING = ("Reading the result: `from shiftinv.shifts import SweepResult; r = SweepResult.load('sweep.pt')`; "
            "r.heads names the models ('trunk/head'), r.shifts is (S, 2) (dx, dy) in px, and "
            "r.per_image(head, 'accuracy' | 'loss' | 'p_true' | 'pred_change') is (S shifts, N images).")


def _sweep_parser() -> argparse.ArgumentParser:
    """The parser of the command with its two sub-commands, ``export`` and ``run``."""
    parser = argparse.ArgumentParser(
        prog=COMMAND, formatter_class=_HelpFormatter,
        description="Sweep trained VGG-16 heads over a grid of shifts (one process, or sharded under torchrun). "
                    "`export` writes the trunks and heads notebook 03 trained (read from results/) to one file; "
                    "`run` (the default sub-command) sweeps them.",
        epilog=f"Example: {COMMAND} export --profile demo --out models.pt && torchrun --nproc-per-node 2 "
               f"-m shiftinv.commands.sweep run --models models.pt --out sweep.pt. {_READING}")
    sub = parser.add_subparsers(dest="command")
    _add_export_parser(sub)
    run = sub.add_parser("run", formatter_class=_HelpFormatter, help="sweep trained heads over shifts (default sub-command)",
                         description="Sweep heads over a shift grid. Weights: --models FILE (from `export`), or "
                                     "--profile NAME (read from notebook 03's cache directly), or --weights plus "
                                     "--head-weights; untrained weights only with --random-weights.", epilog=_READING)
    _add_model_arguments(run)
    _add_data_arguments(run)
    return parser


def _add_export_parser(sub: argparse._SubParsersAction) -> None:
    """``export``: a profile's trained trunks and heads (notebook 03's cache) to one file."""
    ex = sub.add_parser("export", formatter_class=_HelpFormatter,
                        help="write a profile's trained trunks and heads (notebook 03's cache) to one file",
                        description=f"Read the trunks and heads notebook 03 trained for a profile from the cache "
                                    f"(SHIFTINV_RESULTS, default results/) and write them to one torch file "
                                    f"(format {MODELS_FORMAT!r}, documented in shiftinv.commands.models_file.models_state). "
                                    "Nothing is trained unless --train-missing is given.")
    ex.add_argument("--profile", default="demo", help="demo | natural | cifar | paper (as notebook 03's PROFILE)")
    ex.add_argument("--smoke", action="store_true", help="the profile's smoke sizes (as SMOKE=True)")
    ex.add_argument("--data-dir", default="", help="notebook 03's IMAGENET_DIR / CIFAR_DIR ('' = the default)")
    ex.add_argument("--weights", default="", help="notebook 03's VGG_WEIGHTS ('' = the profile's default)")
    ex.add_argument("--device", default="", help="notebook 03's DEVICE ('' = CUDA if present; part of the cache key, "
                                                "so give what notebook 03 was given)")
    ex.add_argument("--train-missing", action="store_true",
                    help="train models missing from the cache instead of failing (with SHIFTINV_REFRESH=1: retrain all)")
    ex.add_argument("--out", type=Path, required=True, help="models file to write (.pt)")


def _add_model_arguments(run: argparse.ArgumentParser) -> None:
    """``run``: where the trained models come from, and the architecture of untrained ones."""
    src = run.add_argument_group("trained models")
    src.add_argument("--models", type=Path, help=f"file written by `{COMMAND} export`")
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
                                                                  "(default: as many as notebook 04's grid sweep)")
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
    """``shiftinv-sweep [export|run] ...`` (``run`` under ``torchrun`` shards the sweep); exit status 2 on bad input."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    if not args_in or args_in[0] not in ("export", "run", "-h", "--help"):
        args_in = ["run", *args_in]  # `run` is the default sub-command
    args = _sweep_parser().parse_args(args_in)
    try:
        if args.command == "export":
            return _export_command(args)
        return _run_command(args)
    except (CommandError, FileNotFoundError, ValueError, KeyError) as exc:
        print(f"{COMMAND} {args.command}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _export_command(args: argparse.Namespace) -> int:
    out = check_output(args.out, [], "models")
    if os.environ.get(cache.REFRESH_ENV, "").strip() not in ("", "0") and not args.train_missing:
        print(f"note: {cache.REFRESH_ENV} is set, but export only reads the cache as it is (retrain with notebook 03, "
              "or pass --train-missing to retrain here)", file=sys.stderr)
    profile = profiles.profile_from_params(args.profile, args.smoke, data_dir=args.data_dir, weights=args.weights,
                                           device=args.device)
    state = export_models(profile, out, train_missing=args.train_missing)
    names = [f"{t}/{h}" for t, hs in state["heads"].items() for h in hs]
    print(f"exported {len(names)} models of profile {profile.name} (smoke={profile.smoke}) -> {out}: "
          f"{', '.join(names)}\nSweep them: {COMMAND} run --models {out} --out sweep.pt "
          "(or torchrun --nproc-per-node N -m shiftinv.commands.sweep run ...)")
    return 0
def _run_command(args: argparse.Namespace) -> int:
    """``run``: check --out, choose the models, images and shifts, sweep, report the mean accuracy (rank 0)."""
    from ..study import analysis

    weights = Path(args.weights) if args.weights and Path(args.weights).expanduser().exists() else None
    out = check_output(args.out, [args.models, args.head_weights, weights], "sweep")
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
        result = sweep_models(chosen, images, labels, shifts, mode, out_path=out, **kw)
    else:
        trunk, heads = chosen["model"]
        result = sweep(trunk, heads, images, labels, shifts, mode, out_path=out, **kw)
    if rank_and_world()[0] == 0:
        if trained:
            result.save(out)  # the merged result ("trunk/head"; per-trunk files beside it for resuming)
        acc = {h: round(float(result.correct[h].float().mean()), 4) for h in result.heads}
        meta = next(iter(result.meta["models"].values())) if trained else result.meta
        note = "" if trained or args.head_weights is not None else " (RANDOM WEIGHTS: accuracies are meaningless)"
        print(f"swept {result.num_shifts} shifts x {result.num_images} images ({mode}, {meta['amp']}) "
              f"-> {out}; mean accuracy{note} {acc}\n{_READING.replace('sweep.pt', str(out))}")
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


def _trained_models(args: argparse.Namespace) -> tuple[profiles.Profile, Models]:
    """``(profile, {trunk: (VGGTrunk, {head: Head})})`` from ``--models FILE`` or ``--profile NAME``."""
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
    return profile_from_state(state["profile"], args.device), select_models(built, args.heads)


def _given_models(args: argparse.Namespace) -> Models:
    """``{"model": (trunk, {kind: head})}`` from ``--weights`` / ``--head-weights`` (or random weights)."""
    from ..models import vgg

    if args.head_weights is None and not args.random_weights:
        raise CommandError(
            "no trained weights given. Sweep the models notebook 03 trained with --models FILE (write it with "
            f"`{COMMAND} export --profile demo --out models.pt`) or --profile NAME; or give "
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


def _run_images(args: argparse.Namespace, profile: profiles.Profile | None, chosen: Models,
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


def _profile_test_images(profile: profiles.Profile, n: int | None) -> tuple[Tensor, Tensor]:
    """The first ``n`` test images of the profile (default: as many as notebook 04's grid sweep of the
    plain trunk, :meth:`~shiftinv.study.profiles.Profile.sweep_size`), as notebook 04 sweeps them
    (:meth:`shiftinv.study.modelset.ModelSet.test_tensors`)."""
    from ..study import datasets, modelset

    splits = modelset.load_data(profile)
    n = profile.sweep_size("grid") if n is None else n
    return datasets.as_tensors(datasets.take(splits.test, n, profile.seed + 3))


def _load_folder(folder: Path, size: int, resize: str = "tf") -> tuple[Tensor, Tensor]:
    """(N, 3, size, size) in [0, 1] and (N,) labels from an ImageFolder (resized whole, no crop, like the paper;
    ``resize``: ``"tf"`` the authors' tf.image.resize without antialiasing, ``"antialias"``). Files that cannot
    be decoded are named together in one error (:func:`shiftinv.study.datasets.image_folder_tensors`)."""
    from ..study.datasets import image_folder_tensors

    return image_folder_tensors(folder, size, resize)


if __name__ == "__main__":
    raise SystemExit(main())

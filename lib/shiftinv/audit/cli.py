"""``shiftinv-audit``: audit image classifiers under shifts from the command line.

Examples::

    shiftinv-audit --model torchvision:resnet18 --weights resnet18.pth --images photos/ --out audit/
    shiftinv-audit --model mobilenet_v2_1.0_224_quant.tflite --images imagenet/ --labels labels.csv
    shiftinv-audit --model mypkg.nets:build --weights net.pt --model net_aa.ts --weights - --images data/

``--model`` and ``--weights`` may be repeated; the n-th ``--weights`` belongs to the n-th ``--model``
(``-`` for none). Writes ``report.html``, ``audit.json``, ``per_image.csv`` and the resumable grids
(``grids/``) into ``--out``; an interrupted run continues where it stopped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from . import loaders, protocol, report
from .images import RESIZES, load_images


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shiftinv-audit", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--model", action="append", required=True, help="model spec (see shiftinv.audit.loaders); repeat")
    p.add_argument("--weights", action="append", default=[], help="state-dict file of the n-th model ('-': none)")
    p.add_argument("--name", action="append", default=[], help="report name of the n-th model")
    p.add_argument("--images", required=True, help="folder of images, or of class sub-folders (ImageFolder)")
    p.add_argument("--labels", help="CSV with columns file,label (output index) for a folder of images")
    p.add_argument("--preset", default="default", choices=sorted(protocol.PRESETS), help="shifts and protocols")
    p.add_argument("--radius", type=int, help="grid radius and crop margin (px), replaces the preset's")
    p.add_argument("--grid-step", type=int, help="grid spacing (px)")
    p.add_argument("--protocols", help="comma-separated, e.g. crop,circular,zero (the first is the main one)")
    p.add_argument("--max-images", type=int, help="audit the first N images (sorted by name)")
    p.add_argument("--resize", default="shorter", choices=RESIZES, help="how images become sources")
    p.add_argument("--input-size", type=int, help="model input side (px); default: the model's own")
    p.add_argument("--mean", type=float, nargs=3, help="input normalisation mean (RGB, for [0, 1] images)")
    p.add_argument("--std", type=float, nargs=3, help="input normalisation std (RGB)")
    p.add_argument("--output", choices=("logits", "probabilities", "embedding"), help="what the model returns")
    p.add_argument("--out", default="shift-audit", help="output folder (default ./shift-audit)")
    p.add_argument("--device", default="", help="cpu, cuda, cuda:1 (default: CUDA when available)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast for torch models; agreement with float32 is measured")
    p.add_argument("--batch-size", type=int, default=64, help="shifted views per forward pass")
    p.add_argument("--allow-pickle", action="store_true", help="load whole pickled modules (runs code from the file)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _models(args: argparse.Namespace) -> list:
    n = len(args.model)
    if args.weights and len(args.weights) != n:
        raise ValueError(f"{n} --model but {len(args.weights)} --weights: give one --weights per --model ('-' for none)")
    if args.name and len(args.name) != n:
        raise ValueError(f"{n} --model but {len(args.name)} --name")
    out = []
    for i, spec in enumerate(args.model):
        weights = args.weights[i] if args.weights and args.weights[i] != "-" else None
        out.append(loaders.load_model(spec, weights=weights, name=args.name[i] if args.name else None,
                                      input_size=args.input_size, mean=args.mean, std=args.std, output=args.output,
                                      allow_pickle=args.allow_pickle))
    sizes = {m.input_size for m in out}
    if len(sizes) > 1:
        raise ValueError(f"the models take different input sizes {sorted(sizes)}; audit them separately or set "
                         "--input-size")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``shiftinv-audit``; returns the exit status (2: bad input, with the reason)."""
    args = _parser().parse_args(argv)
    from ..viz import audit_plots
    from .run import audit

    try:
        models = _models(args)
        protocols = tuple(p.strip() for p in args.protocols.split(",")) if args.protocols else None
        preset = protocol.get_preset(args.preset, radius=args.radius, grid_step=args.grid_step, protocols=protocols)
        images = load_images(args.images, models[0].input_size[0], preset.radius, labels=args.labels,
                             resize=args.resize, max_images=args.max_images)
    except (ValueError, TypeError, FileNotFoundError, ImportError) as err:
        print(f"shiftinv-audit: {err}", file=sys.stderr)
        return 2
    for name, why in images.bad:
        print(f"left out {name}: {why}", file=sys.stderr)
    print(f"auditing {', '.join(m.name for m in models)} on {len(images)} images "
          f"({'labelled' if images.labelled else 'label-free'}), preset {preset.name}: "
          f"{len(preset.shifts())} offsets x {len(preset.protocols)} protocols", file=sys.stderr)
    result = audit(models, images, preset, out_dir=Path(args.out), device=args.device or None,
                   amp="bf16" if args.bf16 else False, batch_size=args.batch_size, progress=not args.no_progress)
    paths = report.write_report(result, args.out, audit_plots.audit_figures(result))
    print(report.summary_table(result).to_string())
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

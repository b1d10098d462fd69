"""The audit's outputs: a self-contained HTML report, a JSON file and a per-image CSV.

:func:`write_report` writes into one folder (atomically, :func:`shiftinv.workbook.cache.atomic_write_bytes`):

- ``report.html``: the protocol block (how every number was measured), the models, the summary with
  95% intervals, the paired comparisons, the periodicity at the predicted periods, the precision
  agreement, the files left out, and every figure embedded as PNG (no other file needed);
- ``audit.json``: the same numbers, machine-readable;
- ``per_image.csv``: one row per model, protocol and image.

The figures are drawn by the caller (:func:`shiftinv.viz.audit_plots.audit_figures`), so the
notebook and the command share them.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from ..workbook import cache


def _finite(value: Any) -> Any:
    """JSON-safe: NaN and inf become None (JSON has neither); containers recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return _finite(value.item())
    return value


def summary_table(result: Any) -> pd.DataFrame:
    """The summary as ``measure`` rows x ``model / protocol`` columns of ``value [lo, hi]`` text."""
    s = result.summary.assign(cell=[f"{v:.4g} [{lo:.4g}, {hi:.4g}]" if math.isfinite(v) else "n/a"
                                    for v, lo, hi in zip(result.summary.value, result.summary.lo, result.summary.hi)])
    s = s.assign(column=s.model + " / " + s.protocol)
    order = list(dict.fromkeys(s.measure))
    return s.pivot(index="measure", columns="column", values="cell").reindex(index=order,
                                                                              columns=list(dict.fromkeys(s.column)))


def audit_json(result: Any, timings: bool = True) -> dict[str, Any]:
    """Everything the report states, as plain data (``timings=False``: without wall-clock seconds, so
    that a re-run on the same numbers gives the same file)."""
    return _finite({
        "protocol": result.protocol, "preset": result.preset.to_dict(), "models": result.models,
        "images": {"count": len(result.images), "labelled": result.images.labelled, "left_out": result.images.bad},
        "summary": result.summary.to_dict(orient="records"),
        "comparisons": result.comparisons.to_dict(orient="records"),
        "periodicity": result.periodicity.to_dict(orient="records"),
        "layers": result.layers.to_dict(orient="records"),
        "precision_agreement": result.amp, **({"seconds": result.seconds} if timings else {}),
    })


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return base64.b64encode(buffer.getvalue()).decode()


def _table(frame: pd.DataFrame, **kwargs: Any) -> str:
    return frame.to_html(border=0, classes="t", float_format=lambda v: f"{v:.4g}", na_rep="n/a", **kwargs)


def audit_html(result: Any, figures: Mapping[str, Any], title: str = "Shift audit") -> str:
    """The report as one HTML page (figures inlined as base64 PNG)."""
    esc = html.escape
    protocol = "".join(f"<tr><th>{esc(k)}</th><td>{esc(json.dumps(v) if not isinstance(v, str) else v)}</td></tr>"
                       for k, v in result.protocol.items())
    models = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in result.models.items())
    bad = "".join(f"<li>{esc(f)}: {esc(why)}</li>" for f, why in result.images.bad) or "<li>none</li>"
    comparisons = result.comparisons[result.comparisons.clear] if not result.comparisons.empty else result.comparisons
    amp = pd.DataFrame(result.amp).T if result.amp else pd.DataFrame({"amp": ["off (float32)"]})
    parts = [
        f"<h1>{esc(title)}</h1>",
        f"<p>{len(result.images)} images ({'labelled' if result.images.labelled else 'label-free'}), "
        f"preset <b>{esc(result.preset.name)}</b>.</p>",
        "<h2>How every number was measured</h2>", f"<table class='t'>{protocol}</table>",
        "<h2>Models</h2>", f"<table class='t'>{models}</table>",
        "<h2>Summary (95% bootstrap intervals over images)</h2>", _table(summary_table(result)),
        "<h2>Paired comparisons whose interval excludes 0</h2>", _table(comparisons, index=False),
        "<h2>Energy of the output over the line at the predicted periods</h2>", _table(result.periodicity, index=False),
        "<h2>Precision</h2>", _table(amp),
        "<h2>Files left out</h2>", f"<ul>{bad}</ul>",
    ]
    parts += [f"<h2>{esc(name)}</h2><img src='data:image/png;base64,{_png(fig)}'/>" for name, fig in figures.items()]
    style = ("body{font-family:sans-serif;max-width:1100px;margin:auto}table.t{border-collapse:collapse;font-size:12px}"
             ".t td,.t th{border-bottom:1px solid #ddd;padding:2px 6px;text-align:left}img{max-width:100%}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(title)}</title><style>{style}</style>"
            f"</head><body>{''.join(parts)}</body></html>")


def write_report(result: Any, out_dir: Path | str, figures: Mapping[str, Any],
                 title: str = "Shift audit") -> dict[str, Path]:
    """Write ``report.html``, ``audit.json`` and ``per_image.csv`` into ``out_dir``; return their paths."""
    out = Path(out_dir)
    paths = {
        "html": cache.atomic_write_bytes(out / "report.html", audit_html(result, figures, title).encode()),
        "json": cache.atomic_write_bytes(out / "audit.json",
                                         json.dumps(audit_json(result), indent=1, allow_nan=False).encode()),
        "csv": cache.atomic_write_bytes(out / "per_image.csv", result.per_image.to_csv(index=False).encode()),
    }
    return paths

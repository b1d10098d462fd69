"""The rotation and scaling study of notebook 06: protocols, tables, examples.
"""

from __future__ import annotations

from typing import Any, Sequence

import pandas as pd
import torch

from ..shifts import geometric
from ..workbook import cache

# ============================================================================ notebook 06 · rotation and scaling


def rotscale_run_protocol(ms: Any, images: torch.Tensor, labels: torch.Tensor, angles: Sequence[float],
                          scales: Sequence[float], *, batch_size: int, device: str | torch.device,
                          resize: str = "tf") -> dict[str, list]:
    """Accuracy and loss of every head of every trunk under each rotation (degrees) and scale factor.

    Args:
        ms: a ``modelset.ModelSet``; images: ``(N, 3, H, W)`` in [0, 1]; labels: ``(N,)``.
        resize: ``geometric.rescale``'s resize rule.
    Returns:
        ``geometric.evaluate_transforms`` rows with ``head`` = ``"<trunk>/<head>"``, as a dict of lists
        (``pd.DataFrame(...)`` gives the table; the dict is what ``cache.cached`` stores).
    """
    tables = []
    for trunk_name in ms.trunks:
        predict = ms.predictor(trunk_name)
        for kind, values in (("rotation", angles), ("scale", scales)):
            t = geometric.evaluate_transforms(predict, images, labels, kind, values, batch_size=batch_size,
                                               device=device, progress=True, resize=resize)
            t["head"] = trunk_name + "/" + t["head"]
            tables.append(t)
    return pd.concat(tables, ignore_index=True).to_dict("list")


def rotscale_table(ms: Any, images: torch.Tensor, labels: torch.Tensor, angles: Sequence[float],
                   scales: Sequence[float], *, device: str | torch.device, resize: str = "tf") -> pd.DataFrame:
    """:func:`rotscale_run_protocol`, cached by the profile, the protocol and the models' weights."""
    config = {"profile": ms.profile.to_dict(), "n": int(images.shape[0]), "angles": list(angles),
              "scales": list(scales), "resize": resize, "models": ms.names(),
              "weights": {t: cache.state_fingerprint(ms.trunks[t], *ms.heads[t].values()) for t in ms.trunks}}
    return pd.DataFrame(cache.cached("rotation_scaling", config, lambda: rotscale_run_protocol(
        ms, images, labels, angles, scales, batch_size=ms.profile.sweep_batch, device=device, resize=resize)))


def rotscale_examples(image: torch.Tensor, angles: Sequence[float], scales: Sequence[float],
                      resize: str = "tf") -> list[tuple[str, torch.Tensor]]:
    """``(title, (1, 3, H, W) image)`` for ``image`` (``(1, 3, H, W)``) under each angle, then each scale."""
    panels = [(f"rotation {a:g} deg", geometric.rotate(image, a)) for a in angles]
    return panels + [(f"scale {s:g}", geometric.rescale(image, s, resize)) for s in scales]


def rotscale_rescale_zero_canvas(x: torch.Tensor, factor: float, resize: str = "tf") -> torch.Tensor:
    """``geometric.rescale`` with everything outside the centre copy set to zero when ``factor < 1``
    (a zero canvas instead of mirrored copies); ``(N, C, H, W)`` in, same shape out."""
    out = geometric.rescale(x, factor, resize)
    top, left, nh, nw = geometric.scaled_box(tuple(x.shape[-2:]), factor, resize)
    mask = torch.zeros_like(out)
    mask[..., top:top + nh, left:left + nw] = 1
    return out * mask if factor < 1 else out


def rotscale_zero_canvas_table(predict: Any, images: torch.Tensor, labels: torch.Tensor, scales: Sequence[float],
                               device: str | torch.device, resize: str = "tf") -> pd.DataFrame:
    """Accuracy of each head of ``predict`` (``images -> {head: logits (B, K)}``) on zero-canvas
    rescaled images (:func:`rotscale_rescale_zero_canvas`): rows ``scale``, ``head``, ``accuracy_zero_canvas``."""
    rows = []
    for s in scales:
        for name, logits in predict(rotscale_rescale_zero_canvas(images.to(device), s, resize)).items():
            rows.append({"scale": s, "head": name,
                         "accuracy_zero_canvas": float((logits.argmax(1).cpu() == labels).float().mean())})
    return pd.DataFrame(rows)

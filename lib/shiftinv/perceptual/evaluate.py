"""Evaluating perceptual metrics on image pairs and stimuli: scores, tables, SRCC under shifts.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from ..workbook import runtime
from .metrics import PerceptualMetric, check_pair
from .profiles import PerceptualProfile


def _device_of(metrics: Mapping[str, nn.Module]) -> torch.device:
    for m in metrics.values():
        if isinstance(m, PerceptualMetric):
            return m.weight.device
    return torch.device("cpu")


@torch.no_grad()
def evaluate_pairs(metrics: Mapping[str, nn.Module], batches: Iterable[tuple[Tensor, Tensor]],
                   keep_features: bool = False) -> tuple[pd.DataFrame, dict[str, Tensor]]:
    """Run every metric on every pair; metrics sharing a trunk run that trunk once per batch.

    Args:
        metrics: ``{name: metric}`` (learned metrics or :class:`ClassicalMetric`).
        batches: iterable of ``(x0, x1)`` (N, 3, H, W) in [0, 1].
        keep_features: also return each learned metric's (n_pairs, D) pair features.

    Returns:
        ``(values, features)``: a DataFrame with one column per metric (one row per pair, in
        order), and ``{name: (n_pairs, D)}`` on the CPU (empty unless ``keep_features``). Learned
        metrics run on the device of their weights; classical ones on the CPU.
    """
    device = _device_of(metrics)
    by_trunk = _trunk_groups(metrics)
    values: dict[str, list[Tensor]] = {n: [] for n in metrics}
    feats: dict[str, list[Tensor]] = {n: [] for n in metrics if isinstance(metrics[n], PerceptualMetric)}
    for x0, x1 in batches:
        check_pair(x0, x1)
        d0, d1 = x0.to(device), x1.to(device)
        for names in by_trunk.values():
            trunk, taps = metrics[names[0]].trunk, _group_taps(metrics, names)
            t0, t1 = trunk(d0, taps), trunk(d1, taps)
            for n in names:
                f = metrics[n].features_from_taps(t0, t1)
                values[n].append(metrics[n].distance_from_features(f).cpu())
                if keep_features:
                    feats[n].append(f.cpu())
        for n, m in metrics.items():
            if not isinstance(m, PerceptualMetric):
                values[n].append(m(x0, x1).float())
    table = pd.DataFrame({n: torch.cat(v).cpu().numpy() if v else np.array([]) for n, v in values.items()})
    out_feats = {n: torch.cat(v) for n, v in feats.items() if v} if keep_features else {}
    return table, out_feats


def metric_kinds(metrics: Mapping[str, nn.Module]) -> dict[str, str]:
    """``{name: "distance" | "similarity"}`` for a dict of metrics."""
    return {n: getattr(m, "metric_kind", "distance") for n, m in metrics.items()}


def _trunk_groups(metrics: Mapping[str, nn.Module]) -> dict[int, list[str]]:
    """``{id(trunk): [names of the learned metrics on it]}``: each trunk runs once per batch."""
    by_trunk: dict[int, list[str]] = {}
    for name, m in metrics.items():
        if isinstance(m, PerceptualMetric):
            by_trunk.setdefault(id(m.trunk), []).append(name)
    return by_trunk


def _group_taps(metrics: Mapping[str, nn.Module], names: Sequence[str]) -> list[str]:
    """The union of the taps of ``names`` (metrics sharing one trunk), sorted."""
    return sorted({t for n in names for t in metrics[n].taps})


def _scatter_rows(chunks: Sequence[tuple[np.ndarray, Tensor]], n_rows: int) -> Tensor:
    """Reassemble ``[(row indices, (k, D) features)]`` into one (n_rows, D) tensor."""
    full = torch.zeros(n_rows, chunks[0][1].shape[1])
    for rows, f in chunks:
        full[torch.as_tensor(rows, dtype=torch.long)] = f
    return full


def _score_chunk(metrics: Mapping[str, nn.Module], groups: Mapping[int, list[str]], ref: Tensor,
                 ref_taps: Mapping[int, dict[str, Tensor]], x1: Tensor, chunk: np.ndarray, device: torch.device,
                 values: dict[str, np.ndarray], feats: dict[str, list] | None) -> None:
    """Score one reference (1, 3, H, W) against a chunk of distorted images x1 (k, 3, H, W).

    Writes ``values[name][chunk]`` for every metric (learned ones from the reference's stored taps,
    classical ones on the CPU) and appends ``(chunk, (k, D) features)`` to ``feats`` when given.
    """
    x0 = ref.expand(len(chunk), -1, -1, -1)
    x1_dev = x1.to(device)
    for key, names in groups.items():
        t1 = metrics[names[0]].trunk(x1_dev, _group_taps(metrics, names))
        t0 = {t: v.expand(len(chunk), -1, -1, -1) for t, v in ref_taps[key].items()}
        for n in names:
            f = metrics[n].features_from_taps(t0, t1)
            values[n][chunk] = metrics[n].distance_from_features(f).cpu().numpy()
            if feats is not None:
                feats[n].append((chunk, f.cpu()))
    for n, m in metrics.items():
        if not isinstance(m, PerceptualMetric):
            values[n][chunk] = m(x0, x1.cpu()).numpy()


@torch.no_grad()
def evaluate_stimuli(metrics: Mapping[str, nn.Module], refs: Tensor, images: Tensor, table: pd.DataFrame,
                     batch_size: int = 32, transform: Callable[[Tensor], Tensor] | None = None,
                     keep_features: bool = False, progress: str | None = None
                     ) -> tuple[pd.DataFrame, dict[str, Tensor]]:
    """Like :func:`evaluate_pairs` for in-memory stimuli, computing each reference's taps once.

    Args:
        refs: (R, 3, H, W) references; images: (M, 3, H, W) distorted images, both in [0, 1] (on
            the CPU; batches move to the device of the learned metrics).
        table: rows with ``ref_index`` (into ``refs``) and ``index`` (into ``images``).
        transform: optional function applied to each batch of distorted images (e.g. a shift).
        progress: label of a progress bar over the pairs (None: no bar).

    Returns:
        ``(table + one column per metric, {name: (rows, D)} pair features on the CPU if keep_features)``.
    """
    device = _device_of(metrics)
    groups = _trunk_groups(metrics)
    bar = runtime.progress(total=len(table), desc=progress, unit="pair") if progress else None
    values: dict[str, np.ndarray] = {n: np.full(len(table), np.nan) for n in metrics}
    feats: dict[str, list[tuple[np.ndarray, Tensor]]] = {n: [] for n in metrics}
    rows, ref_idx, img_idx = np.arange(len(table)), table["ref_index"].to_numpy(), table["index"].to_numpy()
    for r in np.unique(ref_idx):
        sel = rows[ref_idx == r]
        ref = refs[int(r):int(r) + 1]
        ref_dev = ref.to(device)
        ref_taps = {key: metrics[names[0]].trunk(ref_dev, _group_taps(metrics, names)) for key, names in groups.items()}
        for start in range(0, len(sel), batch_size):
            chunk = sel[start:start + batch_size]
            x1 = images[torch.tensor(img_idx[chunk], dtype=torch.long)]
            if transform is not None:
                x1 = transform(x1)
            _score_chunk(metrics, groups, ref, ref_taps, x1, chunk, device, values, feats if keep_features else None)
            if bar is not None:
                bar.update(len(chunk))
    if bar is not None:
        bar.close()
    out = table.copy()
    for n in metrics:
        out[n] = values[n]
    features = {n: _scatter_rows(parts, len(table)) for n, parts in feats.items() if parts} if keep_features else {}
    return out, features


def evaluate_table(metrics: Mapping[str, nn.Module], table: pd.DataFrame, size: int | None = None,
                   batch_size: int = 32, keep_features: bool = False, progress: str | None = None
                   ) -> tuple[pd.DataFrame, dict[str, Tensor]]:
    """Score a dataset's pair table streamed from disk, one reference (and its pairs) at a time.

    Images are read with :func:`shiftinv.perceptual.images.read_for_metrics` (``size`` 0/None: native frame
    cropped to multiples of 32; else the central square resized to ``size``); each reference's
    taps are computed once (:func:`evaluate_stimuli`). ``progress``: label of a bar over references.

    Returns ``(table (index reset) + one column per metric, {name: (rows, D)} if keep_features)``.
    """
    from . import images as perceptual_images

    table = table.reset_index(drop=True)
    parts, feats = [], {}
    groups = list(table.groupby("ref_path", sort=False).indices.items())
    for ref_path, rows in (runtime.progress(groups, desc=progress, unit="ref") if progress else groups):
        sub = table.iloc[rows].copy()
        ref = perceptual_images.read_for_metrics(ref_path, size)[None]
        images = torch.stack([perceptual_images.read_for_metrics(p, size) for p in sub["dist_path"]])
        sub["ref_index"], sub["index"] = 0, np.arange(len(sub))
        vals, f = evaluate_stimuli(metrics, ref, images, sub, batch_size, keep_features=keep_features)
        parts.append(vals.assign(_row=rows))
        for n, v in f.items():
            feats.setdefault(n, []).append((rows, v))
    out = pd.concat(parts).sort_values("_row").drop(columns=["_row", "ref_index", "index"]).reset_index(drop=True)
    return out, {n: _scatter_rows(chunks, len(table)) for n, chunks in feats.items()}


def srcc_under_shifts(metrics: Mapping[str, nn.Module], refs: Tensor, images: Tensor, table: pd.DataFrame,
                      shifts: Sequence[int], score_col: str = "score", score_kind: str = "quality",
                      mode: str = "mosaic", batch_size: int = 32,
                      baseline: pd.DataFrame | None = None, progress: bool = False
                      ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """How a metric's agreement degrades when the *distorted* image is shifted by ``s`` pixels.

    For each shift ``s`` (horizontal and vertical, ``(s, s)``, :func:`shiftinv.shifts.translation.translate`
    with ``mode``) every pair (ref, shift(dist)) is scored; then per metric the sign-corrected
    SRCC with ``score_col`` over all pairs and, when the table has ``level`` and ``distortion``,
    the mean within-(ref, distortion) SRCC with the level (monotonicity).

    Args:
        baseline: the :func:`evaluate_stimuli` output at shift 0, reused instead of recomputed.
        progress: a progress bar per shift.

    Returns:
        ``(summary, values)``: summary rows ``shift, metric, srcc, monotonicity, mean_distance``;
        values = the per-pair table with a ``shift`` column, for all shifts.
    """
    from ..shifts import translation
    from . import stats

    kinds = metric_kinds(metrics)
    summary, all_values = [], []
    for s in shifts:
        if s == 0 and baseline is not None:
            values = table.copy()
            for name in metrics:
                values[name] = baseline[name].to_numpy()
        else:
            fn = (lambda x, s=s: translation.translate(x, s, s, mode=mode)) if s else None
            values, _ = evaluate_stimuli(metrics, refs, images, table, batch_size, transform=fn,
                                         progress=f"shift {s} px" if progress else None)
        values["shift"] = s
        all_values.append(values)
        for name, kind in kinds.items():
            v = values[name].replace([np.inf, -np.inf], np.nan)
            ok = v.notna()
            row = {"shift": s, "metric": name, "mean_distance": float(v[ok].mean()),
                   "srcc": stats.agreement_sign(kind, score_kind) * stats.srcc(v[ok], values.loc[ok, score_col])}
            if {"level", "distortion"} <= set(values.columns):
                mono = stats.monotonicity(values[ok], name, "level", ("ref", "distortion"), kind)
                row["monotonicity"] = float(mono["srcc_level"].mean())
            summary.append(row)
    return pd.DataFrame(summary), pd.concat(all_values, ignore_index=True)


# ----------------------------------------------------------------------------------------------
# Notebook 10: metrics under shifts of the distorted image


def shift_pairs(profile: PerceptualProfile, generator: torch.Generator, kadid_dir: str = ""
                ) -> tuple[Tensor, Tensor, pd.DataFrame, str]:
    """Notebook 10's pairs: ``(refs (R,3,H,W), images (M,3,H,W), table with "score", score kind)``.

    Embedded data: ``n_refs_shift`` references with four KADID-style distortions (two in smoke runs),
    the pseudo-score ``score`` = the level (a distortion). Dataset folders: the first ``n_refs_shift``
    KADID-10k references, decoded once, their quality scores; ``image_size`` 0 keeps native frames.
    """
    from . import iqa, stimuli

    if not profile.human_scores:
        refs, names = stimuli.demo_references(profile.image_size or profile.embedded_size,
                                          stimuli.DEMO_IMAGES[:profile.n_refs_shift])
        distortions = ["gaussian_blur", "white_noise", "jpeg", "contrast_change"][: (2 if profile.smoke else 4)]
        images, table = stimuli.make_kadid_style(refs, names, generator, distortions)
        table["score"] = table["level"].astype(float)  # pseudo-score: the level (higher = more damage)
        return refs, images, table, "distortion"
    kadid = iqa.load_kadid10k(kadid_dir)
    kadid = kadid[kadid["ref"].isin(sorted(kadid["ref"].unique())[:profile.n_refs_shift])].reset_index(drop=True)
    kadid = iqa.decode_check_table(kadid, "KADID-10k", "Re-extract it from the archive.")
    kadid = iqa.first_pairs_per_ref(kadid, profile.max_pairs_per_ref)  # smoke runs: the first pairs
    refs, images, table = iqa.load_into_memory(kadid, profile.image_size, square=bool(profile.image_size))
    return refs, images, table, "quality"

"""The IQA evaluation of notebook 08: pair sets, hygiene, scores, train/test splits by reference,
metric weights trained on the splits, the results table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from ..workbook import cache
from .evaluate import evaluate_stimuli, evaluate_table
from .profiles import PerceptualProfile

# ----------------------------------------------------------------------------------------------
# Notebook 08: one evaluation pipeline, parameterised by the profile


@dataclass
class PairSet:
    """A pair table (rows: ``ref``, ``dist_path``/``index``, ``level`` or ``score``, ...) and, for
    in-memory stimuli, its images: ``refs`` (R, 3, H, W) and ``images`` (M, 3, H, W) in [0, 1];
    ``None`` when the images are streamed from disk (dataset folders)."""

    table: pd.DataFrame
    refs: Tensor | None = None
    images: Tensor | None = None


@dataclass
class IQASplits:
    """Roles of notebook 08's scored pair sets: weights are trained on ``train`` (features, targets),
    selected on ``select``, and every metric is evaluated on ``test`` (a key of the scored sets);
    ``score_col`` / ``score_kind``: the target column and whether it is a quality or a distortion."""

    train: tuple[dict[str, Tensor], Tensor]
    select: tuple[dict[str, Tensor], Tensor]
    test: str
    score_col: str
    score_kind: str


def iqa_pair_sets(profile: PerceptualProfile, generator: torch.Generator, kadid_dir: str = "",
                  tid2008_dir: str = "", tid2013_dir: str = "") -> dict[str, PairSet]:
    """Notebook 08's pairs for ``profile``.

    Embedded data: ``{"embedded": ...}``, ``n_refs`` scikit-image references with the KADID-style
    distortions (the first three in smoke runs) at five levels, drawn from ``generator``. Dataset
    folders: ``{"tid08", "tid13", "kadid"}`` pair tables, every image decoded once (a corrupt file is
    named), smoke runs keeping the first ``max_pairs_per_ref`` pairs of each reference.
    """
    from . import iqa, stimuli

    if not profile.human_scores:
        refs, names = stimuli.demo_references(profile.image_size or profile.embedded_size, stimuli.DEMO_IMAGES[:profile.n_refs])
        distortions = list(stimuli.KADID_STYLE)[: (3 if profile.smoke else 8)]
        images, table = stimuli.make_kadid_style(refs, names, generator, distortions)
        return {"embedded": PairSet(table, refs, images)}
    tables = {"tid08": iqa.load_tid(tid2008_dir, "2008", decode=True),
              "tid13": iqa.load_tid(tid2013_dir, "2013", decode=True),
              "kadid": iqa.load_kadid10k(kadid_dir, decode=True)}
    return {k: PairSet(iqa.first_pairs_per_ref(t, profile.max_pairs_per_ref)) for k, t in tables.items()}


def describe_pair_sets(sets: Mapping[str, PairSet]) -> str:
    """One line: how many pairs each set holds (and, for embedded stimuli, how they were made)."""
    if "embedded" in sets:
        t = sets["embedded"].table
        return (f"{len(t)} pairs: {t['ref'].nunique()} references x {t['distortion'].nunique()} distortions x "
                f"{t['level'].nunique()} levels")
    return str({name: len(s.table) for name, s in sets.items()})


def hygiene_report(sets: Mapping[str, PairSet]) -> str:
    """Dataset checks: KADID-10k pairs identical to their reference, and references shared (by pixel
    hash) between the training (TID2008), selection (TID2013) and evaluation (KADID-10k) sets."""
    from . import iqa

    if "embedded" in sets:
        return "synthetic pairs, nothing to check"
    tid08, tid13, kadid = (sets[k].table for k in ("tid08", "tid13", "kadid"))
    identical = iqa.find_identical_pairs(kadid)
    shared_tid, shared_kadid = iqa.shared_references(tid08, tid13), iqa.shared_references(tid08, kadid)
    return (f"KADID-10k pairs identical to their reference: {len(identical)}\n"
            f"{identical[['dist', 'distortion', 'level', 'score']].head(10)}\n"
            f"references shared TID2008/TID2013: {len(shared_tid)} of {tid08['ref'].nunique()}; "
            f"TID2008/KADID-10k: {len(shared_kadid)}")


def score_pair_sets(zoo: Mapping[str, nn.Module], sets: Mapping[str, PairSet], profile: PerceptualProfile
                    ) -> dict[str, tuple[pd.DataFrame, dict[str, Tensor]]]:
    """Score every pair of every set with every metric, keeping the (rows, D) pair features.

    In-memory sets: :func:`evaluate_stimuli`; sets on disk: :func:`evaluate_table`, one reference
    at a time (KADID-10k does not fit in memory as tensors) at ``profile.image_size``.
    """
    scored = {}
    for name, s in sets.items():
        if s.images is not None:
            scored[name] = evaluate_stimuli(zoo, s.refs, s.images, s.table, keep_features=True,
                                            progress="scoring pairs")
        else:
            scored[name] = evaluate_table(zoo, s.table, profile.image_size, profile.batch_size, keep_features=True,
                                          progress=f"scoring {name}")
    return scored


def trainable_metrics(zoo: Mapping[str, nn.Module]) -> list[str]:
    """The metrics whose weights notebook 08 trains: the baselines and the GAP metrics."""
    return [n for n in zoo if n.split("/")[0] in ("baseline", "gap")]


def iqa_splits(scored: Mapping[str, tuple[pd.DataFrame, dict[str, Tensor]]], names: Sequence[str],
               profile: PerceptualProfile) -> IQASplits:
    """Training / selection / evaluation roles of the scored sets, for the metrics ``names``.

    Embedded data (no human scores): train on the pseudo-score ``level`` of the first half of the
    references, select on the rest, evaluate on all pairs. Dataset folders: train on TID2008's
    scores, select on TID2013's, evaluate on KADID-10k.
    """
    if "embedded" in scored:
        table, feats = scored["embedded"]
        half = (table["ref_index"] < max(1, profile.n_refs // 2)).to_numpy()
        train_rows, val_rows = np.flatnonzero(half), np.flatnonzero(~half)
        targets = torch.tensor(table["level"].to_numpy(), dtype=torch.float32)
        return IQASplits(({n: feats[n][train_rows] for n in names}, targets[train_rows]),
                         ({n: feats[n][val_rows] for n in names}, targets[val_rows]),
                         "embedded", "level", "distortion")  # pseudo-score: higher level = more damage
    mos08 = torch.tensor(scored["tid08"][0]["score"].to_numpy(), dtype=torch.float32)
    mos13 = torch.tensor(scored["tid13"][0]["score"].to_numpy(), dtype=torch.float32)
    return IQASplits((scored["tid08"][1], mos08), (scored["tid13"][1], mos13), "kadid", "score", "quality")


def train_metric_weights(zoo: Mapping[str, nn.Module], names: Sequence[str], splits: IQASplits,
                         profile: PerceptualProfile) -> pd.DataFrame:
    """Train the weights of ``names`` with the profile's recipe (:func:`metric_training.recipe_config`),
    checkpointed under a key of the profile, metric, recipe and backbone (train or load).

    Returns the training history of every metric (rows ``epoch, train_loss, val_srcc, ..., metric``).
    """
    from . import metric_training

    histories = []
    for name in names:
        (f_tr, y_tr), (f_val, y_val) = (splits.train[0][name], splits.train[1]), (splits.select[0][name], splits.select[1])
        cfg = metric_training.recipe_config(profile.recipe, zoo[name], epochs=profile.epochs or None, lr=profile.lr,
                                         seed=profile.seed, score_kind=splits.score_kind)
        ckpt = cache.cache_path("metric_weights", {"profile": profile.name, "metric": name, "size": profile.image_size,
                                                   "smoke": profile.smoke, "seed": profile.seed, "n": len(y_tr),
                                                   "weights": profile.backbone_label(), "config": str(cfg)})
        hist = metric_training.train_metric(zoo[name], f_tr, y_tr, cfg, checkpoint=ckpt, val_features=f_val,
                                         val_scores=y_val, val_score_kind=splits.score_kind)
        histories.append(hist.assign(metric=name))
    return pd.concat(histories, ignore_index=True)


@torch.no_grad()
def rescore(zoo: Mapping[str, nn.Module], values: pd.DataFrame, features: Mapping[str, Tensor],
            names: Sequence[str]) -> pd.DataFrame:
    """Recompute the columns ``names`` of ``values`` from the stored (rows, D) pair features with
    the metrics' current weights (in place; returns ``values``)."""
    for name in names:
        values[name] = zoo[name].distance_from_features(features[name]).cpu().numpy()
    return values


def iqa_results(values: pd.DataFrame, kinds: Mapping[str, str], splits: IQASplits, generator: torch.Generator,
                n_boot: int = 1000) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Notebook 08's results on the evaluation pairs: ``(per-metric table, per-distortion table)``.

    No human scores (embedded): monotonicity with the level, sorted, and per distortion
    (:func:`stats.monotonicity_summary`). Human scores: :func:`stats.evaluation_table` with the
    quality scores, sorted by SRCC, and ``None``.
    """
    from . import stats

    if splits.test == "embedded":
        summary, per_distortion = stats.monotonicity_summary(values, dict(kinds), generator, n_boot=n_boot)
        return summary.sort_values("monotonicity"), per_distortion
    result = stats.evaluation_table(values, dict(kinds), "quality", generator, n_boot=n_boot)
    return result.sort_values("srcc"), None

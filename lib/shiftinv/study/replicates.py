"""Reruns of a profile's trunk training: the model sets whose plain trunk was retrained with other seeds.

Where a profile trains its trunk (``demo``), what a rerun changes is mostly that training: float
rounding differs between machines (AVX2 and AVX-512 sum differently) and training amplifies it, so
the same command on another CPU gives another trunk. The intervals of the workbook's claims must
cover that (:mod:`shiftinv.study.intervals`): :func:`trunk_replicates` trains the plain trunk again
with each of ``profile.trunk_seeds`` (initial weights and batch order), on the same data, with every
head seed on top, so a claim's interval pools runs over trunk seeds, head seeds and test images.
Profiles with a pretrained, frozen trunk (``natural``, ``cifar``, ``paper``) have no trunk seeds:
their runs are the head seeds.
"""

from __future__ import annotations

from typing import Sequence

from .modelset import ModelSet, train_or_load_models


def trunk_replicates(ms: ModelSet) -> list[ModelSet]:
    """``[ms, *one model set per trunk seed]``: the plain (max-pool) variant with its heads, its trunk
    retrained from scratch with seed ``t`` for each ``t`` of ``ms.profile.trunk_seeds`` (cached like
    every training run); ``[ms]`` when the profile has no trunk seeds or a pretrained trunk."""
    p = ms.profile
    if not p.trunk_seeds or not p.train_trunk:
        return [ms]
    plain = p.variants[0]
    return [ms] + [train_or_load_models(p.replace(trunk_seed=int(t), variants=(plain,)), ms.splits)
                   for t in p.trunk_seeds]


def run_names(model_sets: Sequence[ModelSet], heads: Sequence[str]) -> dict[str, list[str]]:
    """``{head: run names}`` of ``heads`` (``"<trunk>/<head>"``) as :meth:`ModelSet.run_names` names them (the
    same in every replicate: a replicate's runs live in its own sweep)."""
    return {h: model_sets[0].run_names(h) for h in heads}

"""The RAID evaluation of notebook 09: the stimuli (real, approximated or embedded), both anchor
protocols, SRCC per transform.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..workbook import paths
from .profiles import PerceptualProfile

# ----------------------------------------------------------------------------------------------
# Notebook 09: RAID


def anchor_protocols(profile: PerceptualProfile, anchors: str = "") -> tuple[str, ...]:
    """RAID anchor protocols to report: ``""`` the profile's, ``"both"``, ``"excluded"`` or ``"included"``."""
    protocols = {"": profile.anchor_protocols, "both": ("excluded", "included")}.get(anchors, (anchors,))
    if not set(protocols) <= {"excluded", "included"}:
        raise ValueError(f"ANCHORS must be excluded, included or both, got {anchors!r}")
    return tuple(protocols)


def anchor_rows(values: pd.DataFrame, protocol: str) -> np.ndarray:
    """Boolean rows of a RAID table kept by ``protocol`` (``excluded``: level_01 anchors left out)."""
    return (values["level"] > 1 if protocol == "excluded" else values["level"] >= 1).to_numpy()


def raid_inputs(profile: PerceptualProfile, kodak_dir: str = "", raid_dir: str = "") -> tuple[str, str, Path]:
    """Where notebook 09's stimuli come from: ``(source, Kodak folder, RAID responses CSV)``.

    ``source`` is the profile's ``raid_source`` (``embedded`` for demo/cifar, ``raid-approx`` for
    natural, ``raid`` for paper, or what ``RAID_SOURCE`` names), never changed here: its data are
    checked now (:func:`shiftinv.perceptual.iqa.require_raid_source`), so missing data is an error
    naming the folder, the files and where to get them before anything is computed. ``kodak_dir``
    empty: ``<data>/kodak``; the responses are ``<data>/raid/responses.csv``; ``raid_dir``: RAID's folder.
    """
    from . import iqa

    shared = paths.data_dir()
    kodak = kodak_dir or str(shared / "kodak")
    responses_csv = shared / "raid" / "responses.csv"
    source = iqa.require_raid_source(profile.raid_source, raid_dir, kodak, responses_csv, n_images=profile.n_images)
    return source, kodak, responses_csv


def raid_stimuli(source: str, profile: PerceptualProfile, generator: torch.Generator, raid_dir: str = "",
                 kodak_dir: str = "", responses_csv: Path | str = "") -> tuple[Tensor, Tensor, pd.DataFrame, bool]:
    """RAID pairs, anchors included: ``(refs (R,3,H,W), images (M,3,H,W), table, human responses?)``.

    ``raid``: the RAID folder at ``profile.image_size`` (0: native, cropped to a multiple of 32;
    smoke runs keep the first levels of each image and transform). ``raid-approx``: the Kodak images
    rebuilt with RAID-like transforms against the real responses. ``embedded``: scikit-image
    photographs, the same transforms, no responses. Rebuilt stimuli have side ``image_size``, or
    RAID's native side after the crop when it is 0.
    """
    from . import iqa, stimuli

    side = profile.image_size or 448  # RAID's native 454 px, centrally cropped to a multiple of 32
    if source == "raid":
        table = iqa.load_raid(raid_dir, include_anchors=True)
        table = iqa.first_pairs_per_ref(table, profile.max_pairs_per_ref, by=("ref", "transform"))
        refs, images, table = iqa.load_into_memory(table, profile.image_size,
                                                   how=f"Download RAID again ({iqa.RAID_URL}).")
        return refs, images, table, True
    if source == "raid-approx":
        refs, images, table = stimuli.raid_approx_table(responses_csv, kodak_dir, side, generator,
                                                    images=range(1, profile.n_images + 1), include_anchors=True)
        return refs, images, table, True
    refs, names = stimuli.demo_references(side, stimuli.DEMO_IMAGES[:profile.n_images])
    images, table = stimuli.make_raid_style(refs, names, generator, levels=range(1, 11))
    return refs, images, table, False


def raid_srcc_table(values: pd.DataFrame, kinds: Mapping[str, str], protocols: Sequence[str],
                    generator: torch.Generator, n_boot: int = 1000) -> pd.DataFrame:
    """SRCC of every metric with the RAID response per protocol and transform (and ``pooled``),
    95 % intervals over images (:func:`stats.evaluation_table`, drawn in that order)."""
    from . import iqa, stats

    rows = []
    for protocol in protocols:
        kept = values[anchor_rows(values, protocol)]
        for t, sub in [(t, kept[kept["transform"] == t]) for t in iqa.RAID_TRANSFORMS] + [("pooled", kept)]:
            ev = stats.evaluation_table(sub, dict(kinds), "distortion", generator, score_col="response", n_boot=n_boot,
                                        logistic=None)
            rows.append(ev.assign(transform=t, anchors=protocol))
    return pd.concat(rows, ignore_index=True)


def raid_metric_order(srcc_table: pd.DataFrame) -> list[str]:
    """Metrics sorted by their pooled SRCC under the table's first protocol (ascending)."""
    first = srcc_table[srcc_table["anchors"] == srcc_table["anchors"].iloc[0]]
    return list(first.pivot(index="metric", columns="transform", values="srcc")["pooled"].sort_values().index)

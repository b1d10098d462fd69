"""Profiles of the classification study (notebooks 03-06): data, backbone, sizes and recipe in one object.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    ``max_val``, ``max_test`` (seeded subsets; None = all).
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
    Misc: ``seed``, ``device`` (None = CUDA if available), ``feature_dtype`` ("float32" | "float16").
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
    seed: int = 666
    device: str | None = None
    feature_dtype: str = "float32"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "Profile":
        return dataclasses.replace(self, **changes)

    @property
    def num_classes(self) -> int:
        return {"digits": 10, "mnist_canvas": 10, "cifar10": 10, "imagenet160": 160}[self.dataset]

    def model_names(self) -> list[str]:
        """Every ``"<trunk>/<head>"`` in the set, in display order."""
        names = []
        for v in self.variants:
            names += [f"{v.name}/{h}" for h in v.heads]
            if v.name == "vgg" and self.aug_shift:
                names.append("vgg/flatten_aug")
        return names


PLAIN_HEADS = ("flatten", "final_gap", "multi_gap", "gap_flatten")


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
    # 64 px canvas pool5 is 2x2 and the effect does not show; see issue 5).
    "demo": (
        dict(dataset="digits", image_size=128, digit_size=24, width=1 / 16, batch_norm=True,
             train_trunk=True, trunk_head="flatten",
             trunk_train=training.TrainConfig(epochs=4, batch_size=32, lr=1e-3, patience=2, seed=0, channels_last=True),
             variants=_variants(("flatten", "multi_gap"), ("final_gap", "multi_gap"), aps_own=True),
             head_train=training.TrainConfig(epochs=30, batch_size=32, lr=1e-3, patience=6, seed=0),
             aug_copies=4, aug_shift=40, shift_mode="zero", shift_radius=40, grid_step=8, profile_step=2,
             diag_radius=8, n_sweep=64, n_aliasing=16, n_transform=32, sweep_batch=512, seed=0),
        dict(image_size=64, digit_size=16, width=1 / 32, max_train=120, max_val=40, max_test=40,
             trunk_train=training.TrainConfig(epochs=1, batch_size=32, patience=1, seed=0),
             head_train=training.TrainConfig(epochs=2, batch_size=32, patience=2, seed=0),
             aug_copies=2, aug_shift=8, shift_radius=8, grid_step=8, profile_step=4, diag_radius=2, n_sweep=12,
             n_aliasing=6, n_transform=8),
    ),
    # The authors' MNIST-canvas experiment on a real VGG-16 trained on natural images (the HED
    # trunk: Keras's ImageNet VGG-16 fine-tuned on BSDS500 edges), frozen, on a CPU. Their code:
    # 28 px digits centred on a zero canvas of 56/128/256 px, Flatten / multi-GAP -> Dense(10),
    # no L2, Adam, early stopping (patience 5 on val_loss), shifts of +-10/25/50 px at 1 px.
    # Here: the 128 px canvas, +-24 px, image counts that fit a 2-core CPU; BlurPool and APS
    # swap the pools of the same weights (no retraining).
    "natural": (
        dict(dataset="mnist_canvas", image_size=128, digit_size=28, max_train=600, max_val=200, max_test=200,
             width=1.0, batch_norm=False, weights="hed", train_trunk=False,
             variants=_variants(("flatten", "final_gap", "multi_gap"), ("flatten", "final_gap", "multi_gap")),
             head_train=training.TrainConfig(epochs=100, batch_size=32, lr=1e-3, patience=5, seed=666, eval_batch_size=64),
             l2_heads=(), aug_copies=1, aug_shift=24, shift_mode="zero", shift_radius=24, grid_step=8,
             profile_step=1, diag_radius=8, n_sweep=12, n_aliasing=6, n_transform=12, sweep_batch=64, seed=666),
        dict(image_size=64, max_train=60, max_val=20, max_test=20, aug_copies=1, aug_shift=4,
             head_train=training.TrainConfig(epochs=2, batch_size=16, patience=2, seed=666, eval_batch_size=32),
             shift_radius=4, grid_step=4, profile_step=2, diag_radius=2, n_sweep=4, n_aliasing=4,
             n_transform=4, sweep_batch=32),
    ),
    # CIFAR-10 upscaled 4x to 128 px (pool5 4x4), trained from scratch on a GPU.
    "cifar": (
        dict(dataset="cifar10", image_size=128, width=0.5, batch_norm=True, train_trunk=True,
             trunk_head="flatten",
             trunk_train=training.TrainConfig(epochs=15, batch_size=128, lr=1e-3, patience=4, seed=0, eval_batch_size=512),
             variants=_variants(("flatten", "multi_gap"), ("final_gap", "multi_gap"), aps_own=True),
             head_train=training.TrainConfig(epochs=60, batch_size=128, lr=1e-3, patience=8, seed=0, eval_batch_size=1024),
             aug_train=training.TrainConfig(epochs=12, batch_size=128, lr=1e-3, patience=4, seed=0, eval_batch_size=1024),
             aug_shift=32, shift_mode="mosaic", shift_radius=32, grid_step=2, profile_step=1,
             n_sweep=500, sweep_batch=1024, seed=0),
        dict(image_size=64, width=1 / 32, max_train=200, max_val=50, max_test=40,
             trunk_train=training.TrainConfig(epochs=1, batch_size=32, patience=1, seed=0),
             head_train=training.TrainConfig(epochs=2, batch_size=32, patience=2, seed=0),
             aug_shift=4, shift_radius=8, grid_step=8, profile_step=4, diag_radius=2, n_sweep=8),
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
             l2=1e-4, aug_shift=50, shift_mode="mosaic", shift_radius=50, grid_step=1, profile_step=1,
             n_sweep=1000, sweep_batch=512, seed=666, feature_dtype="float16"),
        dict(image_size=64, max_train=None, max_val=None, max_test=8,
             head_train=training.TrainConfig(epochs=2, batch_size=8, patience=2, seed=666, eval_batch_size=16),
             aug_shift=4, shift_radius=4, grid_step=4, profile_step=4, diag_radius=2, n_sweep=4, sweep_batch=16,
             feature_dtype="float32"),
    ),
}


def get_profile(name: str = "demo", smoke: bool = False, **overrides: Any) -> Profile:
    """The settings of profile ``name`` (``demo`` | ``natural`` | ``cifar`` | ``paper``); ``smoke`` shrinks them.

    The settings are the table ``_PROFILE_SETTINGS`` (with why each profile is as it is);
    ``overrides`` replace fields (e.g. ``data_root=...``, ``weights=...``, ``device="cpu"``).
    """
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {PROFILES}")
    settings, smoke_changes = _PROFILE_SETTINGS[name]
    p = Profile(name, smoke, **settings)
    if smoke:
        p = p.replace(**smoke_changes)
    return p.replace(**overrides) if overrides else p


def backbone_label(profile: Profile) -> str:
    """What the trunk is, for figures and data files: the weights' name, or how it was trained here."""
    if profile.weights:
        return pretrained.label(profile.weights)
    width = "full width" if profile.width == 1 else f"width {profile.width:g}"
    return f"VGG-16 ({width}{', batch norm' if profile.batch_norm else ''}) trained here on {profile.dataset}"


def profile_from_params(profile: str, smoke: bool, data_dir: str = "", weights: str = "",
                        device: str = "", overrides: str = "") -> Profile:
    """The profile a notebook's parameters cell asks for: ``data_dir`` (ImageNet / CIFAR / MNIST folder),
    ``weights`` (VGG-16 state dict path, torchvision enum name, or a :mod:`shiftinv.models.pretrained` name such
    as ``"hed"``), ``device`` ("" = automatic), ``overrides`` (profile fields, see :func:`parse_overrides`)."""
    changes: dict[str, Any] = {}
    if data_dir:
        changes["data_root"] = str(Path(data_dir).expanduser())
    if weights:
        changes["weights"] = str(Path(weights).expanduser()) if Path(weights).expanduser().exists() else weights
    if device:
        changes["device"] = device
    base = get_profile(profile, smoke)
    return base.replace(**changes, **parse_overrides(base, overrides))


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

"""Classification experiments: profiles, the model set (trunks + heads), and their sweeps.

Notebooks 03-06 share this module:

- :func:`get_profile` gives every setting of a profile (``demo``, ``cifar``, ``paper``) as a
  frozen :class:`Profile`; ``smoke=True`` shrinks everything for the test tier.
- :func:`load_data` reads the profile's dataset (:mod:`shiftinv.data`).
- :func:`train_or_load_models` trains (or loads from ``results/``) every trunk and head of the
  profile and returns a :class:`ModelSet`: ``trunks[name]`` and ``heads[name][head]``, the test
  split, and a summary table (accuracy, parameter counts, epochs, seconds).
- :func:`translation_sweep` runs the shift sweep (:func:`shiftinv.sweep.sweep_models`) over a
  profile's shift grid for the whole model set, cached and resumable.

The model set (names used in every figure, ``"<trunk>/<head>"``):

==================  =======================================================================
``vgg/flatten``      Flatten(pool5) -> linear (the baseline; the paper's 5.2M-parameter head)
``vgg/final_gap``    GAP(pool5) -> linear
``vgg/multi_gap``    GAP(pool1..pool5) concatenated -> linear (the paper's "online" head)
``vgg/gap_flatten``  multi GAP and Flatten(pool5) -> linear
``vgg/flatten_aug``  Flatten(pool5) trained with random shift augmentation (augmentation vs
                     architecture)
``blur/...``         the same trunk with BlurPool (max at stride 1, binomial blur stride 2)
``aps/...``          APS pooling + circular padding (exactly invariant to circular shifts)
==================  =======================================================================

The recipe is the paper's: one trunk, frozen, every head trained on trunk features computed
once (exact, because the trunk is frozen and there is no augmentation). In ``demo`` and ``cifar``
the plain trunk is first trained from scratch with a Flatten head (the role ImageNet pre-training
with FC layers plays in the paper); the BlurPool trunk reuses its conv weights with BatchNorm
statistics re-estimated on the training images (``variant_weights="shared"``), and the APS trunk is
trained from scratch too (``Variant.own_trunk``: measured on ``demo``, reused weights leave APS
heads at about 0.45 accuracy, BlurPool heads at 0.84-0.96). ``variant_weights="trained"`` trains
every trunk. In ``paper`` all trunks carry the ImageNet-pretrained VGG-16 conv weights.
``vgg/flatten_aug`` is trained on a fixed pool of shifted copies (``aug_copies``, features
computed once) on in-memory data, else with fresh shifts every batch through the trunk.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd
import torch
from torch import Tensor, nn

from . import data as data_mod
from . import models, shifts, train, utils
from . import weights as weights_io

__all__ = [
    "PROFILES",
    "Profile",
    "Variant",
    "ModelSet",
    "get_profile",
    "load_data",
    "train_or_load_models",
    "recalibrate_batchnorm",
    "translation_sweep",
    "sweep_shifts",
    "profile_from_params",
    "parse_overrides",
]

PROFILES: tuple[str, ...] = ("demo", "natural", "cifar", "paper")


@dataclass(frozen=True)
class Variant:
    """One trunk of the model set: its pooling, padding and the heads trained on it."""

    name: str
    pool: str = "max"  # models.POOLS
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
    :mod:`shiftinv.weights`), or a file path), ``train_trunk``,
    ``trunk_head`` (head used to train the trunk), ``trunk_train`` (TrainConfig).
    Heads: ``variants`` (trunks and their heads), ``variant_weights`` ("shared" | "trained"),
    ``head_train`` (TrainConfig), ``l2_heads`` (kinds trained with ``l2``), ``l2``,
    ``aug_shift`` (max shift, px, of the ``flatten_aug`` head; 0 = no such head), ``aug_train``
    (its TrainConfig, None = ``head_train``: it runs the trunk every batch, so it may get fewer epochs),
    ``aug_copies`` (> 0: instead, a fixed pool of that many randomly shifted copies of every
    training image, whose features are computed once; in-memory datasets only).
    Sweeps: ``shift_mode`` (shifts.MODES), ``shift_radius``, ``grid_step`` (2-D maps),
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
    trunk_train: train.TrainConfig = field(default_factory=train.TrainConfig)
    variants: tuple[Variant, ...] = ()
    variant_weights: str = "shared"
    head_train: train.TrainConfig = field(default_factory=train.TrainConfig)
    aug_train: train.TrainConfig | None = None
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
             trunk_train=train.TrainConfig(epochs=4, batch_size=32, lr=1e-3, patience=2, seed=0, channels_last=True),
             variants=_variants(("flatten", "multi_gap"), ("final_gap", "multi_gap"), aps_own=True),
             head_train=train.TrainConfig(epochs=30, batch_size=32, lr=1e-3, patience=6, seed=0),
             aug_copies=4, aug_shift=40, shift_mode="zero", shift_radius=40, grid_step=8, profile_step=2,
             diag_radius=8, n_sweep=64, n_aliasing=16, n_transform=32, sweep_batch=512, seed=0),
        dict(image_size=64, digit_size=16, width=1 / 32, max_train=120, max_val=40, max_test=40,
             trunk_train=train.TrainConfig(epochs=1, batch_size=32, patience=1, seed=0),
             head_train=train.TrainConfig(epochs=2, batch_size=32, patience=2, seed=0),
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
             head_train=train.TrainConfig(epochs=100, batch_size=32, lr=1e-3, patience=5, seed=666, eval_batch_size=64),
             l2_heads=(), aug_copies=1, aug_shift=24, shift_mode="zero", shift_radius=24, grid_step=8,
             profile_step=1, diag_radius=8, n_sweep=12, n_aliasing=6, n_transform=12, sweep_batch=64, seed=666),
        dict(image_size=64, max_train=60, max_val=20, max_test=20, aug_copies=1, aug_shift=4,
             head_train=train.TrainConfig(epochs=2, batch_size=16, patience=2, seed=666, eval_batch_size=32),
             shift_radius=4, grid_step=4, profile_step=2, diag_radius=2, n_sweep=4, n_aliasing=4,
             n_transform=4, sweep_batch=32),
    ),
    # CIFAR-10 upscaled 4x to 128 px (pool5 4x4), trained from scratch on a GPU.
    "cifar": (
        dict(dataset="cifar10", image_size=128, width=0.5, batch_norm=True, train_trunk=True,
             trunk_head="flatten",
             trunk_train=train.TrainConfig(epochs=15, batch_size=128, lr=1e-3, patience=4, seed=0, eval_batch_size=512),
             variants=_variants(("flatten", "multi_gap"), ("final_gap", "multi_gap"), aps_own=True),
             head_train=train.TrainConfig(epochs=60, batch_size=128, lr=1e-3, patience=8, seed=0, eval_batch_size=1024),
             aug_train=train.TrainConfig(epochs=12, batch_size=128, lr=1e-3, patience=4, seed=0, eval_batch_size=1024),
             aug_shift=32, shift_mode="mosaic", shift_radius=32, grid_step=2, profile_step=1,
             n_sweep=500, sweep_batch=1024, seed=0),
        dict(image_size=64, width=1 / 32, max_train=200, max_val=50, max_test=40,
             trunk_train=train.TrainConfig(epochs=1, batch_size=32, patience=1, seed=0),
             head_train=train.TrainConfig(epochs=2, batch_size=32, patience=2, seed=0),
             aug_shift=4, shift_radius=8, grid_step=8, profile_step=4, diag_radius=2, n_sweep=8),
    ),
    # The paper: ImageNet-160 at 256 px, pretrained VGG-16 frozen, heads trained with the
    # authors' recipe (batch 32, Adam 1e-3, patience 25, up to 1500 epochs, L2 1e-4 on the
    # flatten and multi-GAP heads, seed 666), 101 x 101 mirror-mosaic shift grid of +-50 px.
    "paper": (
        dict(dataset="imagenet160", image_size=256, width=1.0, batch_norm=False,
             weights="IMAGENET1K_V1", train_trunk=False,
             variants=_variants(("flatten", "multi_gap"), ("final_gap", "multi_gap")),
             head_train=train.TrainConfig(epochs=1500, batch_size=32, lr=1e-3, patience=25, seed=666,
                                          eval_batch_size=256),
             l2=1e-4, aug_shift=50, shift_mode="mosaic", shift_radius=50, grid_step=1, profile_step=1,
             n_sweep=1000, sweep_batch=512, seed=666, feature_dtype="float16"),
        dict(image_size=64, max_train=None, max_val=None, max_test=8,
             head_train=train.TrainConfig(epochs=2, batch_size=8, patience=2, seed=666, eval_batch_size=16),
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


# ----------------------------------------------------------------------------- data


def load_data(profile: Profile) -> data_mod.Splits:
    """The profile's train / val / test splits (seeded subsets when ``max_*`` are set)."""
    root = profile.data_root or None
    if profile.dataset == "digits":
        splits = data_mod.digits_canvas(profile.image_size, profile.digit_size, seed=profile.seed)
    elif profile.dataset == "mnist_canvas":
        return data_mod.mnist_splits(root, profile.image_size, (profile.max_train, profile.max_val, profile.max_test),
                                     seed=profile.seed)
    elif profile.dataset == "cifar10":
        splits = data_mod.cifar10(root, image_size=profile.image_size, seed=profile.seed)
    elif profile.dataset == "imagenet160":
        if root is None:
            raise FileNotFoundError(
                "the paper profile needs an ImageNet folder: set the notebook parameter IMAGENET_DIR "
                f"(or data_root=...). {data_mod.IMAGENET_HELP}"
            )
        splits = data_mod.imagenet160(root, image_size=profile.image_size, seed=profile.seed,
                                      allow_missing=profile.smoke)
    else:
        raise ValueError(f"unknown dataset {profile.dataset!r}; expected digits, mnist_canvas, cifar10 or imagenet160")
    splits.train = data_mod.take(splits.train, profile.max_train, profile.seed)
    splits.val = data_mod.take(splits.val, profile.max_val, profile.seed + 1)
    splits.test = data_mod.take(splits.test, profile.max_test, profile.seed + 2)
    return splits


# ----------------------------------------------------------------------------- models


@dataclass
class ModelSet:
    """Trained trunks and heads of one profile.

    Attributes:
        profile: the :class:`Profile`.
        splits: its data.
        trunks: ``{trunk_name: VGGTrunk}`` (frozen, eval mode).
        heads: ``{trunk_name: {head_name: Head}}`` (eval mode).
        summary: one row per ``"<trunk>/<head>"``: accuracy, loss, parameter counts, training.
        histories: ``{"<trunk>/<head>" or "<trunk>/trunk": per-epoch records}``.
    """

    profile: Profile
    splits: data_mod.Splits
    trunks: dict[str, models.VGGTrunk]
    heads: dict[str, dict[str, models.Head]]
    summary: pd.DataFrame
    histories: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    features: dict[str, Callable[[str], train.FeatureData]] = field(default_factory=dict)

    def names(self) -> list[str]:
        return [f"{t}/{h}" for t, hs in self.heads.items() for h in hs]

    def sweep_models(self, trunks: list[str] | None = None, heads: list[str] | None = None
                     ) -> dict[str, tuple[models.VGGTrunk, dict[str, models.Head]]]:
        """``{trunk: (trunk, {head: Head})}`` for :func:`shiftinv.sweep.sweep_models` (heads of a
        trunk share one trunk pass); optionally only some trunks / head names."""
        out = {}
        for t in trunks or list(self.trunks):
            hs = {h: m for h, m in self.heads[t].items() if heads is None or h in heads}
            if hs:
                out[t] = (self.trunks[t], hs)
        return out

    def predictor(self, trunk: str) -> Callable[[Tensor], dict[str, Tensor]]:
        """``images (B, 3, H, W) -> {head: logits (B, K)}`` for one trunk and all its heads."""
        t, hs = self.trunks[trunk], self.heads[trunk]

        def predict(x: Tensor) -> dict[str, Tensor]:
            with torch.no_grad():
                return models.run_heads(t, hs, x)

        return predict

    def classifier(self, name: str) -> models.VGGClassifier:
        """The model ``"<trunk>/<head>"`` as one ``VGGClassifier`` (frozen trunk)."""
        t, h = name.split("/")
        return models.VGGClassifier(self.trunks[t], self.heads[t][h], True, self.profile.image_size).eval()

    def test_tensors(self, n: int | None = None) -> tuple[Tensor, Tensor]:
        """The first ``n`` (default ``profile.n_sweep``) test images (N, 3, H, W) in [0, 1] and labels (N,)."""
        n = self.profile.n_sweep if n is None else n
        return data_mod.as_tensors(data_mod.take(self.splits.test, n, self.profile.seed + 3))


def recalibrate_batchnorm(trunk: models.VGGTrunk, data: Any, batch_size: int = 128,
                          device: torch.device | str | None = None) -> models.VGGTrunk:
    """Re-estimate every BatchNorm's running statistics of ``trunk`` on ``data`` (cumulative average).

    Used when conv weights move to a trunk with other pooling (BlurPool/APS), whose activations
    have other statistics. Leaves ``trunk`` in eval mode.
    """
    device = utils.default_device(str(device) if device is not None else None)
    bns = [m for m in trunk.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return trunk.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over all batches
    trunk.train()
    last_bn = max(i for i, m in enumerate(trunk.features) if isinstance(m, nn.modules.batchnorm._BatchNorm))
    deepest = trunk.layer_names[last_bn]  # run only as deep as the last BatchNorm
    with torch.no_grad():
        for x, _ in train.iterate_batches(data, torch.arange(len(data)), batch_size):
            trunk(x.to(device), (deepest,))
    for m in bns:
        m.momentum = 0.1
    return trunk.eval()


def feature_source(trunk: models.VGGTrunk, taps: tuple[str, ...], gap_only: tuple[str, ...], splits: data_mod.Splits,
                   batch_size: int, device: torch.device, dtype: torch.dtype, name: str
                   ) -> Callable[[str], train.FeatureData]:
    """``split -> FeatureData`` of ``trunk`` at ``taps`` (``gap_only`` stored as global averages), each
    split computed on first use and kept: every head of a trunk, and its re-seeded copies
    (:mod:`shiftinv.intervals`), train and test on one trunk pass per image."""
    memo: dict[str, train.FeatureData] = {}

    def features(split: str) -> train.FeatureData:
        if split not in memo:
            memo[split] = train.extract_features(lambda x: trunk(x, taps), getattr(splits, split), gap_only,
                                                 batch_size, device, dtype, desc=f"{name} {split} features")
        return memo[split]

    return features


def backbone_label(profile: Profile) -> str:
    """What the trunk is, for figures and data files: the weights' name, or how it was trained here."""
    if profile.weights:
        return weights_io.label(profile.weights)
    width = "full width" if profile.width == 1 else f"width {profile.width:g}"
    return f"VGG-16 ({width}{', batch norm' if profile.batch_norm else ''}) trained here on {profile.dataset}"


def _freeze(module: nn.Module) -> nn.Module:
    module.requires_grad_(False)
    return module.eval()


def _data_key(profile: Profile, splits: data_mod.Splits) -> dict[str, Any]:
    return {"dataset": profile.dataset, "info": splits.info, "image_size": profile.image_size,
            "digit_size": profile.digit_size if profile.dataset == "digits" else None,
            "sizes": splits.sizes(), "seed": profile.seed}


def _trunk_spec(profile: Profile, v: Variant) -> dict[str, Any]:
    return {"width": profile.width, "batch_norm": profile.batch_norm, "pool": v.pool, "circular": v.circular,
            "weights": profile.weights}


def _build_trunk(profile: Profile, v: Variant, weights: Any = None) -> models.VGGTrunk:
    return models.build_trunk(width=profile.width, batch_norm=profile.batch_norm, pool=v.pool,
                              circular=v.circular, weights=weights)


def train_or_load_models(profile: Profile, splits: data_mod.Splits | None = None,
                         refresh: bool = False) -> ModelSet:
    """Train every trunk and head of ``profile`` (or load them from ``results/``) and test them.

    Steps: (1) the plain trunk: pretrained weights (``paper``) or trained from scratch with
    ``trunk_head`` (``demo``, ``cifar``), then frozen; (2) BlurPool and APS trunks: the plain
    trunk's conv weights (+ BatchNorm re-estimation) or their own training; (3) per trunk, the
    features of the train / val / test images computed once; every head trained on them
    (``l2`` on ``l2_heads``); (4) ``vgg/flatten_aug`` trained through the frozen trunk with
    random shifts of up to ``aug_shift`` px; (5) test accuracy and loss of every model.
    Every training run is cached by its configuration and resumes after an interruption.
    """
    splits = splits if splits is not None else load_data(profile)
    if profile.num_classes != splits.num_classes:
        raise ValueError(f"profile {profile.name} expects {profile.num_classes} classes, data has {splits.num_classes}")
    b = _Build(profile, splits, refresh, utils.default_device(profile.device), _data_key(profile, splits),
               dataclasses.replace(profile.trunk_train, device=profile.device),
               dataclasses.replace(profile.head_train, device=profile.device))
    _setup_trunks(b)  # (1)-(2)
    for v in profile.variants:
        _train_variant_heads(b, v)  # (3)-(5)
    summary = pd.DataFrame(b.rows).assign(backbone=backbone_label(profile))
    return ModelSet(profile, splits, b.trunks, b.heads, summary, b.histories, b.sources)


@dataclass
class _Build:
    """What the steps of :func:`train_or_load_models` share: the profile, its data, the training
    configurations (``tcfg`` trunks, ``hcfg`` heads) and what the steps have built so far."""

    profile: Profile
    splits: data_mod.Splits
    refresh: bool
    device: torch.device
    dkey: dict[str, Any]
    tcfg: train.TrainConfig
    hcfg: train.TrainConfig
    rows: list[dict[str, Any]] = field(default_factory=list)  # one summary row per model
    histories: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    trunks: dict[str, models.VGGTrunk] = field(default_factory=dict)
    heads: dict[str, dict[str, models.Head]] = field(default_factory=dict)
    trunk_info: dict[str, dict[str, Any]] = field(default_factory=dict)  # summary columns per trunk
    sources: dict[str, Callable[[str], train.FeatureData]] = field(default_factory=dict)


def _setup_trunks(b: _Build) -> None:
    """Steps (1)-(2): every trunk of the profile, frozen on the device, into ``b.trunks``, and where
    it came from and how long it took into ``b.trunk_info``."""
    profile = b.profile
    plain = next((v for v in profile.variants if v.pool == "max" and not v.circular), None)
    if plain is not None and profile.variants[0] is not plain:
        raise ValueError("the plain (max-pool) variant must come first: the other trunks reuse its weights")
    for v in profile.variants:
        t0 = time.perf_counter()
        if not profile.train_trunk:
            trunk = _build_trunk(profile, v, profile.weights or None)
            b.trunk_info[v.name] = {"trunk_source": f"pretrained: {backbone_label(profile)}"
                                    + ("" if v.pool == "max" else f", {v.pool} pooling swapped in")}
        elif v is plain or profile.variant_weights == "trained" or v.own_trunk or plain is None:
            trunk = _train_trunk(b, v)
            b.trunk_info[v.name]["trunk_source"] = "trained here"
        else:
            trunk = _shared_trunk(b, v, plain)
        b.trunks[v.name] = _freeze(trunk.to(b.device))
        b.trunk_info[v.name]["trunk_setup_seconds"] = time.perf_counter() - t0


def _train_trunk(b: _Build, v: Variant) -> models.VGGTrunk:
    """The trunk of ``v`` trained (or loaded) from scratch with the profile's ``trunk_head``."""
    profile, size = b.profile, b.profile.image_size
    utils.seed_everything(profile.seed)
    trunk = _build_trunk(profile, v, profile.weights or None)
    head = models.build_head(profile.trunk_head, trunk, num_classes=profile.num_classes, input_size=size)
    model = models.VGGClassifier(trunk, head, freeze_backbone=False, input_size=size)
    key = {"data": b.dkey, "trunk": _trunk_spec(profile, v), "head": profile.trunk_head}
    res = train.train_or_load("trunk", key, model, b.splits.train, b.splits.val, b.tcfg, refresh=b.refresh,
                              desc=f"train {v.name} trunk")
    b.histories[f"{v.name}/trunk"] = res.history
    b.trunk_info[v.name] = {"trunk_epochs": len(res.history), "trunk_val_acc": res.best_val_acc,
                            "trunk_seconds": sum(r["seconds"] for r in res.history)}
    return trunk


def _shared_trunk(b: _Build, v: Variant, plain: Variant) -> models.VGGTrunk:
    """The trunk of ``v`` with the conv weights of the ``plain`` trunk (BatchNorm re-estimated)."""
    profile = b.profile
    trunk = _build_trunk(profile, v)
    conv = {f"features.{n}": p for n, p in b.trunks[plain.name].features.state_dict().items()}
    models.load_trunk_weights(trunk, conv, source=f"{plain.name} trunk")
    trunk = trunk.to(b.device)
    recalibrate_batchnorm(trunk, b.splits.train, profile.trunk_train.eval_batch_size, b.device)
    b.trunk_info[v.name] = {"trunk_source": f"{plain.name} conv weights + BN re-estimated"
                            if profile.batch_norm else f"{plain.name} conv weights"}
    return trunk


def _train_variant_heads(b: _Build, v: Variant) -> None:
    """Steps (3)-(5) for the trunk of ``v``: build its heads (each seeded with the profile's seed),
    train (or load) them on trunk features computed once, and test them."""
    profile, trunk = b.profile, b.trunks[v.name]
    tkey = {"data": b.dkey, "trunk": _trunk_spec(profile, v), "source": b.trunk_info[v.name]["trunk_source"],
            "trunk_train": b.tcfg.to_dict() if profile.train_trunk else None,
            "plain_trunk_train": profile.trunk_head if profile.train_trunk else None}
    built: dict[str, models.Head] = {}
    for kind in v.heads:
        utils.seed_everything(profile.seed)
        built[kind] = models.build_head(kind, trunk, num_classes=profile.num_classes, input_size=profile.image_size)
    aug_head = None
    if v.name == "vgg" and profile.aug_shift > 0:
        utils.seed_everything(profile.seed)
        aug_head = models.build_head("flatten", trunk, num_classes=profile.num_classes, input_size=profile.image_size)
    every = {**built, **({"flatten_aug": aug_head} if aug_head is not None else {})}
    taps = models.union_taps(every)
    flat = {h.flatten_tap for h in every.values() if h.flatten_tap}
    gap_only = tuple(t for t in taps if t not in flat)
    features = feature_source(trunk, taps, gap_only, b.splits, b.hcfg.eval_batch_size, b.device,
                              getattr(torch, profile.feature_dtype), v.name)
    b.sources[v.name] = features
    b.heads[v.name] = {}
    for kind, head in built.items():
        _train_head(b, v, tkey, kind, head, features)
    if aug_head is not None:
        _train_aug_head(b, v, tkey, aug_head, features)
    _test_heads(b, v, features("test"))


def _train_head(b: _Build, v: Variant, tkey: dict[str, Any], kind: str, head: models.Head,
                features: Callable[[str], train.FeatureData]) -> None:
    """Train (or load) head ``kind`` of trunk ``v`` on the trunk's features (``l2`` on ``l2_heads``)."""
    profile = b.profile
    cfg = dataclasses.replace(b.hcfg, l2=profile.l2 if kind in profile.l2_heads else 0.0)
    key = {"trunk": tkey, "head": kind, "classes": profile.num_classes}
    cached = train.is_cached("head", key, cfg) and not b.refresh
    res = train.train_or_load("head", key, head,
                              None if cached else features("train").select(head.taps),
                              None if cached else features("val").select(head.taps),
                              cfg, refresh=b.refresh, desc=f"{v.name}/{kind}")
    b.heads[v.name][kind] = head.eval()
    b.histories[f"{v.name}/{kind}"] = res.history
    b.rows.append(_run_row(f"{v.name}/{kind}", v.name, kind, cfg.l2, res, cached))


def _train_aug_head(b: _Build, v: Variant, tkey: dict[str, Any], head: models.Head,
                    features: Callable[[str], train.FeatureData]) -> None:
    """Step (4): ``vgg/flatten_aug``, on a fixed pool of ``aug_copies`` shifted copies of the training
    images (features computed once; in-memory data) or with fresh shifts every batch through the trunk."""
    profile, trunk = b.profile, b.trunks[v.name]
    pool = profile.aug_copies > 0 and isinstance(b.splits.train, data_mod.TensorImages)
    base = profile.head_train if pool else (profile.aug_train or profile.head_train)
    cfg = dataclasses.replace(base, device=profile.device, l2=profile.l2 if "flatten" in profile.l2_heads else 0.0,
                              shift_aug=0 if pool else profile.aug_shift, shift_mode=profile.shift_mode)
    key = {"trunk": tkey, "head": "flatten_aug", "classes": profile.num_classes,
           "pool": {"copies": profile.aug_copies, "max_shift": profile.aug_shift} if pool else None}
    cached = train.is_cached("head", key, cfg) and not b.refresh
    if pool:  # a fixed pool of shifted copies, features computed once (validation: unshifted)
        def aug_features() -> train.FeatureData:
            copies = data_mod.shifted_copies(b.splits.train, profile.aug_copies, profile.aug_shift,
                                             profile.shift_mode, profile.seed)
            return train.extract_features(lambda x: trunk(x, head.taps), copies, (), b.hcfg.eval_batch_size,
                                          b.device, getattr(torch, profile.feature_dtype),
                                          desc="vgg shifted-copy features")
        res = train.train_or_load("head", key, head, None if cached else aug_features(),
                                  None if cached else features("val").select(head.taps), cfg,
                                  refresh=b.refresh, desc="vgg/flatten_aug")
    else:  # fresh random shifts every batch, through the frozen trunk
        res = train.train_or_load("head", key, head, b.splits.train, b.splits.val, cfg,
                                  extractor=lambda x, trunk=trunk, taps=head.taps: trunk(x, taps),
                                  refresh=b.refresh, desc="vgg/flatten_aug")
    b.heads[v.name]["flatten_aug"] = head.eval()
    b.histories["vgg/flatten_aug"] = res.history
    b.rows.append(_run_row("vgg/flatten_aug", v.name, "flatten_aug", cfg.l2, res, cached))


def _run_row(model: str, trunk: str, head: str, l2: float, res: train.TrainResult, cached: bool) -> dict[str, Any]:
    """The training columns of one model's summary row."""
    return {"model": model, "trunk": trunk, "head": head, "l2": l2, "epochs": len(res.history),
            "best_epoch": res.best_epoch, "val_acc": res.best_val_acc,
            "train_seconds": sum(r["seconds"] for r in res.history), "cached": cached}


def _test_heads(b: _Build, v: Variant, test_feats: train.FeatureData) -> None:
    """Step (5): test accuracy and loss of every head of trunk ``v`` on its test features (one trunk
    pass), and the parameter counts, added to the heads' summary rows."""
    trunk = b.trunks[v.name]
    for name, head in b.heads[v.name].items():
        acc, loss = train.evaluate(head, test_feats.select(head.taps), batch_size=b.hcfg.eval_batch_size,
                                   device=b.device, amp=b.hcfg.amp)
        row = next(r for r in b.rows if r["model"] == f"{v.name}/{name}")
        kind = "flatten" if name == "flatten_aug" else name
        row.update(kind=kind, test_acc=acc, test_loss=loss,
                   head_params=models.count_parameters(head),
                   trunk_params=models.count_parameters(trunk),
                   total_params=models.count_parameters(head) + models.count_parameters(trunk),
                   **b.trunk_info[v.name])


# ----------------------------------------------------------------------------- sweeps


def sweep_shifts(profile: Profile, kind: str = "grid") -> list[tuple[int, int]]:
    """The profile's shifts: ``"grid"`` (2-D map, step ``grid_step`` over +-``shift_radius``),
    ``"profile"`` (dx only, dy = 0, step ``profile_step``) or ``"diagonal"`` (every 1-px diagonal
    shift (d, d), |d| <= ``diag_radius``: Azulay & Weiss's one-pixel fragility)."""
    r = profile.shift_radius
    if kind == "grid":
        return shifts.shift_grid(r, profile.grid_step)
    if kind == "profile":
        return [(dx, 0) for dx in range(-r, r + 1) if dx % profile.profile_step == 0]
    if kind == "diagonal":
        return shifts.diagonal_shifts(-profile.diag_radius, profile.diag_radius)
    raise ValueError(f"kind must be 'grid', 'profile' or 'diagonal', got {kind!r}")


def translation_sweep(ms: ModelSet, kind: str = "grid", mode: str | None = None,
                      trunks: list[str] | None = None, heads: list[str] | None = None,
                      n_images: int | None = None, refresh: bool = False) -> "Any":
    """Sweep the model set over the profile's shifts (:func:`sweep_shifts`), cached and resumable.

    Args:
        ms: the trained :class:`ModelSet`.
        kind: ``"grid"``, ``"profile"`` or ``"diagonal"`` (see :func:`sweep_shifts`).
        mode: shift protocol (default ``profile.shift_mode``; ``"circular"`` for the APS check).
        trunks, heads: restrict to some trunks / head names (default all).
        n_images: test images (default ``profile.n_sweep``).
    Returns:
        :class:`shiftinv.sweep.SweepResult` with heads named ``"<trunk>/<head>"``.
    """
    from . import sweep as sweep_mod

    p = ms.profile
    mode = mode or p.shift_mode
    images, labels = ms.test_tensors(n_images)
    shift_list = sweep_shifts(p, kind)
    chosen = ms.sweep_models(trunks, heads)
    fingerprint = {t: utils.state_fingerprint(trunk, *hs.values()) for t, (trunk, hs) in chosen.items()}
    config = {"profile": p.to_dict(), "kind": kind, "mode": mode, "models": {t: list(hs) for t, (_, hs) in chosen.items()},
              "n": int(images.shape[0]), "fingerprint": fingerprint}
    path = utils.cache_path("sweep", config, ".sweep.pt", code=__name__)
    if path.exists() and not (refresh or utils.refresh_requested(path)):
        try:
            return sweep_mod.SweepResult.load(path)
        except ValueError as err:  # truncated / damaged: set aside, sweep again
            utils.set_aside(path, str(err).split("\n")[0])
    with utils.reproducible():
        result = sweep_mod.sweep_models(chosen, images, labels, shift_list, mode,
                                        out_path=path.with_suffix(".part.pt"), batch_size=p.sweep_batch,
                                        device=p.device, progress=True)
    result.save(path)
    for part in path.parent.glob(path.with_suffix("").name + ".part.*"):
        part.unlink(missing_ok=True)
    return result


def profile_from_params(profile: str, smoke: bool, data_dir: str = "", weights: str = "",
                        device: str = "", overrides: str = "") -> Profile:
    """The profile a notebook's parameters cell asks for: ``data_dir`` (ImageNet / CIFAR / MNIST folder),
    ``weights`` (VGG-16 state dict path, torchvision enum name, or a :mod:`shiftinv.weights` name such
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


# ----------------------------------------------------------------------------- tables and plots


def history_frame(ms: ModelSet) -> pd.DataFrame:
    """Per-epoch training records of every run: ``model, epoch, train_loss, val_loss, val_acc, seconds``
    (``seconds`` is wall-clock time: keep it out of figure data with :func:`split_timings`)."""
    rows = [{"model": name, **rec} for name, hist in ms.histories.items() for rec in hist]
    return pd.DataFrame(rows)


#: Columns that depend on the machine and on what was cached, not on the numbers computed.
TIMING_COLUMNS: tuple[str, ...] = ("seconds", "train_seconds", "trunk_seconds", "trunk_setup_seconds", "cached")


def split_timings(frame: pd.DataFrame, keys: tuple[str, ...] = ("model", "epoch")) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(numbers, timings)``: ``frame`` without :data:`TIMING_COLUMNS` (figure data, compared
    between runs) and those columns with the ``keys`` present (a separate ``*_timings.csv``)."""
    timing = [c for c in frame.columns if c in TIMING_COLUMNS]
    key_cols = [c for c in keys if c in frame.columns]
    return frame.drop(columns=timing), frame[key_cols + timing].copy()


def shift_frame(result: Any) -> pd.DataFrame:
    """Image-averaged outcome per (head, shift): ``head, dx, dy, accuracy, loss, p_true``
    (the long-table view of :meth:`shiftinv.sweep.SweepResult.per_image`)."""
    s = result.shifts.numpy()
    frames = []
    for h in result.heads:
        frames.append(pd.DataFrame({
            "head": h, "dx": s[:, 0], "dy": s[:, 1],
            "accuracy": result.per_image(h, "accuracy").double().mean(1).numpy(),
            "loss": result.per_image(h, "loss").double().mean(1).numpy(),
            "p_true": result.per_image(h, "p_true").double().mean(1).numpy(),
        }))
    return pd.concat(frames, ignore_index=True)


def robustness_table(result: Any) -> pd.DataFrame:
    """Per head: accuracy unshifted (``acc0``), mean / worst accuracy over the shifts, the accuracy
    lost on average (``acc_loss = acc0 - mean``), and the loss unshifted / mean over shifts."""
    f = shift_frame(result)
    rows = []
    for h, g in f.groupby("head", sort=False):
        zero = g[(g.dx == 0) & (g.dy == 0)]
        if zero.empty:
            raise ValueError("the sweep must contain the zero shift (0, 0)")
        a0, l0 = float(zero.accuracy.iloc[0]), float(zero.loss.iloc[0])
        rows.append({"head": h, "acc0": a0, "acc_mean": g.accuracy.mean(), "acc_min": g.accuracy.min(),
                     "acc_loss": a0 - g.accuracy.mean(), "loss0": l0, "loss_mean": g.loss.mean(),
                     "shifts": len(g)})
    return pd.DataFrame(rows)


def plot_shift_maps(frame: pd.DataFrame, field: str = "accuracy", heads: list[str] | None = None,
                    ncols: int = 5, vmin: float | None = None, vmax: float | None = None):
    """Heat maps of ``field`` over (dx, dy) per head (the paper's figure), one panel per head."""
    import matplotlib.pyplot as plt
    import numpy as np

    heads = heads or list(dict.fromkeys(frame["head"]))
    nrows = (len(heads) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 2.5 * nrows + 0.4), squeeze=False)
    vmin = frame[field].min() if vmin is None else vmin
    vmax = frame[field].max() if vmax is None else vmax
    im = None
    for i, (ax, h) in enumerate(zip(axes.flat, heads)):
        g = frame[frame["head"] == h]
        table = g.pivot(index="dy", columns="dx", values=field).sort_index()
        xs, ys = table.columns.to_numpy(), table.index.to_numpy()
        step_x = (xs[1] - xs[0]) if len(xs) > 1 else 1
        step_y = (ys[1] - ys[0]) if len(ys) > 1 else 1
        im = ax.imshow(table.to_numpy(), origin="lower", vmin=vmin, vmax=vmax, aspect="equal",
                       extent=(xs[0] - step_x / 2, xs[-1] + step_x / 2, ys[0] - step_y / 2, ys[-1] + step_y / 2),
                       cmap="viridis" if field != "loss" else "magma")
        ax.set_title(h, fontsize=9)
        ax.set_xlabel("dx (px)")
        if i % ncols == 0:
            ax.set_ylabel("dy (px)")
        else:
            ax.tick_params(labelleft=False)
        ax.grid(False)
    for ax in list(axes.flat)[len(heads):]:
        ax.axis("off")
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label=field)
    return fig

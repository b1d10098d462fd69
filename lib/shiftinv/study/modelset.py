"""The model set of the classification study (notebooks 03-06): every trunk and head of a profile.

- the profile (:func:`shiftinv.study.profiles.get_profile`) says what to build and train;
- :func:`load_data` reads the profile's dataset (:mod:`shiftinv.study.datasets`).
- :func:`train_or_load_models` trains (or loads from ``results/``) every trunk and head of the
  profile and returns a :class:`ModelSet`: ``trunks[name]`` and ``heads[name][head]``, the test
  split, and a summary table (accuracy, parameter counts, epochs, seconds).
- :func:`shiftinv.study.analysis.translation_sweep` runs the shift sweep over a profile's shift grid
  for the whole model set, cached and resumable.

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
from typing import Any, Callable

import pandas as pd
import torch
from torch import Tensor, nn

from ..models import accounting, pretrained, vgg
from ..workbook import runtime
from . import datasets, digits, feature_data, training
from .profiles import Profile, Variant, backbone_label

# ----------------------------------------------------------------------------- data


def load_data(profile: Profile) -> datasets.Splits:
    """The profile's train / val / test splits (seeded subsets when ``max_*`` are set)."""
    root = profile.data_root or None
    if profile.dataset == "digits":
        splits = digits.digits_canvas(profile.image_size, profile.digit_size, seed=profile.seed)
    elif profile.dataset == "mnist_canvas":
        return digits.mnist_splits(root, profile.image_size, (profile.max_train, profile.max_val, profile.max_test),
                                     seed=profile.seed)
    elif profile.dataset == "cifar10":
        splits = datasets.cifar10(root, image_size=profile.image_size, seed=profile.seed)
    elif profile.dataset == "imagenet160":
        if root is None:
            raise FileNotFoundError(
                "the paper profile needs an ImageNet folder: set the notebook parameter IMAGENET_DIR "
                f"(or data_root=...). {datasets.IMAGENET_HELP}"
            )
        splits = datasets.imagenet160(root, image_size=profile.image_size, seed=profile.seed,
                                      allow_missing=profile.smoke)
    else:
        raise ValueError(f"unknown dataset {profile.dataset!r}; expected digits, mnist_canvas, cifar10 or imagenet160")
    splits.train = datasets.take(splits.train, profile.max_train, profile.seed)
    splits.val = datasets.take(splits.val, profile.max_val, profile.seed + 1)
    splits.test = datasets.take(splits.test, profile.max_test, profile.seed + 2)
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
    splits: datasets.Splits
    trunks: dict[str, vgg.VGGTrunk]
    heads: dict[str, dict[str, vgg.Head]]
    summary: pd.DataFrame
    histories: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    features: dict[str, Callable[[str], feature_data.FeatureData]] = field(default_factory=dict)

    def names(self) -> list[str]:
        return [f"{t}/{h}" for t, hs in self.heads.items() for h in hs]

    def sweep_models(self, trunks: list[str] | None = None, heads: list[str] | None = None
                     ) -> dict[str, tuple[vgg.VGGTrunk, dict[str, vgg.Head]]]:
        """``{trunk: (trunk, {head: Head})}`` for :func:`shiftinv.shifts.sweep.sweep_models` (heads of a
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
                return vgg.run_heads(t, hs, x)

        return predict

    def classifier(self, name: str) -> vgg.VGGClassifier:
        """The model ``"<trunk>/<head>"`` as one ``VGGClassifier`` (frozen trunk)."""
        t, h = name.split("/")
        return vgg.VGGClassifier(self.trunks[t], self.heads[t][h], True, self.profile.image_size).eval()

    def test_tensors(self, n: int | None = None) -> tuple[Tensor, Tensor]:
        """The first ``n`` (default ``profile.n_sweep``) test images (N, 3, H, W) in [0, 1] and labels (N,)."""
        n = self.profile.n_sweep if n is None else n
        return datasets.as_tensors(datasets.take(self.splits.test, n, self.profile.seed + 3))


def recalibrate_batchnorm(trunk: vgg.VGGTrunk, data: Any, batch_size: int = 128,
                          device: torch.device | str | None = None) -> vgg.VGGTrunk:
    """Re-estimate every BatchNorm's running statistics of ``trunk`` on ``data`` (cumulative average).

    Used when conv weights move to a trunk with other pooling (BlurPool/APS), whose activations
    have other statistics. Leaves ``trunk`` in eval mode.
    """
    device = runtime.default_device(str(device) if device is not None else None)
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
        for x, _ in feature_data.iterate_batches(data, torch.arange(len(data)), batch_size):
            trunk(x.to(device), (deepest,))
    for m in bns:
        m.momentum = 0.1
    return trunk.eval()


def feature_source(trunk: vgg.VGGTrunk, taps: tuple[str, ...], gap_only: tuple[str, ...], splits: datasets.Splits,
                   batch_size: int, device: torch.device, dtype: torch.dtype, name: str
                   ) -> Callable[[str], feature_data.FeatureData]:
    """``split -> FeatureData`` of ``trunk`` at ``taps`` (``gap_only`` stored as global averages), each
    split computed on first use and kept: every head of a trunk, and its re-seeded copies
    (:mod:`shiftinv.study.intervals`), train and test on one trunk pass per image."""
    memo: dict[str, feature_data.FeatureData] = {}

    def features(split: str) -> feature_data.FeatureData:
        if split not in memo:
            memo[split] = feature_data.extract_features(lambda x: trunk(x, taps), getattr(splits, split), gap_only,
                                                 batch_size, device, dtype, desc=f"{name} {split} features")
        return memo[split]

    return features


def _freeze(module: nn.Module) -> nn.Module:
    module.requires_grad_(False)
    return module.eval()


def _data_key(profile: Profile, splits: datasets.Splits) -> dict[str, Any]:
    return {"dataset": profile.dataset, "info": splits.info, "image_size": profile.image_size,
            "digit_size": profile.digit_size if profile.dataset == "digits" else None,
            "sizes": splits.sizes(), "seed": profile.seed}


def _trunk_spec(profile: Profile, v: Variant) -> dict[str, Any]:
    return {"width": profile.width, "batch_norm": profile.batch_norm, "pool": v.pool, "circular": v.circular,
            "weights": profile.weights}


def _build_trunk(profile: Profile, v: Variant, weights: Any = None) -> vgg.VGGTrunk:
    return vgg.build_trunk(width=profile.width, batch_norm=profile.batch_norm, pool=v.pool,
                              circular=v.circular, weights=weights)


def train_or_load_models(profile: Profile, splits: datasets.Splits | None = None,
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
    b = _Build(profile, splits, refresh, runtime.default_device(profile.device), _data_key(profile, splits),
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
    splits: datasets.Splits
    refresh: bool
    device: torch.device
    dkey: dict[str, Any]
    tcfg: training.TrainConfig
    hcfg: training.TrainConfig
    rows: list[dict[str, Any]] = field(default_factory=list)  # one summary row per model
    histories: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    trunks: dict[str, vgg.VGGTrunk] = field(default_factory=dict)
    heads: dict[str, dict[str, vgg.Head]] = field(default_factory=dict)
    trunk_info: dict[str, dict[str, Any]] = field(default_factory=dict)  # summary columns per trunk
    sources: dict[str, Callable[[str], feature_data.FeatureData]] = field(default_factory=dict)


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


def _train_trunk(b: _Build, v: Variant) -> vgg.VGGTrunk:
    """The trunk of ``v`` trained (or loaded) from scratch with the profile's ``trunk_head``."""
    profile, size = b.profile, b.profile.image_size
    runtime.seed_everything(profile.seed)
    trunk = _build_trunk(profile, v, profile.weights or None)
    head = vgg.build_head(profile.trunk_head, trunk, num_classes=profile.num_classes, input_size=size)
    model = vgg.VGGClassifier(trunk, head, freeze_backbone=False, input_size=size)
    key = {"data": b.dkey, "trunk": _trunk_spec(profile, v), "head": profile.trunk_head}
    res = training.train_or_load("trunk", key, model, b.splits.train, b.splits.val, b.tcfg, refresh=b.refresh,
                              desc=f"train {v.name} trunk")
    b.histories[f"{v.name}/trunk"] = res.history
    b.trunk_info[v.name] = {"trunk_epochs": len(res.history), "trunk_val_acc": res.best_val_acc,
                            "trunk_seconds": sum(r["seconds"] for r in res.history)}
    return trunk


def _shared_trunk(b: _Build, v: Variant, plain: Variant) -> vgg.VGGTrunk:
    """The trunk of ``v`` with the conv weights of the ``plain`` trunk (BatchNorm re-estimated)."""
    profile = b.profile
    trunk = _build_trunk(profile, v)
    conv = {f"features.{n}": p for n, p in b.trunks[plain.name].features.state_dict().items()}
    pretrained.load_trunk_weights(trunk, conv, source=f"{plain.name} trunk")
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
    built: dict[str, vgg.Head] = {}
    for kind in v.heads:
        runtime.seed_everything(profile.seed)
        built[kind] = vgg.build_head(kind, trunk, num_classes=profile.num_classes, input_size=profile.image_size)
    aug_head = None
    if v.name == "vgg" and profile.aug_shift > 0:
        runtime.seed_everything(profile.seed)
        aug_head = vgg.build_head("flatten", trunk, num_classes=profile.num_classes, input_size=profile.image_size)
    every = {**built, **({"flatten_aug": aug_head} if aug_head is not None else {})}
    taps = vgg.union_taps(every)
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


def _train_head(b: _Build, v: Variant, tkey: dict[str, Any], kind: str, head: vgg.Head,
                features: Callable[[str], feature_data.FeatureData]) -> None:
    """Train (or load) head ``kind`` of trunk ``v`` on the trunk's features (``l2`` on ``l2_heads``)."""
    profile = b.profile
    cfg = dataclasses.replace(b.hcfg, l2=profile.l2 if kind in profile.l2_heads else 0.0)
    key = {"trunk": tkey, "head": kind, "classes": profile.num_classes}
    res = training.train_or_load("head", key, head,  # features computed only when the head is (re)trained
                              lambda: features("train").select(head.taps),
                              lambda: features("val").select(head.taps),
                              cfg, refresh=b.refresh, desc=f"{v.name}/{kind}")
    b.heads[v.name][kind] = head.eval()
    b.histories[f"{v.name}/{kind}"] = res.history
    b.rows.append(_run_row(f"{v.name}/{kind}", v.name, kind, cfg.l2, res, res.loaded))


def _train_aug_head(b: _Build, v: Variant, tkey: dict[str, Any], head: vgg.Head,
                    features: Callable[[str], feature_data.FeatureData]) -> None:
    """Step (4): ``vgg/flatten_aug``, on a fixed pool of ``aug_copies`` shifted copies of the training
    images (features computed once; in-memory data) or with fresh shifts every batch through the trunk."""
    profile, trunk = b.profile, b.trunks[v.name]
    pool = profile.aug_copies > 0 and isinstance(b.splits.train, datasets.TensorImages)
    base = profile.head_train if pool else (profile.aug_train or profile.head_train)
    cfg = dataclasses.replace(base, device=profile.device, l2=profile.l2 if "flatten" in profile.l2_heads else 0.0,
                              shift_aug=0 if pool else profile.aug_shift, shift_mode=profile.shift_mode)
    key = {"trunk": tkey, "head": "flatten_aug", "classes": profile.num_classes,
           "pool": {"copies": profile.aug_copies, "max_shift": profile.aug_shift} if pool else None}
    if pool:  # a fixed pool of shifted copies, features computed once (validation: unshifted)
        def aug_features() -> feature_data.FeatureData:
            copies = datasets.shifted_copies(b.splits.train, profile.aug_copies, profile.aug_shift,
                                             profile.shift_mode, profile.seed)
            return feature_data.extract_features(lambda x: trunk(x, head.taps), copies, (), b.hcfg.eval_batch_size,
                                          b.device, getattr(torch, profile.feature_dtype),
                                          desc="vgg shifted-copy features")
        res = training.train_or_load("head", key, head, aug_features,  # computed only when (re)trained
                                  lambda: features("val").select(head.taps), cfg,
                                  refresh=b.refresh, desc="vgg/flatten_aug")
    else:  # fresh random shifts every batch, through the frozen trunk
        res = training.train_or_load("head", key, head, b.splits.train, b.splits.val, cfg,
                                  extractor=lambda x, trunk=trunk, taps=head.taps: trunk(x, taps),
                                  refresh=b.refresh, desc="vgg/flatten_aug")
    b.heads[v.name]["flatten_aug"] = head.eval()
    b.histories["vgg/flatten_aug"] = res.history
    b.rows.append(_run_row("vgg/flatten_aug", v.name, "flatten_aug", cfg.l2, res, res.loaded))


def _run_row(model: str, trunk: str, head: str, l2: float, res: training.TrainResult, cached: bool) -> dict[str, Any]:
    """The training columns of one model's summary row."""
    return {"model": model, "trunk": trunk, "head": head, "l2": l2, "epochs": len(res.history),
            "best_epoch": res.best_epoch, "val_acc": res.best_val_acc,
            "train_seconds": sum(r["seconds"] for r in res.history), "cached": cached}


def _test_heads(b: _Build, v: Variant, test_feats: feature_data.FeatureData) -> None:
    """Step (5): test accuracy and loss of every head of trunk ``v`` on its test features (one trunk
    pass), and the parameter counts, added to the heads' summary rows."""
    trunk = b.trunks[v.name]
    for name, head in b.heads[v.name].items():
        acc, loss = feature_data.evaluate(head, test_feats.select(head.taps), batch_size=b.hcfg.eval_batch_size,
                                   device=b.device, amp=b.hcfg.amp)
        row = next(r for r in b.rows if r["model"] == f"{v.name}/{name}")
        kind = "flatten" if name == "flatten_aug" else name
        row.update(kind=kind, test_acc=acc, test_loss=loss,
                   head_params=accounting.count_parameters(head),
                   trunk_params=accounting.count_parameters(trunk),
                   total_params=accounting.count_parameters(head) + accounting.count_parameters(trunk),
                   **b.trunk_info[v.name])

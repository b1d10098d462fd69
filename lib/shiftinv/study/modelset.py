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
from ..shifts import engine
from ..workbook import cache, paths, runtime
from . import datasets, digits, feature_data, seeded_heads, training
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
    seed_heads: dict[str, dict[str, dict[int, vgg.Head]]] = field(default_factory=dict)
    runs: pd.DataFrame = field(default_factory=pd.DataFrame)
    test_outcomes: dict[str, Tensor] = field(default_factory=dict)

    def names(self) -> list[str]:
        return [f"{t}/{h}" for t, hs in self.heads.items() for h in hs]

    def run_names(self, model: str) -> list[str]:
        """The names of every seed's run of ``model`` (``"<trunk>/<head>"``) in a sweep of
        :meth:`sweep_models` with ``seeds=True``: the model itself (its main seed), then
        ``"<trunk>/<head>@<seed>"`` for the other seeds."""
        t, h = model.split("/")
        return [model] + [f"{model}@{s}" for s in self.seed_heads.get(t, {}).get(h, {}) if s != self.profile.seed]

    def sweep_models(self, trunks: list[str] | None = None, heads: list[str] | None = None, seeds: bool = False
                     ) -> dict[str, tuple[vgg.VGGTrunk, dict[str, vgg.Head]]]:
        """``{trunk: (trunk, {head: Head})}`` for :func:`shiftinv.shifts.engine.sweep_models` (heads of a
        trunk share one trunk pass); optionally only some trunks / head names. With ``seeds`` the other
        seeds of every head ride on the same trunk passes, named ``"<head>@<seed>"``."""
        out = {}
        for t in trunks or list(self.trunks):
            hs = {h: m for h, m in self.heads[t].items() if heads is None or h in heads}
            if seeds:
                hs.update({f"{h}@{s}": m for h in list(hs) for s, m in self.seed_heads.get(t, {}).get(h, {}).items()
                           if s != self.profile.seed})
            if hs:
                out[t] = (self.trunks[t], hs)
        return out

    def predictor(self, trunk: str) -> Callable[[Tensor], dict[str, Tensor]]:
        """``images (B, 3, H, W) -> {head: logits (B, K)}`` for one trunk and all its heads, in the
        profile's precision (``profile.precision``, ``profile.channels_last``)."""
        t, hs = self.trunks[trunk], self.heads[trunk]
        device = runtime.default_device(self.profile.device)
        amp = runtime.resolve_amp(device, self.profile.precision)
        cl = self.profile.channels_last

        def predict(x: Tensor) -> dict[str, Tensor]:
            x = x.contiguous(memory_format=torch.channels_last) if cl else x
            with torch.no_grad():
                with runtime.autocast(device, amp):  # the trunk in the profile's precision ...
                    feats = t(x, vgg.union_taps(hs))
                feats = engine.float_features(feats)  # ... the heads in float32, as trained
                return {k: h(feats).float() for k, h in hs.items()}

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
                   batch_size: int, device: torch.device, dtype: torch.dtype, name: str, *,
                   precision: str = "float32", channels_last: bool = False
                   ) -> Callable[[str], feature_data.FeatureData]:
    """``split -> FeatureData`` of ``trunk`` at ``taps`` (``gap_only`` stored as global averages), each
    split computed on first use and kept: every seed of every head of a trunk trains and tests on one
    trunk pass per image. ``precision`` (``"float32"`` | ``"bf16"``) and ``channels_last`` set how the trunk
    runs, ``dtype`` how the features are stored."""
    memo: dict[str, feature_data.FeatureData] = {}

    def features(split: str) -> feature_data.FeatureData:
        if split not in memo:
            memo[split] = feature_data.extract_features(lambda x: trunk(x, taps), getattr(splits, split), gap_only,
                                                        batch_size, device, dtype, amp=precision,
                                                        channels_last=channels_last, desc=f"{name} {split} features")
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


class ModelNotCachedError(LookupError):
    """A model :func:`train_or_load_models` was asked only to load is not in the cache."""


class _NotTrained:
    """The training data of one step in ``load_only`` mode: a step asks for its data (calls it, or reads
    it) only when it must train, and then this raises :class:`ModelNotCachedError` naming the model,
    before anything is computed for it (features, batches)."""

    __slots__ = ("message",)

    def __init__(self, model: str, profile: Profile) -> None:
        self.message = (f"{model} of profile {profile.name} (smoke={profile.smoke}) is not in the cache under "
                        f"'{paths.results_dir()}' (notebook 03 trains it with the same profile and parameters)")

    def refuse(self, *args: object, **kwargs: object) -> None:
        raise ModelNotCachedError(self.message)

    __call__ = __len__ = __iter__ = __getitem__ = refuse

    def __getattr__(self, name: str) -> None:
        self.refuse()


def train_or_load_models(profile: Profile, splits: datasets.Splits | None = None,
                         refresh: bool = False, *, load_only: bool = False) -> ModelSet:
    """Train every trunk and head of ``profile`` (or load them from ``results/``) and test them.

    Steps: (1) the plain trunk: pretrained weights (``paper``) or trained from scratch with
    ``trunk_head`` (``demo``, ``cifar``), then frozen; (2) BlurPool and APS trunks: the plain
    trunk's conv weights (+ BatchNorm re-estimation) or their own training; (3) per trunk, the
    features of the train / val / test images computed once; every head trained on them
    (``l2`` on ``l2_heads``); (4) ``vgg/flatten_aug`` trained through the frozen trunk with
    random shifts of up to ``aug_shift`` px; (5) test accuracy and loss of every model.
    Every training run is cached by its configuration and resumes after an interruption.

    ``load_only``: train nothing; a trunk or head missing from the cache raises
    :class:`ModelNotCachedError` naming it before anything is computed for it (its features).
    """
    splits = splits if splits is not None else load_data(profile)
    if profile.num_classes != splits.num_classes:
        raise ValueError(f"profile {profile.name} expects {profile.num_classes} classes, data has {splits.num_classes}")
    b = _Build(profile, splits, refresh, runtime.default_device(profile.device), _data_key(profile, splits),
               dataclasses.replace(profile.trunk_train, device=profile.device),
               dataclasses.replace(profile.head_train, device=profile.device), load_only=load_only)
    _setup_trunks(b)  # (1)-(2)
    for v in profile.variants:
        _train_variant_heads(b, v)  # (3)-(5)
    summary = pd.DataFrame(b.rows).assign(backbone=backbone_label(profile))
    return ModelSet(profile, splits, b.trunks, b.heads, summary, b.histories, b.sources, b.seed_heads,
                    pd.DataFrame(b.runs), b.test_outcomes)


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
    load_only: bool = False  # train nothing: a model missing from the cache is an error (_NotTrained)
    rows: list[dict[str, Any]] = field(default_factory=list)  # one summary row per model
    histories: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    trunks: dict[str, vgg.VGGTrunk] = field(default_factory=dict)
    heads: dict[str, dict[str, vgg.Head]] = field(default_factory=dict)
    trunk_info: dict[str, dict[str, Any]] = field(default_factory=dict)  # summary columns per trunk
    sources: dict[str, Callable[[str], feature_data.FeatureData]] = field(default_factory=dict)
    seed_heads: dict[str, dict[str, dict[int, vgg.Head]]] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)  # one row per (model, seed)
    test_outcomes: dict[str, Tensor] = field(default_factory=dict)  # "<trunk>/<head>@<seed>" -> (N_test,) bool


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
        trunk = _freeze(trunk.to(b.device))
        b.trunks[v.name] = trunk.to(memory_format=torch.channels_last) if profile.channels_last else trunk
        b.trunk_info[v.name]["trunk_setup_seconds"] = time.perf_counter() - t0


def _train_trunk(b: _Build, v: Variant) -> vgg.VGGTrunk:
    """The trunk of ``v`` trained (or loaded) from scratch with the profile's ``trunk_head``."""
    profile, size = b.profile, b.profile.image_size
    replicate = profile.trunk_seed is not None and v.name == "vgg"
    runtime.seed_everything(profile.trunk_seed if replicate else profile.seed)
    trunk = _build_trunk(profile, v, profile.weights or None)
    head = vgg.build_head(profile.trunk_head, trunk, num_classes=profile.num_classes, input_size=size)
    model = vgg.VGGClassifier(trunk, head, freeze_backbone=False, input_size=size)
    key = {"data": b.dkey, "trunk": _trunk_spec(profile, v), "head": profile.trunk_head}
    cfg = b.tcfg
    if replicate:  # a retrained trunk: its own initial weights and batch order
        key["init_seed"] = profile.trunk_seed
        cfg = dataclasses.replace(cfg, seed=profile.trunk_seed)
    train, val = _data(b, f"the {v.name} trunk", b.splits.train, b.splits.val)
    res = training.train_or_load("trunk", key, model, train, val, cfg, refresh=b.refresh,
                                 desc=f"train {v.name} trunk" + (f" (seed {profile.trunk_seed})" if replicate else ""))
    b.histories[f"{v.name}/trunk"] = res.history
    b.trunk_info[v.name] = {"trunk_epochs": len(res.history), "trunk_val_acc": res.best_val_acc,
                            "trunk_seconds": sum(r["seconds"] for r in res.history)}
    return trunk


_BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def _shared_trunk(b: _Build, v: Variant, plain: Variant) -> vgg.VGGTrunk:
    """The trunk of ``v`` with the conv weights of the ``plain`` trunk, its BatchNorm statistics re-estimated on
    the training images (:func:`recalibrate_batchnorm`; cached by the conv weights and the data)."""
    profile = b.profile
    trunk = _build_trunk(profile, v)
    conv = {f"features.{n}": p for n, p in b.trunks[plain.name].features.state_dict().items()}
    pretrained.load_trunk_weights(trunk, conv, source=f"{plain.name} trunk")
    trunk = trunk.to(b.device)
    if profile.batch_norm:  # the trunk has BatchNorm layers (_build_trunk)
        key = {"data": b.dkey, "trunk": _trunk_spec(profile, v), "conv": cache.state_fingerprint(b.trunks[plain.name]),
               "batch_size": profile.trunk_train.eval_batch_size}

        def statistics() -> dict[str, Tensor]:
            recalibrate_batchnorm(trunk, b.splits.train, profile.trunk_train.eval_batch_size, b.device)
            return {k: t.cpu() for k, t in trunk.state_dict().items() if k.rsplit(".", 1)[-1] in _BN_BUFFERS}

        trunk.load_state_dict(cache.cached("batchnorm", key, statistics, refresh=b.refresh), strict=False)
        trunk.eval()
    b.trunk_info[v.name] = {"trunk_source": f"{plain.name} conv weights + BN re-estimated"
                            if profile.batch_norm else f"{plain.name} conv weights"}
    return trunk


def _train_variant_heads(b: _Build, v: Variant) -> None:
    """Steps (3)-(5) for the trunk of ``v``: build its heads (every seed of :meth:`Profile.head_seed_list`),
    train (or load) each kind's seeds together on trunk features computed once, and test them."""
    profile, trunk = b.profile, b.trunks[v.name]
    tkey = {"data": b.dkey, "trunk": _trunk_spec(profile, v), "source": b.trunk_info[v.name]["trunk_source"],
            "trunk_train": b.tcfg.to_dict() if profile.train_trunk else None,
            "plain_trunk_train": profile.trunk_head if profile.train_trunk else None,
            "precision": [profile.precision, profile.channels_last, profile.feature_dtype],
            "weights": cache.state_fingerprint(trunk)}  # the trunk itself (a retrained replicate differs)
    splits = _variant_splits(b, v)
    tkey["train_n"] = len(splits.train)
    seeds = profile.head_seed_list()
    built = {kind: _seeded_heads(b, trunk, kind, seeds) for kind in v.heads}
    aug = _seeded_heads(b, trunk, "flatten", seeds) if v.name == "vgg" and profile.aug_shift > 0 else None
    every = {f"{k}@{s}": h for k, hs in built.items() for s, h in hs.items()}
    every.update({f"aug@{s}": h for s, h in (aug or {}).items()})
    taps = vgg.union_taps(every)
    flat = {h.flatten_tap for h in every.values() if h.flatten_tap}
    gap_only = tuple(t for t in taps if t not in flat)
    features = feature_source(trunk, taps, gap_only, splits, b.hcfg.eval_batch_size, b.device,
                              getattr(torch, profile.feature_dtype), v.name, precision=profile.precision,
                              channels_last=profile.channels_last)
    b.sources[v.name] = features
    b.heads[v.name], b.seed_heads[v.name] = {}, {}
    for kind, heads in built.items():
        _train_head(b, v, tkey, kind, heads, features)
    if aug is not None:
        _train_aug_head(b, v, tkey, aug, features)
    _test_heads(b, v, tkey, features)


def _variant_splits(b: _Build, v: Variant) -> datasets.Splits:
    """The data of ``v``'s heads: the profile's splits, with a seeded subset of ``variant_train`` training
    images for the trunks other than the plain one (their passes cost more)."""
    n = b.profile.variant_train
    if v.name == "vgg" or n is None or n >= len(b.splits.train):
        return b.splits
    return dataclasses.replace(b.splits, train=datasets.take(b.splits.train, n, b.profile.seed + 4))


def _seeded_heads(b: _Build, trunk: vgg.VGGTrunk, kind: str, seeds: tuple[int, ...]) -> dict[int, vgg.Head]:
    """``{seed: Head}`` of ``kind`` sized for ``trunk``, each initialised right after seeding with its seed."""
    out = {}
    for s in seeds:
        runtime.seed_everything(s)
        out[s] = vgg.build_head(kind, trunk, num_classes=b.profile.num_classes, input_size=b.profile.image_size)
    return out


def _head_config(b: _Build, kind: str, base: training.TrainConfig | None = None) -> training.TrainConfig:
    """The head recipe of ``kind``: the profile's, with ``l2`` on ``l2_heads``."""
    profile = b.profile
    return dataclasses.replace(base or b.hcfg, device=profile.device,
                               l2=profile.l2 if kind in profile.l2_heads else 0.0)


def _train_head(b: _Build, v: Variant, tkey: dict[str, Any], kind: str, heads: dict[int, vgg.Head],
                features: Callable[[str], feature_data.FeatureData]) -> None:
    """Train (or load) every seed of head ``kind`` of trunk ``v`` together, on the trunk's features."""
    cfg = _head_config(b, kind)
    key = {"trunk": tkey, "head": kind, "classes": b.profile.num_classes}
    taps = next(iter(heads.values())).taps
    train, val = _data(b, f"{v.name}/{kind}", lambda: features("train").select(taps),
                       lambda: features("val").select(taps))
    results = seeded_heads.train_or_load_seeds("heads", key, heads, train, val, cfg, monitor=cfg.monitor,
                                               refresh=b.refresh, desc=f"{v.name}/{kind}")
    _keep(b, v, kind, heads, results, cfg.l2)


def _keep(b: _Build, v: Variant, kind: str, heads: dict[int, vgg.Head], results: dict[int, training.TrainResult],
          l2: float) -> None:
    """Store the seeds of head ``kind`` (the profile's own seed as ``b.heads``), their histories and summary rows."""
    main = b.profile.seed
    for s, head in heads.items():
        head.eval()
    b.seed_heads[v.name][kind] = heads
    b.heads[v.name][kind] = heads[main]
    b.histories[f"{v.name}/{kind}"] = results[main].history
    b.rows.append(_run_row(f"{v.name}/{kind}", v.name, kind, l2, results[main]))
    for s, r in results.items():
        b.runs.append({"model": f"{v.name}/{kind}", "seed": s, "main": s == main, "epochs": len(r.history),
                       "best_epoch": r.best_epoch, "val_acc": r.best_val_acc,
                       "train_seconds": sum(rec["seconds"] for rec in r.history), "cached": r.loaded})


def _train_aug_head(b: _Build, v: Variant, tkey: dict[str, Any], heads: dict[int, vgg.Head],
                    features: Callable[[str], feature_data.FeatureData]) -> None:
    """Step (4): ``vgg/flatten_aug`` (every seed), on a fixed pool of ``aug_copies`` shifted copies of the
    training images (features computed once; in-memory data) or with fresh shifts every batch through the
    trunk (one run per seed)."""
    profile, trunk = b.profile, b.trunks[v.name]
    pool = profile.aug_copies > 0 and isinstance(b.splits.train, datasets.TensorImages)
    cfg = _head_config(b, "flatten", profile.head_train if pool else (profile.aug_train or profile.head_train))
    cfg = dataclasses.replace(cfg, shift_aug=0 if pool else profile.aug_shift, shift_mode=profile.shift_mode)
    key = {"trunk": tkey, "head": "flatten_aug", "classes": profile.num_classes,
           "pool": {"copies": profile.aug_copies, "max_shift": profile.aug_shift} if pool else None}
    taps = next(iter(heads.values())).taps
    if pool:  # a fixed pool of shifted copies, features computed once (validation: unshifted)
        def aug_features() -> feature_data.FeatureData:
            copies = datasets.shifted_copies(b.splits.train, profile.aug_copies, profile.aug_shift,
                                             profile.shift_mode, profile.seed)
            return feature_data.extract_features(lambda x: trunk(x, taps), copies, (), b.hcfg.eval_batch_size,
                                                 b.device, getattr(torch, profile.feature_dtype),
                                                 amp=profile.precision, desc="vgg shifted-copy features")
        train, val = _data(b, "vgg/flatten_aug", aug_features, lambda: features("val").select(taps))
        results = seeded_heads.train_or_load_seeds("heads", key, heads, train, val, cfg, monitor=cfg.monitor,
                                                   refresh=b.refresh, desc="vgg/flatten_aug")
    else:  # fresh random shifts every batch, through the frozen trunk: one run per seed
        train, val = _data(b, "vgg/flatten_aug", b.splits.train, b.splits.val)
        results = {s: training.train_or_load("head", {**key, "seed": s}, head, train, val,
                                             dataclasses.replace(cfg, seed=s),
                                             extractor=lambda x, taps=taps: trunk(x, taps), refresh=b.refresh,
                                             desc=f"vgg/flatten_aug seed {s}")
                   for s, head in heads.items()}
    _keep(b, v, "flatten_aug", heads, results, cfg.l2)


def _data(b: _Build, model: str, train: Any, val: Any) -> tuple[Any, Any]:
    """A training step's ``(train, val)`` data (or callables giving it); placeholders that refuse to train
    ``model`` in ``load_only`` mode (:class:`_NotTrained`)."""
    if b.load_only:
        return _NotTrained(model, b.profile), _NotTrained(model, b.profile)
    return train, val


def _run_row(model: str, trunk: str, head: str, l2: float, res: training.TrainResult) -> dict[str, Any]:
    """The training columns of one model's summary row (its main seed)."""
    return {"model": model, "trunk": trunk, "head": head, "l2": l2, "epochs": len(res.history),
            "best_epoch": res.best_epoch, "val_acc": res.best_val_acc,
            "train_seconds": sum(r["seconds"] for r in res.history), "cached": res.loaded}


def _test_heads(b: _Build, v: Variant, tkey: dict[str, Any], features: Callable[[str], feature_data.FeatureData]
                ) -> None:
    """Step (5): per-image test outcomes of every seed of every head of trunk ``v`` on its test features
    (one trunk pass, cached with the heads' weights, so a notebook that loads the model set costs no trunk
    pass), the main seed's accuracy, loss and parameter counts in its summary row."""
    trunk = b.trunks[v.name]
    heads = {f"{v.name}/{name}@{s}": head for name, by_seed in b.seed_heads[v.name].items() for s, head in by_seed.items()}
    config = {"trunk": tkey, "heads": {k: cache.state_fingerprint(h) for k, h in heads.items()},
              "test": len(b.splits.test)}

    def outcomes() -> dict[str, Any]:
        test = features("test")
        out = {}
        for k, head in heads.items():
            correct, loss = feature_data.per_item_outcomes(head, test.select(head.taps), b.hcfg.eval_batch_size,
                                                           b.device)
            out[k] = {"correct": correct, "loss": loss}
        return out

    tested = cache.cached("test_outcomes", config, outcomes, refresh=b.refresh)
    for k, o in tested.items():
        b.test_outcomes[k] = o["correct"]
        model, s = k.rsplit("@", 1)
        run = next(r for r in b.runs if r["model"] == model and r["seed"] == int(s))
        run.update(test_acc=float(o["correct"].double().mean()), test_loss=float(o["loss"].double().mean()))
    for name, head in b.heads[v.name].items():
        main = next(r for r in b.runs if r["model"] == f"{v.name}/{name}" and r["main"])
        row = next(r for r in b.rows if r["model"] == f"{v.name}/{name}")
        row.update(kind="flatten" if name == "flatten_aug" else name, test_acc=main["test_acc"],
                   test_loss=main["test_loss"], head_params=accounting.count_parameters(head),
                   trunk_params=accounting.count_parameters(trunk),
                   total_params=accounting.count_parameters(head) + accounting.count_parameters(trunk),
                   **b.trunk_info[v.name])

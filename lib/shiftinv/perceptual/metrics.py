"""Perceptual distances on any VGG-16 trunk: LPIPS as published, the paper's retrained
baseline, the GAP metric, and classical references (PSNR, SSIM).

All metrics take two image batches ``x0, x1`` of shape (N, 3, H, W) with values in [0, 1]
and return (N,) values. Learned metrics are *distances* (0 for identical images, larger =
more different); PSNR and SSIM are *similarities* (:attr:`metric_kind` says which; the
sign convention of every correlation is in :mod:`shiftinv.perceptual.stats`).

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
channel (LPIPS) or the GAP difference (GAP metric). Training (:mod:`shiftinv.perceptual.metric_training`)
and evaluation compute these once per pair and reuse them: an exact shortcut, since the
trunk is frozen.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from ..models.vgg import LPIPS_TAPS, POOL_TAPS
from ..workbook import cache, paths

Trunk = Callable[..., dict]  # trunk(x (N,3,H,W) in [0,1], taps) -> {tap: (N, C, h, w)}


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
    state = cache.safe_torch_load(path if path is not None else lpips_weights_path())
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
    import warnings

    import lpips

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
    """A frozen VGG-16 trunk (:func:`shiftinv.models.vgg.build_trunk`) for the metrics, on ``device``.

    ``pool``: ``"max"`` (plain), ``"blur"`` (BlurPool) or ``"aps"``. Backbone weights: ``weights``
    (anything ``vgg.build_trunk`` accepts: ``"hed"``, ``"keras:<path>"``,
    ``"torchvision-features"``, a torchvision-layout state-dict path, or ``VGG16_Weights.IMAGENET1K_V1``)
    or, when ``None``, :func:`random_vgg16_features` seeded with ``seed``. The same conv weights for
    every ``pool``, so that backbones differ only in their pooling. Input normalisation: the one
    that comes with named weights (caffe for HED and Keras files), else LPIPS's ScalingLayer
    (``normalize="lpips"``, what the lpips package feeds torchvision's VGG-16).
    """
    from ..models import pretrained, vgg

    if "normalize" not in trunk_kwargs:
        # weights that bring their own normalisation keep it (HED / Keras: caffe); torchvision's
        # ImageNet weights and the random init get LPIPS's ScalingLayer (as the lpips package does)
        expected = pretrained.default_normalization(weights)
        trunk_kwargs["normalize"] = "lpips" if expected == "imagenet" else expected
    trunk = vgg.build_trunk(pool=pool, circular=circular, weights=weights, **trunk_kwargs)
    if weights is None:
        state = {f"features.{k}": v for k, v in random_vgg16_features(seed).state_dict().items()}
        pretrained.load_trunk_weights(trunk, state, source=f"random VGG-16 init (seed {seed})")
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

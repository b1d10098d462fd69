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
# # 02 · The model zoo: VGG-16 with GAP heads, and where the parameter numbers come from
#
# The paper keeps VGG-16's 13 pretrained conv layers frozen and changes only what sits on
# top of them. This notebook builds every variant with one call of
# `shiftinv.models.vgg.build_vgg16`, draws them side by side from the built objects, and
# recomputes the paper's parameter accounting (its abstract: "5.2M → 82K" trainable,
# "138M → 14M" total) from the modules themselves. It then looks at the three switches that fight aliasing
# (BlurPool, APS polyphase sampling, circular padding) and checks, on a small network, which
# circular shifts each one makes the GAP features exactly invariant to.
#
# Figures written: `02_architectures`, `02_params`, `02_receptive_field`, `02_circular_shift_drift`
# (PNG + PDF + the numbers behind each, CSV).

# %%
# library
import matplotlib.pyplot as plt
import pandas as pd
import torch

from shiftinv.models import accounting, vgg
from shiftinv.shifts import invariance
from shiftinv.viz import equivariance_plots, figures
from shiftinv.workbook import runtime, see

figures.set_style()

# %% tags=["parameters"]
PROFILE: str = "demo"  # demo (CPU, small width) | cifar | paper (full-width trunk for the shift check)
SMOKE: bool = False  # tiny sizes, used by the test tier
SEED: int = 0  # seed of the random conv weights in the shift check
NUM_CLASSES: int = 160  # classes of the paper's ImageNet subset
INPUT_SIZE: int = 256  # the paper's input side in pixels

# %%
figures.use_profile(PROFILE, smoke=SMOKE)  # figures go to figures/<PROFILE>/ (smoke runs: build/smoke/figures/)
# derived settings (never in the parameters cell)
WIDTH = {"demo": 1 / 8, "natural": 1 / 8, "cifar": 1 / 4, "paper": 1.0}[PROFILE]  # random-init architecture checks
if SMOKE:
    WIDTH = 1 / 16
CHECK_SIZE = 64  # side of the random images in the circular-shift check: two pool5 cells
SHIFTS = list(range(0, 33, 4 if SMOKE else 1))  # diagonal shifts in pixels: one pool5 period
N_IMAGES = 1 if SMOKE else 2
gen = runtime.seed_everything(SEED)
print(f"profile={PROFILE} smoke={SMOKE} width={WIDTH} shifts={len(SHIFTS)}")

# %% [markdown]
# ## 1. One call per variant
#
# `build_vgg16(head, num_classes, weights, freeze_backbone, input_size, **trunk_switches)` builds
# torchvision's VGG-16 conv layers (`torchvision.models.vgg.make_layers`, so the state dict has
# torchvision's keys and its pretrained weights load) and a head:
#
# | head | what goes into the last Linear |
# |---|---|
# | `flatten` | Flatten(pool5): 512 × (S/32) × (S/32) at input side S (the paper's baseline) |
# | `final_gap` | GAP(pool5): 512 numbers |
# | `multi_gap` | GAP of pool1..pool5, concatenated: 64 + 128 + 256 + 512 + 512 = 1,472 (the "online architecture") |
# | `gap_flatten` | both of the above |
# | `fc` | torchvision's stock classifier: AdaptiveAvgPool 7×7 then 3 FC layers |
#
# Pretrained weights: `weights=VGG16_Weights.IMAGENET1K_V1` lets torchvision download them
# (on a machine with internet), or `weights="path/to/vgg16-397923af.pth"` reads a local
# torchvision-layout file with `weights_only=True`. No download happens here: the full-size
# models below are built on PyTorch's `meta` device (shapes without memory), which is all the
# parameter accounting needs.

# %%
full = accounting.zoo_meta_models(NUM_CLASSES, INPUT_SIZE)
print(full["multi_gap"].head)
print(full["multi_gap + APS, circular"].trunk.features[4])

# %% [markdown]
# A missing or wrong weights file stops with a message that says what to do:

# %%
try:
    vgg.build_vgg16("final_gap", weights="no/such/vgg16.pth")
except FileNotFoundError as err:
    print(err)

# %% [markdown]
# ## 2. The architectures side by side
#
# Each column is drawn from `describe_architecture(model)`, i.e. from the modules: the five
# conv blocks with their output shapes at `INPUT_SIZE`, the feature maps the head reads, and the
# head's input length. The conv part is identical in every column; only the head changes, and
# with it the number of trainable parameters. The last column swaps each max-pool for
# max-pool at stride 1 + APS and pads every conv circularly: the parameter count does not
# change (the new layers have none).

# %%
arch = pd.concat([accounting.describe_architecture(m).assign(model=name) for name, m in full.items()])
fig = equivariance_plots.draw_architectures(full, INPUT_SIZE, fig=plt.figure(figsize=(19, 7.5)))
figures.save_figure(fig, "02_architectures", arch)

# %%
see.show("02_architectures", figures.output_dir())

# %% [markdown]
# ## 3. The parameter table, computed
#
# `parameter_table()` builds each model (meta device) and counts `requires_grad` parameters
# (trainable: the trunk is frozen) and all parameters (total). The `fc` row is torchvision's
# stock 1000-class VGG-16, the reference for the paper's "138M".

# %%
table = accounting.parameter_table(num_classes=NUM_CLASSES, input_size=INPUT_SIZE)
red = accounting.headline_reductions(table)
table

# %% [markdown]
# Where each number comes from: the cell below recomputes every count from the layer shapes
# (a 3×3 conv has `9·C_in·C_out + C_out` parameters; a head's Linear `inputs × classes + classes`,
# with `inputs` = 512 × (S/32)² for Flatten(pool5) at input side S, 512 for the final GAP, and the
# sum of the five pools' channels for the multi-GAP) and stops if one disagrees with the table.

# %%
derivation = accounting.zoo_parameter_derivation(full["flatten"], table, NUM_CLASSES)
t = table.set_index("head")
print(f"trainable flatten -> final GAP: {t.loc['flatten', 'trainable']:,} -> {t.loc['final_gap', 'trainable']:,}"
      f"  (-{100 * red['trainable']:.1f}%)")
print(f"total stock VGG-16 -> final GAP: {t.loc['fc', 'total']:,} -> {t.loc['final_gap', 'total']:,}"
      f"  (-{100 * red['total']:.1f}%)")
derivation

# %% [markdown]
# The trainable reduction printed above is the abstract's. The total reduction computed exactly
# differs from the abstract's "-90%", which is the ratio of its rounded figures "138M → 14M". Both
# are drawn below on a log scale, with the exact percentages.

# %%
fig = equivariance_plots.plot_zoo_parameters(table, red)
figures.save_figure(fig, "02_params", table.assign(reduction_trainable=red["trainable"], reduction_total=red["total"]))

# %%
see.show("02_params", figures.output_dir())

# %% [markdown]
# ## 4. Strides and receptive fields per layer
#
# Every tap sees the image on a grid of spacing `stride` pixels (2 after pool1 ... 32 after
# pool5): shifting the input by a multiple of that spacing moves the feature map by whole
# cells, any other shift changes what the cells contain. That is the origin of the periodic
# ripple studied later. The anti-aliased pool (dense 2×2 max, then a 3-tap blur before
# subsampling) widens each unit's receptive field a little.

# %%
rf = accounting.zoo_receptive_field_table(INPUT_SIZE)
fig = equivariance_plots.plot_zoo_receptive_fields(rf)
figures.save_figure(fig, "02_receptive_field", rf)
rf[rf["name"].isin(vgg.POOL_TAPS)].pivot(index="name", columns="pool", values=["receptive_field", "stride"])

# %%
see.show("02_receptive_field", figures.output_dir())

# %% [markdown]
# ## 5. Which circular shifts leave the GAP features unchanged?
#
# With circular padding the network sees the image as one tile of a periodic plane, so
# boundary effects disappear and only the pooling grid matters. We take a width-scaled trunk
# (random conv weights: the property is architectural and holds for any weights), 64 px random
# images, and measure for diagonal circular shifts `s` the relative change of each GAP vector,
# `||GAP(f(roll(x, s))) − GAP(f(x))|| / ||GAP(f(x))||` (`gap_drift_under_circular_shift`).
#
# Shifts run over one pool5 period, 0..32 px. Expected: with max-pool, GAP(pool-k) returns to
# exactly zero drift every 2^k pixels; with APS,
# zero drift at every shift; BlurPool sits in between (smaller, but not zero, drift).

# %%
x = torch.rand(N_IMAGES, 3, CHECK_SIZE, CHECK_SIZE, generator=gen, dtype=torch.float64)  # (N, 3, S, S)
drift = invariance.zoo_circular_drift(x, SHIFTS, WIDTH, SEED)
fig = equivariance_plots.plot_zoo_circular_drift(drift, SHIFTS)
figures.save_figure(fig, "02_circular_shift_drift", drift)

# %%
see.show("02_circular_shift_drift", figures.output_dir())

# %%
# the shifts at which each tap's GAP is exact (drift at float64 rounding level)
print(invariance.zoo_exact_shifts(drift).to_string())
print("largest APS drift over all shifts and taps:", drift.loc[drift["pool"] == "aps", "drift"].max())

# %% [markdown]
# What the run shows:
#
# - **max-pool**: GAP(pool-k) is exact only at multiples of 2^k; everywhere else it drifts. This is the discrete pooling grid the paper's abstract names as the source of
#   the residual periodic aliasing.
# - **APS**: exact at every shift (the largest drift printed above is float64 round-off): keeping the
#   polyphase component with the largest norm makes the subsampling choice move with the image.
# - **BlurPool**: smaller drift, and exact one level *earlier* than max-pool (GAP(pool-k) at
#   multiples of 2^(k-1)). The binomial filter vanishes at the Nyquist frequency, which is exactly what
#   subsampling by 2 would alias onto the mean; so the mean after BlurPool equals the mean of
#   the dense max-pool before it (a unit test proves this exactly).
#
# With zero/reflect padding (the usual setting) even shifts by 32 are not exact: the borders
# move. Later notebooks separate that boundary effect from aliasing.

# %% [markdown]
# ## Summary
#
# - One builder gives all five heads and the anti-aliasing switches; the conv trunk keeps
#   torchvision's layout, so its pretrained weights load unchanged.
# - The paper's parameter numbers come out of the built modules (section 3 prints them and the
#   reductions); the abstract's "-90%" total reduction is the ratio of its rounded 138M → 14M.
# - GAP after pool-k inherits the 2^k-pixel grid: exact invariance only for shifts that are
#   multiples of the stride (with circular padding); APS removes the grid dependence entirely,
#   BlurPool reduces it.

# %% [markdown]
# ## Exercises
#
# 1. The LPIPS taps are `relu1_2 ... relu5_3` rather than the pools. How many trainable parameters
#    does a multi-GAP head on those taps have (`NUM_CLASSES` classes)? Predict, then build it.
# 2. The flatten head grows with the input. From which input size does the flatten head alone have
#    more trainable parameters than the whole final-GAP model (trunk included)?
# 3. With max-pool and circular padding, what period do you expect for GAP(pool3)? Check it in the
#    drift table of section 5.

# %% tags=["solution"]
# Exercise 1: same channel counts as the pools (64, 128, 256, 512, 512), so the same count as the multi-GAP head.
with torch.device("meta"):
    lp = vgg.build_vgg16("multi_gap", gap_taps=vgg.LPIPS_TAPS)
print("exercise 1:", accounting.count_parameters(lp, trainable_only=True))

# %% tags=["solution"]
# Exercise 2: 512 * s^2 * classes + classes must exceed the final-GAP total: s pool5 cells of 32 px a side.
final_total = t.loc["final_gap", "total"]
with torch.device("meta"):
    for size in range(256, 641, 32):
        flat = accounting.count_parameters(vgg.build_vgg16("flatten", input_size=size), trainable_only=True)
        if flat > final_total:
            print(f"exercise 2: from {size} px ({flat:,} > {final_total:,})")
            break

# %% tags=["solution"]
# Exercise 3: pool3 sits after three halvings: period 2**3 = 8 px.
d3 = drift[(drift["pool"] == "max") & (drift["tap"] == "pool3")]
print("exercise 3: exact shifts for max-pool GAP(pool3):", d3.loc[d3["drift"] < 1e-12, "shift"].tolist())

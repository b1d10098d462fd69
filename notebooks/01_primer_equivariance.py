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
# # 01 · Primer: equivariance, aliasing and invariance
#
# A convolutional network is built from three kinds of operation. This notebook checks,
# numerically and on a real photograph, what each does to a translation of the input:
#
# 1. **Convolution is shift-equivariant**: shifting the input shifts the output by the same amount.
# 2. **Downsampling (max-pool, stride) breaks equivariance**: the output of a shifted input is no
#    longer a shifted output, except for shifts that are multiples of the stride. This is *aliasing*.
# 3. **Global average pooling (GAP) gives invariance**: averaging over all positions forgets where
#    things are, exactly so for circular shifts when nothing downstream aliases.
# 4. **Blurring before subsampling (BlurPool) reduces the error** without removing it.
#
# Every claim below is also a unit test of the library functions used here (`tests/test_primer.py`).
# Shifts are circular (`torch.roll`) and convolutions use circular padding, so that image borders play
# no role: what remains is the effect of sampling alone.
#
# Figures: `01_conv_equivariance`, `01_downsampling_phase`, `01_gap_invariance`, `01_blurpool`.

# %%
# library
import pandas as pd
import torch
import torch.nn.functional as F

from shiftinv.shifts import primer
from shiftinv.viz import equivariance_plots, figures
from shiftinv.workbook import see

figures.set_style()

# %% tags=["parameters"]
PROFILE: str = "demo"  # only the embedded image is used here, for every profile
SMOKE: bool = False  # tiny sizes, used by the test tier
SEED: int = 0  # seed of the random toy-network weights

# %%
figures.use_profile(PROFILE, smoke=SMOKE)  # figures go to figures/<PROFILE>/ (smoke runs: build/smoke/figures/)
# derived settings (never in the parameters cell)
size = 64 if SMOKE else 128  # image side in pixels
max_shift = 8 if SMOKE else 32  # shifts 0..max_shift px
shifts = list(range(max_shift + 1))
shown_shift = 5 if SMOKE else 13  # the shift drawn in section 1
blur_depth = 3  # stride-2 stages of the BlurPool networks of section 4 (compared with max-pool)
image = primer.sample_image(size)  # (1, 3, size, size) in [0, 1]
print(f"image {tuple(image.shape)}, shifts 0..{max_shift} px")

# %% [markdown]
# ## 1. Convolution commutes with shifts
#
# Take one circular 3x3 convolution with random weights, `f`. Compare `f(shift(x))` with `shift(f(x))`.
# They agree to floating-point precision for every shift: a convolution applies the same weights at
# every position, so it cannot tell where it is.

# %%
conv = primer.toy_cnn(depth=1, down="none", channels=primer.PRIMER_CHANNELS, seed=SEED)
a = conv(primer.roll(image, shown_shift)).detach()  # f(shift(x))   (1, 8, H, W)
b = primer.roll(conv(image), shown_shift).detach()  # shift(f(x))
conv_err = primer.toy_equivariance_error(conv, image, shifts, stride=1)
print(f"max relative error over shifts 0..{max_shift}: {conv_err.max():.2e}")

# %%
fig = equivariance_plots.plot_primer_conv_equivariance(image, a, b, shown_shift, shifts, conv_err)
figures.save_figure(fig, "01_conv_equivariance", pd.DataFrame({"shift_px": shifts, "relative_error": conv_err.numpy()}))

# %%
see.show("01_conv_equivariance", figures.output_dir())

# %% [markdown]
# ## 2. Downsampling breaks equivariance, with a period set by the stride
#
# Add a stride-2 downsampling after the convolution. A shift by an **even** number of pixels moves the
# output by exactly half as many samples; an **odd** shift falls between output samples, and the output
# changes in a way no integer shift can undo. The error depends on the *phase* of the shift modulo the
# stride. Max-pooling, plain striding and BlurPool are compared; with `depth` stages the period is `2**depth`.

# %%
phase = primer.primer_phase_table(image, shifts, SEED)
fig = equivariance_plots.plot_primer_phase(phase, max_shift)
figures.save_figure(fig, "01_downsampling_phase", phase)

# %%
see.show("01_downsampling_phase", figures.output_dir())

# %% [markdown]
# ## 3. Global average pooling gives invariance
#
# Averaging the final feature map over all positions turns an *equivariant* map into an *invariant*
# vector: a rigidly shifted map has the same mean. So the GAP output is exactly invariant to every
# circular shift when nothing aliases (no downsampling), and to the shifts that are multiples of the
# total stride `2**depth` otherwise. In between, the aliasing of section 2 leaks through as a periodic
# ripple: this is the **residual periodic aliasing** the paper reports for VGG-16. Which period do its five
# pools give? (Exercise 1.)

# %%
gap = primer.primer_gap_table(image, shifts, SEED)
fig = equivariance_plots.plot_primer_gap(gap)
figures.save_figure(fig, "01_gap_invariance", gap)

# %%
see.show("01_gap_invariance", figures.output_dir())

# %% [markdown]
# ## 4. Blurring before subsampling reduces aliasing
#
# BlurPool (Zhang, 2019) evaluates the max densely (stride 1), low-pass filters it with a binomial kernel,
# and only then subsamples. Larger kernels remove more of the frequencies that would alias, so the GAP
# output changes less between the exact shifts. Filter size 1 is no blur at all, i.e. plain max-pooling.

# %%
blur = primer.primer_blur_table(image, shifts, SEED, gap, depth=blur_depth)
fig = equivariance_plots.plot_primer_blur(blur, blur_depth)
figures.save_figure(fig, "01_blurpool", blur)
blur

# %%
see.show("01_blurpool", figures.output_dir())

# %% [markdown]
# ## Summary
#
# - Convolution commutes with shifts (error at float precision).
# - Stride-2 downsampling is equivariant only to shifts that are multiples of 2 (of `2**k` after `k` stages):
#   the error is periodic in the shift.
# - A global average pool converts equivariance into invariance, exactly where equivariance holds, so the
#   residual error of a GAP network is periodic with period equal to its total stride.
# - Blurring before subsampling shrinks the residual error; it does not make it zero. Exact invariance needs
#   a different sampling rule (adaptive polyphase sampling, notebook 02) or no subsampling.
#
# ## Exercises
#
# 1. VGG-16 has five stride-2 max-pools before its last GAP tap. At which shifts is a GAP after `pool5`
#    exactly invariant (circular shifts, circular padding)? Check with `primer.toy_cnn(depth=5, ...)` on a
#    128 px image.
# 2. Which aliases more in section 2, plain striding or max-pooling? Why might max-pooling be worse for
#    some images?
# 3. Replace the circular shift by a shift with zero padding (`torch.nn.functional.pad`, then crop).
#    Is the convolution still exactly equivariant? Where does the error come from?

# %% tags=["solution"]
# Exercise 1: exact invariance only at multiples of 2**5 = 32 px.
net5 = primer.toy_cnn(depth=5, down="maxpool", channels=8, seed=SEED)
big = primer.sample_image(128)
err5 = primer.invariance_error(net5, big, [0, 1, 16, 31, 32, 64])
print({s: f"{e:.1e}" for s, e in zip([0, 1, 16, 31, 32, 64], err5.tolist())})

# %% tags=["solution"]
# Exercise 2: compare the mean equivariance error per downsampler at depth 1.
print(phase[phase.depth == 1].groupby("downsampler").relative_error.mean())
# Max-pooling picks the largest value in each 2x2 window: which value wins can change abruptly when
# content moves by one pixel, a strongly non-linear (and so broadband) operation.

# %% tags=["solution"]
# Exercise 3: with zero padding, content leaves the frame and zeros enter, so the outputs differ near
# the border (a boundary effect, not aliasing); the interior still commutes.
x = image
shifted = F.pad(x, (3, 0, 0, 0))[..., :, : x.shape[-1]]  # shift right by 3 px, zeros enter on the left
conv0 = torch.nn.Conv2d(3, 4, 3, padding=1)
with torch.no_grad():
    d = conv0(shifted) - F.pad(conv0(x), (3, 0, 0, 0))[..., :, : x.shape[-1]]
print("error in the interior:", d[..., 2:-2, 5:-2].abs().max().item(), "| at the border:", d.abs().max().item())

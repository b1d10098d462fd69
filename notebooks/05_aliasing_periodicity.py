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
# # 05 · Aliasing periodicity: what GAP leaves behind, and an explorer
#
# The paper's abstract ends on a limit: "discrete pooling leaves a residual periodic aliasing". A global
# average read after `k` stride-2 pools is **exactly** invariant to circular shifts by multiples of `2**k`
# (with circular padding), and to nothing else. So a GAP head's response over a line of shifts should repeat
# with period `2**k`: 2 px after pool1 ... 32 px after pool5. On dense 1-px sweeps along `dx` we measure the
# spectrum of each response (section 3), the share of its energy at the predicted period (section 4), the
# same with no border at all (circular padding and shifts) and with APS (section 5), and where in the trunk
# the periods arise (section 6); section 7 is an interactive explorer. The periods are a property of the
# architecture, so they must appear with real weights too (`natural`, `cifar`: the HED VGG-16).
#
# Figures: `05_profiles_spectra`, `05_periodicity`, `05_ripple`, `05_boundary_vs_aliasing`, `05_phase_equivariance`,
# `05_explorer`.

# %%
# library
import pandas as pd
from IPython.display import display

from shiftinv.shifts import invariance, periodicity, sweep
from shiftinv.study import aliasing, analysis, modelset, profiles, replicates
from shiftinv.viz import aliasing_plots, equivariance_plots, explorer, figures
from shiftinv.workbook import claims, runtime, see

figures.set_style()
pd.set_option("display.width", 180)

# %% tags=["parameters"]
PROFILE: str = "demo"  # demo (digits, CPU) | natural (MNIST canvas, HED VGG-16, CPU) | cifar (CIFAR-10 photos, HED VGG-16, CPU) | paper (ImageNet-160, GPU)
SMOKE: bool = False  # tiny sizes, used by the test tier
N_IMAGES: int = 0  # test images per sweep (0: the profile's n_aliasing)
EXACT_IMAGES: int = 8  # images of the exact checks (circular padding, APS): float32, a theorem needs few
MAX_SHIFT: int = 48  # dense sweep of dx from -MAX_SHIFT to MAX_SHIFT - 1 at dy 0 (pool5 period: 32 px)
EQUIV_IMAGES: int = 2  # images of the per-layer equivariance figure (shifts over one pool5 period)
EXPLORER_HEAD: str = "vgg/multi_gap"  # fixed choices of the headless explorer figure
EXPLORER_LAYER: str = "pool3"
EXPLORER_IMAGE: int = 0
EXPLORER_DX: int = 3
EXPLORER_DY: int = 0
IMAGENET_DIR: str = ""  # paper: ImageNet folder with train/<wnid>/ and val/<wnid>/
CIFAR_DIR: str = ""  # cifar: CIFAR-10 folder (empty: $SHIFTINV_DATA/cifar10_jpg)
MNIST_DIR: str = ""  # natural: folder holding MNIST/raw (empty: $SHIFTINV_DATA/mnist, test split only)
VGG_WEIGHTS: str = ""  # hed | keras:<path.h5> | torchvision-features | IMAGENET1K_V1 | a .pth (empty: the profile's)
DEVICE: str = ""  # empty: CUDA when available, else CPU
OVERRIDES: str = ""  # sizes for bigger runs, comma-separated FIELD:VALUE (e.g. image_size:256,n_sweep:1000)
PRECISION: str = ""  # float32 | bf16: the trunk's arithmetic outside the exact checks (empty: the profile's)
RECIPE: str = ""  # may2026 | nov2024: the authors' head recipe (empty: the profile's)

# %%
figures.use_profile(PROFILE, smoke=SMOKE)  # figures go to figures/<PROFILE>/ (smoke runs: build/smoke/figures/)
# derived settings (never in the parameters cell)
profile = profiles.profile_from_params(PROFILE, SMOKE, data_dir=IMAGENET_DIR or CIFAR_DIR or MNIST_DIR,
                                       weights=VGG_WEIGHTS, device=DEVICE, overrides=OVERRIDES,
                                       precision=PRECISION, recipe=RECIPE)
figures.record_sources(data=profile.dataset, backbone=profile.weights or "trained here")  # kept by publishing
device = runtime.default_device(profile.device)
n_images = N_IMAGES or profile.n_aliasing or profile.n_sweep
max_shift = min(16 if SMOKE else MAX_SHIFT, profile.image_size // 2)
explorer_dx, explorer_dy = (min(EXPLORER_DX, max_shift), EXPLORER_DY) if not SMOKE else (3, 0)
print(f"profile {profile.name} (smoke={profile.smoke}), {n_images} images, dx = {-max_shift}..{max_shift - 1} "
      f"({2 * max_shift} shifts, every integer), protocol shift '{profile.shift_mode}', device {device}")

# %% [markdown]
# ## 1. Models, and the GAP-depth ablation
#
# The model set of notebook 03 (cached). On its plain trunk we add five heads, each reading the
# global average of **one** pool: `gap_pool1` ... `gap_pool5`. They are trained like every other
# head (frozen trunk, features computed once) and exist to test the prediction "period `2**k`
# after pool `k`" one depth at a time.

# %%
ms = modelset.train_or_load_models(profile)
vgg_heads, depth_table, circ = aliasing.aliasing_models(ms)  # + gap_pool1..5, and the circular-padding copy
depth_table

# %% [markdown]
# ## 2. Three settings, one dense line of shifts
#
# - **protocol**: the trunks as trained (zero padding in the convolutions), shifted with the
#   profile's protocol (`zero` canvas for digits, the mirror mosaic for natural images): borders
#   and aliasing together;
# - **circular**: the *same* weights with circular padding, shifted circularly: no border exists,
#   only aliasing remains;
# - **APS**: the APS trunk (polyphase downsampling, circular padding), shifted circularly.
#
# Each sweep keeps the logits, so we can look at the logit of the true class as well as the loss.
# Sweeps are cached by their configuration.

# %%
results = aliasing.aliasing_sweeps(ms, vgg_heads, circ, n_images, max_shift, EXACT_IMAGES)
{name: f"{r.num_shifts} shifts x {r.num_images} images x {len(r.heads)} heads" for name, r in results.items()}

# %% [markdown]
# ## 3. Responses and their spectra, per GAP depth
#
# One row per head. Left: the logit of the true class against `dx`, averaged over the images,
# minus its mean, in both settings. Middle and right: the power spectrum of the per-image
# responses (energies pooled over images), with the predicted frequency `1/P` and its harmonics
# `m/P` dotted. Under circular padding (right) all the energy of `gap_poolk` sits on multiples
# of `1/2**k`; what is left between them is float round-off.

# %%
curves = aliasing.aliasing_spectra_curves(results, aliasing.SPECTRUM_HEADS)
fig = aliasing_plots.plot_aliasing_spectra(
    curves, aliasing.predicted_periods(ms.trunks["vgg"], vgg_heads, aliasing.SPECTRUM_HEADS),
    f"{profile.name}: residual response of each head over a dense line of shifts, and its spectrum")
figures.save_figure(fig, "05_profiles_spectra", curves)

# %% [markdown]
# ## 4. The periodicity index: is the period the one the architecture predicts?
#
# For every head and setting, `periodicity.periodicity_summary` reports: the predicted period `P`
# (from the deepest GAP tap's stride; none for heads with a flatten part; 1 for APS), the
# **exact period found** in the data (smallest `P` with `R(dx + P) = R(dx)` for every image, up
# to float round-off: `periodicity.exact_period`'s relative tolerance), the periodicity index (energy at `1/P` and its harmonics over the
# non-constant energy) beside its white-noise level, the smallest period explaining 90 % of the
# image-mean response (`90%`: a harmonic when one depth dominates), the largest
# deviation from exact periodicity `max |R(dx + P) - R(dx)|` and from invariance
# `max |R(dx) - R(0)|`.

# %%
period_table = aliasing.aliasing_period_table(results, ms.trunks, {**ms.heads, "vgg": vgg_heads}, circ)
cols = ["setting", "head", "field", "predicted_period", "exact_period", "fraction", "chance", "fundamental_period",
        "periodic_deviation", "invariance_deviation", "ripple"]
period_table[period_table["field"] == "true_logit"][cols].round(4)

# %%
fig = aliasing_plots.plot_aliasing_periodicity(period_table)
figures.save_figure(fig, "05_periodicity", period_table)

# %%
see.show("05_periodicity", figures.output_dir())

# %% [markdown]
# ### Is the period-32 ripple there on this profile's images, beyond noise?
#
# The sweeps above use few images. Notebook 04's dense 1-px line of the plain trunk (`n_sweep` images,
# every head seed, and every retrained trunk where the profile trains one) decides it: the fraction of the
# true-class logit's energy at period 32 and its harmonics over what white noise would put there
# (`ripple`: 1 = noise), with its 95% interval over images and runs.

# %%
reps = replicates.trunk_replicates(ms)
lines = analysis.replicate_sweeps(reps, "profile", trunks=["vgg"], keep_logits=True)  # notebook 04's, cached
ripple = aliasing.ripple_table(lines, reps)
fig = aliasing_plots.plot_ripple(ripple)
figures.save_figure(fig, "05_ripple", ripple)
ripple[["head", "predicted_period", "fraction", "chance", "ripple", "ripple_lo", "ripple_hi", "runs", "n_images"]]

# %%
see.show("05_ripple", figures.output_dir())

# %% [markdown]
# ## 5. Boundary effects vs aliasing, and APS
#
# The multi-GAP head in the three settings (and `final_gap` under APS): with borders, the
# response drifts on top of the ripple; with circular padding it is exactly periodic with the
# period of its deepest tap (pool5); with APS pooling it is flat: the only exactly shift-invariant model here, to the precision
# of floating point.

# %%
fig = aliasing_plots.plot_aliasing_boundary(results)
check = aliasing.aliasing_boundary_check(period_table)
figures.save_figure(fig, "05_boundary_vs_aliasing", check)
check

# %%
see.show("05_boundary_vs_aliasing", figures.output_dir())

# %% [markdown]
# What this profile's data decide (the exact checks are theorems: they hold on any weights, up to float32
# round-off; the ripple above is decided on intervals):

# %%
claims.show("05", figures.output_dir())

# %% [markdown]
# ## 6. Per-layer, phase-resolved equivariance: where the periods come from
#
# A feature map is **equivariant** to a shift `d` when shifting the input shifts the map:
# `F(T_d x) = T_{d/r} F(x)`, with `r` the layer's total stride. After `k` stride-2 pools
# (`r = 2**k`) this can only hold when `d` is a whole number of feature pixels, i.e. a multiple
# of `2**k`. So the error depends on the shift's **phase** `d mod 2**k`, not on its size: with
# circular padding and circular shifts it is exactly 0 (up to float round-off) at phase 0, and
# non-zero at every other phase, where the pools sample the map at other positions (aliasing).
# How large it is there depends on how much the map varies between its pixels: deep maps of small
# images vary little, so their relative error is smaller, but it is never zero.
# A GAP over an exactly equivariant map is exactly invariant: this is why the GAP(pool`k`) head
# repeats with period `2**k` in sections 3-4.
#
# `invariance.equivariance_error` measures, for each tap, `||F(T_d x) - T_{d/r} F(x)||² / ||F(x)||²`
# (the shifted map moved back by `round(d/r)` feature pixels), here on the circular-padding copy
# of the plain trunk (same weights), for shifts `dx` over one period of pool5 on the first
# `EQUIV_IMAGES` test images. `relu1_2` (stride 1) is the control: equivariant to every shift.

# %%
images, labels = ms.test_tensors(n_images)  # (N, 3, H, W) in [0, 1], (N,): the images swept above
equiv = invariance.equivariance_error(circ, images[:EQUIV_IMAGES], aliasing.EQUIVARIANCE_TAPS, mode="circular",
                                     device=device)
fig = equivariance_plots.plot_equivariance_by_phase(
    equiv, title=f"{profile.name}: equivariance error of each layer of the circular trunk, by phase within its stride")
figures.save_figure(fig, "05_phase_equivariance", equiv)
invariance.error_by_phase(equiv).pivot_table(index="tap", columns="phase_x", values="mean_error", sort=False)

# %%
see.show("05_phase_equivariance", figures.output_dir())

# %% [markdown]
# ## 7. The explorer
#
# For one head, layer, image and shift: the shifted input (red: the shift vector), the layer's
# feature map (mean over channels) for the unshifted and the shifted image, their **aligned**
# difference (the shifted map moved back by `round(d / stride)` feature pixels: zero when the
# layer is equivariant to this shift, i.e. for multiples of its stride under circular shifts), and
# the change of that layer's GAP vector, which is what a GAP head reads. Below, first the panels
# for the fixed choices of the parameters cell (saved as `05_explorer`), then the live widget.

# %%
explorer_models = aliasing.aliasing_explorer_models(ms, vgg_heads, circ)
class_names = list(ms.splits.classes)
panels = explorer.compute_panels(explorer_models[EXPLORER_HEAD], images[EXPLORER_IMAGE], EXPLORER_LAYER,
                                 explorer_dx, explorer_dy, mode=profile.shift_mode, label=int(labels[EXPLORER_IMAGE]),
                                 head=EXPLORER_HEAD, class_names=class_names)
print(explorer.panel_text(panels))
fig = explorer.draw_panels(panels)
figures.save_figure(fig, "05_explorer", explorer.panels_data(panels))

# %%
view = explorer.explorer_widget(
    explorer_models, images, labels, layers=aliasing.POOL_TAPS, max_shift=max_shift,
    modes=(profile.shift_mode, "circular") if profile.shift_mode != "circular" else ("circular",),
    class_names=class_names,
    initial={"head": EXPLORER_HEAD, "layer": EXPLORER_LAYER, "image": EXPLORER_IMAGE},
)
display(view)

# %% [markdown]
# Things to try: choose `vgg+circular/multi_gap`, layer `pool3`, shift mode `circular`. Which shifts
# leave the aligned difference and the GAP change at zero, and which do not (exercise 1)? What changes
# when you switch the layer to `pool5`? Which head keeps the GAP change at zero for every circular shift?

# %% [markdown]
# ## Summary
#
# - With circular padding and circular shifts, the response of the head reading GAP(pool`k`) repeats
#   exactly with period `2**k`, on any weights. <!-- claim: circular_exact_periods holds -->
#   This is the abstract's "residual periodic aliasing", isolated from every border effect.
# - With borders (the protocol's shifts, zero padding) the response drifts on top of any ripple, so the
#   periodicity index drops below 1 by the share of that drift; whether the period-32 ripple still stands
#   out from noise on this profile's images is the `ripple` verdict above.
# - APS pooling with circular padding makes the GAP heads invariant to every circular shift.
#   <!-- claim: aps_exact_invariance holds --> Whether BlurPool reduces the ripple is exercise 3 (the
#   `ripple` column of the table in section 4, this profile's data).
# - Heads with a flatten part read position itself: what period their response has is exercise 2.

# %% [markdown]
# ## Exercises
#
# 1. With the circular trunk, at `pool3`, compare shifts of 8 and 4 px in the explorer's panels
#    (`explorer.compute_panels`). Which one is exact, and why?
# 2. What is the smallest period of the flatten head's response under circular shifts? Sweep a full
#    circle of shifts (`dx = 0 .. H-1`, which repeats after H px by construction) and use
#    `periodicity.fundamental_period` with `max_period` half the image size (two full cycles at least).
# 3. Does BlurPool reduce the ripple? Compare the `ripple` column of `blur/multi_gap` and
#    `vgg/multi_gap` in the protocol setting.

# %% tags=["solution"]
# Exercise 1: pool3 has stride 8: a circular shift by 8 px moves its map by exactly one cell (equivariant),
#    4 px falls between two cells (aliasing).
m = explorer_models["vgg+circular/multi_gap"]
for d in (8, 4):
    p = explorer.compute_panels(m, images[0], "pool3", d, 0, mode="circular")
    print(f"shift {d} px: aligned map difference {p.map_change:.2e}, GAP change {p.gap_change:.2e}")

# %% tags=["solution"]
# Exercise 2: under circular shifts the flatten head sees the pool5 map rolled, and each position has
#    its own weights: its response need not repeat before the whole image (H px). NaN: no period found.
size = profile.image_size
full = sweep(circ, {"flatten": vgg_heads["flatten"]}, images[:4], labels[:4], [(dx, 0) for dx in range(size)],
             "circular", batch_size=profile.sweep_batch, device=profile.device, progress=False)
period = periodicity.fundamental_period(full.loss["flatten"].double().mean(1).numpy(), max_period=size // 2)
print(f"flatten head: smallest period up to {size // 2} px (half the image): {period}")

# %% tags=["solution"]
# Exercise 3: ripple (std over dx of the image-mean response), protocol setting.
period_table[(period_table["setting"] == "protocol") & period_table["head"].isin(["vgg/multi_gap", "blur/multi_gap"])][
    ["head", "field", "ripple", "invariance_deviation"]]

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
# # 11 · Audit your own model: does it change its mind when the image moves?
#
# Notebooks 04-05 measure the workbook's own VGG-16 heads. This one points the same measurements
# at **any** image classifier: a torch module, a TorchScript file, a torchvision or timm architecture
# with a weights file, or a black box in another runtime (here a LiteRT file). Every image is
# evaluated once at one set of shifted views, and every published measure is read from that grid:
# consistency as antialiased-cnns measures it (crop windows) and as APS measures it (circular rolls),
# ImageNet-P's flip probability, Azulay & Weiss's one-pixel change, accuracy range and worst-case
# accuracy, the smallest shift that changes the answer, and how much the output moves. For torch
# models it also says **why**: the spectrum of the output over shifts at the periods the model's
# own strides predict, and the per-layer equivariance error that produces them.
#
# Default: the workbook's own heads on the profile's test images (offline). With `PROFILE="natural"`
# and the real data present: a quantised MobileNetV2 trained by Google, as a black box on the
# ImageNet sample photos (one per class for a fifth of the classes). The same audit from a shell:
# `shiftinv-audit --model ... --images ...`.
#
# Figures: `11_accuracy_consistency`, `11_diagonal`, `11_prediction_maps`, `11_spectra`,
# `11_layer_equivariance`, `11_gallery`; the whole report: `11_report.html` (with `11_report.json`
# and `11_report_per_image.csv`).

# %%
# library
import pandas as pd

from shiftinv.audit import protocol, report, run, subject
from shiftinv.viz import audit_plots, figures
from shiftinv.workbook import paths

figures.set_style()
pd.set_option("display.width", 180)

# %% tags=["parameters"]
PROFILE: str = "demo"  # demo | natural (LiteRT MobileNetV2 on ImageNet photos when ../shared has them) | cifar | paper
SMOKE: bool = False  # tiny sizes, used by the test tier
MODEL: str = ""  # your model, see shiftinv.audit.loaders (a .tflite, a TorchScript .pt, torchvision:NAME ...); empty: the default
WEIGHTS: str = ""  # state-dict file of MODEL (factory, torchvision or timm names)
IMAGES: str = ""  # folder of images, or of class sub-folders (needed with MODEL)
LABELS: str = ""  # CSV with columns file,label for a flat IMAGES folder (empty: label-free unless sub-folders)
HEADS: str = "vgg/flatten,vgg/multi_gap,aps/multi_gap"  # the workbook heads audited side by side
PRESET: str = ""  # smoke | quick | default | full (empty: quick for the workbook heads, default otherwise)
N_IMAGES: int = 0  # images audited (0: 12 workbook test images, or every image of the folder)
DEVICE: str = ""  # cpu, cuda (empty: CUDA when available)
BF16: bool = False  # bf16 autocast for torch models (its agreement with float32 is measured)

# %%
figures.use_profile(PROFILE, smoke=SMOKE)  # figures go to figures/<PROFILE>/ (smoke runs: build/smoke/figures/)
# derived settings (never in the parameters cell)
choice = subject.choose_subject(PROFILE, SMOKE, model=MODEL, weights=WEIGHTS, images=IMAGES, labels=LABELS,
                                heads=HEADS, n_images=N_IMAGES, preset=PRESET)
preset = protocol.get_preset(choice.preset)
print(f"auditing {choice.reason}; preset {preset.name}: {len(preset.shifts())} offsets x protocols "
      f"{preset.protocols}; results kept in {paths.results_dir() / 'audit'}")

# %% [markdown]
# ## 1. The models and the images
#
# Each image becomes a source of the model's input size plus the preset's radius on every side; the
# crop protocol moves a window inside it, the other protocols move the centre view. A file that
# cannot be read, or is too small, is named below and left out; the others are audited.

# %%
models, images = subject.load_subject(choice, preset, smoke=SMOKE)
print(f"{len(images)} images ({'labelled' if images.labelled else 'label-free'}), left out: {images.bad or 'none'}")
pd.DataFrame({"model": [m.name for m in models], "from": [m.description for m in models],
              "input": [m.input_size for m in models], "torch module": [m.hookable for m in models]})

# %% [markdown]
# ## 2. One grid of shifted views, every measure
#
# `run.audit` sweeps each model over the preset's offsets under each protocol (resumable: an
# interrupted run continues from `results/audit/`) and reads every measure from that grid. The
# protocol block says how each number was measured; the table gives each with a 95% bootstrap
# interval over images.

# %%
result = run.audit(models, images, preset, out_dir=paths.results_dir() / "audit", device=DEVICE or None,
                   amp="bf16" if BF16 else False)
pd.Series(result.protocol, dtype=object)

# %%
report.summary_table(result)

# %% [markdown]
# ## 3. Accuracy is not invariance
#
# Consistency (the chance that two shifted views get the same answer) against accuracy on the
# unshifted images. A model can be accurate and unstable, or stable because it is consistently wrong:
# the summary's `consistency_if_correct` / `consistency_if_wrong` separate the two.

# %%
figs = {}  # every figure, for the report of section 8
figs["accuracy and consistency"] = fig = audit_plots.plot_accuracy_consistency(result.summary)
figures.save_figure(fig, "11_accuracy_consistency", result.summary)

# %% [markdown]
# What to see: points to the right are more stable under shifts; points higher are more accurate.
# Each model appears once per protocol: the gap between its crop and circular points is what the
# image border adds to aliasing.

# %% [markdown]
# ## 4. One pixel at a time along the diagonal
#
# Azulay & Weiss shift the image one pixel at a time along the diagonal and follow the probability
# of the right class. An invariant model draws a flat line.

# %%
figs["diagonal"] = fig = audit_plots.plot_diagonal_curves(result.diagonal)
figures.save_figure(fig, "11_diagonal", result.diagonal)

# %% [markdown]
# What to see: jagged curves are the one-pixel fragility of the summary's `diag_top1_change`; a
# smooth slope is the content leaving the frame, not aliasing.

# %% [markdown]
# ## 5. Where on the grid the answer changes

# %%
figs["prediction maps"] = fig = audit_plots.plot_agreement_maps(result.maps)
figures.save_figure(fig, "11_prediction_maps", result.maps)

# %% [markdown]
# What to see: the share of images whose answer equals the unshifted one, for every offset
# `(dx, dy)`. A checkerboard whose cells are the model's stride is aliasing; a fall-off towards the
# edges is position dependence (a flatten head) or the border.

# %% [markdown]
# ## 6. Why: the periods of the output and the layers behind them
#
# Over the 1-px line, the output of the reference class (the true class, or the unshifted answer) is
# a function of `dx`. A layer of total stride `r` is equivariant only to shifts by multiples of `r`,
# so the output repeats with the model's strides: the spectrum has its energy at `1/r` and harmonics
# (dotted). The table gives the share of energy at each predicted period beside white noise.

# %%
figs["spectra"] = fig = audit_plots.plot_spectra(result.spectra, result.periodicity)
figures.save_figure(fig, "11_spectra", result.spectra)
result.periodicity

# %% [markdown]
# What to see: peaks on the dotted lines are aliasing from the strides (exact with circular shifts
# and circular padding, the APS head flat); energy between them comes from the border.
#
# Per layer (torch models): the error `||F(shift x) - shift F(x)||² / ||F(x)||²` of every conv and
# pool output under circular shifts, by the shift's phase within the layer's stride. Phase 0 is a
# whole number of the layer's pixels; every other phase shows what the layer's subsampling aliases.

# %%
figs["per-layer equivariance"] = fig = audit_plots.plot_layer_equivariance(result.layers)
figures.save_figure(fig, "11_layer_equivariance", result.layers)

# %% [markdown]
# What to see: each downsampling layer adds a band of non-zero phases; layers before the first
# stride are equivariant at every shift; APS layers pick the subsampling phase with the input.

# %% [markdown]
# ## 7. The images that change their answer most

# %%
figs["gallery"] = fig = audit_plots.plot_gallery(result, preset.protocols[0], preset.gallery)
figures.save_figure(fig, "11_gallery", result.per_image[result.per_image.protocol == preset.protocols[0]])

# %% [markdown]
# What to see: under each image, its answer over the grid of offsets, one colour per class. One
# colour is an invariant image; a patchwork is an image the model cannot decide on.

# %% [markdown]
# ## 8. Paired comparisons and the report
#
# Every other model against the first under each protocol, and each model's crop numbers against its
# circular ones, on the same bootstrap resamples of the images. `clear` is true where the interval of
# the difference excludes 0.

# %%
clear = result.comparisons[result.comparisons.clear]
clear

# %%
audit_plots.save_report(result, figs, "11_report", title=f"Shift audit: {choice.reason}")

# %% [markdown]
# ## Summary
#
# - One grid of shifted views per image and protocol gives every published stability measure, each
#   stating how it was measured, so numbers of different papers become comparable.
# - Consistency and accuracy are separate axes: the summary conditions one on the other.
# - The periods of the output over shifts are the model's strides; per-layer equivariance shows
#   which downsampling layer introduces each.
# - Circular against crop (or canvas) protocols separates aliasing from the image border.

# %% [markdown]
# ## Exercises
#
# 1. Which model has the highest consistency under the crop protocol, and is its lead over the
#    first model clear (paired interval)?
# 2. For the first model, what share of images never changes its answer over the audit's offsets,
#    and what is the median smallest shift that changes the others?
# 3. Audit the first model under the canvas protocols of the `full` preset (`zero`, `mean`,
#    `mosaic`) on a few images and the small offsets of the `smoke` preset. How far do they move its
#    consistency from the crop protocol's?

# %% tags=["solution"]
# Exercise 1: consistency per model under the main protocol, and paired differences to the first.
main = preset.protocols[0]
cons = result.summary[(result.summary.measure == "consistency") & (result.summary.protocol == main)]
print(cons[["model", "value", "lo", "hi"]].sort_values("value", ascending=False).to_string(index=False))
result.comparisons[(result.comparisons.measure == "consistency") & result.comparisons.a.str.endswith(main)]

# %% tags=["solution"]
# Exercise 2: never changing, and the median smallest change among those that change.
first = next(iter(result.models))
rows = result.per_image[(result.per_image.model == first) & (result.per_image.protocol == main)]
changed = rows[rows.never_changes == 0]
print(f"{first}: {rows.never_changes.mean():.2f} of the images never change; median smallest change "
      f"{changed.min_change_radius.median() if len(changed) else float('nan')} px (max(|dx|, |dy|))")

# %% tags=["solution"]
# Exercise 3: the canvas protocols on a few images (same offsets, same model).
canvas = protocol.get_preset("smoke", protocols=("crop", "zero", "mean", "mosaic"), equivariance_images=0)
small = run.audit(models[:1], images.take(4), canvas, device=DEVICE or None, progress=False)
small.summary[small.summary.measure == "consistency"][["protocol", "value", "lo", "hi"]]

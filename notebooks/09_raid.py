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
# # 09 · RAID: metric responses to rotation, translation, scaling and noise vs human curves
#
# RAID (Daudén-Oliver et al., Scientific Data 2026) measured how different 24 Kodak images look after a
# rotation, a translation, a scaling or Gaussian noise at nine levels (Maximum Likelihood Difference
# Scaling): one perceptual *response curve* per image and transform, 0 at the undistorted anchor. The paper
# reports that LPIPS on the invariant backbone follows these curves (Spearman 0.95). This notebook draws
# every metric's response curve next to the human one and computes Spearman correlations per transform
# and pooled, with intervals over images. Where the stimuli come from (`RAID_SOURCE`), how the anchors are
# counted (`ANCHORS`) and which backbone each profile uses: section 1.
#
# Figures: `09_raid_curves`, `09_raid_srcc` (with human data).

# %%
import pandas as pd  # (the exercise solutions)

from shiftinv.perceptual import evaluate, profiles, raid, stats, zoo
from shiftinv.viz import figures, perceptual_plots
from shiftinv.workbook import runtime, see

figures.set_style()

# %% tags=["parameters"]
PROFILE: str = "demo"  # demo (embedded photos) | natural, cifar (HED trunk, raid-approx) | paper (real RAID folder)
SMOKE: bool = False  # tiny sizes, used by the test tier
SEED: int = 0  # backbone init, noise stimuli, bootstrap
DEVICE: str = ""  # cpu, cuda, ... (empty: CUDA when available, else CPU)
RAID_SOURCE: str = "auto"  # auto (the profile's) | raid | raid-approx | embedded
IMAGE_SIZE: int = -1  # -1: the profile's; 0: RAID's native side cropped to a multiple of 32; S: S x S
ANCHORS: str = ""  # excluded | included | both (empty: the profile's)
RAID_DIR: str = ""  # raid: folder holding imagenes_bd/ and responses.csv
KODAK_DIR: str = ""  # raid-approx: folder with kodim01.png ... (default: the shared data folder)
VGG_WEIGHTS: str = ""  # natural / paper: hed, keras:<path>, torchvision-features or a .pth path (empty: the profile's)

# %%
# derived settings (never in the parameters cell)
figures.use_profile(PROFILE, smoke=SMOKE)  # figures go to figures/<PROFILE>/ (smoke runs: build/smoke/figures/)
profile = profiles.perceptual_profile_from_params(PROFILE, SMOKE, vgg_weights=VGG_WEIGHTS, device=DEVICE,
                                           image_size=IMAGE_SIZE, raid_source=RAID_SOURCE).replace(seed=SEED)
protocols = raid.anchor_protocols(profile, ANCHORS)
gen = runtime.seed_everything(SEED)
source, kodak_dir, responses_csv = raid.raid_inputs(profile, KODAK_DIR, RAID_DIR)  # its data checked here
# publishing never replaces this profile's figures by ones from another stimulus source or backbone
figures.record_sources(data=source, backbone=profile.weights or "random init")
metric_set = zoo.profile_zoo(profile)
kinds = evaluate.metric_kinds(metric_set)
print(f"source: {source}; {profile.backbone_label()}; device {profile.torch_device()}; anchors {protocols}; "
      f"{profile.n_boot} bootstrap draws")
print(profiles.lpips_weights_note(profile))

# %% [markdown]
# ## 1. Stimuli and human responses
#
# Sources (`RAID_SOURCE`; `auto` is the profile's, and a source never falls back to another: missing data
# stop the run with an error naming the folder, the files and where to get them):
#
# - **`raid`** (`paper`): the real RAID folder (`imagenes_bd/`, `responses.csv`), at RAID's native side
#   centrally cropped to a multiple of 32 (`IMAGE_SIZE=0`): APS halves the size five times and needs even
#   sides at every pool; cropping invents no pixels, where reflect-padding would add mirrored borders that
#   move differently from the content under rotation and scaling.
# - **`raid-approx`** (`natural`, `cifar`): the Kodak references and the real human responses are on this machine,
#   the RAID images are not; RAID-like stimuli are rebuilt from Kodak. *Approximations*: central square
#   crops resized to `IMAGE_SIZE`, transform amplitudes spaced linearly up to the published maxima
#   (`shiftinv.perceptual.stimuli.raid_transform`), not RAID's exact per-level values. Correlations are
#   indicative; the order of levels within a transform, which drives Spearman, is exact.
# - **`embedded`** (`demo`): scikit-image photographs, the same transforms, no human data: metric
#   curves only.
#
# Anchors: level_01 pairs have distance 0 and response 0 by construction, and including them inflates
# correlations. `excluded` (the default) leaves them out; `included` pools all rows (the protocol of the
# RAID group's later benchmark). The authors published no metric-vs-RAID code, so neither is known to be
# theirs. Backbone (notebook 07): random-init VGG-16 in `demo`; the HED trunk in `natural` and `cifar` (plain, BlurPool
# and APS pools on the same weights; the baseline and GAP metrics keep their initial weights 1, since
# TID2008 is not here to train them; LPIPS's v0.1 weights, fitted to torchvision's VGG-16, applied to
# HED); ImageNet weights in `paper`.
#
# Every row is loaded and scored once, anchors included; each protocol then selects its rows.

# %%
refs, images, table, human = raid.raid_stimuli(source, profile, gen, raid_dir=RAID_DIR, kodak_dir=kodak_dir,
                                            responses_csv=responses_csv)
print(f"{len(table)} pairs (anchors included), {table['ref'].nunique()} images, {tuple(images.shape[-2:])} px, "
      f"human responses: {human}")
fig = perceptual_plots.plot_raid_examples(images, table)

# %% [markdown]
# ## 2. Response curves
#
# Each distance is divided by its maximum within each image and transform, so that it runs from 0
# (the undistorted anchor) to 1, as RAID normalises its curves (PSNR and SSIM, which have no natural
# zero, are negated and rescaled to [0, 1]); then averaged over images. The human curve is RAID's
# normalised MLDS curve (`Curve_Value`). Shaded: standard error over images. The *shape* is what
# matters here: linear like people for the affine transforms, saturating for noise?

# %%
values, _ = evaluate.evaluate_stimuli(metric_set, refs, images, table, batch_size=profile.batch_size, progress="scoring")
shown = [m for m in ("lpips/max", "baseline/max", "gap/max", "gap/blur", "gap/aps", "psnr", "ssim") if m in metric_set]
curves = stats.response_curves(values, shown, kinds, human_col="curve" if human else None)
figures.save_figure(perceptual_plots.plot_response_curves(curves), "09_raid_curves", curves)

# %% [markdown]
# ## 3. Agreement with people, per transform and pooled
#
# Spearman between metric and MLDS response (a *distortion* score: higher = more different), over all
# pairs of a transform and over all pairs; 95 % intervals resample images. Pooling across transforms
# also asks whether a metric puts a strong rotation and a visible noise on the human scale - much
# harder than ordering the levels of one transform. One panel per anchor protocol. PSNR is infinite on
# the anchors (the anchor is the reference image itself), so its `included` rows leave them out
# (`n_pairs` in the data file says so). Embedded stimuli have no human responses: nothing to correlate.

# %%
if human:
    srcc_table = raid.raid_srcc_table(values, kinds, protocols, gen, n_boot=profile.n_boot)
    srcc_table = srcc_table.assign(source=source, backbone=profile.backbone_label())
    fig = perceptual_plots.plot_raid_srcc(srcc_table, protocols, source, profile.backbone_label())
    figures.save_figure(fig, "09_raid_srcc", srcc_table)
    display_table = srcc_table.pivot_table(index="metric", columns=["anchors", "transform"], values="srcc")
    display_table = display_table.loc[raid.raid_metric_order(srcc_table)[::-1]].round(3)
else:
    display_table = "embedded stimuli: no human responses, see the curves only"
display_table

# %%
if human:
    see.show("09_raid_srcc", figures.output_dir())

# %% [markdown]
# ## Summary
#
# - The curves show whether a metric grows with each transform at the human *rate* (people are nearly
#   linear in the affine transforms and saturate for noise); the correlations show whether it orders
#   all pairs of a transform, across images, as people do. Pooled over images, the scale of each
#   image's curve matters too, which is why per-transform SRCCs are far below the within-image
#   ordering (which is almost perfect for every metric).
# - GAP-based metrics discard position; whether that brings them closer to people for translation is
#   read off the `trans` panel and column, per backbone, rather than assumed.
# - With `raid-approx` the human data are real but the stimuli are our reconstruction at low
#   resolution, with a random backbone (`demo`) or the HED trunk (`natural`, a natural-image VGG-16 but
#   not ImageNet's, with untrained baseline/GAP weights): the numbers are indicative, not a replication
#   of the paper's reported correlation, which needs the `paper` profile (real RAID images, ImageNet weights, trained
#   metric weights).
# - The two anchor protocols answer different questions: with anchors in, every image contributes a
#   free, perfectly ordered (0, 0) point per transform, and the pooled SRCC rises for any metric that is
#   positive on all distorted pairs.
#
# ## Exercises
#
# 1. Compare the two anchor protocols (`ANCHORS=both`). Which correlations rise the most with the
#    anchors in, and why is that misleading?
# 2. For the translation transform, compare the mean normalised curve of `gap/max` and `lpips/max` at
#    level 2. What does the difference say about how each metric treats a small shift?

# %% tags=["solution"]
# Exercise 1: both anchor protocols.
if human:
    both, _ = evaluate.evaluate_stimuli(metric_set, refs, images, table) if len(protocols) < 2 else (values, None)
    gains = []
    for protocol in ("excluded", "included"):
        ev = stats.evaluation_table(both[raid.anchor_rows(both, protocol)], kinds, "distortion", gen,
                                    score_col="response", n_boot=20, logistic=None)
        gains.append(ev.set_index("metric")["srcc"].rename(protocol))
    print(pd.concat(gains, axis=1).assign(gain=lambda d: d["included"] - d["excluded"]).sort_values("gain").round(3))
# Anchors add one perfectly ordered point per image (distance 0, response 0) below every other pair:
# any metric that is nonzero for all distorted pairs gains rank agreement for free.

# %% tags=["solution"]
# Exercise 2: a small translation, gap/max against lpips/max.
trans = curves[(curves["transform"] == "trans") & (curves["level"] == 2)]
print(trans[["source", "mean"]])
# A spatial metric jumps at the first sub-pixel/pixel shift (every feature moves), while the GAP metric
# barely changes: position is averaged away before the comparison.

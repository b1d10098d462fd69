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
# # Browser fixture · figures drawn headless
# The kernel switches matplotlib to Agg, as `MPLBACKEND=Agg` inherited from the Makefile did in
# `make lab`: the figure is drawn and saved, but never shown. The browser tier must report it.

# %%
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

# %% tags=["parameters"]
PROFILE: str = "demo"
SMOKE: bool = False

# %%
fig, ax = plt.subplots(figsize=(2, 2))
ax.plot([0, 1, 2], [1, 3, 2])
{"png": "figure.png"}  # what save_figure returns: paths, not the picture

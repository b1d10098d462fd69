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
# # Browser fixture · a working widget
# A tiny explorer (no model): the slider shifts a square and the text reports
# the shift. The browser tier uses it as a positive control of its checker.

# %%
import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display

# %% tags=["parameters"]
PROFILE: str = "demo"
SMOKE: bool = False

# %%
out = widgets.Output()
shift_x = widgets.IntSlider(value=3, min=-8, max=8, description="shift x")
shift_y = widgets.IntSlider(value=0, min=-8, max=8, description="shift y", continuous_update=False)


def draw(_change=None) -> None:
    image = np.zeros((16, 16))
    image[6 + shift_y.value : 10 + shift_y.value, 6 + shift_x.value : 10 + shift_x.value] = 1.0
    with out:
        out.clear_output(wait=True)
        fig, ax = plt.subplots(figsize=(2, 2))
        ax.imshow(image, cmap="gray")
        plt.show()
        print(f"shift (dx, dy) = ({shift_x.value}, {shift_y.value}) | prediction: 7 (p=0.93)")


shift_x.observe(draw, names="value")
shift_y.observe(draw, names="value")
draw()
display(widgets.VBox([widgets.HBox([shift_x, shift_y]), out]))

# %% [markdown]
# A second explorer with a dropdown only: the checker chooses the next option.

# %%
colour_map = widgets.Dropdown(options=["gray", "viridis", "magma"], description="colour map")
out2 = widgets.Output()


def describe(_change=None) -> None:
    with out2:
        out2.clear_output(wait=True)
        print(f"colour map: {colour_map.value}")


colour_map.observe(describe, names="value")
describe()
display(widgets.VBox([colour_map, out2]))

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
# # Browser fixture · a callback that fails while drawing
# A tiny explorer (no model): the slider shifts a square and the text reports
# the shift. The browser tier uses it as a negative control (it must fail) of its checker.

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
        if _change is not None:
            raise RuntimeError("deliberately broken widget callback")
        fig, ax = plt.subplots(figsize=(2, 2))
        ax.imshow(image, cmap="gray")
        plt.show()
        print(f"shift (dx, dy) = ({shift_x.value}, {shift_y.value}) | prediction: 7 (p=0.93)")


shift_x.observe(draw, names="value")
shift_y.observe(draw, names="value")
draw()
display(widgets.VBox([widgets.HBox([shift_x, shift_y]), out]))

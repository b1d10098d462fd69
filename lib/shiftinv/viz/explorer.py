"""The aliasing explorer: what one shift does inside a network, panel by panel.

For a model (one head), a layer, an image and a shift ``(dx, dy)`` it shows

1. the shifted input,
2. the layer's feature map for the unshifted and 3. the shifted input
   (mean over channels, or one channel),
4. their *aligned* difference: the shifted map moved back by the shift
   expressed in feature-map pixels (``round(d / stride)``), minus the unshifted
   map. It is zero (up to borders) when the layer is shift-equivariant for this
   shift, as happens for multiples of the stride; what remains is aliasing,
5. the change of the GAP vector of that layer (what a GAP head sees),

and a prediction line, ``"shift (dx, dy) = (3, 0) | prediction: 7 (p=0.93) | ..."``.

Everything is computed by pure functions (:func:`compute_panels`,
:func:`panel_text`, :func:`draw_panels`, :func:`panels_data`), so the headless
notebook draws and saves exactly what the widget shows for fixed choices;
:func:`explorer_widget` is a thin ipywidgets view over them.

A model is anything with ``features(x, taps) -> {tap: (N, C, h, w)}`` and
``model(x) -> logits (N, K)``: a :class:`shiftinv.models.vgg.VGGClassifier`, or
:class:`shiftinv.study.depth_heads.HeadModel` for one head on a shared trunk.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import Tensor, nn

from ..shifts import translation
from ..shifts.invariance import relative_change


class FeatureModel(Protocol):
    """What the explorer needs from a model."""

    def features(self, x: Tensor, taps: Sequence[str]) -> Mapping[str, Tensor]: ...

    def __call__(self, x: Tensor) -> Tensor: ...


@dataclass
class Panels:
    """Everything the explorer shows for one choice (tensors on the CPU, float32).

    Shapes: ``image``/``reference`` (C, H, W); maps (h, w); GAP vectors (C',); probs (K,).
    """

    head: str
    layer: str
    dx: int
    dy: int
    mode: str
    stride: int
    label: int | None
    reference: Tensor
    image: Tensor
    map_reference: Tensor
    map_shifted: Tensor
    map_difference: Tensor
    feature_shift: tuple[int, int]
    gap_reference: Tensor
    gap_shifted: Tensor
    probs: Tensor
    class_names: Sequence[str] | None = None
    channel: int | None = None

    @property
    def prediction(self) -> int:
        return int(self.probs.argmax())

    @property
    def probability(self) -> float:
        return float(self.probs.max())

    @property
    def gap_change(self) -> float:
        """Relative change of the layer's GAP vector, ``|g(shifted) - g| / |g|``."""
        return float(relative_change(self.gap_reference, self.gap_shifted, floor=1e-12))

    @property
    def map_change(self) -> float:
        """Relative aligned difference of the feature map, ``|aligned diff| / |map|`` (channel view)."""
        return float(self.map_difference.norm() / self.map_reference.norm().clamp_min(1e-12))


def _name(index: int, class_names: Sequence[str] | None) -> str:
    if class_names is not None and 0 <= index < len(class_names) and str(class_names[index]) != str(index):
        return f"{index} ({class_names[index]})"
    return str(index)


@torch.no_grad()
def compute_panels(
    model: FeatureModel,
    image: Tensor,
    layer: str,
    dx: int,
    dy: int,
    *,
    mode: str = "mosaic",
    label: int | None = None,
    head: str = "model",
    channel: int | None = None,
    class_names: Sequence[str] | None = None,
) -> Panels:
    """Compute the explorer's panels for one model, layer, image and shift.

    Args:
        model: see :class:`FeatureModel` (in eval mode).
        image: ``(C, H, W)`` or ``(1, C, H, W)`` in the model's input range.
        layer: a tap name the model's ``features`` understands (``"pool3"``).
        dx, dy: integer shift in pixels (content moves right/down), applied with
            :func:`shiftinv.shifts.translation.translate` in ``mode``.
        mode: shift protocol (``"mosaic"``: the paper's; ``"circular"``: exact for
            circular-padded models).
        label: true class, shown in the text if given.
        head: name shown in the text.
        channel: feature channel to show; ``None`` = mean over channels.
        class_names: optional names for the prediction text.

    Returns:
        :class:`Panels`.
    """
    x0, x1, dx, dy = _shifted_pair(model, image, dx, dy, mode)  # (1, C, H, W) each
    feats = _layer_maps(model, torch.cat([x0, x1]), layer)  # (2, C', h, w)
    probs = torch.softmax(model(x1).float(), dim=1)[0].cpu()  # (K,)
    stride = max(1, round(x0.shape[-1] / feats.shape[-1]))
    if channel is not None and not 0 <= channel < feats.shape[1]:
        raise ValueError(f"channel {channel} out of range: layer {layer!r} has {feats.shape[1]} channels")
    view = feats[:, channel] if channel is not None else feats.mean(dim=1)  # (2, h, w)
    fx, fy = round(dx / stride), round(dy / stride)  # the shift in feature-map pixels
    aligned = _move_back(view[1:2], fx, fy, mode)  # (1, h, w)
    gap = feats.mean(dim=(2, 3)).cpu()  # (2, C')
    return Panels(
        head=head, layer=layer, dx=dx, dy=dy, mode=mode, stride=stride, label=label,
        reference=x0[0].float().cpu(), image=x1[0].float().cpu(),
        map_reference=view[0].cpu(), map_shifted=view[1].cpu(),
        map_difference=(aligned[0] - view[0]).cpu(), feature_shift=(fx, fy),
        gap_reference=gap[0], gap_shifted=gap[1], probs=probs,
        class_names=class_names, channel=channel,
    )


def _shifted_pair(model: FeatureModel, image: Tensor, dx: int, dy: int, mode: str) -> tuple[Tensor, Tensor, int, int]:
    """``(x0, x1, dx, dy)``: the image (1, C, H, W) on the model's device and its shifted copy."""
    if image.dim() == 3:
        image = image[None]
    if image.dim() != 4 or image.shape[0] != 1:
        raise ValueError(f"image must be (C, H, W) or (1, C, H, W), got {tuple(image.shape)}")
    if int(dx) != dx or int(dy) != dy:
        raise ValueError(f"the explorer takes integer shifts, got ({dx}, {dy})")
    dx, dy = int(dx), int(dy)
    device = next((p.device for p in model.parameters()), image.device) if isinstance(model, nn.Module) else image.device
    x0 = image.to(device)
    return x0, translation.translate(x0, dx, dy, mode=mode), dx, dy


def _layer_maps(model: FeatureModel, batch: Tensor, layer: str) -> Tensor:
    """The ``layer`` feature maps (B, C', h, w) float32 of ``batch`` (B, C, H, W); a clear error otherwise."""
    try:
        feats = model.features(batch, (layer,))[layer].float()
    except (KeyError, ValueError) as err:
        raise ValueError(f"layer {layer!r} is not a tap this model provides ({err}); "
                         "use one of its layer names, e.g. 'pool1'..'pool5'") from err
    if feats.dim() != 4:
        raise ValueError(f"layer {layer!r} gives a {feats.dim()}-D output; the explorer needs (N, C, h, w) maps")
    return feats


def _move_back(shifted: Tensor, fx: int, fy: int, mode: str) -> Tensor:
    """The shifted input's map (1, h, w) moved back by ``(fx, fy)`` feature pixels (unchanged when
    the shift leaves the map: nothing to align)."""
    h, w = shifted.shape[-2:]
    if abs(fx) > w or abs(fy) > h:
        return shifted
    fmode = "circular" if mode == "circular" else "mosaic"
    return translation.translate(shifted[:, None], -fx, -fy, mode=fmode)[:, 0]


def panel_text(p: Panels) -> str:
    """The explorer's one-line summary, e.g.
    ``"shift (dx, dy) = (3, 0) | prediction: 7 (p=0.93) | true: 7 | head: multi_gap | pool3 |dGAP|/|GAP| = 0.012"``."""
    text = f"shift (dx, dy) = ({p.dx}, {p.dy}) | prediction: {_name(p.prediction, p.class_names)} (p={p.probability:.2f})"
    if p.label is not None:
        text += f" | true: {_name(int(p.label), p.class_names)}"
    return text + f" | head: {p.head} | {p.layer} |dGAP|/|GAP| = {p.gap_change:.3g}"


def _show_image(ax: plt.Axes, img: Tensor) -> None:
    arr = img.clamp(0, 1).permute(1, 2, 0).numpy()
    ax.imshow(arr[..., 0] if arr.shape[-1] == 1 else arr, cmap="gray" if arr.shape[-1] == 1 else None,
              vmin=0, vmax=1, interpolation="nearest")


def draw_panels(p: Panels, fig: plt.Figure | None = None) -> plt.Figure:
    """Draw the five panels of :class:`Panels` in one row; the suptitle is :func:`panel_text`.

    Returns the figure (a new one unless ``fig`` is given; it is cleared first).
    """
    if fig is None:
        fig = plt.figure(figsize=(17, 4.3), layout="constrained")
    fig.clear()
    axes = fig.subplots(1, 5, gridspec_kw={"width_ratios": [1, 1, 1, 1, 1.4]})
    _show_image(axes[0], p.image)
    h, w = p.image.shape[-2:]
    axes[0].plot([w / 2, w / 2 + p.dx], [h / 2, h / 2 + p.dy], color="red", lw=2)  # the shift vector
    axes[0].plot([w / 2 + p.dx], [h / 2 + p.dy], "o", color="red", ms=4)
    axes[0].set_title(f"input shifted by ({p.dx}, {p.dy})\n[{p.mode}]", fontsize="small")
    what = f"channel {p.channel}" if p.channel is not None else "channel mean"
    vmax = float(torch.maximum(p.map_reference.abs().max(), p.map_shifted.abs().max()))
    lo = min(0.0, float(p.map_reference.min()), float(p.map_shifted.min()))
    for ax, m, title in ((axes[1], p.map_reference, f"{p.layer}, unshifted\n({what})"),
                         (axes[2], p.map_shifted, f"{p.layer}, shifted\n({what})")):
        im = ax.imshow(m.numpy(), cmap="magma", vmin=lo, vmax=vmax or 1, interpolation="nearest")
        ax.set_title(title, fontsize="small")
    fig.colorbar(im, ax=axes[1:3], shrink=0.75, pad=0.02, label="activation (both maps)")
    dmax = max(float(p.map_difference.abs().max()), vmax * 1e-3, 1e-12)
    diff = axes[3].imshow(p.map_difference.numpy(), cmap="coolwarm", vmin=-dmax, vmax=dmax, interpolation="nearest")
    fig.colorbar(diff, ax=axes[3], shrink=0.75, pad=0.02, label="shifted - unshifted")
    axes[3].set_title(f"aligned difference (moved back {p.feature_shift},\nstride {p.stride}), "
                      f"rel. {p.map_change:.3g}", fontsize="small")
    for ax in axes[:4]:
        ax.set_xticks([])
        ax.set_yticks([])
    delta = (p.gap_shifted - p.gap_reference).numpy()
    axes[4].bar(np.arange(delta.size), delta, width=1.0, color="C0")
    axes[4].axhline(0, color="k", lw=0.5)
    axes[4].set_xlabel(f"{p.layer} channel", fontsize="small")
    axes[4].set_ylabel("GAP(shifted) - GAP", fontsize="small")
    axes[4].tick_params(labelsize="small")
    axes[4].set_title(f"GAP vector change, rel. {p.gap_change:.3g}", fontsize="small")
    fig.suptitle(panel_text(p), fontsize="medium")
    return fig


def panels_data(p: Panels) -> dict[str, Any]:
    """The numbers behind :func:`draw_panels` (for ``figures.save_figure``)."""
    return {
        "text": panel_text(p), "head": p.head, "layer": p.layer, "dx": p.dx, "dy": p.dy, "mode": p.mode,
        "stride": p.stride, "feature_shift": list(p.feature_shift), "channel": p.channel, "label": p.label,
        "prediction": p.prediction, "probability": p.probability, "gap_change": p.gap_change,
        "map_change": p.map_change, "map_reference": p.map_reference, "map_shifted": p.map_shifted,
        "map_difference": p.map_difference, "gap_reference": p.gap_reference, "gap_shifted": p.gap_shifted,
        "probs": p.probs,
    }


def figure_png(fig: plt.Figure, dpi: int = 80) -> bytes:
    """PNG bytes of ``fig`` (works with any matplotlib backend, including Agg in papermill)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def explorer_widget(
    models: Mapping[str, FeatureModel],
    images: Tensor,
    labels: Tensor | None = None,
    layers: Sequence[str] = ("pool1", "pool2", "pool3", "pool4", "pool5"),
    max_shift: int = 32,
    modes: Sequence[str] = ("mosaic", "circular"),
    class_names: Sequence[str] | None = None,
    initial: Mapping[str, Any] | None = None,
) -> Any:
    """An ipywidgets view over :func:`compute_panels` / :func:`draw_panels`.

    Controls (their ``description``): ``"head"``, ``"layer"``, ``"image"``,
    ``"shift x"``, ``"shift y"``, ``"shift mode"``, ``"channel"`` (-1 = mean).
    Below them, a text line (:func:`panel_text`) and the panels as a PNG.

    Args:
        models: head name -> model.
        images: ``(N, C, H, W)``; labels: ``(N,)`` or None.
        initial: starting values by description, e.g. ``{"shift x": 3, "layer": "pool3"}``.

    Returns:
        a ``ipywidgets.VBox`` with extra attributes ``controls`` (description ->
        widget), ``text`` (the HTML line), ``picture`` (the Image widget) and
        ``refresh()``; ``panels`` holds the last :class:`Panels`.
    """
    import ipywidgets as widgets

    if not models:
        raise ValueError("models is empty: give at least one head name -> model")
    if images.dim() != 4 or images.shape[0] < 1:
        raise ValueError(f"images must be (N, C, H, W) with N >= 1, got {tuple(images.shape)}")
    controls = _explorer_controls(list(models), list(layers), images.shape[0], max_shift, list(modes), initial)
    text, picture = widgets.HTML(description=""), widgets.Image(format="png")
    fig = plt.figure(figsize=(17, 4.3), layout="constrained")
    plt.close(fig)  # drawn into explicitly, never shown by the backend
    box = widgets.VBox([widgets.HBox([controls[k] for k in ("head", "layer", "shift mode", "channel")]),
                        widgets.HBox([controls[k] for k in ("image", "shift x", "shift y")]), text, picture])

    def refresh(*_: Any) -> None:
        c = {k: w.value for k, w in controls.items()}
        try:
            p = compute_panels(
                models[c["head"]], images[c["image"]], c["layer"], c["shift x"], c["shift y"], mode=c["shift mode"],
                label=None if labels is None else int(labels[c["image"]]), head=c["head"],
                channel=None if c["channel"] < 0 else int(c["channel"]), class_names=class_names,
            )
        except ValueError as err:  # e.g. a channel out of range: say so in the view
            text.value = f"<b>error:</b> {err}"
            return
        box.panels = p
        text.value = f"<code class='shiftinv-explorer-text'>{panel_text(p)}</code>"
        picture.value = figure_png(draw_panels(p, fig))

    for w in controls.values():
        w.observe(refresh, names="value")
    box.controls, box.text, box.picture, box.refresh, box.panels = controls, text, picture, refresh, None
    refresh()
    return box


def _explorer_controls(heads: list[str], layers: list[str], num_images: int, max_shift: int, modes: list[str],
                       initial: Mapping[str, Any] | None) -> dict[str, Any]:
    """The widget's controls by description, set to ``initial``."""
    import ipywidgets as widgets

    style = {"description_width": "initial"}
    controls: dict[str, Any] = {
        "head": widgets.Dropdown(options=heads, description="head", style=style),
        "layer": widgets.Dropdown(options=layers, description="layer", style=style),
        "image": widgets.IntSlider(0, 0, num_images - 1, description="image", continuous_update=False, style=style),
        "shift x": widgets.IntSlider(0, -max_shift, max_shift, description="shift x", continuous_update=False, style=style),
        "shift y": widgets.IntSlider(0, -max_shift, max_shift, description="shift y", continuous_update=False, style=style),
        "shift mode": widgets.Dropdown(options=modes, description="shift mode", style=style),
        "channel": widgets.IntText(-1, description="channel (-1 = mean)", style=style),
    }
    for key, value in (initial or {}).items():
        if key not in controls:
            raise ValueError(f"unknown control {key!r} in initial; choose among {list(controls)}")
        controls[key].value = value
    return controls

"""Inside a torch model: its conv and pool outputs through forward hooks, and the stride of each.

:class:`HookedTrunk` makes any white-box :class:`~shiftinv.audit.models.AuditModel` look like a
workbook trunk (``trunk(x, taps) -> {tap: map}``, ``trunk.stride(tap)``), so the workbook's own
per-layer, phase-resolved equivariance (:func:`shiftinv.shifts.invariance.equivariance_error`)
runs on it unchanged. The taps are every ``Conv2d``, ``MaxPool2d`` and ``AvgPool2d`` and the
workbook's anti-aliased pools (BlurPool, APS; only the outermost of nested ones), named by their
module path; a tap's stride is the input size over its output size, measured once.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from .models import AuditModel

_LAYER_TYPES: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)


def _is_layer(module: nn.Module) -> bool:
    name = getattr(module, "original_name", type(module).__name__)  # TorchScript keeps the class name there
    return isinstance(module, _LAYER_TYPES) or name.endswith("Pool") or name.endswith("Downsample")


def spatial_layers(net: nn.Module) -> list[str]:
    """Module paths of ``net``'s conv and pool layers in registration order (outermost of nested pools)."""
    found: list[str] = []
    for path, module in net.named_modules():
        if path and _is_layer(module) and not any(path.startswith(p + ".") for p in found):
            found.append(path)
    return found


class HookedTrunk(nn.Module):
    """A white-box model's layer outputs by name: ``trunk(x, taps) -> {tap: (B, C, h, w)}``.

    ``x`` is (B, 3, H, W) in [0, 1] at the model's input size; the whole model runs once per call
    with a forward hook on each asked layer (outputs cloned: a later in-place op must not change
    them). ``stride(tap)`` is the layer's total downsampling (input side / output side).
    """

    def __init__(self, model: AuditModel) -> None:
        super().__init__()
        if not model.hookable:
            raise TypeError(f"{model.name}: per-layer measures need a torch module whose layers can be hooked "
                            "(not a black box, not TorchScript): load it as factory + weights or a torchvision / "
                            "timm name")
        self.model = model
        self.layers = spatial_layers(model.net)
        if not self.layers:
            raise ValueError(f"{model.name}: no Conv2d or pooling layer found to hook")
        self._modules_by_name = dict(model.net.named_modules())
        self._strides: dict[str, int] | None = None

    def forward(self, x: Tensor, taps: Sequence[str] | str) -> dict[str, Tensor]:
        taps = (taps,) if isinstance(taps, str) else tuple(taps)
        unknown = [t for t in taps if t not in self._modules_by_name]
        if unknown:
            raise ValueError(f"{self.model.name} has no layers {unknown}; layers: {', '.join(self.layers[:8])} ...")
        out = self._run(x, taps)
        missing = [t for t in taps if t not in out]
        if missing:
            raise ValueError(f"{self.model.name}: layers {missing} gave no (B, C, h, w) output in the forward pass")
        return {t: out[t] for t in taps}

    def _run(self, x: Tensor, taps: Sequence[str]) -> dict[str, Tensor]:
        """One forward pass of the model with a hook on each of ``taps``; the 4-D outputs that ran."""
        out: dict[str, Tensor] = {}

        def recorder(name: str):  # noqa: ANN202
            def hook(module: nn.Module, inputs: object, output: Tensor) -> None:
                if isinstance(output, Tensor) and output.dim() == 4:
                    out[name] = output.detach().clone()
            return hook

        handles = [self._modules_by_name[t].register_forward_hook(recorder(t)) for t in taps]
        try:
            self.model(x)
        finally:
            for h in handles:
                h.remove()
        return out

    def strides(self) -> dict[str, int]:
        """``{layer: total stride}`` of every layer with a 2-D output larger than 1 px (one probe pass,
        in the layers' order); layers that do not run, or end at 1 px, have none."""
        if self._strides is None:
            h, w = self.model.input_size
            param = next(self.model.net.parameters(), self.model.mean)
            probe = torch.full((1, 3, h, w), 0.5, device=param.device, dtype=param.dtype)
            with torch.inference_mode():
                maps = self._run(probe, self.layers)
            self._strides = {t: max(1, round(h / maps[t].shape[-2])) for t in self.layers
                             if t in maps and maps[t].shape[-2] > 1}
        return self._strides

    def stride(self, tap: str) -> int:
        strides = self.strides()
        if tap not in strides:
            raise ValueError(f"{self.model.name}: layer {tap!r} has no spatial output to measure a stride on")
        return strides[tap]

    def periods(self) -> tuple[int, ...]:
        """The distinct strides above 1, ascending: the periods the architecture predicts over shifts."""
        return tuple(sorted({s for s in self.strides().values() if s > 1}))

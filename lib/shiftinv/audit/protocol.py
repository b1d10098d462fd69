"""What an audit measures and how: the presets, the one set of shifted views, and the protocol text.

An audit evaluates every image at one set of integer offsets ``(dx, dy)`` (content moves right /
down, :mod:`shiftinv.shifts.translation`), the union of

- a 2-D **grid** ``|dx|, |dy| <= radius`` at ``grid_step``: consistency (pairs of offsets drawn
  uniformly from the grid, exact expectation), accuracy range and worst-case accuracy, the 2-D
  map of predictions, the smallest shift that changes the prediction;
- a dense **line** ``dx = -line_half .. line_half - 1`` at ``dy = 0``: ImageNet-P's flip probability
  between neighbouring 1-px shifts, and the spectrum of the output over shifts;
- the 1-px **diagonal** ``(d, d)``, ``|d| <= diagonal``: Azulay & Weiss's P(top-1 change) and mean
  absolute change between consecutive diagonal shifts.

The same offsets run under every protocol of the preset (``crop``: windows of a larger source,
antialiased-cnns; ``circular``: rolls, APS; ``zero`` / ``mean`` canvas; ``mosaic``: mirror
padding), so circular and non-circular numbers differ only by the border.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..shifts import translation

#: How each protocol moves the image, in words (the report's protocol block).
PROTOCOL_TEXT: dict[str, str] = {
    "crop": "a window of the input size taken from a source resized to input + 2 x radius px and moved "
            "inside it (antialiased-cnns' random crops)",
    "circular": "the input-size image rolled circularly (torch.roll; APS's circular shifts)",
    "zero": "the input-size image moved on a canvas of its own size filled with zeros (content leaves the frame)",
    "mean": "the input-size image moved on a canvas of its own size filled with its per-channel mean",
    "mosaic": "the input-size image mirror-padded by its size (3x3 symmetric mosaic) and a window moved in it",
}


@dataclass(frozen=True)
class Preset:
    """One audit's shifts and protocols (see the module docstring).

    Attributes:
        name: preset name, quoted in every report.
        radius: grid half-width (px); also the crop margin of the sources.
        grid_step: spacing of the grid (px, divides nothing in particular; (0, 0) always included).
        line_half: the line runs over ``dx = -line_half .. line_half - 1`` (``2 * line_half`` shifts,
            a whole number of periods of strides dividing it).
        diagonal: diagonal shifts ``(d, d)`` for ``|d| <= diagonal``.
        protocols: shift protocols, the first is the main one.
        equivariance_images: images of the per-layer equivariance (torch modules only; 0: skip).
        gallery: images in the gallery of the most unstable ones.
    """

    name: str
    radius: int
    grid_step: int
    line_half: int
    diagonal: int
    protocols: tuple[str, ...]
    equivariance_images: int = 4
    gallery: int = 8

    def __post_init__(self) -> None:
        bad = [p for p in self.protocols if p not in translation.MODES]
        if bad or not self.protocols:
            raise ValueError(f"unknown protocols {bad}; choose from {translation.MODES}")
        if self.radius < 1 or self.grid_step < 1 or self.line_half < 1 or self.diagonal < 1:
            raise ValueError(f"preset {self.name!r}: radius, grid_step, line_half and diagonal must be >= 1")
        if max(self.line_half, self.diagonal) > self.radius:
            raise ValueError(f"preset {self.name!r}: line_half ({self.line_half}) and diagonal ({self.diagonal}) "
                             f"must not exceed radius ({self.radius}), the crop margin of the sources")

    def grid(self) -> list[tuple[int, int]]:
        return translation.shift_grid(self.radius, self.grid_step)

    def line(self) -> list[tuple[int, int]]:
        return [(dx, 0) for dx in range(-self.line_half, self.line_half)]

    def diagonal_shifts(self) -> list[tuple[int, int]]:
        return translation.diagonal_shifts(-self.diagonal, self.diagonal)

    def shifts(self) -> list[tuple[int, int]]:
        """Every offset of the audit, once: grid, then line, then diagonal (first-seen order)."""
        return list(dict.fromkeys(self.grid() + self.line() + self.diagonal_shifts()))

    def source_margin(self) -> int:
        """Pixels the crop protocol needs around the input on each side (the grid's radius)."""
        return self.radius

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


#: The presets. ``default``: Zhang's 256 -> 224 margin (16 px) on a 4-px grid, crop and circular;
#: ``quick``: the same margin on an 8-px grid with a shorter diagonal (notebook 11's workbook heads).
PRESETS: dict[str, Preset] = {
    "smoke": Preset("smoke", radius=4, grid_step=4, line_half=4, diagonal=2, protocols=("crop", "circular"),
                    equivariance_images=1, gallery=4),
    "quick": Preset("quick", radius=16, grid_step=8, line_half=16, diagonal=4, protocols=("crop", "circular"),
                    equivariance_images=1, gallery=6),
    "default": Preset("default", radius=16, grid_step=4, line_half=16, diagonal=8, protocols=("crop", "circular")),
    "full": Preset("full", radius=32, grid_step=4, line_half=32, diagonal=16,
                   protocols=("crop", "circular", "zero", "mean", "mosaic")),
}


def get_preset(name: str, **overrides: int | tuple[str, ...]) -> Preset:
    """The preset ``name`` with some fields replaced (``radius=8``, ``protocols=("circular",)``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    unknown = set(overrides) - {f.name for f in dataclasses.fields(Preset)}
    if unknown:
        raise ValueError(f"unknown preset fields {sorted(unknown)}; valid: {[f.name for f in dataclasses.fields(Preset)]}")
    return dataclasses.replace(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})


def protocol_block(preset: Preset, input_size: tuple[int, int], sources: str) -> dict[str, object]:
    """The statement of how every number of a report was measured (the report's protocol block)."""
    h, w = input_size
    grid = preset.grid()
    return {
        "preset": preset.name,
        "input_size": [h, w],
        "sources": sources,
        "protocols": {p: PROTOCOL_TEXT[p] for p in preset.protocols},
        "offsets": f"{len(preset.shifts())} offsets (dx, dy), the same for every protocol and image",
        "grid": f"{len(grid)} offsets |dx|, |dy| <= {preset.radius} px at {preset.grid_step} px steps",
        "line": f"dx = {-preset.line_half} .. {preset.line_half - 1} px at dy = 0 (1 px steps)",
        "diagonal": f"(d, d) for d = {-preset.diagonal} .. {preset.diagonal} (1 px steps)",
        "consistency": ("P(top-1 agrees) for two offsets drawn independently and uniformly from the grid: "
                        "the exact expectation sum_k p_k^2 per image (p_k: share of grid offsets predicted k); "
                        "crop protocol = antialiased-cnns' consistency, circular = APS's"),
        "flip_probability": "P(top-1 differs) between neighbouring offsets of the line (ImageNet-P's flip rate)",
        "diagonal_change": ("P(top-1 differs) and mean |change| of the reference class probability between "
                            "consecutive diagonal offsets (Azulay & Weiss)"),
        "reference_class": "the true class when labels are given, else the class predicted on the unshifted view",
        "intervals": "95% percentile bootstrap over images (2000 resamples, seed 0), the same resamples for every model",
    }

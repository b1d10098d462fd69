"""What notebook 11 audits: the user's model and images, or a default that runs offline.

:func:`choose_subject` decides (no loading, no training) and says why; :func:`load_subject` loads
the models and images it names. The defaults:

- a ``MODEL`` spec given: that model (:func:`shiftinv.audit.loaders.load_model`) on ``IMAGES``;
- ``natural`` with the real data present (``$SHIFTINV_DATA/models/mobilenet_v2_1.0_224_quant.tflite``,
  ``$SHIFTINV_DATA/imagenet_sample``) and LiteRT installed (``pip install -e '.[audit-litert]'``):
  Google's quantised MobileNetV2, a real ImageNet classifier trained elsewhere, as a black box on the
  ImageNet sample photos (one per class for 200 classes);
- otherwise the workbook's own heads (notebook 03) on the profile's test images; a profile whose
  data is absent (a fresh clone without ``../shared``) falls back to ``demo``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from ..workbook import paths
from . import images as audit_images
from . import loaders
from .images import AuditImages
from .models import AuditModel
from .protocol import Preset

#: Where the real LiteRT model and photos are, under ``$SHIFTINV_DATA``.
LITERT_FILE = Path("models") / "mobilenet_v2_1.0_224_quant.tflite"


IMAGENET_SAMPLE = Path("imagenet_sample")


#: How a user gets the LiteRT model elsewhere (the notebook prints it when the file is absent).
LITERT_HELP = ("the quantised MobileNetV2 is 'mobilenet_v2_1.0_224_quant.tflite' of google-coral/test_data on GitHub "
               "(Apache-2.0); the ImageNet sample photos are EliSchwartz/imagenet-sample-images; put them under "
               "$SHIFTINV_DATA/models/ and $SHIFTINV_DATA/imagenet_sample/ and pip install ai-edge-litert")


@dataclass
class Subject:
    """What to audit. ``kind``: ``"spec"`` (the user's model), ``"litert"`` or ``"workbook"``."""

    kind: str
    reason: str
    profile: str = "demo"
    model: str = ""
    weights: str = ""
    images: str = ""
    labels: str = ""
    heads: list[str] = field(default_factory=list)
    n_images: int | None = None
    preset: str = "default"


def _profile_data_present(profile: str) -> bool:
    from ..study import profiles

    p = profiles.get_profile(profile)
    if p.dataset == "digits":
        return True
    if p.dataset == "mnist_canvas":
        return (paths.data_dir() / "mnist").is_dir()
    return bool(p.data_root) and Path(p.data_root).is_dir()


#: Images audited when the notebook's ``N_IMAGES`` is 0: (workbook test images, smoke runs).
DEFAULT_IMAGES: tuple[int, int] = (12, 4)


#: Preset when the notebook's ``PRESET`` is empty: the workbook's heads (``make figures`` budget), others.
DEFAULT_PRESETS: tuple[str, str] = ("quick", "default")


def choose_subject(profile: str, smoke: bool = False, *, model: str = "", weights: str = "", images: str = "",
                   labels: str = "", heads: str = "", n_images: int = 0, preset: str = "") -> Subject:
    """The subject of an audit from notebook 11's parameters (module docstring); nothing is loaded.

    ``n_images`` 0: every image of a folder (4 in smoke runs), :data:`DEFAULT_IMAGES` workbook test images.
    ``preset`` empty: :data:`DEFAULT_PRESETS` (``smoke`` in smoke runs).
    """
    subject = _choose(profile, smoke, model, weights, images, labels, heads, n_images)
    subject.preset = "smoke" if smoke else preset or DEFAULT_PRESETS[subject.kind != "workbook"]
    return subject


def _choose(profile: str, smoke: bool, model: str, weights: str, images: str, labels: str, heads: str,
            n_images: int) -> Subject:
    n = n_images or (DEFAULT_IMAGES[1] if smoke else None)
    if model:
        if not images:
            raise ValueError("MODEL is set but IMAGES is empty: give the folder of images to audit it on")
        return Subject("spec", f"the model {model}", model=model, weights=weights, images=images, labels=labels,
                       n_images=n)
    head_list = [h.strip() for h in heads.split(",") if h.strip()]
    data = paths.data_dir()
    if profile == "natural":
        missing = [str(data / p) for p in (LITERT_FILE, IMAGENET_SAMPLE) if not (data / p).exists()]
        if importlib.util.find_spec("ai_edge_litert") is None:
            missing.append("the ai-edge-litert package")
        if not missing:
            return Subject("litert", "a real ImageNet classifier (LiteRT MobileNetV2) on the ImageNet sample photos",
                           profile, str(data / LITERT_FILE), images=str(data / IMAGENET_SAMPLE), n_images=n)
        print(f"LiteRT audit not possible ({'; '.join(missing)} missing): {LITERT_HELP}")
    n = n or DEFAULT_IMAGES[0]
    if not _profile_data_present(profile):
        return Subject("workbook", f"the {profile} data is absent: the workbook's demo heads instead", "demo",
                       heads=head_list, n_images=n)
    return Subject("workbook", f"the workbook's own {profile} heads (notebook 03)", profile, heads=head_list,
                   n_images=n)


def load_subject(subject: Subject, preset: Preset, smoke: bool = False) -> tuple[list[AuditModel], AuditImages]:
    """The models and images of ``subject``, the images prepared for the preset's radius."""
    if subject.kind == "workbook":
        ms = loaders.workbook_model_set(subject.profile, smoke=smoke)
        x, y = ms.test_tensors(subject.n_images)
        # the digits sit on a zero canvas: a larger canvas is the same canvas extended with zeros
        imgs = audit_images.from_tensors(x, preset.radius, labels=y, names=[f"test_{i:03d}" for i in range(len(y))])
        return loaders.workbook_models(ms, subject.heads), imgs
    if subject.kind == "litert":
        model = loaders.load_model(subject.model, name="mobilenet_v2 (LiteRT, int8)")
        labels = audit_images.imagenet_sample_labels(subject.images)
        return [model], audit_images.load_images(subject.images, model.input_size[0], preset.radius, labels=labels,
                                                 max_images=subject.n_images)
    model = loaders.load_model(subject.model, weights=subject.weights or None)
    return [model], audit_images.load_images(subject.images, model.input_size[0], preset.radius,
                                             labels=subject.labels or None, max_images=subject.n_images)

"""Models from files and names, as :class:`~shiftinv.audit.models.AuditModel` objects.

:func:`load_model` reads a model spec:

===============================  ==============================================================
``path/model.tflite``            a LiteRT file, audited as a black box (``pip install ai-edge-litert``)
``path/model.pt`` (TorchScript)  ``torch.jit.save`` output (``torch.jit.load``: no pickle)
``path/model.pt`` (whole module)  ``torch.save(model)``: refused unless ``allow_pickle=True``, because
                                  unpickling it runs code; prefer TorchScript or factory + weights
``package.module:factory``       ``factory()`` builds the module; ``weights`` a state-dict file
``torchvision:NAME``             ``torchvision.models.get_model(NAME)`` + ``weights``; size and
                                  normalisation from torchvision's own metadata for NAME
``timm:NAME``                    ``timm.create_model(NAME)`` + ``weights``; size and normalisation from
                                  its ``pretrained_cfg`` (``pip install timm``)
``workbook:PROFILE/TRUNK/HEAD``  a head the workbook trained (notebook 03), e.g. ``workbook:demo/vgg/multi_gap``
===============================  ==============================================================

State-dict files load with ``weights_only=True`` (:func:`shiftinv.workbook.cache.safe_torch_load`).
Explicit ``input_size`` / ``mean`` / ``std`` / ``output`` replace the model's own defaults.
"""

from __future__ import annotations

import importlib
import zipfile
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..workbook import cache
from .models import AuditModel, file_identity, from_module, litert_model

IMAGENET_MEAN = (0.485, 0.456, 0.406)


IMAGENET_STD = (0.229, 0.224, 0.225)


def load_state_dict_file(path: Path | str) -> dict[str, torch.Tensor]:
    """A state dict from a file (``weights_only=True``); ``{"state_dict": ...}`` / ``{"model": ...}``
    wrappers are unwrapped and a ``module.`` prefix (DataParallel) is dropped."""
    state = cache.safe_torch_load(path)
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"'{path}' holds no state dict (a dict of tensors); save one with "
                         "torch.save(model.state_dict(), path)")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _load_weights(net: nn.Module, weights: Path | str | None, spec: str) -> nn.Module:
    if weights is None:
        return net
    state = load_state_dict_file(weights)
    try:
        result = net.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shapes differ
        raise ValueError(f"'{weights}' does not fit {spec}: {str(err).splitlines()[1].strip()}; is it the state "
                         "dict of this architecture (and number of classes)?") from None
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"'{weights}' does not fit {spec}: missing keys {result.missing_keys[:5]}, unexpected "
                         f"keys {result.unexpected_keys[:5]}; is it the state dict of this architecture?")
    return net


def _torch_file(path: Path, allow_pickle: bool) -> nn.Module:
    """A TorchScript archive, or (with ``allow_pickle``) a whole pickled module; else a clear error."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            if any(n.split("/", 1)[-1].startswith("code/") for n in z.namelist()):
                return torch.jit.load(str(path), map_location="cpu")
    try:
        state = cache.safe_torch_load(path)
    except cache.CorruptFileError:
        if not allow_pickle:
            raise ValueError(f"'{path}' is a whole pickled module (torch.save(model)); loading it runs code from the "
                             "file. Save it as TorchScript (torch.jit.script(model).save(path)) or give "
                             "package.module:factory with a state dict; or pass allow_pickle=True "
                             "(--allow-pickle) if you trust the file") from None
        net = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(net, nn.Module):
            raise ValueError(f"'{path}' unpickled to a {type(net).__name__}, not an nn.Module") from None
        return net
    kind = "a state dict" if isinstance(state, dict) else type(state).__name__
    raise ValueError(f"'{path}' holds {kind}, not a model: give the architecture as package.module:factory, "
                     "torchvision:NAME or timm:NAME and this file as its weights")


def _torchvision(name: str, weights: Path | str | None) -> tuple[nn.Module, dict[str, Any]]:
    import torchvision

    try:
        net = torchvision.models.get_model(name, weights=None)
    except ValueError:
        raise ValueError(f"torchvision has no model {name!r}; see torchvision.models.list_models()") from None
    defaults: dict[str, Any] = {"input_size": 224, "mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    try:  # torchvision's own metadata for the architecture (no download)
        t = torchvision.models.get_model_weights(name).DEFAULT.transforms()
        defaults = {"input_size": int(t.crop_size[0]), "mean": tuple(t.mean), "std": tuple(t.std)}
    except (ValueError, AttributeError, TypeError):
        pass
    return _load_weights(net, weights, f"torchvision:{name}"), defaults


def _timm(name: str, weights: Path | str | None) -> tuple[nn.Module, dict[str, Any]]:
    try:
        import timm
    except ImportError:
        raise ImportError("timm:NAME needs timm: pip install timm") from None
    net = timm.create_model(name, pretrained=False)
    cfg = getattr(net, "pretrained_cfg", {}) or {}
    defaults = {"input_size": int(cfg.get("input_size", (3, 224, 224))[-1]),
                "mean": tuple(cfg.get("mean", IMAGENET_MEAN)), "std": tuple(cfg.get("std", IMAGENET_STD))}
    return _load_weights(net, weights, f"timm:{name}"), defaults


def _factory(spec: str, weights: Path | str | None) -> nn.Module:
    module_name, _, attr = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot import {spec!r} ({err}); give package.module:factory of an importable module") \
            from None
    net = factory()
    if not isinstance(net, nn.Module):
        raise TypeError(f"{spec}() returned a {type(net).__name__}, not an nn.Module")
    return _load_weights(net, weights, spec)


def load_model(spec: str, *, weights: Path | str | None = None, name: str | None = None,
               input_size: int | None = None, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
               output: str | None = None, allow_pickle: bool = False) -> AuditModel:
    """The model named by ``spec`` (module docstring) as an :class:`AuditModel`."""
    spec = str(spec)
    defaults: dict[str, Any] = {"input_size": 224, "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}
    if spec.startswith("workbook:"):
        return workbook_model(spec, name=name)
    if spec.endswith(".tflite"):
        return litert_model(spec, name or Path(spec).stem, output=output or "probabilities",
                            mean=mean or (0.0, 0.0, 0.0), std=std or (1.0, 1.0, 1.0))
    if spec.startswith("torchvision:"):
        net, defaults = _torchvision(spec.split(":", 1)[1], weights)
    elif spec.startswith("timm:"):
        net, defaults = _timm(spec.split(":", 1)[1], weights)
    elif Path(spec).is_file():
        net = _torch_file(Path(spec), allow_pickle)
    elif ":" in spec and not Path(spec).suffix:
        net = _factory(spec, weights)
    else:
        raise FileNotFoundError(f"model {spec!r}: no such file, and not package.module:factory, torchvision:NAME, "
                                "timm:NAME or workbook:PROFILE/TRUNK/HEAD")
    source = spec + (f" + weights {Path(weights).name} ({file_identity(weights)})" if weights else " (weights as built)")
    return from_module(net, name or spec.split(":")[-1].split("/")[-1], input_size or defaults["input_size"],
                       output=output or "logits", mean=mean or defaults["mean"], std=std or defaults["std"],
                       description=source)


def workbook_model(spec: str, name: str | None = None) -> AuditModel:
    """``workbook:PROFILE/TRUNK/HEAD``: a trained head of the workbook (trained here if not cached)."""
    parts = spec.split(":", 1)[1].split("/")
    if len(parts) != 3:
        raise ValueError(f"{spec!r}: expected workbook:PROFILE/TRUNK/HEAD, e.g. workbook:demo/vgg/multi_gap")
    ms = workbook_model_set(parts[0])
    return workbook_models(ms, ["/".join(parts[1:])], names=[name] if name else None)[0]


def workbook_model_set(profile: str = "demo", smoke: bool = False) -> Any:
    """The workbook's trained model set of ``profile`` (notebook 03's; trained now when not cached)."""
    from ..study import modelset, profiles

    return modelset.train_or_load_models(profiles.get_profile(profile, smoke=smoke))


def workbook_models(ms: Any, heads: Sequence[str], names: Sequence[str] | None = None) -> list[AuditModel]:
    """Heads ``"<trunk>/<head>"`` of a model set as :class:`AuditModel` torch modules (their trunk
    normalises its input itself, so mean 0 and std 1 here)."""
    known = ms.names()
    missing = [h for h in heads if h not in known]
    if missing:
        raise ValueError(f"the {ms.profile.name} model set has no {missing}; it has {known}")
    out = []
    for i, h in enumerate(heads):
        net = ms.classifier(h)
        out.append(from_module(net, names[i] if names else h, ms.profile.image_size,
                               description=f"workbook {ms.profile.name} model {h} (notebook 03)"))
    return out

"""The model under audit: any network as ``images in [0, 1] -> outputs``, white box or black box.

:class:`AuditModel` wraps

- a torch ``nn.Module`` (:func:`from_module`): its input normalisation and size are attributes, its
  layers can be hooked (:mod:`shiftinv.audit.layers`: per-layer equivariance, strides);
- any Python callable mapping a batch to logits, probabilities or embeddings (:func:`from_callable`):
  a model in another runtime is audited as a black box, e.g. LiteRT (:func:`litert_model`).

Every wrapper takes ``(B, 3, H, W)`` float RGB in [0, 1] at the model's input size and returns
``(B, K)`` float32: logits, log-probabilities for a model that outputs probabilities (so that the
sweep's softmax gives the probabilities back), or embeddings.
Loading models from files and names: :mod:`shiftinv.audit.loaders`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

#: What a model's output is: ``logits``, ``probabilities`` (stored as log-probabilities) or ``embedding``.
OUTPUTS: tuple[str, ...] = ("logits", "probabilities", "embedding")


#: Floor of a probability before its log (a quantised model outputs exact zeros).
PROB_FLOOR = 1e-8


class AuditModel(nn.Module):
    """A model under audit. ``forward(x)``: ``x`` (B, 3, H, W) RGB in [0, 1] -> (B, K) float32.

    Attributes:
        name: label in reports.
        net: the torch module (white box), or ``None``.
        fn: the callable (black box), or ``None``.
        input_size: ``(H, W)`` the model expects.
        output: one of :data:`OUTPUTS`.
        identity: a hash of the weights (module) or of the model file (black box): keys resumable runs.
        mean, std: normalisation applied before ``net`` / ``fn`` (``(x - mean) / std``, per channel).
        description: where the model came from (file, factory, weights), for the report.
    """

    def __init__(self, name: str, *, net: nn.Module | None = None, fn: Callable[[Tensor], Any] | None = None,
                 input_size: tuple[int, int] | int = 224, output: str = "logits",
                 mean: Sequence[float] = (0.0, 0.0, 0.0), std: Sequence[float] = (1.0, 1.0, 1.0),
                 identity: str = "", description: str = "") -> None:
        super().__init__()
        if (net is None) == (fn is None):
            raise ValueError("give exactly one of net (a torch module) or fn (a black-box callable)")
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        if len(mean) != 3 or len(std) != 3 or any(float(s) <= 0 for s in std):
            raise ValueError(f"mean and std need 3 values (RGB), std > 0; got mean={mean}, std={std}")
        self.name, self.net, self.fn, self.output, self.description = name, net, fn, output, description
        size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
        self.input_size = (int(size[0]), int(size[1]))
        self.register_buffer("mean", torch.tensor([float(m) for m in mean]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([float(s) for s in std]).view(1, 3, 1, 1), persistent=False)
        self.identity = identity or (_module_identity(net) if net is not None else "")
        if net is not None:
            net.eval()

    @property
    def white_box(self) -> bool:
        """A torch module (not a black-box callable)."""
        return self.net is not None

    @property
    def hookable(self) -> bool:
        """A torch module whose layers forward hooks can see (TorchScript runs compiled code: no hooks)."""
        return self.net is not None and not isinstance(self.net, torch.jit.ScriptModule)

    def normalize(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1] -> what ``net`` / ``fn`` takes."""
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"{self.name}: expected images (B, 3, H, W) in [0, 1], got {tuple(x.shape)}")
        if tuple(x.shape[-2:]) != self.input_size:
            raise ValueError(f"{self.name}: expected {self.input_size[0]}x{self.input_size[1]} px inputs, got "
                             f"{tuple(x.shape[-2:])}; set input_size to what the model takes")
        out = self.net(self.normalize(x)) if self.net is not None else self.fn(self.normalize(x))
        out = _as_output_tensor(out, self.name, x.shape[0], x.device)
        if self.output == "probabilities":
            return out.clamp_min(PROB_FLOOR).log()
        return out


def _as_output_tensor(out: Any, name: str, batch: int, device: torch.device) -> Tensor:
    """A model's output as a (B, K) float32 tensor on ``device``; a clear error for anything else."""
    if isinstance(out, (tuple, list)) and out:
        out = out[0]  # e.g. (logits, aux) of some torchvision models
    if isinstance(out, dict):
        raise TypeError(f"{name}: the model returned a dict ({sorted(out)}); wrap it so that it returns one tensor")
    if isinstance(out, np.ndarray):
        out = torch.from_numpy(np.ascontiguousarray(out))
    if not isinstance(out, Tensor):
        raise TypeError(f"{name}: the model must return a tensor or array (B, K), got {type(out).__name__}")
    out = out.reshape(out.shape[0], -1) if out.dim() > 2 else out
    if out.dim() != 2 or out.shape[0] != batch:
        raise ValueError(f"{name}: expected outputs (B={batch}, K), got {tuple(out.shape)}")
    return out.to(device=device, dtype=torch.float32)


def _module_identity(net: nn.Module) -> str:
    from ..workbook import cache

    return cache.state_fingerprint(net)


def file_identity(path: Path | str, length: int = 16) -> str:
    """SHA-256 (first ``length`` hex digits) of a file's bytes: the identity of a black-box model file."""
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:length]


def from_module(net: nn.Module, name: str, input_size: tuple[int, int] | int = 224, *, output: str = "logits",
                mean: Sequence[float] = (0.0, 0.0, 0.0), std: Sequence[float] = (1.0, 1.0, 1.0),
                description: str = "") -> AuditModel:
    """A torch module as an :class:`AuditModel` (white box: its layers can be hooked)."""
    if not isinstance(net, nn.Module):
        raise TypeError(f"{name}: from_module takes an nn.Module, got {type(net).__name__}; use from_callable")
    return AuditModel(name, net=net, input_size=input_size, output=output, mean=mean, std=std,
                      description=description or f"torch module {type(net).__name__}")


def from_callable(fn: Callable[[Tensor], Any], name: str, input_size: tuple[int, int] | int = 224, *,
                  output: str = "logits", mean: Sequence[float] = (0.0, 0.0, 0.0),
                  std: Sequence[float] = (1.0, 1.0, 1.0), identity: str = "", description: str = "") -> AuditModel:
    """Any callable ``batch (B, 3, H, W) float -> (B, K)`` (tensor or numpy) as a black-box model.

    ``identity`` should change when the model does (e.g. :func:`file_identity` of its file): it keys
    the resumable results, so two different black boxes must not share one.
    """
    if not callable(fn):
        raise TypeError(f"{name}: fn must be callable (batch -> outputs), got {type(fn).__name__}")
    if not identity:
        identity = hashlib.sha256(repr(getattr(fn, "__qualname__", fn)).encode()).hexdigest()[:16]
    return AuditModel(name, fn=fn, input_size=input_size, output=output, mean=mean, std=std, identity=identity,
                      description=description or f"black-box callable {getattr(fn, '__qualname__', type(fn).__name__)}")


class LiteRTRunner:
    """A LiteRT (TensorFlow Lite) classifier as a callable ``(B, 3, H, W) RGB in [0, 1] -> (B, K)``.

    Images are fed one at a time (quantised models often have a fixed batch of 1) as the input
    tensor's dtype: uint8 ``round(255 x)`` (the convention of the quantised ImageNet models; the
    file's own quantisation maps it to its real range), or float32 ``x`` as normalised by the
    :class:`AuditModel`'s ``mean`` / ``std``. Outputs are dequantised with the file's scale and zero point.
    ``skip_outputs`` drops the first outputs (1: the background class of 1001-class ImageNet models).
    """

    def __init__(self, path: Path | str, num_threads: int = 2, skip_outputs: int = 0) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise ImportError("auditing a .tflite model needs LiteRT: pip install ai-edge-litert "
                              "(or pip install -e '.[audit-litert]')") from None
        self.path, self.skip = Path(path), int(skip_outputs)
        if not self.path.is_file():
            raise FileNotFoundError(f"LiteRT model '{self.path}' not found")
        self.interpreter = Interpreter(model_path=str(self.path), num_threads=int(num_threads))
        self.interpreter.allocate_tensors()
        self.inp = self.interpreter.get_input_details()[0]
        self.out = self.interpreter.get_output_details()[0]
        _, self.height, self.width, channels = (int(v) for v in self.inp["shape"])
        if channels != 3:
            raise ValueError(f"'{self.path}': expected an RGB input (1, H, W, 3), got shape {self.inp['shape']}")

    def __call__(self, x: Tensor) -> np.ndarray:
        images = x.detach().float().cpu().permute(0, 2, 3, 1).numpy()  # (B, H, W, 3)
        outs = []
        for image in images:
            self.interpreter.set_tensor(self.inp["index"], self._quantise(image)[None])
            self.interpreter.invoke()
            outs.append(self._dequantise(self.interpreter.get_tensor(self.out["index"])[0]))
        return np.stack(outs)[:, self.skip:]

    def _quantise(self, image: np.ndarray) -> np.ndarray:
        dtype = self.inp["dtype"]
        if dtype == np.uint8:
            return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
        if dtype == np.float32:
            return image.astype(np.float32)  # the AuditModel's mean / std have normalised it
        raise TypeError(f"'{self.path}': input dtype {dtype.__name__} is not supported here (uint8 or float32); "
                        "wrap the interpreter in your own function and audit it with from_callable")

    def _dequantise(self, out: np.ndarray) -> np.ndarray:
        scale, zero = self.out["quantization"]
        return ((out.astype(np.float32) - zero) * scale) if scale else out.astype(np.float32)


def litert_model(path: Path | str, name: str = "", *, skip_outputs: int | None = None, num_threads: int = 2,
                 output: str = "probabilities", mean: Sequence[float] = (0.0, 0.0, 0.0),
                 std: Sequence[float] = (1.0, 1.0, 1.0)) -> AuditModel:
    """A ``.tflite`` classifier as a black-box :class:`AuditModel`, input size read from the file.

    ``skip_outputs=None`` drops the first output of a 1001-output model (ImageNet with a background
    class, as Google's quantised MobileNets), none otherwise. ``output``: what the file returns
    (the quantised MobileNets end in a softmax: ``"probabilities"``).
    """
    runner = LiteRTRunner(path, num_threads=num_threads)
    k = int(np.prod(runner.out["shape"][1:]))
    runner.skip = (1 if k == 1001 else 0) if skip_outputs is None else int(skip_outputs)
    return from_callable(runner, name or Path(path).stem, (runner.height, runner.width), output=output,
                         mean=mean, std=std, identity=file_identity(path),
                         description=f"LiteRT file {Path(path).name} ({k} outputs, first {runner.skip} dropped), "
                                     f"input {runner.inp['dtype'].__name__}")

"""Checkpoint-and-resume and divergence checks, shared by classifier training (:mod:`shiftinv.study.training`)
and metric training (:mod:`shiftinv.perceptual.metric_training`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import torch
from torch import Tensor

from . import cache


class TrainingDiverged(FloatingPointError):
    """Training produced a non-finite loss or non-finite weights (the message says where)."""


# ----------------------------------------------------------------------------- checkpoints


#: A batch loss above this factor times the run's first batch loss (or 1 nat) counts as divergence.
DIVERGENCE_FACTOR = 1e3


def divergence(loss: float | None = None, parameters: Iterable[tuple[str, Tensor]] = (),
               first_loss: float | None = None) -> str:
    """Why a run counts as diverged, or ``""``: a non-finite ``loss``, a ``loss`` above
    :data:`DIVERGENCE_FACTOR` times ``max(first_loss, 1)`` (when ``first_loss`` is given), or
    non-finite values in the named float ``parameters``. Checked in this order."""
    if loss is not None and not math.isfinite(loss):
        return f"non-finite training loss ({loss})"
    if loss is not None and first_loss is not None and loss > DIVERGENCE_FACTOR * max(first_loss, 1.0):
        return f"the training loss jumped to {loss:.3g} (first batch: {first_loss:.3g})"
    bad = [n for n, p in parameters if p.is_floating_point() and not bool(torch.isfinite(p).all())]
    return f"non-finite weights in {', '.join(bad[:3])}" if bad else ""


class Checkpoint:
    """The resumable state of one training run, written atomically after finished epochs.

    Shared by :func:`fit` and :func:`shiftinv.perceptual.metric_training.train_metric`. ``path`` None means no
    checkpoint (:meth:`resume` returns None, :meth:`save` does nothing). ``run_id`` (JSON-like:
    configuration, weights fingerprint, data size) is stored in the file; a file of another run
    is refused with a ``ValueError``, an unreadable one is set aside (``<name>.corrupt``,
    :func:`shiftinv.workbook.cache.load_or_set_aside`) and the run starts over. ``every``: epochs between
    writes (the last epoch is always written).
    """

    def __init__(self, path: Path | str | None, run_id: Mapping[str, Any], every: int = 1) -> None:
        self.path = Path(path) if path is not None else None
        self.run_id = dict(run_id)
        self.every = max(1, int(every))

    def resume(self, validate: Callable[[Mapping[str, Any]], object] | None = None) -> dict[str, Any] | None:
        """The saved state (with ``epoch``: finished epochs), or None when there is nothing to resume.

        ``validate(saved)`` checks what the file holds (entries, shapes) before anything is restored:
        raising one of :data:`shiftinv.workbook.cache.INVALID_CONTENT` sets the file aside like a
        damaged one, and the run starts over.
        """
        def check(saved: Any) -> None:
            if saved.get("run_id") == self.run_id:
                int(saved["epoch"])
                if validate is not None:
                    validate(saved)

        saved = cache.load_or_set_aside(self.path, check) if self.path is not None else None
        if saved is not None and saved.get("run_id") != self.run_id:
            raise ValueError(f"checkpoint '{self.path}' was written by a different run ({saved.get('run_id')}); "
                             "delete it or pass another checkpoint path")
        return saved

    def save(self, epoch: int, state: Callable[[], Mapping[str, Any]], last: bool = False) -> bool:
        """Write ``{run_id, epoch, **state()}`` after finished epoch ``epoch`` (1-based) when it is
        due (``epoch % every == 0`` or ``last``); ``state`` is called only then. Whether it wrote."""
        if self.path is None or not (epoch % self.every == 0 or last):
            return False
        cache.atomic_torch_save({"run_id": self.run_id, "epoch": int(epoch), **state()}, self.path)
        return True

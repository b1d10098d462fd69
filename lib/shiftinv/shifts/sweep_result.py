"""What a translation sweep returns: per-shift, per-image loss, correctness, predictions and
probabilities of several heads, saved and loaded safely, read back as per-image responses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor

from ..workbook import cache

FIELDS: tuple[str, ...] = ("loss", "correct", "pred", "p_true")

#: What to do about a sweep result that cannot be read (not the advice for weights files).
SWEEP_ADVICE = ("It is a sweep result (written by shiftinv.shifts.sweep): run the sweep again to rewrite it; "
                "a cached one under results/ is set aside (*.corrupt) and swept again by the next run.")


#: Per-image responses :meth:`SweepResult.per_image` reads (the one reader of sweep results).
RESPONSES: tuple[str, ...] = ("loss", "accuracy", "p_true", "true_logit", "pred_change")


# ----------------------------------------------------------------------------- result


@dataclass
class SweepResult:
    """Per-shift, per-image outcomes of one or several heads.

    Attributes:
        shifts: (S, 2) int64 ``(dx, dy)`` (content moves right / down).
        labels: (N,) int64 true classes.
        mode: shift protocol (:data:`shiftinv.shifts.translation.MODES`).
        loss: ``{head: (S, N) float32}`` cross-entropy (nats) of each shifted image.
        correct: ``{head: (S, N) bool}`` top-1 correct.
        pred: ``{head: (S, N) int64}`` top-1 class.
        p_true: ``{head: (S, N) float32}`` softmax probability of the true class.
        logits: ``{head: (S, N, K) float32}`` when the sweep kept them, else ``{}``.
        meta: free-form description (config, timings).
    """

    shifts: Tensor
    labels: Tensor
    mode: str
    loss: dict[str, Tensor]
    correct: dict[str, Tensor]
    pred: dict[str, Tensor]
    p_true: dict[str, Tensor]
    logits: dict[str, Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def heads(self) -> tuple[str, ...]:
        return tuple(self.loss)

    @property
    def num_shifts(self) -> int:
        return int(self.shifts.shape[0])

    @property
    def num_images(self) -> int:
        return int(self.labels.shape[0])

    def index(self, dx: int, dy: int) -> int:
        """Row of shift ``(dx, dy)`` in the per-shift tensors; ``KeyError`` when absent."""
        hit = ((self.shifts[:, 0] == dx) & (self.shifts[:, 1] == dy)).nonzero()
        if hit.numel() == 0:
            raise KeyError(f"shift ({dx}, {dy}) is not in this sweep (it has {self.num_shifts} shifts)")
        return int(hit[0, 0])

    def check_head(self, head: str) -> str:
        if head not in self.loss:
            raise KeyError(f"unknown head {head!r}; this sweep has heads {self.heads}")
        return head

    def per_image(self, head: str, field: str = "loss") -> Tensor:
        """(S, N) response of every image at every shift (rows as in :attr:`shifts`).

        Args:
            field: ``"loss"`` (cross-entropy, nats, float32), ``"accuracy"`` (top-1 correct, bool),
                ``"p_true"`` (softmax probability of the true class), ``"true_logit"`` (logit of the
                true class; needs a sweep run with ``keep_logits=True``) or ``"pred_change"`` (top-1
                differs from the unshifted image's, bool; needs the shift (0, 0)).
        """
        self.check_head(head)
        if field == "loss":
            return self.loss[head]
        if field == "accuracy":
            return self.correct[head]
        if field == "p_true":
            return self.p_true[head]
        if field == "true_logit":
            if head not in self.logits:
                raise ValueError("field 'true_logit' needs the logits: run the sweep with keep_logits=True")
            lg = self.logits[head]  # (S, N, K)
            return lg.gather(2, self.labels.view(1, -1, 1).expand(lg.shape[0], -1, 1))[..., 0]
        if field == "pred_change":
            try:
                z = self.index(0, 0)
            except KeyError:
                raise ValueError("field 'pred_change' needs the unshifted image: include (0, 0) in the sweep's "
                                 "shifts") from None
            return self.pred[head] != self.pred[head][z]
        raise ValueError(f"field must be one of {RESPONSES}, got {field!r}")

    def to_state(self) -> dict[str, Any]:
        """Plain dict of tensors / strings (loadable with ``weights_only=True``)."""
        return {
            "shifts": self.shifts, "labels": self.labels, "mode": self.mode,
            "loss": self.loss, "correct": self.correct, "pred": self.pred, "p_true": self.p_true,
            "logits": self.logits, "meta": self.meta,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "SweepResult":
        """The result of :meth:`to_state`; ``KeyError``/``ValueError`` when ``state`` is not one."""
        result = cls(**{k: state[k] for k in ("shifts", "labels", "mode", "loss", "correct", "pred", "p_true", "logits",
                                              "meta")})
        s, n = result.shifts.shape[0], result.labels.shape[0]
        bad = [h for f in FIELDS for h, v in getattr(result, f).items() if tuple(v.shape[:2]) != (s, n)]
        if bad:
            raise ValueError(f"responses of {bad[:3]} are not ({s} shifts, {n} images)")
        return result

    def save(self, path: Path | str) -> Path:
        """Write atomically (``cache.atomic_torch_save``)."""
        return cache.atomic_torch_save({"complete": True, "result": self.to_state()}, path)

    @classmethod
    def load(cls, path: Path | str) -> "SweepResult":
        """Read a finished result written by :meth:`save` (``weights_only=True``).

        Raises ``FileNotFoundError`` naming a missing file and :class:`shiftinv.workbook.cache.CorruptFileError`
        (a ``ValueError``) naming a damaged one, one that holds something else, or a partial sweep,
        each with what to do.
        """
        state = cache.safe_torch_load(path, advice=SWEEP_ADVICE)
        if isinstance(state, Mapping) and state.get("complete") is False:
            raise cache.CorruptFileError(f"'{path}' holds a partial sweep; re-run sweep(..., out_path='{path}') "
                                         "to finish it")
        try:
            return cls.from_state(state["result"])
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
            raise cache.CorruptFileError(f"'{path}' loads but is not a sweep result ({type(err).__name__}: {err}). "
                                         f"{SWEEP_ADVICE}") from err

    def select(self, heads: Sequence[str]) -> "SweepResult":
        """A view with only ``heads``."""
        for h in heads:
            self.check_head(h)
        pick = lambda d: {h: d[h] for h in heads if h in d}  # noqa: E731
        return SweepResult(self.shifts, self.labels, self.mode, pick(self.loss), pick(self.correct),
                           pick(self.pred), pick(self.p_true), pick(self.logits), dict(self.meta))

    def select_shifts(self, shifts: Sequence[tuple[int, int]]) -> "SweepResult":
        """A result with only the rows of ``shifts`` (in that order); ``KeyError`` names a missing one."""
        rows = torch.tensor([self.index(int(dx), int(dy)) for dx, dy in shifts], dtype=torch.long)
        pick = lambda d: {h: v[rows] for h, v in d.items()}  # noqa: E731
        return SweepResult(self.shifts[rows], self.labels, self.mode, pick(self.loss), pick(self.correct),
                           pick(self.pred), pick(self.p_true), pick(self.logits), dict(self.meta))

    @staticmethod
    def merge(results: Mapping[str, "SweepResult"]) -> "SweepResult":
        """Combine results of several models on the same shifts/images; heads named ``model/head``."""
        first = next(iter(results.values()))
        out = SweepResult(first.shifts, first.labels, first.mode, {}, {}, {}, {}, {}, {"models": {}})
        for model, r in results.items():
            if not (torch.equal(r.shifts, first.shifts) and torch.equal(r.labels, first.labels) and r.mode == first.mode):
                raise ValueError(f"cannot merge '{model}': its shifts, labels or mode differ from the first result")
            for h in r.heads:
                name = f"{model}/{h}"
                for attr in ("loss", "correct", "pred", "p_true", "logits"):
                    src = getattr(r, attr)
                    if h in src:
                        getattr(out, attr)[name] = src[h]
            out.meta["models"][model] = r.meta
        return out

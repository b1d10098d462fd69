"""The models file of ``shiftinv-sweep export``: notebook 03's trained trunks and heads in one torch file.

:func:`export_models` reads them from the cache (loading only, unless asked to train what is
missing), :func:`models_state` is the documented layout, :func:`load_models` / :func:`build_models`
turn a file back into modules, :func:`profile_from_state` into the profile it was trained under.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from ..study import modelset, profiles
from ..workbook import cache
from . import CommandError

if TYPE_CHECKING:
    from ..models.vgg import Head, VGGTrunk

#: ``{trunk name: (trunk, {head name: head})}``, what the sweep engine sweeps.
Models = dict[str, tuple["VGGTrunk", dict[str, "Head"]]]


#: How messages name the command that writes and reads models files (also ``shiftinv-sweep``).
COMMAND = "python -m shiftinv.commands.sweep"


#: ``format`` field of the file ``export`` writes (see :func:`models_state`).
MODELS_FORMAT = "shiftinv.sweep/models-v1"


_TRUNK_SPEC = ("width", "batch_norm", "pool", "blur_size", "blur_pad", "circular", "normalize")


_DATA_FIELDS = ("dataset", "data_root", "image_size", "digit_size", "max_train", "max_val", "max_test", "seed",
                "n_sweep", "n_grid", "shift_mode", "shift_radius", "grid_step", "sweep_batch")


def models_state(ms: modelset.ModelSet) -> dict[str, Any]:
    """The trained trunks and heads of a :class:`shiftinv.study.modelset.ModelSet` as a plain dict.

    The documented layout (``format`` :data:`MODELS_FORMAT`), loadable with ``weights_only=True``::

        {"format": "shiftinv.sweep/models-v1",
         "profile": {...},                       # profiles.Profile.to_dict(): data, shifts, seed, ...
         "trunks": {trunk: {"spec": {width, batch_norm, pool, blur_size, blur_pad, circular, normalize},
                            "state": VGGTrunk.state_dict()}},
         "heads": {trunk: {head: {"kind", "num_classes", "input_size", "gap_taps": [...],
                                  "state": Head.state_dict()}}},
         "summary": {"model": [...], "test_acc": [...]}}   # notebook 03's test accuracy per model
    """
    p = ms.profile
    trunks = {name: {"spec": {k: getattr(t, k) for k in _TRUNK_SPEC},
                     "state": {k: v.detach().cpu() for k, v in t.state_dict().items()}}
              for name, t in ms.trunks.items()}
    heads = {t: {h: {"kind": m.kind, "num_classes": m.num_classes, "input_size": p.image_size,
                     "gap_taps": list(m.gap_taps), "state": {k: v.detach().cpu() for k, v in m.state_dict().items()}}
                 for h, m in hs.items()} for t, hs in ms.heads.items()}
    summary = {"model": [str(m) for m in ms.summary["model"]],
               "test_acc": [float(a) for a in ms.summary["test_acc"]]}
    return {"format": MODELS_FORMAT, "profile": p.to_dict(), "trunks": trunks, "heads": heads, "summary": summary}


@contextlib.contextmanager
def _cache_as_it_is() -> Iterator[None]:
    """Read cached models without ``$SHIFTINV_REFRESH``: a refresh asks to recompute, which ``export``
    does only with ``--train-missing`` (notebook 03 is where models are retrained)."""
    value = os.environ.pop(cache.REFRESH_ENV, None)
    try:
        yield
    finally:
        if value is not None:
            os.environ[cache.REFRESH_ENV] = value


def export_models(profile: profiles.Profile, out: Path | str | None = None,
                  train_missing: bool = False) -> dict[str, Any]:
    """Load a profile's trunks and heads from notebook 03's cache and return (and, with ``out``, write
    atomically) :func:`models_state`.

    Without ``train_missing`` nothing is trained and ``$SHIFTINV_REFRESH`` is ignored: a model absent
    from the cache raises :class:`CommandError` before its features are computed. BlurPool/APS trunks
    that reuse the plain trunk's conv weights get their BatchNorm statistics re-estimated on the
    training images exactly as in notebook 03 (deterministic).
    """
    try:
        with contextlib.nullcontext() if train_missing else _cache_as_it_is():
            ms = modelset.train_or_load_models(profile, load_only=not train_missing)
    except modelset.ModelNotCachedError as err:
        raise CommandError(
            f"{err}. Run notebook 03 first (`make figures PROFILE={profile.name} NOTEBOOKS=03`, or "
            f"`python -m shiftinv.workbook.runner --profile {profile.name} 03`), point SHIFTINV_RESULTS at "
            "its results folder, or pass --train-missing to train the missing models now.") from None
    state = models_state(ms)
    if out is not None:
        cache.atomic_torch_save(state, out)
    return state


def load_models(path: Path | str) -> tuple[dict[str, Any], Models]:
    """Read a file written by ``export``: ``(state, {trunk: (VGGTrunk, {head: Head})})`` (eval mode)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CommandError(f"models file not found: '{path}'. Write one with "
                           f"`{COMMAND} export --profile demo --out models.pt`.")
    try:
        state = cache.safe_torch_load(path)
    except ValueError as exc:
        raise CommandError(f"{exc} (is '{path}' a file written by `{COMMAND} export`?)") from None
    return state, build_models(state, f"'{path}'")


def build_models(state: Any, where: str = "the models state") -> Models:
    """``{trunk: (VGGTrunk, {head: Head})}`` (eval mode) from a :func:`models_state` dict."""
    from ..models import vgg

    if not isinstance(state, dict) or state.get("format") != MODELS_FORMAT:
        got = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CommandError(f"{where} is not a models file of format {MODELS_FORMAT!r} (found {got!r}); "
                           f"write one with `{COMMAND} export`.")
    built: Models = {}
    try:
        for tname, t in state["trunks"].items():
            trunk = vgg.build_trunk(**t["spec"])
            trunk.load_state_dict(t["state"])
            heads = {}
            for hname, h in state["heads"].get(tname, {}).items():
                gap = None if h["kind"] in ("flatten", "fc") else tuple(h["gap_taps"])
                head = vgg.build_head(h["kind"], trunk, h["num_classes"], h["input_size"], gap_taps=gap)
                head.load_state_dict(h["state"])
                heads[hname] = head.eval()
            built[tname] = (trunk.eval(), heads)
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise CommandError(f"{where} is damaged or from another version ({type(exc).__name__}: {exc}); "
                           "export it again.") from None
    return built


def profile_from_state(d: dict[str, Any], device: str | None) -> profiles.Profile:
    """The exported profile (its data and sweep settings) as a :class:`shiftinv.study.profiles.Profile`."""
    p = profiles.get_profile(d["name"], bool(d["smoke"]))
    return p.replace(**{k: d[k] for k in _DATA_FIELDS if k in d}, device=device)


def select_models(built: Models, wanted: str | None) -> Models:
    """The models of ``built`` named by ``wanted`` (comma-separated ``"trunk/head"`` or trunk names; all when empty)."""
    if not wanted:
        return built
    out: Models = {}
    every = [f"{t}/{h}" for t, (_, hs) in built.items() for h in hs]
    for w in [w for w in wanted.split(",") if w]:
        hits = [n for n in every if n == w or n.split("/")[0] == w]
        if not hits:
            raise CommandError(f"--heads: no model {w!r}; the file has {every} (a name or a trunk name)")
        for n in hits:
            t, h = n.split("/")
            out.setdefault(t, (built[t][0], {}))[1][h] = built[t][1][h]
    return out

"""The aliasing study of notebook 05: settings (borders, circular shifts), sweeps, spectra and periods.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping, Sequence

import pandas as pd
import torch

from ..shifts import engine, invariance, periodicity, sweep_result
from ..workbook import cache
from . import depth_heads

# ============================================================================ notebook 05 · aliasing periodicity

#: The plain trunk's pools: a GAP after pool k has the predicted period 2**k (the explorer's layers too).
POOL_TAPS: tuple[str, ...] = ("pool1", "pool2", "pool3", "pool4", "pool5")


#: The maps of the per-layer equivariance figure: ``relu1_2`` (stride 1, the control) and every pool.
EQUIVARIANCE_TAPS: tuple[str, ...] = ("relu1_2", *POOL_TAPS)


#: The heads of the spectra figure: GAP at each depth alone, then the model set's multi GAP and flatten.
SPECTRUM_HEADS: tuple[str, ...] = (*(depth_heads.depth_head_name(t) for t in POOL_TAPS), "multi_gap", "flatten")


def aliasing_models(ms: Any) -> tuple[dict[str, Any], pd.DataFrame, Any]:
    """What notebook 05 studies on the plain trunk of model set ``ms``:

    - ``vgg_heads``: its heads plus the GAP-depth ablation, one head per pool reading only that pool's global
      average (``gap_pool1`` ... ``gap_pool5``), trained (cached) on the model set's own features;
    - ``depth_table``: the ablation's heads with their stride and accuracy;
    - ``circ``: the same trunk weights with circular padding (no border at all).
    """
    import dataclasses

    p, trunk = ms.profile, ms.trunks["vgg"]
    heads, table = depth_heads.train_depth_heads(
        trunk, ms.splits.train, ms.splits.val, p.num_classes, cfg=dataclasses.replace(p.head_train, device=p.device),
        key={"profile": p.to_dict(), "trunk": "vgg", "trunk_fingerprint": cache.state_fingerprint(trunk)},
        test_data=ms.splits.test, input_size=p.image_size, seed=p.seed, source=ms.features.get("vgg"))
    return {**ms.heads["vgg"], **heads}, table, depth_heads.same_weights_trunk(trunk, circular=True)


def aliasing_sweeps(ms: Any, vgg_heads: Mapping[str, Any], circ: Any, n_images: int, max_shift: int,
                    exact_images: int) -> dict[str, sweep_result.SweepResult]:
    """Every setting of :func:`aliasing_settings` swept over ``dx = -max_shift .. max_shift - 1`` (cached): the
    protocol setting on the first ``n_images`` test images in the profile's precision, the exact settings
    (:data:`EXACT_SETTINGS`) on the first ``exact_images`` of them in float32."""
    p = ms.profile
    images, labels = ms.test_tensors(n_images)
    exact = min(exact_images, n_images)
    key = {"profile": p.to_dict(), "trunk": cache.state_fingerprint(ms.trunks["vgg"])}
    out = {}
    for name, setting in aliasing_settings(ms, vgg_heads, circ, p.shift_mode).items():
        x, y = (images[:exact], labels[:exact]) if name in EXACT_SETTINGS else (images, labels)
        out[name] = aliasing_run_setting(name, setting, x, y, max_shift, key, batch_size=p.sweep_batch,
                                         device=p.device, precision=p.precision, channels_last=p.channels_last)
    return out


def predicted_periods(trunk: Any, heads: Mapping[str, Any], names: Sequence[str]) -> dict[str, int | None]:
    """``{head: period}`` the architecture predicts for each of ``names`` (:func:`periodicity.predicted_period`)."""
    return {h: periodicity.predicted_period(trunk, heads[h]) for h in names}


def aliasing_settings(ms: Any, vgg_heads: Mapping[str, Any], circ: Any, shift_mode: str) -> dict[str, tuple[dict, str]]:
    """The three settings of notebook 05: ``{name: ({trunk: (trunk, {head: Head})}, shift mode)}``.

    ``protocol``: the plain and BlurPool trunks as trained, the profile's ``shift_mode``;
    ``circular``: ``circ`` (the plain weights with circular padding) under circular shifts;
    ``aps``: the APS trunk under circular shifts.
    """
    return {
        "protocol": ({"vgg": (ms.trunks["vgg"], vgg_heads), "blur": (ms.trunks["blur"], ms.heads["blur"])},
                     shift_mode),
        "circular": ({"vgg": (circ, vgg_heads)}, "circular"),
        "aps": ({"aps": (ms.trunks["aps"], ms.heads["aps"])}, "circular"),
    }


#: The settings whose claims are theorems (exact invariance, exact periods): always swept in float32.
EXACT_SETTINGS: tuple[str, ...] = ("circular", "aps")


def aliasing_run_setting(name: str, setting: tuple[dict, str], images: torch.Tensor, labels: torch.Tensor,
                         max_shift: int, key: Mapping[str, Any], *, batch_size: int,
                         device: str | torch.device | None, precision: str = "float32",
                         channels_last: bool = False) -> sweep_result.SweepResult:
    """Sweep one setting of :func:`aliasing_settings` over ``dx = -max_shift .. max_shift - 1`` at ``dy = 0``
    (every integer), logits kept; cached by ``key`` (profile, trunk fingerprint), the setting and the heads' weights.

    Args:
        images: ``(N, 3, H, W)`` in [0, 1]; labels: ``(N,)``.
        precision, channels_last: how the trunk runs (the profile's); the settings of :data:`EXACT_SETTINGS`
            run in float64 whatever is asked: their checks are theorems, and APS picks the polyphase component
            of largest norm, so two components whose norms differ by less than float32 round-off (frequent on
            a zero canvas) could be picked differently for a shifted copy; float64 leaves the check to the
            architecture.
    """
    chosen, mode = setting
    if name in EXACT_SETTINGS:
        precision, channels_last = "float64", False
        chosen = {t: (copy.deepcopy(tr).double(), {h: copy.deepcopy(m).double() for h, m in hs.items()})
                  for t, (tr, hs) in chosen.items()}
        images = images.double()
    line = [(dx, 0) for dx in range(-max_shift, max_shift)]
    config = {**key, "setting": name, "mode": mode, "line": [max_shift], "n": int(images.shape[0]),
              "precision": [precision, channels_last],
              "heads": {t: {h: cache.state_fingerprint(m) for h, m in hs.items()} for t, (_, hs) in chosen.items()}}
    amp = "float32" if precision == "float64" else precision  # float64: no autocast, the models' own dtype
    state = cache.cached("aliasing_sweep", config, lambda: engine.sweep_models(
        chosen, images, labels, line, mode, batch_size=batch_size, device=device, amp=amp,
        channels_last=channels_last, keep_logits=True, progress=True).to_state(),
        validate=sweep_result.SweepResult.from_state)
    return sweep_result.SweepResult.from_state(state)


def ripple_table(results: Sequence[sweep_result.SweepResult], model_sets: Sequence[Any],
                 heads: Sequence[str] = ("vgg/final_gap", "vgg/multi_gap"), field: str = "true_logit") -> pd.DataFrame:
    """The period-``P`` ripple of each head over a dense 1-px line of shifts (the profile's own protocol), with
    its 95% interval over images and runs (:func:`shiftinv.study.intervals.ripple_statistic`).

    Args:
        results: 1-D profile sweeps with logits (``analysis.replicate_sweeps(..., "profile", keep_logits=True)``),
            the main model set's first; model_sets: the model sets behind them.
    Returns:
        one row per head: ``predicted_period``, ``fraction``, ``chance``, ``ripple`` (= fraction / chance) with
        ``_lo`` / ``_hi`` / ``_seed_min`` / ``_seed_max`` / ``_main``, ``runs``, ``n_images``, ``field``.
    """
    from . import intervals, replicates

    ms = model_sets[0]
    tables = []
    for head in heads:
        t, h = head.split("/")
        period = periodicity.predicted_period(ms.trunks[t], ms.heads[t][h])
        if period is None:
            raise ValueError(f"{head} has no predicted period (a flatten part sees positions)")
        runs = intervals.sweep_runs(results, replicates.run_names(model_sets, [head]))
        tables.append(intervals.run_intervals(runs, intervals.ripple_statistic(period, field))
                      .assign(predicted_period=period, field=field))
    return pd.concat(tables, ignore_index=True)


def aliasing_spectra_curves(results: Mapping[str, sweep_result.SweepResult], heads: Sequence[str],
                            settings: Sequence[str] = ("protocol", "circular"),
                            field: str = "true_logit") -> pd.DataFrame:
    """Image-mean response along ``dx`` and its image-pooled power spectrum, per setting and plain-trunk head.

    Returns:
        rows ``setting``, ``head``, ``what`` (``"response"``: ``x`` = dx in px, ``value`` = mean
        response; ``"power"``: ``x`` = frequency in cycles/px, ``value`` = power summed over images).
    """
    curves = []
    for h in heads:
        for name in settings:
            dxs, vals = invariance.response_profile(results[name], f"vgg/{h}", field)  # (S,), (N, S)
            mean = vals.mean(0)
            freqs, power = periodicity.spectrum_1d(vals)  # (F,), (N, F)
            pooled = power.sum(0)
            curves += [{"setting": name, "head": h, "what": "response", "x": float(x), "value": float(v)}
                       for x, v in zip(dxs, mean)]
            curves += [{"setting": name, "head": h, "what": "power", "x": float(f), "value": float(p)}
                       for f, p in zip(freqs, pooled)]
    return pd.DataFrame(curves)


def aliasing_period_table(results: Mapping[str, sweep_result.SweepResult], trunks: Mapping[str, Any],
                          heads: Mapping[str, Mapping[str, Any]], circ: Any,
                          fields: Sequence[str] = ("loss", "true_logit", "accuracy")) -> pd.DataFrame:
    """``periodicity.periodicity_summary`` of every setting and head, with the predicted periods and
    ``exact_is_predicted`` (exact period found == predicted).

    Args:
        trunks: ``{trunk name: trunk}``; heads: ``{trunk name: {head name: Head}}``.
        circ: the circular-padding trunk, whose periods the ``circular`` setting predicts.
    """
    tables = []
    for name, res in results.items():
        predicted = {}
        for h in res.heads:
            t, head = h.split("/")
            predicted[h] = periodicity.predicted_period(circ if name == "circular" else trunks[t], heads[t][head])
        tables.append(periodicity.periodicity_summary(res, predicted, fields=fields, label=name))
    period_table = pd.concat(tables, ignore_index=True)
    period_table["exact_is_predicted"] = period_table["exact_period"] == period_table["predicted_period"]
    return period_table


ALIASING_BOUNDARY_CURVES = (("protocol", "vgg/multi_gap", "-"), ("circular", "vgg/multi_gap", "--"),
                            ("aps", "aps/multi_gap", "-"), ("aps", "aps/final_gap", ":"))


def aliasing_boundary_check(period_table: pd.DataFrame,
                            curves: Sequence[tuple[str, str, str]] = ALIASING_BOUNDARY_CURVES) -> pd.DataFrame:
    """Predicted period, periodic and invariance deviation of the true-class logit for each
    ``(setting, head, line style)`` of ``curves`` (rows of :func:`aliasing_period_table`)."""
    check = []
    for name, head, _ in curves:
        row = period_table[(period_table["setting"] == name) & (period_table["head"] == head)
                           & (period_table["field"] == "true_logit")].iloc[0]
        check.append({"setting": name, "head": head, "predicted_period": row["predicted_period"],
                      "periodic_deviation": row["periodic_deviation"],
                      "invariance_deviation": row["invariance_deviation"]})
    return pd.DataFrame(check)


def aliasing_explorer_models(ms: Any, vgg_heads: Mapping[str, Any], circ: Any) -> dict[str, depth_heads.HeadModel]:
    """The explorer's models: ``vgg/<head>``, ``vgg+circular/<head>`` (same weights, circular padding),
    and every head of the ``blur`` and ``aps`` trunks."""
    vgg = ms.trunks["vgg"]
    chosen = {f"vgg/{h}": depth_heads.HeadModel(vgg, m) for h, m in vgg_heads.items()}
    chosen.update({f"vgg+circular/{h}": depth_heads.HeadModel(circ, m) for h, m in vgg_heads.items()})
    chosen.update({f"{t}/{h}": depth_heads.HeadModel(ms.trunks[t], m) for t in ("blur", "aps")
                   for h, m in ms.heads[t].items()})
    return chosen

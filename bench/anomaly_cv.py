"""Selection protocol for the NAB bench: cached features, gate replays, leave-one-category-out CV.

Streaming :class:`~intelligence.anomaly.TailProbabilityDetector` over the corpus is the costly
part (seconds); its per-point feature surprises do not depend on the alarm gate, so they are
computed once per feature setting and file and cached under ``.cache/bench/anomaly/`` (the key
hashes the detector's source, the setting and the file). A gate setting (rate discount, lone
penalty, escalation, refractory) is then replayed on the cached surprises with the very classes
the detector uses (:class:`~intelligence.anomaly.alarms.GateScorer`, ``Refractory``), and each
alarm level is applied to the gated score. Since the fourth round the cache holds one more
column: the detector's ``resonance_familiarity()`` wherever some surprise reaches
``VETO_FLOOR`` (NaN elsewhere and without the resonance feature), so the familiarity veto is
replayed too; a gate may also drop features (their surprises replayed as 0: one feature
replacing another), which is replay only.

A *configuration* is one (feature setting, gate setting, alarm level). Every configuration is
scored on every file once; a fold's figure is a sum over its files. For each NAB profile and
each category held out in turn, the configuration with the best figure on the other categories
is chosen and its detections on the held-out category are kept; the pooled held-out detections
give the cross-validated figure. The in-sample figure is the best configuration on the whole
subset. Every configuration scored is added to a ledger (``ledger.txt`` in the cache), so the
running total of configurations ever scored on this data is printed by each run.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import deque
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "bench" / "anomaly"

from intelligence.anomaly.alarms import GateScorer, Refractory  # noqa: E402
from intelligence.anomaly.tail_probability import (  # noqa: E402
    FEATURES,
    VETO_FLOOR,
    FeatureOptions,
    TailProbabilityDetector,
)

SOURCES = sorted(
    p
    for p in (ROOT / "intelligence" / "anomaly").glob("*.py")
    if p.name not in {"alarms.py", "adaptive_resonance.py"}
)
"""Sources the cached features depend on (the gate, alarms.py, is replayed, not cached; the
sixth round's detector, adaptive_resonance.py, is not used by the tail-probability detector)."""


@dataclass(frozen=True)
class FeatureSetting:
    """Detector parameters that change the features (window-relative ones are fractions)."""

    context_order: int | None = 4
    context_bins: int = 8
    calibration_window: int = 2000
    season_min_cycles: int = 4
    season_horizon_windows: int = 4
    calibration_min_history: int | None = None
    value_mode: str = "value"
    value_step_fraction: float = 0.0
    context_relative_fraction: float = 0.0
    calibration_tail: str = "exponential"
    calibration_quantiles: tuple[float, float] = (0.90, 0.95)
    context_min_scale: float = 1.0
    resonance_window: int = 0
    resonance_vigilance: float = 0.9
    resonance_output: str = "calibrated"
    resonance_shape: str = "window"
    season_refine_gain: float | None = None
    z_min_scale: float = 0.0
    short_window: int = 6
    season_min_acf: float = 0.5


FEATURE_OPTIONS_SINCE_ROUND3 = (
    "calibration_min_history",
    "value_mode",
    "value_step_fraction",
    "context_relative_fraction",
    "calibration_tail",
    "calibration_quantiles",
    "context_min_scale",
    "resonance_window",
    "resonance_vigilance",
    "resonance_output",
    "resonance_shape",
    "season_refine_gain",
    "z_min_scale",
)
"""Feature options added in the third and fourth rounds: left out of a ledger key at their
defaults, so the configurations scored before them keep their keys (and are not counted twice)."""
STRUCTURE_SINCE_ROUND12 = ("short_window", "season_min_acf")
"""Detector parameters first offered in the twelfth round (fixed before the protocol existed):
left out of the ledger key and of the surprises' cache key at their defaults, so neither the
ledger nor the cache of the earlier settings changes."""


def setting_fields(setting: FeatureSetting) -> dict[str, object]:
    """The setting's fields less the twelfth round's at their defaults (cache and ledger keys)."""
    fields, defaults = asdict(setting), asdict(FeatureSetting())
    for k in STRUCTURE_SINCE_ROUND12:
        if fields[k] == defaults[k]:
            del fields[k]
    return fields


@dataclass(frozen=True)
class GateSetting:
    """Alarm gate parameters; ``rate_window`` and ``refractory`` are fractions of probation."""

    rate_window: float = 1.0
    rate_level: float = 2.0
    lone_penalty: float = 0.0
    support_level: float = 1.3
    escalation: float | None = 1.0
    refractory: float = 0.5
    quiet_window: float = 0.0
    quiet_level: float = 2.0
    quiet_penalty: float = 0.0
    scored_features: tuple[str, ...] = FEATURES
    dropped_features: tuple[str, ...] = ()
    resonance_veto: float = 0.0
    """Features whose surprises the replay sets to 0 (neither evidence nor support): a feature
    *replaced* by another. Replay only: :func:`detector` refuses it."""
    max_surprise: float | None = None
    """Ceiling on each feature's surprise (the detector's ``max_surprise``; eleventh round). The
    cache holds uncapped surprises; the replay caps them."""


def detector(
    setting: FeatureSetting, gate: GateSetting, *, probation: int, level: float
) -> TailProbabilityDetector:
    """The detector for one NAB file: window = probation (at least 50), the rest from settings."""
    if gate.dropped_features:
        raise ValueError("dropped_features is replayed on cached surprises, not a detector option")
    window = max(probation, 50)
    return TailProbabilityDetector(
        window=window,
        context_order=setting.context_order,
        context_bins=setting.context_bins,
        short_window=setting.short_window,
        season_min_acf=setting.season_min_acf,
        calibration_window=setting.calibration_window,
        season_min_cycles=setting.season_min_cycles,
        season_horizon=setting.season_horizon_windows * window,
        options=FeatureOptions(
            value_mode=setting.value_mode,
            value_step_window=int(setting.value_step_fraction * window),
            context_relative_window=int(setting.context_relative_fraction * window),
            context_min_scale=setting.context_min_scale,
            calibration_min_history=setting.calibration_min_history,
            calibration_tail=setting.calibration_tail,
            calibration_quantiles=setting.calibration_quantiles,
            scored_features=gate.scored_features,
            resonance_window=setting.resonance_window,
            resonance_vigilance=setting.resonance_vigilance,
            resonance_output=setting.resonance_output,
            resonance_shape=setting.resonance_shape,
            resonance_veto=gate.resonance_veto,
            season_refine_gain=setting.season_refine_gain,
            z_min_scale=setting.z_min_scale,
        ),
        alarm_level=level,
        refractory=int(gate.refractory * probation),
        escalation=gate.escalation,
        max_surprise=gate.max_surprise,
        **{k: v for k, v in gate_kwargs(gate, probation).items() if k != "silent"},  # type: ignore[arg-type]
    )


def gate_kwargs(gate: GateSetting, probation: int) -> dict[str, float | int | tuple[int, ...]]:
    """The :class:`GateScorer` parameters of ``gate`` for a file with this probation length."""
    return {
        "rate_window": int(gate.rate_window * probation),
        "rate_level": gate.rate_level,
        "lone_penalty": gate.lone_penalty,
        "support_level": gate.support_level,
        "quiet_window": int(gate.quiet_window * probation),
        "quiet_level": gate.quiet_level,
        "quiet_penalty": gate.quiet_penalty,
        "silent": tuple(i for i, k in enumerate(FEATURES) if k not in gate.scored_features),
    }


def _source_hash() -> str:
    h = hashlib.sha256()
    for p in SOURCES:
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _feature_job(args: tuple[FeatureSetting, str, int, NDArray[np.float64]]) -> NDArray[np.float64]:
    setting, _, probation, values = args
    det = detector(setting, GateSetting(), probation=probation, level=math.inf)
    out = np.full((values.size, len(FEATURES) + 1), math.nan)
    resonance = setting.resonance_window > 0
    for i, v in enumerate(values):
        ev = det.update(float(v)).evidence
        row = [ev.get(f"{k}_surprise", math.nan) for k in FEATURES]
        out[i, : len(FEATURES)] = row
        if resonance and max(row) >= VETO_FLOOR:  # a gated score can only be lower
            out[i, len(FEATURES)] = det.resonance_familiarity()
    return out


def surprises(
    setting: FeatureSetting, files: Sequence[tuple[str, int, NDArray[np.float64]]]
) -> list[NDArray[np.float64]]:
    """Per-point feature surprises of every file (cached; half the files in one extra process)."""
    key = hashlib.sha256(f"{_source_hash()}{setting_fields(setting)}".encode()).hexdigest()[:20]
    folder = CACHE / key
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / (name.replace("/", "__") + ".npy") for name, _, _ in files]
    todo = [i for i, p in enumerate(paths) if not p.exists()]
    jobs = [(setting, files[i][0], files[i][1], files[i][2]) for i in todo]
    if jobs:
        with ProcessPoolExecutor(max_workers=1) as pool:
            remote = pool.map(_feature_job, jobs[1::2])
            local = [_feature_job(j) for j in jobs[0::2]]
            results: list[NDArray[np.float64] | None] = [None] * len(jobs)
            results[0::2] = local
            results[1::2] = list(remote)
        for i, arr in zip(todo, results, strict=True):
            assert arr is not None  # every slot was filled above
            np.save(paths[i], arr)
    return [np.load(p) for p in paths]


def gated_scores(
    feats: NDArray[np.float64], gate: GateSetting, probation: int
) -> NDArray[np.float64]:
    """The detector's score per point for one file's cached surprises under ``gate``."""
    scorer = GateScorer(features=len(FEATURES), **gate_kwargs(gate, probation))  # type: ignore[arg-type]
    surprise = feats[:, : len(FEATURES)]
    if gate.max_surprise is not None:
        surprise = np.minimum(surprise, gate.max_surprise)  # NaN stays NaN
    if gate.dropped_features:
        surprise = surprise.copy()
        surprise[:, [FEATURES.index(k) for k in gate.dropped_features]] = 0.0
    scores = np.array([scorer.update(row) for row in surprise.tolist()])
    if gate.resonance_veto:
        familiar = feats[:, len(FEATURES)] >= FeatureOptions().resonance_familiar
        scores[(scores >= VETO_FLOOR) & familiar] -= gate.resonance_veto
    return scores


def alarms(
    scores: NDArray[np.float64],
    gate: GateSetting,
    *,
    probation: int,
    level: float,
    escalation_gap: int = 0,
) -> NDArray[np.bool_]:
    """The detector's alarms at ``level`` (probation rows never alarm for NAB); an escalation
    comes at least ``escalation_gap`` points after the alarm it breaks through (the detector's
    argument of that name)."""
    out = np.zeros(scores.size, dtype=bool)
    ref = Refractory(
        refractory=int(gate.refractory * probation),
        escalation=gate.escalation,
        escalation_gap=escalation_gap,
    )
    for t in np.flatnonzero(scores >= level):
        if ref.check(int(t), float(scores[t])):
            out[t] = True
    out[:probation] = False
    return out


def record(keys: Iterable[str]) -> tuple[int, int]:
    """Add configuration keys to the ledger; return (new in this run, distinct in the ledger)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    ledger = CACHE / "ledger.txt"
    known = set(ledger.read_text().split("\n")) if ledger.exists() else set()
    known.discard("")
    fresh = [k for k in keys if k not in known]
    with ledger.open("a") as fh:
        fh.writelines(k + "\n" for k in fresh)
    return len(fresh), len(known) + len(fresh)


def config_key(setting: FeatureSetting, gate: GateSetting, level: float) -> str:
    """A stable text key of one configuration, for the ledger."""
    feats = setting_fields(setting)
    defaults = asdict(FeatureSetting())
    for k in FEATURE_OPTIONS_SINCE_ROUND3:
        if feats[k] == defaults[k]:
            del feats[k]
    gates = asdict(gate)
    if gate.scored_features == FEATURES:
        del gates["scored_features"]
    if not gate.dropped_features:
        del gates["dropped_features"]
    if not gate.resonance_veto:
        del gates["resonance_veto"]
    if gate.max_surprise is None:
        del gates["max_surprise"]
    return json.dumps([feats, gates, round(level, 4)], sort_keys=True)


# Alarm rules of the second standard-profile round (issue 22 item 2), replayed on the gated score
# of the adopted gate. None was adopted (docs/intelligence/anomaly.md); they stay here so that
# ``anomaly_eval.py --alarm-rules`` reprints their figures.


def _kth_largest(s: NDArray[np.float64], k: int, m: int) -> NDArray[np.float64]:
    """The k-th largest of ``s[t-m+1..t]`` per point (zeros before the stream's start)."""
    pad = np.concatenate([np.zeros(m - 1), s])
    return np.sort(np.lib.stride_tricks.sliding_window_view(pad, m), axis=1)[:, -k]


def persist_scores(s: NDArray[np.float64], d: float, k: int, m: int) -> NDArray[np.float64]:
    """Strong evidence at once (score less ``d``), weak only when k of the last m points agree.

    The result is ``max(s[t] - d, k-th largest of s[t-m+1..t])``: at a level L it alarms when the
    score reached L + d, or when k of the last m scores reached L.
    """
    kth = _kth_largest(s, k, m)
    return np.maximum(s - d, kth)


def support_scores(
    s: NDArray[np.float64], d: float, k: int, m: int, sup: float
) -> NDArray[np.float64]:
    """``d`` taken off unless k of the last m scores reached ``sup`` (support from the lead-in)."""
    kth = _kth_largest(s, k, m)
    return np.where(kth >= sup, s, s - d)


def selfcal_scores(
    s: NDArray[np.float64], mode: str, lower: float = 0.9, upper: float = 0.95
) -> NDArray[np.float64]:
    """The score's own tail surprise among the stream's past scores (``recal``), or the smaller
    of it and the score (``min``), or their mean (``mean``)."""
    from intelligence.anomaly.tail_probability import TailCalibrator

    cal = TailCalibrator(min_history=50, lower=lower, upper=upper)
    out = np.empty_like(s)
    for t, v in enumerate(s.tolist()):
        r = cal.surprise(v)
        cal.add(v)
        out[t] = r if mode == "recal" else min(v, r) if mode == "min" else 0.5 * (v + r)
    return out


def adaptive_alarms(
    s: NDArray[np.float64], probation: int, level: float, rule: tuple[int, int, float, float, float]
) -> NDArray[np.bool_]:
    """ARTime-like self-tuning level: an alarm not followed by sustained deviation raises it.

    ``rule = (m, k, sus, bump, half)``: ``m`` points after each alarm are checked; fewer than
    ``k`` of them at or above ``sus`` make it a presumed false alarm and add ``bump`` to the
    stream's level offset, which halves every ``half`` probation lengths. Refractory half a
    probation length, escalation 1.0 (the adopted gate).
    """
    m, k, sus, bump, half = rule
    out = np.zeros(s.size, dtype=bool)
    cum = np.concatenate([[0], np.cumsum(s >= sus)])
    decay, off, pending = 2.0 ** (-1.0 / (half * probation)), 0.0, deque[int]()
    ref = Refractory(refractory=probation // 2, escalation=1.0)
    for t, v in enumerate(s.tolist()):
        off *= decay
        while pending and pending[0] + m <= t:
            ta = pending.popleft()
            off += bump if cum[ta + m + 1] - cum[ta + 1] < k else 0.0
        if v >= level + off and ref.check(t, v):
            out[t] = True
            pending.append(t)
    out[:probation] = False
    return out


def rule_key(name: str, params: dict[str, object], level: float) -> str:
    """Ledger key of one alarm-rule configuration."""
    return json.dumps({"round2": name, "params": params, "level": round(level, 4)}, sort_keys=True)


def silent_probation_alarms(
    s: NDArray[np.float64], probation: int, level: float
) -> NDArray[np.bool_]:
    """The adopted gate's alarms, but points of the probationary period never start a refractory
    period (NAB ignores their alarms, so they should not silence the first scored points)."""
    out = np.zeros(s.size, dtype=bool)
    ref = Refractory(refractory=probation // 2, escalation=1.0)
    for t in np.flatnonzero(s >= level):
        out[t] = t >= probation and ref.check(int(t), float(s[t]))
    return out

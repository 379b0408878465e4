"""Selection protocol for the NAB bench: cached features, gate replays, leave-one-category-out CV.

Streaming :class:`~intelligence.anomaly.TailProbabilityDetector` over the corpus is the costly
part (seconds); its per-point feature surprises do not depend on the alarm gate, so they are
computed once per feature setting and file and cached under ``.cache/bench/anomaly/`` (the key
hashes the detector's source, the setting and the file). A gate setting (rate discount, lone
penalty, escalation, refractory) is then replayed on the cached surprises with the very classes
the detector uses (:class:`~intelligence.anomaly.alarms.GateScorer`, ``Refractory``), and each
alarm level is applied to the gated score.

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
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "bench" / "anomaly"

from intelligence.anomaly.alarms import GateScorer, Refractory  # noqa: E402
from intelligence.anomaly.tail_probability import FEATURES, TailProbabilityDetector  # noqa: E402

SOURCES = sorted(
    p for p in (ROOT / "intelligence" / "anomaly").glob("*.py") if p.name != "alarms.py"
)
"""Sources the cached features depend on (the gate, alarms.py, is replayed, not cached)."""


@dataclass(frozen=True)
class FeatureSetting:
    """Detector parameters that change the features (window-relative ones are fractions)."""

    context_order: int | None = 4
    context_bins: int = 8
    calibration_window: int = 2000
    season_min_cycles: int = 4
    season_horizon_windows: int = 4


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


def detector(
    setting: FeatureSetting, gate: GateSetting, *, probation: int, level: float
) -> TailProbabilityDetector:
    """The detector for one NAB file: window = probation (at least 50), the rest from settings."""
    window = max(probation, 50)
    return TailProbabilityDetector(
        window=window,
        context_order=setting.context_order,
        context_bins=setting.context_bins,
        calibration_window=setting.calibration_window,
        season_min_cycles=setting.season_min_cycles,
        season_horizon=setting.season_horizon_windows * window,
        alarm_level=level,
        refractory=int(gate.refractory * probation),
        escalation=gate.escalation,
        **gate_kwargs(gate, probation),
    )


def gate_kwargs(gate: GateSetting, probation: int) -> dict[str, float | int]:
    """The :class:`GateScorer` parameters of ``gate`` for a file with this probation length."""
    return {
        "rate_window": int(gate.rate_window * probation),
        "rate_level": gate.rate_level,
        "lone_penalty": gate.lone_penalty,
        "support_level": gate.support_level,
        "quiet_window": int(gate.quiet_window * probation),
        "quiet_level": gate.quiet_level,
        "quiet_penalty": gate.quiet_penalty,
    }


def _source_hash() -> str:
    h = hashlib.sha256()
    for p in SOURCES:
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _feature_job(args: tuple[FeatureSetting, str, int, NDArray[np.float64]]) -> NDArray[np.float64]:
    setting, _, probation, values = args
    det = detector(setting, GateSetting(), probation=probation, level=math.inf)
    out = np.empty((values.size, len(FEATURES)))
    for i, v in enumerate(values):
        ev = det.update(float(v)).evidence
        out[i] = [ev.get(f"{k}_surprise", math.nan) for k in FEATURES]
    return out


def surprises(
    setting: FeatureSetting, files: Sequence[tuple[str, int, NDArray[np.float64]]]
) -> list[NDArray[np.float64]]:
    """Per-point feature surprises of every file (cached; half the files in one extra process)."""
    key = hashlib.sha256(f"{_source_hash()}{asdict(setting)}".encode()).hexdigest()[:20]
    folder = CACHE / key
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / (name.replace("/", "__") + ".npy") for name, _, _ in files]
    todo = [i for i, p in enumerate(paths) if not p.exists()]
    jobs = [(setting, files[i][0], files[i][1], files[i][2]) for i in todo]
    if jobs:
        with ProcessPoolExecutor(max_workers=1) as pool:
            remote = pool.map(_feature_job, jobs[1::2])
            local = [_feature_job(j) for j in jobs[0::2]]
            results = [None] * len(jobs)
            results[0::2] = local
            results[1::2] = list(remote)
        for i, arr in zip(todo, results, strict=True):
            np.save(paths[i], arr)
    return [np.load(p) for p in paths]


def gated_scores(
    feats: NDArray[np.float64], gate: GateSetting, probation: int
) -> NDArray[np.float64]:
    """The detector's score per point for one file's cached surprises under ``gate``."""
    scorer = GateScorer(features=feats.shape[1], **gate_kwargs(gate, probation))  # type: ignore[arg-type]
    return np.array([scorer.update(row) for row in feats.tolist()])


def alarms(
    scores: NDArray[np.float64], gate: GateSetting, *, probation: int, level: float
) -> NDArray[np.bool_]:
    """The detector's alarms at ``level`` (probation rows never alarm for NAB)."""
    out = np.zeros(scores.size, dtype=bool)
    ref = Refractory(refractory=int(gate.refractory * probation), escalation=gate.escalation)
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
    return json.dumps([asdict(setting), asdict(gate), round(level, 4)], sort_keys=True)

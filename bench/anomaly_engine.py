"""The analytics service's live alert rule, scored on NAB.

`services/analytics/alerts.py` (the anomaly engine) feeds each watched metric to a streaming
`RobustZScore` (`MetricQuery` defaults: window 60, min_history 20; `request_rate` watched in
both directions), opens an alert when a point reaches WARNING and no alert is open, and
resolves it after `anomaly_resolve_after` (3) normal points. This bench replays that rule on
each NAB file and scores the alert openings as detections with the NAB scorer of
`anomaly_eval.py`, beside the same rule on `TailProbabilityDetector` (the detector issue 22
measured, with the low-FP profile's quiet lead-in gate, opening on its `alarm` flag) at the
engine's window and at NAB's (the probationary length, as the NAB protocol runs it).

It scores three fixed rules for a diagnosis, not settings for adoption: nothing is chosen
here. docs/intelligence/anomaly.md's running total counts them (3 rules x 3 profiles).

    .venv/bin/python bench/anomaly_engine.py        # ~10 s
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from anomaly_eval import PROFILES, LabelledFile, load_corpus, load_profiles, normalised  # noqa: E402

from intelligence.anomaly import RobustZScore, Severity, TailProbabilityDetector  # noqa: E402
from intelligence.anomaly.base import AnomalyDetector  # noqa: E402
from services.analytics.settings import MetricQuery  # noqa: E402

RESOLVE_AFTER = 3  # services.analytics.settings: anomaly_resolve_after's default
ENGINE = MetricQuery(name="nab", query="nab", direction="both")

Make = Callable[[LabelledFile], AnomalyDetector]


def robust_z(_: LabelledFile) -> AnomalyDetector:
    """The engine's detector at `MetricQuery`'s defaults."""
    return RobustZScore(
        window=ENGINE.window, min_history=ENGINE.min_history, direction=ENGINE.direction
    )


def tail(window: Callable[[LabelledFile], int]) -> Make:
    """The tail detector with the low-FP gate at `window(file)` points."""

    def make(f: LabelledFile) -> AnomalyDetector:
        w = window(f)
        return TailProbabilityDetector(
            window=w,
            min_history=ENGINE.min_history if w == ENGINE.window else 50,
            quiet_window=w // 2,
            quiet_penalty=1.0,
            escalation=None,
        )

    return make


RULES: dict[str, tuple[Make, bool]] = {  # name: (detector, opens on its alarm flag)
    "engine: RobustZScore, window 60, opens at WARNING": (robust_z, False),
    "engine rule on TailProbability, window 60, opens on alarm": (tail(lambda f: 60), True),
    "engine rule on TailProbability, NAB's window, opens on alarm": (
        tail(lambda f: f.probation),
        True,
    ),
}


def openings(f: LabelledFile, make: Make, *, on_alarm: bool) -> NDArray[np.bool_]:
    """The points where the engine's rule opens an alert (outside NAB's probation)."""
    det = make(f)
    out = np.zeros(len(f.values), dtype=bool)
    is_open, normal = False, 0
    for i, v in enumerate(f.values):
        r = det.update(float(v))
        warning = r.severity >= Severity.WARNING
        opens = r.evidence.get("alarm", 0.0) > 0.0 if on_alarm else warning
        if not is_open and opens:
            is_open, normal, out[i] = True, 0, True
        elif is_open:
            normal = 0 if warning else normal + 1
            is_open = normal < RESOLVE_AFTER
    out[: f.probation] = False
    return out


def main() -> int:
    files, profiles = load_corpus(), load_profiles()
    print(f"{len(files)} NAB files; score (windows hit / missed, alerts opened outside windows)")
    print(f"{'rule':<62} " + "  ".join(f"{p:>24}" for p in PROFILES))
    for name, (make, on_alarm) in RULES.items():
        dets = [openings(f, make, on_alarm=on_alarm) for f in files]
        cells = []
        for prof in PROFILES:
            got, tp, fn, fp = normalised(files, dets, profiles[prof])
            cells.append(f"{got:7.1f} ({tp}/{fn}, {fp:>4} FP)")
        print(f"{name:<62} " + "  ".join(f"{c:>24}" for c in cells), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

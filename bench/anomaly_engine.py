"""The analytics service's live alert rule, scored on NAB.

`services/analytics/alerts.py` (the anomaly engine) feeds each watched metric to a streaming
detector (`services.analytics.alerts.make_detector`), opens an alert when a point opens one
(the tail detector's alarm in the metric's direction, or a robust z-score's WARNING) and no
alert is open, and resolves it after `anomaly_resolve_after` (3) points below WARNING
(`alerts.alert_step`). This bench replays that rule, with the engine's own functions, on each
NAB file
(direction both) and scores the alert openings as detections with the NAB scorer of
`anomaly_eval.py`:

* `robustZ` at its defaults (window 60): the engine's only detector until issue 22's was put in;
* `tailProbability` (the default) at fixed windows of 60-960 points, and at NAB's window (the
  file's probationary length) as a reference;

then chooses the tail detector's window by leave-one-category-out cross-validation on the
low-FP profile (alerts page people) and prints the cross-validated figure. The window so
chosen is `services.analytics.settings.DEFAULT_WINDOWS["tailProbability"]`. A long window is
handicapped here: the detector warms up within the file, where the engine warms up on the
metric's history before its first point. docs/intelligence/anomaly.md's running total counts
the rules (7 x 3 profiles).

    .venv/bin/python bench/anomaly_engine.py        # ~25 s
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from anomaly_eval import (  # noqa: E402
    PROFILES,
    FileTerms,
    LabelledFile,
    Weights,
    category,
    file_terms,
    load_corpus,
    load_profiles,
    normalised,
    scored_windows,
    terms_score,
)

from services.analytics.alerts import alert_step, make_detector  # noqa: E402
from services.analytics.settings import MetricQuery  # noqa: E402

RESOLVE_AFTER = 3  # services.analytics.settings: anomaly_resolve_after's default
WINDOWS = (60, 120, 240, 480, 960)
"""Fixed windows offered to the tail detector (the engine's windows are points of its
interval, not a share of a file)."""
CHOOSE_BY = "reward_low_FP_rate"
NAB_WINDOW = 0  # stands for the file's probationary length

Rule = Callable[[LabelledFile], MetricQuery]


def watched(detector: Literal["tailProbability", "robustZ"], window: int | None = None) -> Rule:
    """The MetricQuery a file is watched with (`NAB_WINDOW`: the file's probation)."""

    def metric(f: LabelledFile) -> MetricQuery:
        w = f.probation if window == NAB_WINDOW else window
        return MetricQuery(name="nab", query="nab", direction="both", detector=detector, window=w)

    return metric


def openings(f: LabelledFile, rule: Rule) -> NDArray[np.bool_]:
    """The points where the engine's rule opens an alert (outside NAB's probation)."""
    metric = rule(f)
    det = make_detector(metric)
    out = np.zeros(len(f.values), dtype=bool)
    is_open, streak = False, 0
    for i, v in enumerate(f.values.tolist()):
        change, streak = alert_step(
            metric, det.update(v), is_open=is_open, streak=streak, resolve_after=RESOLVE_AFTER
        )
        out[i] = change == "opened"
        is_open = change in ("opened", "abnormal", "normal")  # "normal": still open
    out[: f.probation] = False
    return out


def tail_name(window: int) -> str:
    return f"tailProbability, window {window}"


def main() -> int:
    files, profiles = load_corpus(), load_profiles()
    rules: dict[str, Rule] = {"robustZ, window 60 (before issue 22's detector)": watched("robustZ")}
    rules |= {tail_name(w): watched("tailProbability", w) for w in WINDOWS}
    rules["tailProbability, NAB's window (reference)"] = watched("tailProbability", NAB_WINDOW)
    terms: dict[str, list[FileTerms]] = {}
    print(f"{len(files)} NAB files; score (windows hit / missed, alerts opened outside windows)")
    head = "rule (the engine's: open, stay open, resolve after 3 normal)"
    print(f"{head:<62} " + "  ".join(f"{p:>24}" for p in PROFILES))
    for name, rule in rules.items():
        dets = [openings(f, rule) for f in files]
        terms[name] = [file_terms(f, d) for f, d in zip(files, dets, strict=True)]
        cells = []
        for prof in PROFILES:
            got, tp, fn, fp = normalised(files, dets, profiles[prof])
            cells.append(f"{got:7.1f} ({tp}/{fn}, {fp:>4} FP)")
        print(f"{name:<62} " + "  ".join(f"{c:>24}" for c in cells), flush=True)
    cross_validate(files, profiles, terms)
    return 0


def cross_validate(
    files: list[LabelledFile], profiles: dict[str, Weights], terms: dict[str, list[FileTerms]]
) -> None:
    """Leave one category out: the fixed window with the best low-FP score on the other
    categories, scored on the held-out one; the pooled held-out terms give the CV figure."""
    names = [tail_name(w) for w in WINDOWS]
    windows = sum(scored_windows(f) for f in files)
    held: list[FileTerms] = []
    print(f"\nleave-one-category-out over {len(names)} windows, chosen by {CHOOSE_BY}:")
    for cat in sorted({category(f) for f in files}):
        train = [i for i, f in enumerate(files) if category(f) != cat]
        n = sum(scored_windows(files[i]) for i in train)
        w = profiles[CHOOSE_BY]
        best = max(names, key=lambda k: terms_score([terms[k][i] for i in train], n, w))
        print(f"  without {cat:<24} chooses {best}")
        held += [terms[best][i] for i, f in enumerate(files) if category(f) == cat]
    tp, fn, fp = (sum(getattr(t, a) for t in held) for a in ("tp", "fn", "fp"))
    cells = [f"{terms_score(held, windows, profiles[p]):7.1f}" for p in PROFILES]
    print("  cross-validated: " + " / ".join(cells) + f" ({tp}/{fn}, {fp} FP)")


if __name__ == "__main__":
    raise SystemExit(main())

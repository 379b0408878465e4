"""Third round on the NAB bench's false alarms: calibration of the features themselves.

The first two rounds (gates, alarm rules on the score) left the standard profile's weak false
alarms and weak first hits in the same score band (docs/intelligence/anomaly.md), so this round
changes the features' raw inputs and their calibration instead (detector options of
:class:`~intelligence.anomaly.TailProbabilityDetector`): a two-scale value z (the window's
scale or the recent step scale, whichever is larger), the value feature on first differences
(or the smaller of the two), the context code length relative to its recent mean, and a longer
minimum history before a feature's calibration gives any surprise. Each feature setting is
scored as its own grid (each profile's gates x 25 levels) under the protocol of
:mod:`bench.anomaly_cv`, beside the adopted setting; then all of them are offered to each fold
at once. Every configuration goes into the ledger.

Run from the repository root (each new setting streams the corpus once, then it is cached)::

    nice -n 15 .venv/bin/python bench/anomaly_features.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.anomaly_cv import FeatureSetting, config_key, record  # noqa: E402
from bench.anomaly_eval import (  # noqa: E402
    EARLIER_CONFIGURATIONS,
    GATE_SETTINGS,
    PROFILE_GATES,
    PROFILES,
    Grid,
    LabelledFile,
    Weights,
    cross_validate,
    load_corpus,
    load_profiles,
    run_grid,
    subgrid,
)

CANDIDATES: tuple[tuple[str, FeatureSetting], ...] = (
    ("adopted", FeatureSetting()),
    ("two-scale value z, steps over 0.05 W", FeatureSetting(value_step_fraction=0.05)),
    ("two-scale value z, steps over 0.1 W", FeatureSetting(value_step_fraction=0.1)),
    ("two-scale value z, steps over 0.25 W", FeatureSetting(value_step_fraction=0.25)),
    ("value on first differences", FeatureSetting(value_mode="diff")),
    ("value: min of z and difference z", FeatureSetting(value_mode="min")),
    ("context less its mean over 0.1 W", FeatureSetting(context_relative_fraction=0.1)),
    ("context less its mean over 0.5 W", FeatureSetting(context_relative_fraction=0.5)),
    ("calibration min history 200", FeatureSetting(calibration_min_history=200)),
    ("calibration min history 500", FeatureSetting(calibration_min_history=500)),
)
"""(label, feature setting) of the round; W is the detector's window (NAB: the probation)."""


def cells(grid: Grid, files: list[LabelledFile], profiles: dict[str, Weights]) -> str:
    """CV / in-sample per profile, with the CV windows hit / missed and false alarms."""
    out = []
    for prof in PROFILES:
        sel = cross_validate(subgrid(grid, PROFILE_GATES[prof]), files, profiles[prof])
        tp, fn, fp = sel.cv_counts
        out.append(f"{sel.cv:5.1f}/{sel.in_sample:5.1f} {tp}/{fn},{fp:3d}")
    return " | ".join(out)


def main() -> int:
    """Score each candidate feature setting as its own grid, then all of them together."""
    files = load_corpus()
    profiles = load_profiles()
    print("Feature settings (CV/in-sample, CV hit/missed,FPs): standard | low-FP | low-FN")
    pooled = Grid([], [])
    for label, setting in CANDIDATES:
        grid = run_grid(files, (setting,), GATE_SETTINGS)
        pooled.configs += grid.configs
        pooled.terms += grid.terms
        fresh, total = record(config_key(*c) for c in grid.configs)
        print(f"  {label:<40}{cells(grid, files, profiles)}  ({fresh} new)", flush=True)
    print(f"  {'all settings offered to each fold':<40}{cells(pooled, files, profiles)}")
    print(
        f"  {len(pooled.configs)} configurations; ledger {total} + {EARLIER_CONFIGURATIONS} "
        f"before the protocol = {total + EARLIER_CONFIGURATIONS}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

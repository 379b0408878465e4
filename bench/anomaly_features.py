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
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.anomaly_cv import FeatureSetting, GateSetting, config_key, record  # noqa: E402
from bench.anomaly_eval import (  # noqa: E402
    EARLIER_CONFIGURATIONS,
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
from intelligence.anomaly.tail_probability import FEATURES  # noqa: E402

NO_LEVEL = ("value", "seasonal", "context")
"""The level feature as context only: 16 of the standard profile's 120 false alarms and none of
its 47 first hits are carried by it (``bench/anomaly_false_alarms.py``)."""


@dataclass(frozen=True)
class Candidate:
    """One setting of a round: features, which of them may carry the score, which are dropped
    (replayed as 0), and the resonance veto (fourth round)."""

    label: str
    setting: FeatureSetting = field(default_factory=FeatureSetting)
    scored: tuple[str, ...] = FEATURES
    dropped: tuple[str, ...] = ()
    veto: float = 0.0

    def gates(self) -> dict[str, tuple[GateSetting, ...]]:
        """Each profile's gates (``PROFILE_GATES``) with this candidate's feature roles."""
        roles = {
            "scored_features": self.scored,
            "dropped_features": self.dropped,
            "resonance_veto": self.veto,
        }
        return {
            prof: tuple(replace(g, **roles) for g in gates)  # type: ignore[arg-type]
            for prof, gates in PROFILE_GATES.items()
        }


CANDIDATES = (
    Candidate("adopted"),
    Candidate("two-scale value z, steps over 0.05 W", FeatureSetting(value_step_fraction=0.05)),
    Candidate("two-scale value z, steps over 0.1 W", FeatureSetting(value_step_fraction=0.1)),
    Candidate("two-scale value z, steps over 0.25 W", FeatureSetting(value_step_fraction=0.25)),
    Candidate("value on first differences", FeatureSetting(value_mode="diff")),
    Candidate("value: min of z and difference z", FeatureSetting(value_mode="min")),
    Candidate("context less its mean over 0.1 W", FeatureSetting(context_relative_fraction=0.1)),
    Candidate("context less its mean over 0.5 W", FeatureSetting(context_relative_fraction=0.5)),
    Candidate("calibration min history 200", FeatureSetting(calibration_min_history=200)),
    Candidate("calibration min history 500", FeatureSetting(calibration_min_history=500)),
    Candidate("GPD tail (PWM fit, shape in [0, 1])", FeatureSetting(calibration_tail="gpd")),
    Candidate("level feature context only", scored=NO_LEVEL),
    Candidate("GPD tail, level context only", FeatureSetting(calibration_tail="gpd"), NO_LEVEL),
    Candidate("context tail scale at least 2 bits", FeatureSetting(context_min_scale=2.0)),
    Candidate(
        "tail from quantiles 0.95 / 0.99", FeatureSetting(calibration_quantiles=(0.95, 0.99))
    ),
)
"""The round's settings; W is the detector's window (NAB: the probation)."""
PAIRS = (("adopted", "level feature context only"),)
"""Pairs offered together to each fold (the protocol choosing per profile between them)."""

Gates = dict[str, tuple[GateSetting, ...]]


def cells(grid: Grid, gates: Gates, files: list[LabelledFile], w: dict[str, Weights]) -> str:
    """CV / in-sample per profile, with the CV windows hit / missed and false alarms."""
    out = []
    for prof in PROFILES:
        sel = cross_validate(subgrid(grid, gates[prof]), files, w[prof])
        tp, fn, fp = sel.cv_counts
        out.append(f"{sel.cv:5.1f}/{sel.in_sample:5.1f} {tp}/{fn},{fp:3d}")
    return " | ".join(out)


def pool(grids: list[Grid], gates: list[Gates]) -> tuple[Grid, Gates]:
    """Several candidates' grids as one, each profile offered every candidate's gates."""
    grid = Grid([c for g in grids for c in g.configs], [t for g in grids for t in g.terms])
    return grid, {p: tuple(x for g in gates for x in g[p]) for p in PROFILES}


def score_round(
    title: str,
    candidates: tuple[Candidate, ...],
    pairs: tuple[tuple[str, str], ...],
    files: list[LabelledFile],
    profiles: dict[str, Weights],
) -> dict[str, Grid]:
    """Score each candidate as its own grid (into the ledger), then the pairs and all of them
    offered together to each fold; print a row each and the running total."""
    print(f"{title} (CV/in-sample, CV hit/missed,FPs): standard | low-FP | low-FN")
    grids: dict[str, Grid] = {}
    total = 0
    for cand in candidates:
        offered = tuple(dict.fromkeys(sum(cand.gates().values(), ())))
        grid = grids[cand.label] = run_grid(files, (cand.setting,), offered)
        fresh, total = record(config_key(*c) for c in grid.configs)
        row = cells(grid, cand.gates(), files, profiles)
        print(f"  {cand.label:<40}{row}  ({fresh} new)", flush=True)
    by_label = {c.label: c for c in candidates}
    for pair in pairs:
        grid, gates = pool([grids[x] for x in pair], [by_label[x].gates() for x in pair])
        print(f"  {' or '.join(pair):<40}{cells(grid, gates, files, profiles)}")
    grid, gates = pool(list(grids.values()), [c.gates() for c in candidates])
    print(f"  {'all settings offered to each fold':<40}{cells(grid, gates, files, profiles)}")
    print(
        f"  {len(grid.configs)} configurations; ledger {total} + {EARLIER_CONFIGURATIONS} "
        f"before the protocol = {total + EARLIER_CONFIGURATIONS}"
    )
    return grids


def main() -> int:
    """Score each candidate as its own grid, then pairs and all of them offered together."""
    score_round("Feature settings", CANDIDATES, PAIRS, load_corpus(), load_profiles())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Tenth round on the NAB bench: combine the features by agreement instead of taking the largest.

The detector's score is the largest of its four feature surprises (value, level, seasonal,
context; ``-log10`` tail probabilities). The ceiling bench (``anomaly_ceiling.py``) showed that
no level choice on that score reaches the target: weak true detections rank below false alarms
of the same file. One way a score can rank an event higher than a lone spike is agreement:
several features moderately surprised at once. This bench replaces the largest surprise by a
combination of all four, on the cached surprises of the adopted setting, and scores each rule
under the protocol (each profile's adopted gate, levels 1.5-8 by 0.125, leave one category out):

* ``fisher``: Fisher's method, ``-log10`` of the chi-square(8) tail of ``2 ln 10 x sum``
  (independent features; ours are not, so it over-counts shared evidence);
* ``top2``: the two largest surprises summed;
* ``max+0.5second``: the largest plus half the second;
* ``max+0.25rest``: the largest plus a quarter of the other three.

``max`` is the adopted score, replayed as a check (it must print the protocol's figures). The
low-FP profile's quiet lead-in gate (-1 when any raw surprise reached 2 in the last half
probation length, no escalation) is applied to each combined score as ``GateScorer`` applies
it to the largest. Every configuration goes into the ledger.

    .venv/bin/python bench/anomaly_combine.py    # ~5 s with the surprises cached
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy.stats import chi2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.anomaly_cv import FEATURES, GateSetting, alarms, surprises  # noqa: E402
from bench.anomaly_eval import (  # noqa: E402
    PROFILES,
    ROUND10,
    UNCAPPED_GATES,
    Grid,
    LabelledFile,
    Selection,
    cross_validate,
    file_terms,
    load_corpus,
    load_profiles,
    report_ledger,
)

LEVELS = tuple(float(v) for v in np.arange(1.5, 8.001, 0.125))
Rule = Callable[[NDArray[np.float64]], NDArray[np.float64]]


def _sorted(r: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.sort(r, axis=1)[:, ::-1]


def _fisher(r: NDArray[np.float64]) -> NDArray[np.float64]:
    tail = chi2.sf(2.0 * np.log(10.0) * r.sum(axis=1), 2 * r.shape[1])
    return -np.log10(np.maximum(tail, 1e-300))


RULES: dict[str, Rule] = {
    "max": lambda r: _sorted(r)[:, 0],
    "fisher": _fisher,
    "top2": lambda r: _sorted(r)[:, 0] + _sorted(r)[:, 1],
    "max+0.5second": lambda r: _sorted(r)[:, 0] + 0.5 * _sorted(r)[:, 1],
    "max+0.25rest": lambda r: _sorted(r)[:, 0] + 0.25 * _sorted(r)[:, 1:].sum(axis=1),
}


def quiet_lead_in(
    score: NDArray[np.float64], raw: NDArray[np.float64], gate: GateSetting, probation: int
) -> NDArray[np.float64]:
    """``score`` less the gate's quiet penalty where an earlier point within its window was
    loud (any raw surprise at the quiet level), as ``GateScorer`` does for the largest."""
    if not gate.quiet_penalty:
        return score
    window = int(gate.quiet_window * probation)
    t = np.arange(score.size)
    loud = np.where(raw.max(axis=1) >= gate.quiet_level, t, -(10**9))
    before = np.concatenate([[-(10**9)], np.maximum.accumulate(loud)[:-1]])
    return score - gate.quiet_penalty * (t - before <= window)


def score_rule(
    rule: Rule,
    raw: list[NDArray[np.float64]],
    files: list[LabelledFile],
    gate: GateSetting,
    *,
    escalation_gap: float = 0.0,
) -> Grid:
    """The level grid of the score ``rule`` makes of each file's surprises, under ``gate``
    (an escalation at least ``escalation_gap`` of the detector's window after its alarm)."""
    scores = [quiet_lead_in(rule(r), r, gate, f.probation) for r, f in zip(raw, files, strict=True)]
    return level_grid(scores, files, gate, escalation_gap=escalation_gap)


def level_grid(
    scores: list[NDArray[np.float64]],
    files: list[LabelledFile],
    gate: GateSetting,
    *,
    escalation_gap: float = 0.0,
) -> Grid:
    """The alarms of each file's ``scores`` at every level of ``LEVELS`` under ``gate``'s
    refractory rule (an escalation at least ``escalation_gap`` of the detector's window after
    its alarm), as a grid of the protocol."""
    grid = Grid([], [])
    for level in LEVELS:
        grid.configs.append((ROUND10, gate, level))
        grid.terms.append(
            [
                file_terms(
                    f,
                    alarms(
                        s,
                        gate,
                        probation=f.probation,
                        level=level,
                        escalation_gap=int(escalation_gap * max(f.probation, 50)),
                    ),
                )
                for s, f in zip(scores, files, strict=True)
            ]
        )
    return grid


def print_selection(prof: str, label: str, sel: Selection, *, width: int) -> None:
    """One row: CV / in-sample, the CV windows hit / missed and false alarms, the level."""
    tp, fn, fp = sel.cv_counts
    print(
        f"  {prof:<20} {label:<{width}} {sel.cv:5.1f} / {sel.in_sample:5.1f}  "
        f"{tp}/{fn}, {fp}  level {sel.in_sample_config[2]}",
        flush=True,
    )


def main() -> int:
    files, profiles = load_corpus(), load_profiles()
    feats = surprises(ROUND10, [(f.name, f.probation, f.values) for f in files])
    raw = [np.nan_to_num(x[:, : len(FEATURES)], nan=0.0) for x in feats]
    print("Combination rules (CV / in-sample; CV windows hit/missed, FPs; in-sample level)")
    keys = []
    for prof in PROFILES:
        gate = UNCAPPED_GATES[prof]
        for name in RULES:
            sel = cross_validate(score_rule(RULES[name], raw, files, gate), files, profiles[prof])
            print_selection(prof, name, sel, width=14)
            if name != "max":
                keys += [
                    json.dumps({"round10": name, "gate": repr(gate), "level": lv}, sort_keys=True)
                    for lv in LEVELS
                ]
    keys = list(dict.fromkeys(keys))  # standard and low-FN share a gate: one configuration
    report_ledger(keys)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

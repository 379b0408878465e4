"""Fifth NAB round (issue 22): escalation echoes and a level that grows with the stream.

Two rules aimed at the false alarms the earlier rounds left, each replayed on the adopted
setting's cached surprises (``bench/anomaly_cv.py``) as its own 25-level grid, CV beside
in-sample, every configuration added to the ledger:

* **escalation echoes**: 20 of the standard profile's 120 false alarms come within 20 points of
  the alarm before them: the escalation rule (a point ten times rarer than the alarm that opened
  the refractory period alarms anyway) lets a level shift that keeps growing alarm two or three
  times in a row (``cpu_utilization_asg_misconfiguration``: 11.8, 24.5, 26.6 at points
  816-818). Rules: escalate only past the largest score since that alarm (``max``), only after
  ``gap`` points (10, or 0.05 probation lengths), or both. The low-FP gate has no escalation,
  so only standard and low-FN are scored.
* **a level that grows with the stream**: a calibrated tail gives every stationary stream the
  same false-alarm rate per point, so false alarms grow with a file's length, while a novelty
  detector (contextOSE, ARTime) alarms less as it learns. The score less ``gamma x log10(t /
  probation)`` (t the point's index; 0 within the first probation length) asks later points
  for rarer events; gamma 0.5 and 1.0, on each profile's adopted gate.

Run from the repository root::

    nice -n 15 .venv/bin/python bench/anomaly_echoes.py
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.anomaly_cv import alarms, gated_scores, rule_key, surprises  # noqa: E402
from bench.anomaly_eval import (  # noqa: E402
    LEVELS,
    PROFILES,
    ROUND10,
    UNCAPPED_GATES,
    Grid,
    LabelledFile,
    cross_validate,
    file_terms,
    load_corpus,
    load_profiles,
    report_ledger,
)

Alarms = Callable[[int, float], NDArray[np.bool_]]
"""Alarms of file ``i`` at a level."""


def echo_alarms(
    s: NDArray[np.float64], probation: int, level: float, *, running_max: bool, gap: int
) -> NDArray[np.bool_]:
    """The adopted refractory rule (half a probation length, escalation 1.0), but an escalation
    must beat the largest score since the last alarm (``running_max``) and come ``gap`` points
    or more after it."""
    out = np.zeros(s.size, dtype=bool)
    last, last_score, since = -(10**18), math.inf, -math.inf
    refractory = probation // 2
    for t in np.flatnonzero(s >= level).tolist():
        score = float(s[t])
        if t - last > refractory:
            alarm = True
        else:
            ref = since if running_max else last_score
            alarm = score >= ref + 1.0 and t - last >= gap
        if alarm:
            last, last_score, since = t, score, score
        else:
            since = max(since, score)
        out[t] = alarm
    out[:probation] = False
    return out


def gap_points(gap: str, probation: int) -> int:
    """``gap`` in points: a count, or a fraction of the probation length ending in ``P``."""
    return int(float(gap[:-1]) * probation) if gap.endswith("P") else int(gap)


def grown(s: NDArray[np.float64], probation: int, gamma: float) -> NDArray[np.float64]:
    """``s`` less ``gamma x log10(t / probation)`` after the first probation length."""
    t = np.arange(1, s.size + 1, dtype=np.float64)
    return s - gamma * np.log10(np.maximum(1.0, t / probation))


def main() -> None:
    files: list[LabelledFile] = load_corpus()
    profiles = load_profiles()
    feats = surprises(ROUND10, [(f.name, f.probation, f.values) for f in files])
    gates = {prof: UNCAPPED_GATES[prof] for prof in PROFILES}
    gated = {
        gate: [gated_scores(x, gate, f.probation) for x, f in zip(feats, files, strict=True)]
        for gate in set(gates.values())
    }
    rules: list[tuple[str, dict[str, object], tuple[str, ...], Callable[..., Alarms]]] = []
    for name, running_max, gap in (
        ("escalation past the running max", True, "0"),
        ("escalation after 10 points", False, "10"),
        ("escalation after 0.05 P", False, "0.05P"),
        ("running max and 10 points", True, "10"),
    ):

        def echo(prof: str, running_max: bool = running_max, gap: str = gap) -> Alarms:
            base = gated[gates[prof]]
            return lambda i, lv: echo_alarms(
                base[i],
                files[i].probation,
                lv,
                running_max=running_max,
                gap=gap_points(gap, files[i].probation),
            )

        params = {"running_max": running_max, "gap": gap}
        rules.append((name, params, ("standard", "reward_low_FN_rate"), echo))
    for gamma in (0.5, 1.0):

        def grow(prof: str, gamma: float = gamma) -> Alarms:
            gate, base = gates[prof], gated[gates[prof]]
            return lambda i, lv: alarms(
                grown(base[i], files[i].probation, gamma),
                gate,
                probation=files[i].probation,
                level=lv,
            )

        rules.append((f"level grows, gamma {gamma}", {"gamma": gamma}, PROFILES, grow))
    keys: list[str] = []
    print("rule (CV / in-sample, CV windows hit/missed, FPs):", " | ".join(PROFILES))
    for name, params, profs, make in rules:
        cells = []
        for prof in PROFILES:
            if prof not in profs:
                cells.append("(unchanged: no escalation)")
                continue
            fn = make(prof)
            configs = [(ROUND10, gates[prof], lv) for lv in LEVELS]
            terms = [[file_terms(f, fn(i, lv)) for i, f in enumerate(files)] for lv in LEVELS]
            sel = cross_validate(Grid(configs, terms), files, profiles[prof])
            tp, fn_, fp = sel.cv_counts
            cells.append(f"{sel.cv:5.1f} / {sel.in_sample:5.1f} ({tp}/{fn_}, {fp})")
            keys += [rule_key(f"round5 {name} {prof}", params, lv) for lv in LEVELS]
        print(f"  {name:<34}" + " | ".join(cells), flush=True)
    report_ledger(keys, indent="")


if __name__ == "__main__":
    main()

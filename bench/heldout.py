"""Run the adopted settings and the candidates for a held-out check on data we do not have.

Issue 22's targets are measured on data the project does not hold (other NAB categories, other
traffic traces). The docs list, for each part, the adopted default and the few candidates
whose cross-validated figures beat it somewhere ("Candidates for a held-out check" in
docs/intelligence/anomaly.md and scaling.md). This script runs exactly those, with every
setting fixed beforehand (levels, gates, operating points: nothing is chosen on the data it is
given), so a held-out check needs no code of its own:

* ``anomaly ROOT``: a NAB layout (``data/<category>/<file>.csv``, ``labels/
  combined_windows.json``, ``config/profiles.json``): every category with a data folder, or
  only those given. Each
  candidate at its profile's adopted gate and level (2.375), scored with the bench's NAB
  scorer (validated against the published results, ``anomaly_eval.py --validate``): standard,
  low-FP and low-FN, windows hit / missed and false alarms, overall and per category.
* ``scaling FILE``: one load trace, a CSV of ``timestamp,value`` rows (NAB's layout; the
  header is skipped) or of values alone, one row per ``--seconds-per-row`` seconds, time
  compressed ``--compression`` times as the harness compresses NAB series (a 5-minute series
  at 30x: a row per 10 s). Replayed by the harness (``scaling_sim.py``: the service sized for
  10 instances at the mean load, the 15 s metric, start-ups 30 and 60 s) with HPA, the adopted
  default and the candidates (and the API's defaults twice: on the protocol's forecast tapes,
  and on forecasts fitted as the operator fits them): under-provisioned time and
  instance-hours as multiples of HPA's, and whether the box (<= 0.5x at <= 1.05x) is met. ``--day`` is the trace's daily period in
  its compressed seconds (what the forecaster's seasonal periods are built from).

Run on the shared data it reproduces the in-sample figures (e.g. ``anomaly ../shared/data/nab``:
71.6 / 65.9 / 77.3 for the default, 70.8 / 65.9 / 76.7 for the detector before the eleventh
round's surprise cap and z floor), which is how it is checked.

    .venv/bin/python bench/heldout.py anomaly PATH/TO/NAB [--categories realTweets ...]
    .venv/bin/python bench/heldout.py scaling trace.csv --seconds-per-row 300 --compression 30
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from scaling_replay import ADOPTED, GRID, STARTUPS, ratios, replay  # noqa: E402
from scaling_sim import DAY, ForecastTape, Ours, Outcome, Trace, service, simulate  # noqa: E402

from bench.anomaly_cv import FeatureSetting, alarms, gated_scores, surprises  # noqa: E402
from bench.anomaly_eval import ADOPTED as ADOPTED_FEATURES  # noqa: E402
from bench.anomaly_eval import (  # noqa: E402
    ADOPTED_GATES,
    ADOPTED_LEVELS,
    PROFILES,
    ROUND10,
    FileTerms,
    category,
    counts,
    file_terms,
    load_corpus,
    load_profiles,
    scored_windows,
    terms_score,
)
from intelligence.anomaly.tail_probability import MAX_SURPRISE  # noqa: E402

# --------------------------------------------------------------------------- anomaly


@dataclass(frozen=True)
class AnomalyCandidate:
    """A row of anomaly.md's candidates table: features, a gate change, an escalation gap."""

    name: str
    features: FeatureSetting = ADOPTED_FEATURES
    scored_features: tuple[str, ...] | None = None  # None: the gate's own
    escalation_gap: float = 0.0  # of the detector's window (= the probation length)
    max_surprise: float | None = MAX_SURPRISE  # None: no ceiling (before the eleventh round)


ANOMALY_CANDIDATES = (
    AnomalyCandidate("default"),
    AnomalyCandidate("season_refine_gain=0.5", replace(ADOPTED_FEATURES, season_refine_gain=0.5)),
    AnomalyCandidate(
        "resonance_window=8, likelihood",
        replace(ADOPTED_FEATURES, resonance_window=8, resonance_output="likelihood"),
    ),
    AnomalyCandidate("level as context only", scored_features=("value", "seasonal", "context")),
    AnomalyCandidate("context_min_scale=2.0", replace(ADOPTED_FEATURES, context_min_scale=2.0)),
    AnomalyCandidate("escalation_gap=0.05 window", escalation_gap=0.05),
    AnomalyCandidate("before the eleventh round (no cap, no floor)", ROUND10, max_surprise=None),
)


def anomaly(root: Path, categories: list[str]) -> None:
    present = sorted(p.name for p in (root / "data").iterdir() if p.is_dir())
    missing = sorted(set(categories) - set(present))
    if missing:
        raise SystemExit(f"no data folder under {root / 'data'} for categories {missing}")
    files = load_corpus(root, categories or present)  # the labelled files whose data is here
    if not files:
        raise SystemExit(f"no labelled files under {root} (categories {categories or 'all'})")
    profiles = load_profiles(root)
    cats = sorted({category(f) for f in files})
    windows = sum(scored_windows(f) for f in files)
    print(f"{len(files)} files, {windows} windows, categories {', '.join(cats)}")
    inputs = [(f.name, f.probation, f.values) for f in files]
    for cand in ANOMALY_CANDIDATES:
        feats = surprises(cand.features, inputs)
        cells = []
        by_cat: dict[str, list[str]] = {c: [] for c in cats}
        for prof in PROFILES:
            gate = replace(ADOPTED_GATES[prof], max_surprise=cand.max_surprise)
            if cand.scored_features is not None:
                gate = replace(gate, scored_features=cand.scored_features)
            level = ADOPTED_LEVELS[prof]
            terms: list[FileTerms] = [
                file_terms(
                    f,
                    alarms(
                        gated_scores(x, gate, f.probation),
                        gate,
                        probation=f.probation,
                        level=level,
                        escalation_gap=int(cand.escalation_gap * max(f.probation, 50)),
                    ),
                )
                for x, f in zip(feats, files, strict=True)
            ]
            tp, fn, fp = counts(terms)
            cells.append(f"{terms_score(terms, windows, profiles[prof]):5.1f} ({tp}/{fn}, {fp})")
            for c in cats:
                part = [t for t, f in zip(terms, files, strict=True) if category(f) == c]
                n = sum(scored_windows(f) for f in files if category(f) == c)
                score = f"{terms_score(part, n, profiles[prof]):5.1f}" if n else "  n/a"
                by_cat[c].append(score + " ({}/{}, {})".format(*counts(part)))
        print(f"\n{cand.name}: standard / low-FP / low-FN (windows hit/missed, false alarms)")
        print("  all            " + " | ".join(cells))
        for c in cats:
            print(f"  {c[:14]:<14} " + " | ".join(by_cat[c]))


# --------------------------------------------------------------------------- scaling


def read_trace(
    path: Path, *, seconds_per_row: float, compression: float, column: int, day: float | None
) -> Trace:
    """The harness's Trace of a CSV: one load value per second, rows interpolated."""
    with path.open() as fh:
        rows = [r for r in csv.reader(fh) if r]
    try:
        float(rows[0][column])
    except ValueError:
        rows = rows[1:]  # a header
    values = np.array([float(r[column]) for r in rows], dtype=np.float64)
    if values.size < 2 or not np.all(np.isfinite(values)) or np.any(values < 0):
        raise SystemExit(
            f"{path}: need at least two finite, non-negative values in column {column}"
        )
    seconds = seconds_per_row / compression
    if seconds == 1:
        load = values
    else:  # as the harness compresses NAB series (`scaling_sim.nab_compressed`)
        grid = np.arange(0, (values.size - 1) * seconds)
        load = np.interp(grid, np.arange(values.size) * seconds, values)
    digest = hashlib.sha256(load.tobytes()).hexdigest()[:8]
    return Trace(f"heldout_{path.stem}_{digest}", load, day or DAY / compression)


API_DEFAULTS = replace(
    ADOPTED,
    name=f"{ADOPTED.name}_burst120",
    overrides=(*ADOPTED.overrides, ("burst_scale_down_window_seconds", 120)),
)
"""What a ScalingPolicy with capacityPerInstance and averagingWindowSeconds gets once its
forecast is trusted: the adopted default with the adapter's envelope scale-down window
(`adapters.scaling.MODE_SCALE_DOWN_WINDOW_SECONDS`, 120 s; the protocol's is 60 s)."""


def replay_operator_fits(trace: Trace, startup: int) -> Outcome:
    """`API_DEFAULTS` with forecasts fitted as the operator fits them (models chosen and
    trusted over a third of the day; `ForecastTape.load(backtest="operator")`)."""
    _, capacity = service(trace)
    tape = ForecastTape.load(trace, startup=startup, sync=5, backtest="operator")
    scaler = Ours(API_DEFAULTS.params(trace, startup), tape=tape)
    return simulate(trace, scaler, capacity=capacity, startup=startup)


def scaling(path: Path, args: argparse.Namespace) -> None:
    trace = read_trace(
        path,
        seconds_per_row=args.seconds_per_row,
        compression=args.compression,
        column=args.column,
        day=args.day,
    )
    by_name = {g.name: g for g in GRID}
    base = ADOPTED.name.removesuffix("_rr0.4_cap0.3")
    candidates = (
        ("default", ADOPTED),
        ("dispersion_risk_tail=CANTELLI", by_name[f"{base}_rrc0.4_cap0.3"]),
        ("risk ratio off, cap 0.25", by_name[f"{base}_cap0.25"]),
        ("risk ratio off, no cap (z 3)", by_name[base]),
        ("API defaults (envelope 120 s)", API_DEFAULTS),
    )
    load = trace.load
    print(f"{path}: {load.size} s of load, mean {load.mean():.4g} per second")
    for startup in STARTUPS:
        hpa = replay(trace, None, startup)
        print(
            f"start-up {startup} s: HPA under-provisioned {hpa.under:.2%}, {hpa.instance_hours:.2f} h"
        )
        rows = [(name, replay(trace, config, startup)) for name, config in candidates]
        rows.append(("API defaults, operator's fits", replay_operator_fits(trace, startup)))
        for name, ours in rows:
            under, hours = ratios(ours, hpa)
            verdict = "meets the box" if under <= 0.5 and hours <= 1.05 else "misses the box"
            print(f"  {name:<32} under x{under:.2f}, hours x{hours:.3f}: {verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="part", required=True)
    a = sub.add_parser("anomaly", help="NAB candidates on a NAB layout")
    a.add_argument("root", type=Path)
    a.add_argument("--categories", nargs="*", default=[])
    s = sub.add_parser("scaling", help="scaling candidates on one load trace")
    s.add_argument("trace", type=Path)
    s.add_argument("--seconds-per-row", type=float, default=1.0)
    s.add_argument("--compression", type=float, default=1.0)
    s.add_argument("--column", type=int, default=1, help="0-based value column (default 1)")
    s.add_argument("--day", type=float, help="daily period in compressed seconds")
    args = parser.parse_args(argv)
    if args.part == "anomaly":
        anomaly(args.root, args.categories)
    else:
        scaling(args.trace, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

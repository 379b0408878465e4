"""Where the NAB bench's false alarms come from: feature, file, score band, point in the stream.

For one feature setting (default: the adopted one) and the standard profile's gate and level,
every alarm after the probationary period is listed as a first hit, a later hit inside a window,
or a false alarm, with the feature that carried the score (the largest surprise), the score, and
how far into the stream it fell (in probation lengths after the probationary period). The
summary tables count false alarms and first hits per feature and score band, per file, and per
stream position: the evidence for which feature a calibration change should aim at.

Run from the repository root::

    .venv/bin/python bench/anomaly_false_alarms.py            # summary
    .venv/bin/python bench/anomaly_false_alarms.py --alarms   # ... and every alarm
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.anomaly_cv import FeatureSetting, alarms, gated_scores, surprises  # noqa: E402
from bench.anomaly_eval import (  # noqa: E402
    ADOPTED_LEVELS,
    DEFAULT_GATE,
    LabelledFile,
    load_corpus,
)
from intelligence.anomaly.tail_probability import FEATURES  # noqa: E402

BANDS = ((2.375, 2.75), (2.75, 3.5), (3.5, float("inf")))


def classify(f: LabelledFile, t: int, first: set[int]) -> str:
    """``hit`` (first alarm in a window), ``echo`` (a later one) or ``fp``."""
    for k, (lo, hi) in enumerate(f.windows):
        if lo <= t <= hi:
            if k in first:
                return "echo"
            first.add(k)
            return "hit"
    return "fp"


def alarm_rows(
    setting: FeatureSetting, level: float
) -> list[tuple[str, int, str, str, float, float]]:
    """(file, t, kind, feature, score, position in probation lengths) of every scored alarm."""
    files = load_corpus()
    feats = surprises(setting, [(f.name, f.probation, f.values) for f in files])
    rows = []
    for f, x in zip(files, feats, strict=True):
        s = gated_scores(x, DEFAULT_GATE, f.probation)
        first: set[int] = set()
        for t in np.flatnonzero(alarms(s, DEFAULT_GATE, probation=f.probation, level=level)):
            feature = FEATURES[int(np.nanargmax(np.nan_to_num(x[t, : len(FEATURES)], nan=-1.0)))]
            kind = classify(f, int(t), first)
            pos = (t - f.probation) / f.probation
            rows.append((f.name, int(t), kind, feature, float(s[t]), float(pos)))
    return rows


def band(score: float) -> str:
    for lo, hi in BANDS:
        if lo <= score < hi:
            return f"{lo:g}-{hi:g}"
    return "<level"


def print_summary(rows: list[tuple[str, int, str, str, float, float]]) -> None:
    """False alarms and first hits by feature x band, by file, and by stream position."""
    print(f"{'feature':<10}{'band':<12}{'fp':>5}{'hit':>5}")
    by = Counter((r[3], band(r[4]), r[2]) for r in rows)
    for feat in FEATURES:
        for lo, hi in BANDS:
            b = f"{lo:g}-{hi:g}"
            print(f"{feat:<10}{b:<12}{by[(feat, b, 'fp')]:5d}{by[(feat, b, 'hit')]:5d}")
    print("\nfalse alarms per file (feature counts), weakest band 2.375-2.75 in brackets")
    per_file: dict[str, Counter[str]] = {}
    weak: Counter[str] = Counter()
    for name, _, kind, feat, score, _ in rows:
        if kind == "fp":
            per_file.setdefault(name, Counter())[feat] += 1
            weak[name] += score < 2.75
    for name, c in sorted(per_file.items(), key=lambda kv: -sum(kv[1].values())):
        print(f"  {name:<56}{sum(c.values()):4d} [{weak[name]:3d}]  {dict(c)}")
    print("\nfalse alarms / first hits by position (probation lengths after the probation)")
    pos = Counter((min(int(r[5]), 6), r[2]) for r in rows)
    for p in range(7):
        print(f"  {p}{'+' if p == 6 else ''}: fp {pos[(p, 'fp')]:3d}  hit {pos[(p, 'hit')]:3d}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alarms", action="store_true", help="list every alarm")
    args = parser.parse_args(argv)
    rows = alarm_rows(FeatureSetting(), ADOPTED_LEVELS["standard"])
    if args.alarms:
        for r in rows:
            print(f"  {r[0]:<56}{r[1]:6d} {r[2]:<5}{r[3]:<9}{r[4]:6.2f}  at {r[5]:5.2f} P")
    print_summary(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

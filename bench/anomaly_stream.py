"""Cost of the default anomaly detector over a long stream: time per point and memory stay flat.

Streams 1,000,000 synthetic points (a daily-like cycle of 288 points, Gaussian noise, a random
walk in the level, a spike every ~5,000 points and a level shift every ~50,000) through
:class:`intelligence.anomaly.TailProbabilityDetector` with its defaults, one ``update`` per
point, and prints for each block of 100,000 points: CPU time per point, wall time per point,
the process's resident memory (RSS, from /proc) and the size of the detector's state
(``state_size()``: calibrator samples, windows, context table, gate). Flat columns mean bounded
state and constant time per point; the target is at most 20 us per point. The data is
generated block by block, so the stream itself takes no memory.

Run from the repository root::

    .venv/bin/python bench/anomaly_stream.py                  # 1,000,000 points
    .venv/bin/python bench/anomaly_stream.py --points 200000  # a shorter run
    .venv/bin/python bench/anomaly_stream.py --points 200000 --resonance  # the fourth round's
        # resonance feature on (likelihood output, not a default): its cost
    .venv/bin/python bench/anomaly_stream.py --novelty  # the sixth round's
        # AdaptiveResonanceDetector(probation=750) (not a default): its cost
    .venv/bin/python bench/anomaly_stream.py --points 300000 --season-refine  # the ninth
        # round's season_refine_gain=0.5 (not a default): its cost
    .venv/bin/python bench/anomaly_stream.py --points 200000 --detector iqr  # another
        # detector of the package at its defaults (robust_zscore, iqr, cusum; isolation_forest
        # refits scikit-learn's forest, so give it a few thousand points)
    .venv/bin/python bench/anomaly_stream.py --points 20000 --memory  # what one series
        # keeps: the detector's own allocations (tracemalloc), by module

``--memory`` traces allocations (Python's ``tracemalloc``), which slows the run several times,
so its time columns are not the detector's cost; it prints the bytes the detector holds after
the last point, in all and by the module that allocated them: what one watched metric costs
the analytics engine, which keeps one detector per series.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from intelligence.anomaly import (  # noqa: E402
    AdaptiveResonanceDetector,
    AnomalyDetector,
    CusumDetector,
    IQRDetector,
    IsolationForestDetector,
    RobustZScore,
    Severity,
    TailProbabilityDetector,
)
from intelligence.anomaly.tail_probability import FeatureOptions  # noqa: E402

BLOCK = 100_000
PERIOD = 288
OTHERS = {
    "robust_zscore": RobustZScore,
    "iqr": IQRDetector,
    "cusum": CusumDetector,
    "isolation_forest": IsolationForestDetector,
}
"""The package's other streaming detectors (rollout analysis offers them), at their defaults."""


def blocks(points: int, seed: int = 1) -> Iterator[NDArray[np.float64]]:
    """The synthetic stream, ``BLOCK`` points at a time (the same for a given seed)."""
    rng = np.random.default_rng(seed)
    level = 100.0
    for start in range(0, points, BLOCK):
        n = min(BLOCK, points - start)
        t = np.arange(start, start + n)
        walk = level + np.cumsum(rng.normal(0.0, 0.05, n))
        level = float(walk[-1])
        x = walk + 20.0 * np.sin(2 * np.pi * t / PERIOD) + rng.normal(0.0, 2.0, n)
        spikes = rng.random(n) < 1 / 5000
        x[spikes] += rng.choice([-1.0, 1.0], spikes.sum()) * 25.0
        for s in np.flatnonzero(rng.random(n) < 1 / 50_000):
            x[s:] += 15.0
        yield x


def rss_mib() -> float:
    """Resident memory of this process now, in MiB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def main(argv: list[str] | None = None) -> int:
    """Stream the points and print one row per block."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument(
        "--resonance", action="store_true", help="resonance feature on (likelihood output)"
    )
    parser.add_argument(
        "--novelty", action="store_true", help="AdaptiveResonanceDetector(probation=750) instead"
    )
    parser.add_argument(
        "--season-refine", action="store_true", help="season_refine_gain=0.5 (ninth round)"
    )
    parser.add_argument(
        "--memory", action="store_true", help="trace the detector's allocations (slow)"
    )
    parser.add_argument(
        "--detector", choices=sorted(OTHERS), help="another detector, at its defaults, instead"
    )
    args = parser.parse_args(argv)
    if args.memory:
        tracemalloc.start()
    opts = FeatureOptions(resonance_window=8, resonance_output="likelihood")
    if args.season_refine:
        opts = FeatureOptions(season_refine_gain=0.5)
    det: AnomalyDetector
    if args.detector:
        det = OTHERS[args.detector]()
        what = f"{type(det).__name__}() defaults"
    elif args.novelty:
        det = AdaptiveResonanceDetector(probation=750)
        what = "AdaptiveResonanceDetector(probation=750)"
    elif args.resonance or args.season_refine:
        det = TailProbabilityDetector(options=opts)
        what = f"TailProbabilityDetector(options={opts})"
    else:
        det = TailProbabilityDetector()
        what = "TailProbabilityDetector() defaults"
    print(f"{what}, {args.points:,} points, blocks of {BLOCK:,}")
    print(f"{'points':>10}{'cpu us/pt':>11}{'wall us/pt':>12}{'RSS MiB':>9}  state sizes")
    done = alarms = 0
    cpu_total = 0.0
    for x in blocks(args.points):
        values = x.tolist()
        c0, w0 = time.process_time(), time.perf_counter()
        for v in values:
            d = det.update(v)  # the tail detector's gated alarm, else a WARNING or worse
            ev = d.evidence
            alarms += ev["alarm"] > 0.0 if "alarm" in ev else d.severity >= Severity.WARNING
        cpu = time.process_time() - c0
        wall = time.perf_counter() - w0
        cpu_total += cpu
        done += len(values)
        state: dict[str, int] = getattr(det, "state_size", dict)()  # the others: one window
        sizes = " ".join(f"{k}={v}" for k, v in state.items() if v)
        print(
            f"{done:>10,}{cpu / len(values) * 1e6:11.1f}{wall / len(values) * 1e6:12.1f}"
            f"{rss_mib():9.1f}  {sizes}"
        )
    print(
        f"mean CPU time per point {cpu_total / done * 1e6:.1f} us (target <= 20); {alarms} alarms"
    )
    if args.memory:
        print_held(tracemalloc.take_snapshot())
    return 0


def print_held(snapshot: tracemalloc.Snapshot) -> None:
    """The bytes still allocated by the detector's package, in all and by module."""
    mine = snapshot.filter_traces([tracemalloc.Filter(True, str(ROOT / "intelligence" / "*"))])
    stats = mine.statistics("filename")
    total = sum(s.size for s in stats)
    print(f"held by the detector after the run: {total / 1e6:.2f} MB")
    for s in stats:
        where = Path(str(s.traceback[0].filename)).relative_to(ROOT)
        print(f"  {where!s:<40}{s.size / 1e3:10.1f} kB{s.count:>8} blocks")


if __name__ == "__main__":
    raise SystemExit(main())

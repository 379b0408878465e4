"""NAB scorer and evaluation of our streaming anomaly detector on the NAB subset.

The scorer is written from the rules in Lavin & Ahmad (2015), "Evaluating Real-time Anomaly
Detection Algorithms - the Numenta Anomaly Benchmark":

* every labelled anomaly has a window (``labels/combined_windows.json``);
* the first 15% of each file (at most 750 rows) is a probationary period and is not scored;
* a detection is a row whose anomaly score is >= the detector's threshold;
* inside a window only the earliest detection counts, weighted by a scaled sigmoid of its
  relative position (1.0 at the left edge, ~0 at the right edge); a window with no detection
  costs ``-fnWeight``;
* a detection outside every window is a false positive weighted by ``fpWeight`` times the scaled
  sigmoid of its distance past the previous window (-1 when no window precedes it);
* raw scores are summed over the corpus and normalised so that the null detector (never detects)
  scores 0 and the perfect detector (detects at every window's left edge) scores 100.

The scorer is first validated against the published result files of two NAB detectors; then our
default detector, :class:`intelligence.anomaly.TailProbabilityDetector` with its context-novelty
feature, is streamed causally with one setting for the whole corpus. Features: robust z of the
value, a two-window level test (last 6 points vs the window before them), when the warm-up is
seasonal (ACF >= 0.5) robust z of the seasonal difference, and context novelty: the bits needed
to code the last 6 values under an online order-4 n-gram model (Witten-Bell) of the values
discretised on a grid fixed from the warm-up (8 cells across its 5-95% range, extended beyond);
see :mod:`intelligence.anomaly.context`. Each feature is turned into -log10 of a tail
probability against its own history (exponential tail from its 90th/95th percentiles, floored
by the empirical frequency; the context feature's tail scale is at least 1 bit); an alarm is
raised when the largest is >= 2.5 + log10(4/3) = 2.625 (the three-feature level 2.5, Bonferroni
corrected for a fourth feature), then suppressed for half the probationary length unless a
later point scores at least 1.0 more than the alarm that opened the suppression (10x rarer).

Result: standard 70.6 / low-FP 62.1 / low-FN 76.0 (46 of 53 windows, 83 false positives),
7-10 s for the corpus on one core. Above the 70 target and numenta's 69.5 on this subset, below
ARTime's 73.5; low-FP is below numenta's 62.9 by 0.8 (more false positives, 83 vs 54 before).
Remaining misses: machine_temperature windows 1 and 3, exchange-2_cpm (second), exchange-4_cpc
and exchange-4_cpm (second each: small bumps in noise), TravelTime_387 (first), speed_7578
(last); most false positives are on cpu_utilization_asg_misconfiguration (24), speed_6005 (7)
and rogue_agent_key_hold (6).

How this setting was chosen, and how optimistic 70.6 is: 17 configurations were scored on this
subset on top of the ~125 below (142 in all), so the figure is optimistic for the held-out
categories. Order 4, 8 cells (CAD-OSE's 3-bit values) and the 6-point sum (the level test's
short window) were fixed before any score. The path, one step at a time, each kept because it
scored better (so the later steps are selected on this subset): Fisher combination of the three
tail probabilities instead of the max (62.2; with escalation 61.8: dropped); escalation alone on
the three features (65.8: +2 windows, +17 FPs; the per-window features had shown strong hits
lost to a refractory opened by a false alarm just before the window); single-point code length
as a fourth feature (58.2: 163 FPs) and the 6-point sum (65.9); symbols from the rolling robust
z instead of a fixed grid (59.0: dropped); the 6-point sum with escalation (69.6) and with the
Bonferroni level (70.0); then two fixes for false alarms on the clean artificialNoAnomaly series
(a perfectly periodic series must stay quiet): a 1-bit floor on the tail scale (70.2) and
replaying the warm-up through the model and its calibrator, as the seasonal feature already did
(70.6; no alarm left on those series). Ablation: without escalation 69.4 (44 windows, 65 FPs).
Sensitivity, scored after the choice and not used to change it: order 2 / 6 give 73.2 / 67.9,
4 / 16 cells give 71.3 / 71.3. The figure moves by about +-3 with the model's size; picking the
best of those after the fact would add optimism, not skill.

The earlier three-feature setting (``--previous``, context off, level 2.5, no escalation) scores
standard 64.9 / low-FP 59.4 / low-FN 68.4 (40 of 53 windows, 54 false positives).

How the three-feature setting was chosen (about 125 feature x threshold x refractory
combinations scored on this subset during exploration, so the figure is optimistic for the
held-out categories): the calibration layer was the large step (record-breaking rule on the
same features: 44-50; tail probabilities: 58-66); adding the seasonal feature fixed the four art_daily windows and three
nyc_taxi windows; adding the first-difference z caught 3 more windows but tripled the false
positives (63.4 at the same level); a q95/q99 tail fit was worse (52.5); a refractory of 0.25 x
probation gave +1.2, within noise, so the existing 0.5 was kept. Remaining misses: three of four
machine_temperature windows, exchange-2_cpm, exchange-4 (second window), ec2 (first),
TravelTime_387 (two), ambient_temperature (second), nyc_taxi (fourth), speed_7578 (last); most
false positives are on cpu_utilization_asg_misconfiguration (15).

Earlier robust-z variants, tried and not adopted (same corpus, one setting per row, best of a
small grid of threshold x record margin x refractory, so each is an optimistic figure):
robust z of the first difference 49.6 standard; max of value and difference z 47.4; a
Numenta-style likelihood layer (mean of the last 10 raw z vs the mean/sd of the trailing
probation window -> -log10 Gaussian tail) on value z 33.3, on value and difference 37.7.

Run from the repository root::

    .venv/bin/python bench/anomaly_eval.py            # validation + our detector
    .venv/bin/python bench/anomaly_eval.py --previous # ... and the three-feature setting
    .venv/bin/python bench/anomaly_eval.py --validate # scorer validation only
    .venv/bin/python bench/anomaly_eval.py --per-file --baseline  # per-file hits, robust z too
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
NAB = ROOT.parent / "shared" / "data" / "nab"

from intelligence.anomaly import RobustZScore, TailProbabilityDetector  # noqa: E402

PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
PROBATIONARY_PERCENT = 0.15
PUBLISHED = {
    "numenta": (69.5, 62.9, 74.0),
    "windowedGaussian": (37.1, 32.7, 39.8),
}


def scaled_sigmoid(relative_position: float) -> float:
    """NAB's scaled sigmoid: +1 at the window's left edge, 0 at its right, -1 far past it."""
    if relative_position > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * relative_position)) - 1.0


@dataclass(frozen=True)
class Weights:
    """One NAB application profile's cost matrix."""

    tp: float
    fp: float
    fn: float


def load_profiles() -> dict[str, Weights]:
    """Read the three NAB profiles from the shared config."""
    raw = json.loads((NAB / "config" / "profiles.json").read_text())
    return {
        name: Weights(
            tp=raw[name]["CostMatrix"]["tpWeight"],
            fp=raw[name]["CostMatrix"]["fpWeight"],
            fn=raw[name]["CostMatrix"]["fnWeight"],
        )
        for name in PROFILES
    }


@dataclass(frozen=True)
class LabelledFile:
    """One NAB data file with its windows expressed as inclusive row indices."""

    name: str
    timestamps: NDArray[np.datetime64]
    values: NDArray[np.float64]
    windows: list[tuple[int, int]]

    @property
    def probation(self) -> int:
        """Rows at the start that NAB does not score."""
        n = len(self.values)
        return int(min(math.floor(PROBATIONARY_PERCENT * n), PROBATIONARY_PERCENT * 5000))


def _parse_ts(text: str) -> np.datetime64:
    return np.datetime64(text.replace(" ", "T"))


def load_corpus() -> list[LabelledFile]:
    """Load every data file of the subset with its label windows."""
    windows = json.loads((NAB / "labels" / "combined_windows.json").read_text())
    files = []
    for name in sorted(windows):
        with (NAB / "data" / name).open() as fh:
            rows = list(csv.reader(fh))[1:]
        ts = np.array([_parse_ts(r[0]) for r in rows], dtype="datetime64[s]")
        vals = np.array([float(r[1]) for r in rows], dtype=np.float64)
        idx = []
        for start, end in windows[name]:
            lo = int(np.searchsorted(ts, _parse_ts(start), side="left"))
            hi = int(np.searchsorted(ts, _parse_ts(end), side="right")) - 1
            idx.append((lo, hi))
        files.append(LabelledFile(name=name, timestamps=ts, values=vals, windows=idx))
    return files


@dataclass(frozen=True)
class FileScore:
    """Raw NAB score of one file under one profile, with counts as evidence."""

    score: float
    tp: int
    fn: int
    fp: int


def score_file(f: LabelledFile, detections: NDArray[np.bool_], w: Weights) -> FileScore:
    """Score one file's boolean detections under one profile (NAB rules, see module doc)."""
    n = len(f.values)
    start = f.probation
    window_of = np.full(n, -1, dtype=np.int64)
    for k, (lo, hi) in enumerate(f.windows):
        window_of[lo : hi + 1] = k
    max_tp = scaled_sigmoid(-1.0)
    best: dict[int, float] = {}
    fp_total = 0.0
    fp_count = 0
    prev: tuple[int, int] | None = None
    hits = np.flatnonzero(detections)
    hits = hits[hits >= start]
    for i in hits:
        k = int(window_of[i])
        if k >= 0:
            lo, hi = f.windows[k]
            width = float(hi - lo + 1)
            s = scaled_sigmoid(-(hi - i + 1) / width) * w.tp / max_tp
            if k not in best or s > best[k]:
                best[k] = s
            continue
        prev = None
        for lo, hi in f.windows:
            if hi < i:
                prev = (lo, hi)
        if prev is None:
            pos = scaled_sigmoid(3.1)
        else:
            lo, hi = prev
            pos = scaled_sigmoid(abs(hi - i) / float(hi - lo))
        fp_total += w.fp * pos
        fp_count += 1
    scored_windows = [k for k, (lo, hi) in enumerate(f.windows) if hi >= start]
    missed = [k for k in scored_windows if k not in best]
    total = fp_total + sum(best.values()) - w.fn * len(missed)
    return FileScore(score=total, tp=len(best), fn=len(missed), fp=fp_count)


def normalised(
    files: list[LabelledFile], detections: list[NDArray[np.bool_]], w: Weights
) -> tuple[float, int, int, int]:
    """Corpus score normalised between the null (0) and perfect (100) detectors."""
    raw = 0.0
    tp = fn = fp = 0
    n_windows = 0
    for f, d in zip(files, detections, strict=True):
        s = score_file(f, d, w)
        raw += s.score
        tp += s.tp
        fn += s.fn
        fp += s.fp
        n_windows += sum(1 for lo, hi in f.windows if hi >= f.probation)
    null = -w.fn * n_windows
    perfect = w.tp * n_windows
    return 100.0 * (raw - null) / (perfect - null), tp, fn, fp


def load_published(detector: str, files: list[LabelledFile]) -> list[NDArray[np.float64]]:
    """Anomaly scores of a published NAB detector, aligned with the corpus files."""
    out = []
    for f in files:
        cat, base = f.name.split("/")
        path = NAB / "results" / detector / cat / f"{detector}_{base}"
        with path.open() as fh:
            reader = csv.DictReader(fh)
            scores = np.array([float(r["anomaly_score"]) for r in reader])
        assert len(scores) == len(f.values), f.name
        out.append(scores)
    return out


def validate(files: list[LabelledFile], profiles: dict[str, Weights]) -> bool:
    """Check the scorer against the published numenta and windowedGaussian figures."""
    thresholds = json.loads((NAB / "results" / "published_thresholds.json").read_text())
    ok = True
    print("Scorer validation (published result files, published thresholds)")
    print(f"{'detector':<18}{'profile':<20}{'ours':>8}{'published':>11}")
    for det, expected in PUBLISHED.items():
        scores = load_published(det, files)
        for prof, want in zip(PROFILES, expected, strict=True):
            thr = thresholds[det][prof]["threshold"]
            got, *_ = normalised(files, [s >= thr for s in scores], profiles[prof])
            flag = "ok" if abs(got - want) < 0.051 else "MISMATCH"
            ok &= flag == "ok"
            print(f"{det:<18}{prof:<20}{got:8.1f}{want:11.1f}  {flag}")
    return ok


THRESHOLD = 3.0
MARGIN = 0.6
REFRACTORY = 0.5


def causal_scores(f: LabelledFile) -> NDArray[np.float64]:
    """Robust z-scores of a file, streamed point by point (the score at t sees data <= t).

    The window is NAB's probationary length (at least 50 points), the only per-file number NAB
    gives every detector.
    """
    window = max(f.probation, 50)
    det = RobustZScore(window=window, min_history=min(50, window))
    return np.array([det.update(v).score for v in f.values])


def detections(score: NDArray[np.float64], *, probation: int) -> NDArray[np.bool_]:
    """Causal alarm logic on top of the scores, the same for every file.

    A point alarms when its score is >= THRESHOLD and exceeds MARGIN times the largest score
    seen so far in the file (a record-breaking rule: the file's usual level of oddity does not
    alarm again and again), and no alarm was raised in the last REFRACTORY x probation points.
    """
    s = np.nan_to_num(score, nan=0.0)
    out = np.zeros(s.size, dtype=bool)
    best = float(s[:probation].max()) if probation else 0.0
    last = -(10**9)
    gap = int(REFRACTORY * probation)
    for i in range(probation, s.size):
        v = float(s[i])
        if v >= THRESHOLD and v > MARGIN * best and i - last > gap:
            out[i] = True
            last = i
        best = max(best, v)
    return out


ALARM_LEVEL = 2.5
"""-log10 tail probability at which the three-feature TailProbabilityDetector alarms."""
CONTEXT_ORDER = 4
CONTEXT_BINS = 8
ESCALATION = 1.0
CONTEXT_ALARM_LEVEL = ALARM_LEVEL + math.log10(4 / 3)
"""With a fourth feature, the level that keeps the per-point false-alarm rate of the max of the
features where the three-feature setting had it (Bonferroni: p / 4 instead of p / 3)."""


def tail_probability_alarms(f: LabelledFile, *, context: bool = True) -> NDArray[np.bool_]:
    """Alarms of :class:`TailProbabilityDetector`, streamed point by point.

    The window (medians, MADs, season search, the context quantiser's grid) is NAB's
    probationary length (at least 50 points) and alarms are suppressed for REFRACTORY x
    probation points after each one, unless (with ``context``) the score escalates by
    ESCALATION. ``context=False`` is the earlier three-feature setting.
    """
    window = max(f.probation, 50)
    refractory = int(REFRACTORY * f.probation)
    if context:
        det = TailProbabilityDetector(
            window=window,
            alarm_level=CONTEXT_ALARM_LEVEL,
            refractory=refractory,
            context_order=CONTEXT_ORDER,
            context_bins=CONTEXT_BINS,
            escalation=ESCALATION,
        )
    else:
        det = TailProbabilityDetector(window=window, alarm_level=ALARM_LEVEL, refractory=refractory)
    out = np.array([det.update(v).evidence.get("alarm", 0.0) > 0.0 for v in f.values])
    out[: f.probation] = False
    return out


def print_scores(
    files: list[LabelledFile],
    dets: list[NDArray[np.bool_]],
    profiles: dict[str, Weights],
    *,
    per_file: bool,
) -> None:
    """Print the three profile scores (and, if asked, each file's hits, misses and FPs)."""
    targets = {"standard": 70.0, "reward_low_FP_rate": None, "reward_low_FN_rate": None}
    for prof in PROFILES:
        got, tp, fn, fp = normalised(files, dets, profiles[prof])
        tgt = targets[prof]
        note = f"  (target >= {tgt}, ARTime 73.5)" if tgt else ""
        print(f"  {prof:<20}{got:6.1f}   windows hit {tp}, missed {fn}, false positives {fp}{note}")
    if not per_file:
        return
    for f, d in zip(files, dets, strict=True):
        s = score_file(f, d, profiles["standard"])
        hits = np.flatnonzero(d)
        pos = []
        for lo, hi in f.windows:
            h = hits[(hits >= lo) & (hits <= hi)]
            pos.append(f"{(h[0] - lo) / (hi - lo + 1):.2f}" if h.size else "MISS")
        print(f"    {f.name:<56}{s.score:6.2f}  fp {s.fp:3d}  first hit / window: {' '.join(pos)}")


def main(argv: list[str] | None = None) -> int:
    """Validate the scorer, then score our detectors (unless --validate)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--validate", action="store_true", help="only validate the scorer")
    parser.add_argument("--baseline", action="store_true", help="also score the robust z")
    parser.add_argument(
        "--previous", action="store_true", help="also score the three-feature setting (64.9)"
    )
    parser.add_argument("--per-file", action="store_true", help="hits, misses, FPs per file")
    args = parser.parse_args(argv)
    files = load_corpus()
    profiles = load_profiles()
    ok = validate(files, profiles)
    if args.validate:
        return 0 if ok else 1
    t0 = time.perf_counter()
    dets = [tail_probability_alarms(f) for f in files]
    elapsed = time.perf_counter() - t0
    print(
        "\nTailProbabilityDetector + context novelty (causal, one setting for the corpus): "
        f"{elapsed:.1f} s"
    )
    print(
        f"  alarm at -log10 p >= {CONTEXT_ALARM_LEVEL:.3f} (2.5 + log10 4/3), window = probation, "
        f"short window 6, season acf >= 0.5, context order {CONTEXT_ORDER} over "
        f"{CONTEXT_BINS} bins, refractory {REFRACTORY} x probation unless +{ESCALATION}"
    )
    print_scores(files, dets, profiles, per_file=args.per_file)
    if args.previous:
        t0 = time.perf_counter()
        prev = [tail_probability_alarms(f, context=False) for f in files]
        elapsed = time.perf_counter() - t0
        print(f"\nTailProbabilityDetector, three features (earlier setting): {elapsed:.1f} s")
        print(
            f"  alarm at -log10 p >= {ALARM_LEVEL}, window = probation, short window 6, "
            f"season acf >= 0.5, refractory {REFRACTORY} x probation"
        )
        print_scores(files, prev, profiles, per_file=args.per_file)
    if args.baseline:
        t0 = time.perf_counter()
        scores = [causal_scores(f) for f in files]
        elapsed = time.perf_counter() - t0
        print(f"\nBaseline RobustZScore (causal, one setting for the corpus): {elapsed:.1f} s")
        print(
            f"  threshold {THRESHOLD} robust sigmas, record margin {MARGIN}, "
            f"refractory {REFRACTORY} x probation"
        )
        base = [detections(s, probation=f.probation) for s, f in zip(scores, files, strict=True)]
        print_scores(files, base, profiles, per_file=args.per_file)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Fourth round on the NAB bench's false alarms: a feature that models the series' normal windows.

Three rounds of rules on the score and of feature calibration left weak false alarms and weak
first hits as the same kind of event for distance-from-the-past features
(docs/intelligence/anomaly.md). This round adds a model of normal behaviour, after ARTime: the
``resonance`` feature of :class:`~intelligence.anomaly.TailProbabilityDetector` (a fuzzy ART
table over downsampled, complement-coded windows, :mod:`intelligence.anomaly.resonance`), with
two output stages: its novelty calibrated like the other features, or an HTM-style likelihood
(short mean of the novelty against its long history, Gaussian tail); and, added after the first
six, both outputs with window shapes scaled by the warm-up's range. The first two are scored three
ways, replayed on the same cached surprises: (a) as a fifth feature, (b) replacing the ``level``
feature (its surprises set to 0: it carries 16 false alarms and no first hit), (c) as support
only (``GateScorer(silent=...)``); the reference-shape ones as a fifth feature only. Each candidate is its own grid (each profile's gates x 25
levels) under the protocol of :mod:`bench.anomaly_cv`; then all are offered to each fold at
once. Every configuration goes into the ledger.

Run from the repository root (each resonance setting streams the corpus once, then cached)::

    nice -n 15 .venv/bin/python bench/anomaly_predictive.py
    nice -n 15 .venv/bin/python bench/anomaly_predictive.py --familiarity  # the veto's premise
    nice -n 15 .venv/bin/python bench/anomaly_predictive.py --per-file  # where the likelihood
        # feature's gain comes from
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.anomaly_cv import (  # noqa: E402
    FeatureSetting,
    GateSetting,
    alarms,
    gated_scores,
    surprises,
)
from bench.anomaly_eval import (  # noqa: E402
    DEFAULT_GATE,
    QUIET_GATE,
    Grid,
    LabelledFile,
    Weights,
    category,
    cross_validate,
    file_terms,
    load_corpus,
    load_profiles,
    subgrid,
)
from bench.anomaly_false_alarms import classify  # noqa: E402
from bench.anomaly_features import Candidate, score_round  # noqa: E402
from intelligence.anomaly.tail_probability import FEATURES  # noqa: E402

CALIBRATED = FeatureSetting(resonance_window=8)
"""Resonance novelty over windows of 8 downsampled values (ARTime's), vigilance 0.9, tail-calibrated."""
LIKELIHOOD = FeatureSetting(resonance_window=8, resonance_output="likelihood")
"""The same novelty through HTM's likelihood (short mean vs long mean and spread, Gaussian tail)."""
REFERENCE_SHAPE = FeatureSetting(resonance_window=8, resonance_shape="reference")
"""Shapes scaled by the warm-up's range instead of their own (noise on a flat stretch stays small):
added after the first six candidates, when the unit tests showed the table of a clean square
wave filling with noise shapes."""
REFERENCE_LIKELIHOOD = replace(REFERENCE_SHAPE, resonance_output="likelihood")
SUPPORT_ONLY = tuple(k for k in FEATURES if k != "resonance")


def _three_ways(name: str, setting: FeatureSetting) -> tuple[Candidate, ...]:
    return (
        Candidate(f"{name}: fifth feature", setting),
        Candidate(f"{name}: replaces level", setting, dropped=("level",)),
        Candidate(f"{name}: support only", setting, scored=SUPPORT_ONLY),
    )


CANDIDATES = (
    Candidate("adopted"),
    *_three_ways("resonance", CALIBRATED),
    *_three_ways("resonance likelihood", LIKELIHOOD),
    Candidate("reference shape: fifth feature", REFERENCE_SHAPE),
    Candidate("reference shape likelihood: fifth feature", REFERENCE_LIKELIHOOD),
    Candidate("reference shape: support only, veto 1", REFERENCE_SHAPE, SUPPORT_ONLY, veto=1.0),
    Candidate("reference shape: fifth feature, veto 1", REFERENCE_SHAPE, veto=1.0),
    Candidate("reference shape: fifth feature, veto 0.5", REFERENCE_SHAPE, veto=0.5),
)
PAIRS = tuple(("adopted", c.label) for c in CANDIDATES if c.label.endswith("fifth feature"))
"""Pairs offered together to each fold (the protocol choosing per profile between them)."""


def print_categories(
    label: str,
    grid: Grid,
    gates: dict[str, tuple[GateSetting, ...]],
    files: list[LabelledFile],
    w: dict[str, Weights],
) -> None:
    """Windows hit / missed and false alarms per category at the in-sample configuration."""
    cats = sorted({category(f) for f in files})
    for prof in ("standard", "reward_low_FP_rate"):
        sub = subgrid(grid, gates[prof])
        c = sub.configs.index(cross_validate(sub, files, w[prof]).in_sample_config)
        cells = []
        for cat in cats:
            terms = [t for t, f in zip(sub.terms[c], files, strict=True) if category(f) == cat]
            hit, miss, fp = (sum(getattr(t, k) for t in terms) for k in ("tp", "fn", "fp"))
            cells.append(f"{cat} {hit}/{miss},{fp}")
        print(f"    {label} {prof}: " + "; ".join(cells))


def print_per_file(level: float = 2.375) -> None:
    """Files whose hits or false alarms the likelihood fifth feature changes, per profile gate
    (both settings at ``level``, their in-sample choice)."""
    files, w = load_corpus(), load_profiles()
    inputs = [(f.name, f.probation, f.values) for f in files]
    base, new = surprises(FeatureSetting(), inputs), surprises(LIKELIHOOD, inputs)
    for prof, gate in (("standard", DEFAULT_GATE), ("reward_low_FP_rate", QUIET_GATE)):
        print(f"Files the likelihood fifth feature changes ({prof}, level {level}):")
        for f, a, b in zip(files, base, new, strict=True):
            ta, tb = (
                file_terms(
                    f,
                    alarms(
                        gated_scores(x, gate, f.probation), gate, probation=f.probation, level=level
                    ),
                )
                for x in (a, b)
            )
            if (ta.tp, ta.fp) != (tb.tp, tb.fp):
                print(
                    f"  {f.name:<58} hits {ta.tp} -> {tb.tp}, false alarms {ta.fp} -> {tb.fp}, "
                    f"raw score {ta.score(w[prof]):+.2f} -> {tb.score(w[prof]):+.2f}"
                )


def print_familiarity(level: float = 2.375) -> None:
    """How familiar the window ending at each alarm of the adopted standard setting is.

    Familiarity is the detector's own ``resonance_familiarity()`` at the alarm (reference-shape
    coding): the fraction of past window novelties at least as large; >= 0.5 means the window
    is no more novel than the median past window, the veto's "familiar".
    """
    files = load_corpus()
    feats = surprises(REFERENCE_SHAPE, [(f.name, f.probation, f.values) for f in files])
    gate = replace(DEFAULT_GATE, dropped_features=("resonance",))  # the adopted alarms
    rows: list[tuple[str, bool, float]] = []
    for f, x in zip(files, feats, strict=True):
        s = gated_scores(x, gate, f.probation)
        first: set[int] = set()
        for t in np.flatnonzero(alarms(s, gate, probation=f.probation, level=level)):
            kind = classify(f, int(t), first)
            if kind != "echo":
                rows.append((kind, bool(s[t] < 2.75), float(x[t, -1])))
    print(f"Familiarity at the adopted standard alarms (level {level}):")
    for weak in (True, False):
        for kind in ("fp", "hit"):
            fam = np.array([r[2] for r in rows if r[0] == kind and r[1] == weak])
            q = np.nanpercentile(fam, [25, 50, 75]) if fam.size else [np.nan] * 3
            print(
                f"  {'weak' if weak else 'strong':<7}{kind:<4} n={fam.size:3d}  familiar "
                f"{np.mean(fam >= 0.5):4.0%}  quartiles {q[0]:.2f} {q[1]:.2f} {q[2]:.2f}"
            )


def main(argv: list[str] | None = None) -> int:
    """Score each candidate as its own grid, then all of them offered together."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--familiarity", action="store_true", help="only the familiarity at the adopted alarms"
    )
    parser.add_argument(
        "--per-file", action="store_true", help="only the files the likelihood feature changes"
    )
    args = parser.parse_args(argv)
    if args.familiarity or args.per_file:
        (print_familiarity if args.familiarity else print_per_file)()
        return 0
    files, profiles = load_corpus(), load_profiles()
    grids = score_round("Resonance settings", CANDIDATES, PAIRS, files, profiles)
    print("  per category (in-sample configuration; windows hit/missed, false alarms):")
    by_label = {c.label: c for c in CANDIDATES}
    for label in ("adopted", "resonance likelihood: fifth feature"):
        print_categories(label, grids[label], by_label[label].gates(), files, profiles)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

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
    Grid,
    load_corpus,
    load_profiles,
    run_grid,
)
from bench.anomaly_features import cells, pool  # noqa: E402
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


@dataclass(frozen=True)
class Candidate:
    """One setting of the round: features, which may carry the score, which are dropped."""

    label: str
    setting: FeatureSetting = field(default_factory=FeatureSetting)
    scored: tuple[str, ...] = FEATURES
    dropped: tuple[str, ...] = ()
    veto: float = 0.0

    def gates(self) -> dict[str, tuple[GateSetting, ...]]:
        """Each profile's gates (``PROFILE_GATES``) with this candidate's feature roles."""
        return {
            prof: tuple(
                replace(
                    g,
                    scored_features=self.scored,
                    dropped_features=self.dropped,
                    resonance_veto=self.veto,
                )
                for g in gates
            )
            for prof, gates in PROFILE_GATES.items()
        }


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


def main() -> int:
    """Score each candidate as its own grid, then all of them offered together."""
    files = load_corpus()
    profiles = load_profiles()
    print("Resonance settings (CV/in-sample, CV hit/missed,FPs): standard | low-FP | low-FN")
    grids: list[Grid] = []
    total = 0
    for cand in CANDIDATES:
        gates = tuple(dict.fromkeys(sum(cand.gates().values(), ())))
        grid = run_grid(files, (cand.setting,), gates)
        grids.append(grid)
        fresh, total = record(config_key(*c) for c in grid.configs)
        row = cells(grid, cand.gates(), files, profiles)
        print(f"  {cand.label:<40}{row}  ({fresh} new)", flush=True)
    by_label = {c.label: (c, g) for c, g in zip(CANDIDATES, grids, strict=True)}
    for pair in PAIRS:
        grid, gates = pool([by_label[x][1] for x in pair], [by_label[x][0].gates() for x in pair])
        print(f"  {' or '.join(pair):<40}{cells(grid, gates, files, profiles)}")
    grid, gates = pool(grids, [c.gates() for c in CANDIDATES])
    print(f"  {'all settings offered to each fold':<40}{cells(grid, gates, files, profiles)}")
    print(
        f"  {len(grid.configs)} configurations; ledger {total} + {EARLIER_CONFIGURATIONS} "
        f"before the protocol = {total + EARLIER_CONFIGURATIONS}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

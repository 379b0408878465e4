"""Ninth round on the NAB bench: a seasonal period that may grow into a multiple of itself.

The season search runs at the end of the warm-up, where only periods up to a quarter of the
searched points can be trusted; once a period is trusted the search stops. On a series with
daily and weekly cycles and a warm-up of a few weeks (nyc_taxi: 750 half-hour points) the
daily one is found first and kept, although the weekly one is the stronger autocorrelation peak
once four weeks are held (0.96 at 336 points against 0.85 at 48): the seasonal feature then
compares a holiday with the day before, not with the same day a week before.
``season_refine_gain`` keeps the search going and lets a trusted multiple of the period replace
it (:class:`~intelligence.anomaly.season.SeasonSearch`): any trusted multiple (gain 0, scored
first), then only one that removes half of what the period leaves unexplained (gain 0.5, added
after the first showed multiples that are peaks by noise: 100 -> 200 -> 400 on a clean
synthetic cycle, 24 -> 48 -> 432 on cpu_utilization_asg_misconfiguration, 336 -> 672 on
nyc_taxi). Each setting is scored as its own grid (each profile's gates x 25 levels) beside
the adopted one under the protocol of :mod:`bench.anomaly_cv`; every configuration goes into
the ledger.

    nice -n 15 .venv/bin/python bench/anomaly_seasons.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.anomaly_cv import FeatureSetting  # noqa: E402
from bench.anomaly_eval import load_corpus, load_profiles  # noqa: E402
from bench.anomaly_features import Candidate, score_round  # noqa: E402

CANDIDATES = (
    Candidate("adopted"),
    Candidate("season: any trusted multiple", FeatureSetting(season_refine_gain=0.0)),
    Candidate("season: a multiple that halves 1 - acf", FeatureSetting(season_refine_gain=0.5)),
)


def main() -> int:
    score_round("Season settings", CANDIDATES, (), load_corpus(), load_profiles())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

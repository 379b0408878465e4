"""How much the adopted detector's score can give under any choice of alarm level.

The NAB figure depends on the score and on the level it is cut at. This bench holds the score
fixed (the adopted setting, each profile's adopted gate) and asks what a better level choice
could buy, from the least to the most knowledge of the labels:

* one level for every file (the protocol's in-sample figure; the CV figure equals it, every
  fold choosing the same level);
* one level per NAB category, chosen on that category (what a level tuned per kind of
  stream would give; in-sample, so optimistic);
* one level per file, chosen on that file's own labels (an oracle: no detector can do it;
  the ceiling of any rule that only sets a per-stream threshold on this score).

Levels from 1.5 to 8 in steps of 0.125. Where even the per-file oracle stays below the target
(NAB standard 77, low-FP 68), no thresholding rule on this score can reach it and the score
itself has to carry more; where the oracle is far above and one level is not, the gap is in
the level, which a per-stream self-calibration could close. Nothing here is a configuration
of the detector; the bench scores no setting for adoption and adds nothing to the ledger.

    .venv/bin/python bench/anomaly_ceiling.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.anomaly_eval import (  # noqa: E402
    ADOPTED_LEVELS,
    PROFILES,
    ROUND10,
    UNCAPPED_GATES,
    FileTerms,
    Grid,
    Weights,
    category,
    counts,
    load_corpus,
    load_profiles,
    run_grid,
    scored_windows,
    terms_score,
)

LEVELS = tuple(float(v) for v in np.arange(1.5, 8.001, 0.125))
TARGETS = {"standard": 77.0, "reward_low_FP_rate": 68.0, "reward_low_FN_rate": float("nan")}


def best_level(grid: Grid, idx: list[int], w: Weights) -> int:
    """The level (configuration index) with the best raw score on the files ``idx``, the
    lowest on ties. Raw, not normalised as ``best_config`` does: a file or category without
    windows (artificialNoAnomaly) has no normalised score."""
    return int(np.argmax([sum(terms[i].score(w) for i in idx) for terms in grid.terms]))


def described(terms: list[FileTerms], windows: int, w: Weights) -> str:
    tp, fn, fp = counts(terms)
    return f"{terms_score(terms, windows, w):5.1f} ({tp}/{fn}, {fp} FP)"


def main() -> None:
    files = load_corpus()
    profiles = load_profiles()
    windows = sum(scored_windows(f) for f in files)
    cats = sorted({category(f) for f in files})
    print(f"{len(files)} files, {windows} windows, levels {LEVELS[0]}-{LEVELS[-1]} by 0.125")
    print(
        f"{'profile':<20} {'target':>6}  {'one level':>24}  {'a level per category':>24}"
        f"  {'a level per file (oracle)':>26}"
    )
    for prof in PROFILES:
        w = profiles[prof]
        grid = run_grid(files, (ROUND10,), (UNCAPPED_GATES[prof],), LEVELS)  # a config per level
        everything = list(range(len(files)))
        one = best_level(grid, everything, w)
        by_cat: list[FileTerms] = []
        cat_levels = []
        for cat in cats:
            idx = [i for i, f in enumerate(files) if category(f) == cat]
            c = best_level(grid, idx, w)
            cat_levels.append(LEVELS[c])
            by_cat += [grid.terms[c][i] for i in idx]
        by_file = [grid.terms[best_level(grid, [i], w)][i] for i in everything]
        cells = [described(t, windows, w) for t in (grid.terms[one], by_cat, by_file)]
        print(f"{prof:<20} {TARGETS[prof]:6.1f}  {cells[0]:>24}  {cells[1]:>24}  {cells[2]:>26}")
        print(
            f"{'':<28}level {LEVELS[one]} (adopted {ADOPTED_LEVELS[prof]}); per category "
            + ", ".join(f"{c} {lv}" for c, lv in zip(cats, cat_levels, strict=True))
        )


if __name__ == "__main__":
    main()

"""Eleventh round on the NAB bench: a ceiling on the surprise a calibrator may claim.

Each feature's surprise is ``-log10`` of its tail probability, an exponential tail fitted to
the 90th-95th percentiles of the feature's own history. Where that history is a point mass (a
flat stretch, a square wave, a series of repeated values) the fitted scale is zero, floored at
1e-12, and the next small change scores up to ~1e21: an alarm whose "probability" no sample
of 2000 values can support, and, because escalation compares scores, a later change 1e21
instead of 1e15 breaks the refractory period as "news" (the echoes of one event alarm again).
On this subset 111 points on 17 files score above 10 on some feature.

This bench caps the score at ``cap`` (the detector's ``max_surprise`` gives the same figures:
no gate compares a surprise with anything above its quiet level of 2; ``anomaly_eval.py
--no-grid`` streams it) and scores each cap under the protocol (each profile's earlier gate,
levels 1.5-8 by 0.125, leave one category out), then all caps offered to each fold. ``none`` is the detector before the
cap, replayed as a check (it must print the protocol's figures).

``--z-floor`` scores floors on the value, level and seasonal features' tail scale
(``FeatureOptions.z_min_scale``, each floor streamed once) at the cap of 6; ``--escalation-gap``
offers the fifth round's escalation gap again at the cap and the adopted floor;
``--candidates`` re-scores the rows of anomaly.md's "Candidates for a held-out check" (the
options ``bench/heldout.py`` runs) under the protocol, each with the cap and floor as adopted,
each row's own level grid and then all rows offered to each fold: their cross-validated
figures today, where the table's are their rounds', from before the cap.

    .venv/bin/python bench/anomaly_cap.py                    # ~3 s with the surprises cached
    .venv/bin/python bench/anomaly_cap.py --z-floor          # ~15 s cold
    .venv/bin/python bench/anomaly_cap.py --escalation-gap   # ~1 s
    .venv/bin/python bench/anomaly_cap.py --candidates       # ~1 min cold
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.anomaly_combine import LEVELS, level_grid, print_selection, score_rule  # noqa: E402
from bench.anomaly_cv import (  # noqa: E402
    FEATURES,
    FeatureSetting,
    GateSetting,
    config_key,
    gated_scores,
    surprises,
)
from bench.anomaly_eval import (  # noqa: E402
    ADOPTED,
    ADOPTED_GATES,
    PROFILES,
    ROUND10,
    UNCAPPED_GATES,
    Grid,
    LabelledFile,
    Weights,
    cross_validate,
    load_corpus,
    load_profiles,
    report_ledger,
)
from bench.heldout import ANOMALY_CANDIDATES, AnomalyCandidate  # noqa: E402

CAPS: tuple[float | None, ...] = (None, 50.0, 20.0, 12.0, 10.0, 8.0, 7.0, 6.0, 5.0, 4.5, 4.0)
GAPS = (0.0, 0.02, 0.05, 0.1, 0.2)
"""Shares of the detector's window an escalation must come after the alarm it breaks through
(the fifth round's option, ``TailProbabilityDetector(escalation_gap=...)``), offered again at
the cap and the floor."""
Z_FLOORS = (0.0, 0.05, 0.1, 0.25, 0.5)
"""Tail-scale floors of the value, level and seasonal calibrators, in robust z units
(``FeatureOptions.z_min_scale``); a typical fitted scale is 0.5-1."""


def capped(cap: float | None):
    def rule(r: NDArray[np.float64]) -> NDArray[np.float64]:
        score = r.max(axis=1)
        return score if cap is None else np.minimum(score, cap)

    return rule


Row = tuple[str, list[NDArray[np.float64]], FeatureSetting, GateSetting, float]
"""A setting offered to the protocol: label, each file's surprises, features, capped gate,
escalation gap (a share of the detector's window)."""


def offer(rows: list[Row], files: list[LabelledFile], w: Weights, prof: str) -> list[str]:
    """Score each row's level grid under the protocol, then all rows offered to each fold;
    return the rows' ledger keys."""
    grids, keys = [], []
    for label, raw, setting, gate, gap in rows:
        grid = score_rule(
            capped(gate.max_surprise),
            raw,
            files,
            replace(gate, max_surprise=None),
            escalation_gap=gap,
        )
        grid.configs = [(setting, gate, lv) for lv in LEVELS]
        grids.append((label, grid))
        gap_key = f" escalation_gap {gap:g}" if gap else ""
        keys += [config_key(setting, gate, lv) + gap_key for lv in LEVELS]
    print_offered(grids, files, w, prof, width=12)
    return keys


def print_offered(
    grids: list[tuple[str, Grid]], files: list[LabelledFile], w: Weights, prof: str, *, width: int
) -> None:
    """Each labelled grid's figure under the protocol, then all of them offered to each fold
    and which one each fold chose."""
    pooled = Grid([], [])
    for label, grid in grids:
        pooled.configs += grid.configs
        pooled.terms += grid.terms
        print_selection(prof, label, cross_validate(grid, files, w), width=width)
    sel = cross_validate(pooled, files, w)
    tp, fn, fp = sel.cv_counts
    chosen = ", ".join(f"{c} {grids[i // len(LEVELS)][0]}" for c, i in sel.chosen_index.items())
    print(f"  {prof:<20} every row offered to each fold: {sel.cv:5.1f}  {tp}/{fn}, {fp}")
    print(f"  {'':<20} chosen without: {chosen}")


def candidate_grid(
    cand: AnomalyCandidate, feats: list[NDArray[np.float64]], files: list[LabelledFile], prof: str
) -> tuple[Grid, list[str]]:
    """A candidate's level grid as the detector would alarm (its gate replayed on the cached
    surprises, as ``heldout.py`` does), and its ledger keys."""
    gate = replace(ADOPTED_GATES[prof], max_surprise=cand.max_surprise)
    if cand.scored_features is not None:
        gate = replace(gate, scored_features=cand.scored_features)
    scores = [gated_scores(x, gate, f.probation) for x, f in zip(feats, files, strict=True)]
    grid = level_grid(scores, files, gate, escalation_gap=cand.escalation_gap)
    grid.configs = [(cand.features, gate, lv) for lv in LEVELS]
    gap = f" escalation_gap {cand.escalation_gap:g}" if cand.escalation_gap else ""
    return grid, [config_key(cand.features, gate, lv) + gap for lv in LEVELS]


def candidates(files: list[LabelledFile], profiles: dict[str, Weights]) -> list[str]:
    """Each candidate's own protocol figure, then all of them offered to each fold."""
    inputs = [(f.name, f.probation, f.values) for f in files]
    feats = {c.features: surprises(c.features, inputs) for c in ANOMALY_CANDIDATES}
    width = max(len(c.name) for c in ANOMALY_CANDIDATES)
    keys: list[str] = []
    print("Candidates for a held-out check (CV / in-sample; CV hit/missed, FPs; level)")
    for prof in PROFILES:
        grids = []
        for cand in ANOMALY_CANDIDATES:
            grid, k = candidate_grid(cand, feats[cand.features], files, prof)
            keys += k
            grids.append((cand.name, grid))
        print_offered(grids, files, profiles[prof], prof, width=width)
    return keys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--z-floor", action="store_true", help="the z features' tail-scale floors, at cap 6"
    )
    parser.add_argument(
        "--escalation-gap", action="store_true", help="escalation gaps, at the cap and floor"
    )
    parser.add_argument(
        "--candidates", action="store_true", help="the held-out candidates, at the cap and floor"
    )
    args = parser.parse_args()
    files, profiles = load_corpus(), load_profiles()
    if args.candidates:
        report_ledger(list(dict.fromkeys(candidates(files, profiles))))
        return 0
    inputs = [(f.name, f.probation, f.values) for f in files]

    def raw(setting: FeatureSetting) -> list[NDArray[np.float64]]:
        # the calibrators' own output: NaN (a feature not yet computed) is no evidence
        return [np.nan_to_num(x[:, : len(FEATURES)], nan=0.0) for x in surprises(setting, inputs)]

    keys: list[str] = []
    if args.escalation_gap:
        print("escalation gaps at cap 6, floor 0.25 (CV / in-sample; CV hit/missed, FPs; level)")
        adopted = raw(ADOPTED)
        for prof in PROFILES:
            gate = ADOPTED_GATES[prof]
            if gate.escalation is None:
                continue  # the low-FP gate never escalates: a gap changes nothing
            rows = [(f"gap {gap:g}", adopted, ADOPTED, gate, gap) for gap in GAPS]
            keys += offer(rows, files, profiles[prof], prof)
    elif args.z_floor:
        print("z-feature tail-scale floors at cap 6 (CV / in-sample; CV hit/missed, FPs; level)")
        settings = [replace(ROUND10, z_min_scale=z) for z in Z_FLOORS]
        feats = [raw(s) for s in settings]
        for prof in PROFILES:
            gate = ADOPTED_GATES[prof]
            rows = [
                (f"floor {s.z_min_scale:g}", r, s, gate, 0.0)
                for s, r in zip(settings, feats, strict=True)
            ]
            keys += offer(rows, files, profiles[prof], prof)
    else:
        base = raw(ROUND10)
        above = [(r > 10).any(axis=1).sum() for r in base]
        print(f"points scoring above 10: {sum(above)} on {sum(a > 0 for a in above)} files")
        print("Surprise ceilings (CV / in-sample; CV windows hit/missed, FPs; in-sample level)")
        for prof in PROFILES:
            gate = UNCAPPED_GATES[prof]
            rows = [
                (f"cap {cap}", base, ROUND10, replace(gate, max_surprise=cap), 0.0) for cap in CAPS
            ]
            keys += offer(rows, files, profiles[prof], prof)
    keys = list(dict.fromkeys(keys))  # standard and low-FN share a gate: one configuration
    report_ledger(keys)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

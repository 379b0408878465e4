"""Sixth to eighth NAB rounds (issue 22): a novelty detector (adaptive resonance) instead of a
calibrated tail.

Five rounds of rules on the calibrated score did not lower the false alarms without losing hits:
a calibrated tail is exceeded a fixed share of the time, so a stationary stream alarms at the
same rate for ever. :class:`~intelligence.anomaly.adaptive_resonance.AdaptiveResonanceDetector`
alarms only on a kind of window its model has never seen (after ARTime), so it alarms less as
it learns. This bench streams it over the NAB subset (scores cached under
``.cache/bench/anomaly/``, keyed by the detector's source and setting), and scores:

* each detector setting as its own grid of output levels, CV beside in-sample (the protocol of
  ``bench/anomaly_cv.py``: leave one category out, pooled held-out detections);
* the union with the adopted tail-probability detector's *strong* alarms (its score at or above
  ``strong``, one alarm per refractory period as its own gate gives), so the strong spikes the
  novelty detector masks are kept: each (setting, strong level, output level) is a
  configuration;
* the adopted detector alone, for reference (its cached surprises; the same figures as
  ``bench/anomaly_eval.py``).

The seventh round re-scores the sixth's grid after one correction to the detector (the sign of
the Haar details, now Wavelets.jl's as in ARTime): its configurations are new ledger keys
(``ROUND``). The eighth adds rows that rebuild the table when the running range grows
(``relearn_growth``, ``relearn_memory``; ledger prefix ``round8``) and prints the rows offered
to each fold with and without them. Every configuration scored is added to the ledger. Run from
the repository root::

    nice -n 15 .venv/bin/python bench/anomaly_resonance.py
    nice -n 15 .venv/bin/python bench/anomaly_resonance.py --per-category  # where rows win
"""

from __future__ import annotations

import hashlib
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import cast

import numpy as np
from numpy.typing import NDArray

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.anomaly_cv import CACHE, alarms, gated_scores, record, rule_key, surprises  # noqa: E402
from bench.anomaly_eval import (  # noqa: E402
    ADOPTED_LEVELS,
    PROFILES,
    ROUND10,
    UNCAPPED_GATES,
    Grid,
    LabelledFile,
    Selection,
    category,
    cross_validate,
    file_terms,
    load_corpus,
    load_profiles,
)
from intelligence.anomaly.adaptive_resonance import AdaptiveResonanceDetector  # noqa: E402

SOURCE = ROOT / "intelligence" / "anomaly" / "adaptive_resonance.py"
OUTPUT_LEVELS = tuple(float(v) for v in np.linspace(0.02, 0.98, 25))
"""Output levels offered (the detector's confidence lies in (0, 1] at its alarms, 0 elsewhere)."""
STRONG_LEVELS = (3.5, 4.5, 6.0)
"""Tail-probability scores treated as strong enough to alarm on their own in the union."""
ROUND = "round7"
"""Ledger prefix of this run's configurations (round 6: the first detector code)."""
RUNNING_TOTAL_BEFORE = 4685
"""Configurations scored on this subset before this round (docs/intelligence/anomaly.md); the
ledger was lost before the fifth round and restarted empty with this one."""


@dataclass(frozen=True)
class Setting:
    """Detector parameters scored in this round."""

    range_mode: str = "running"
    window: int = 8
    windows_per_probation: int = 13
    snap: float = 0.075
    range_margin: float = 0.0
    relearn_growth: float | None = None
    relearn_memory: float = 1.0

    def params(self) -> dict[str, object]:
        """The setting as the ledger keys it (the seventh round's keys without a rebuild)."""
        out = asdict(self)
        if self.relearn_growth is None:
            del out["relearn_growth"], out["relearn_memory"]
        return out

    def label(self) -> str:
        """The fields that differ from the first setting (``default`` for it)."""
        base = Setting()
        diff = [f"{k}={v}" for k, v in asdict(self).items() if v != getattr(base, k)]
        return " ".join(diff) or "default"

    @property
    def round(self) -> str:
        """Ledger prefix of the round that added the setting."""
        return ROUND if self.relearn_growth is None else "round8"


RELEARN = tuple(
    Setting(relearn_growth=g, relearn_memory=m)
    for g, m in (
        (0.1, 1.0),
        (0.1, 0.5),
        (0.1, 2.0),
        (0.05, 1.0),
        (0.2, 1.0),
        (0.1, 0.25),
        (0.1, 4.0),
        (0.25, 4.0),
        (0.5, 4.0),
        (0.1, 8.0),
    )
)
"""Eighth round: rebuild the table from the last ``relearn_memory`` warm-ups of block values when
the range has grown by ``relearn_growth`` of its span (what the model would hold had the stream
been scaled so from the start; the seventh round's per-file comparison put the loss to the
file's range in missed windows)."""

SETTINGS = (
    Setting(),
    Setting(range_mode="warmup"),
    Setting(range_margin=0.5),
    Setting(range_margin=1.0),
    Setting(range_mode="rank"),
    Setting(range_margin=1.5),  # seventh round: wider margins
    Setting(range_margin=2.0),
    Setting(range_margin=3.0),
    *RELEARN,
)


def _job(args: tuple[Setting, int, NDArray[np.float64]]) -> NDArray[np.float64]:
    setting, probation, values = args
    det = AdaptiveResonanceDetector(probation=probation, **asdict(setting))
    return det.score(values).scores


def scores(setting: Setting, files: list[LabelledFile]) -> list[NDArray[np.float64]]:
    """The detector's per-point output on every file (cached; two processes)."""
    key = hashlib.sha256(SOURCE.read_bytes() + repr(asdict(setting)).encode()).hexdigest()[:20]
    folder = CACHE / f"resonance-{key}"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / (f.name.replace("/", "__") + ".npy") for f in files]
    todo = [i for i, p in enumerate(paths) if not p.exists()]
    if todo:
        jobs = [(setting, files[i].probation, files[i].values) for i in todo]
        with ProcessPoolExecutor(max_workers=2) as pool:
            for i, arr in zip(todo, pool.map(_job, jobs), strict=True):
                np.save(paths[i], arr)
    return [np.load(p) for p in paths]


def detections(s: NDArray[np.float64], probation: int, level: float) -> NDArray[np.bool_]:
    """Alarms at ``level`` (NAB scores no probation row)."""
    out = s >= level
    out[:probation] = False
    return out


def grid_terms(files: list[LabelledFile], dets: list[list[NDArray[np.bool_]]]) -> list:
    """Per configuration, per file: NAB's terms of the detections."""
    return [[file_terms(f, d[i]) for i, f in enumerate(files)] for d in dets]


def select(files: list[LabelledFile], profile: str, configs: list, terms: list) -> Selection:
    """The protocol on one grid under one profile."""
    return cross_validate(Grid(configs, terms), files, load_profiles()[profile])


def cell(sel: Selection) -> str:
    """CV / in-sample of a selection, with the CV counts."""
    tp, fn, fp = sel.cv_counts
    return f"{sel.cv:5.1f} / {sel.in_sample:5.1f} ({tp}/{fn}, {fp})"


class TailAlarms:
    """The adopted tail detector's alarms per profile and level (its own gate and refractory
    rule replayed on the cached surprises), each computed once."""

    def __init__(self, files: list[LabelledFile]) -> None:
        self.files = files
        feats = surprises(ROUND10, [(f.name, f.probation, f.values) for f in files])
        self.scores = {
            prof: [
                gated_scores(x, UNCAPPED_GATES[prof], f.probation)
                for x, f in zip(feats, files, strict=True)
            ]
            for prof in PROFILES
        }
        self._alarms: dict[tuple[str, float | None], list[NDArray[np.bool_]]] = {}

    def at(self, prof: str, level: float | None) -> list[NDArray[np.bool_]]:
        """Per file, the alarms at ``level`` (None: none)."""
        key = (prof, level)
        if key not in self._alarms:
            files, gate = self.files, UNCAPPED_GATES[prof]
            self._alarms[key] = [
                np.zeros(f.values.size, dtype=bool)
                if level is None
                else alarms(self.scores[prof][i], gate, probation=f.probation, level=level)
                for i, f in enumerate(files)
            ]
        return self._alarms[key]


def union_detections(
    files: list[LabelledFile], out: list[NDArray[np.float64]], extra: list[NDArray[np.bool_]]
) -> list[list[NDArray[np.bool_]]]:
    """Per output level, per file: the novelty detector's alarms or ``extra``."""
    return [
        [detections(s, f.probation, lv) | a for s, f, a in zip(out, files, extra, strict=True)]
        for lv in OUTPUT_LEVELS
    ]


PER_CATEGORY_ROWS = (
    (Setting(range_margin=1.0), 3.5),
    (Setting(range_mode="warmup"), 3.5),
    (Setting(range_mode="warmup"), 4.5),
    (Setting(range_margin=0.5), 4.5),
)
"""Union rows broken down per category by ``--per-category`` (the best rows of the round)."""


def per_category(files: list[LabelledFile], tail: TailAlarms) -> None:
    """Each held-out category's raw score, windows hit/missed and false alarms, with the
    configuration its fold chose within the row (standard and low-FP)."""
    profiles = load_profiles()
    for prof in ("standard", "reward_low_FP_rate"):
        w = profiles[prof]
        rows = [("adopted", [tail.at(prof, ADOPTED_LEVELS[prof])])]
        for setting, strong in PER_CATEGORY_ROWS:
            dets = union_detections(files, scores(setting, files), tail.at(prof, strong))
            rows.append(
                (f"{setting.range_mode} margin {setting.range_margin:g}, tail {strong}", dets)
            )
        print(f"\n{prof}: held-out category raw score (windows hit/missed, FPs)")
        for label, dets in rows:
            terms = grid_terms(files, dets)
            # the configurations offered are the rows' indices
            chosen = cast(
                dict[str, int], select(files, prof, list(range(len(terms))), terms).chosen
            )
            parts = []
            for cat, c in chosen.items():
                held = [terms[c][i] for i, f in enumerate(files) if category(f) == cat]
                raw = sum(t.score(w) for t in held)
                tp, fn, fp = (sum(getattr(t, k) for t in held) for k in ("tp", "fn", "fp"))
                parts.append(f"{cat[:14]} {raw:+6.2f} ({tp}/{fn}, {fp})")
            print(f"  {label:<30}" + " | ".join(parts))


def main() -> None:
    files = load_corpus()
    tail = TailAlarms(files)
    if "--per-category" in sys.argv[1:]:
        per_category(files, tail)
        return
    keys: list[str] = []
    union: dict[str, tuple[list, list]] = {prof: ([], []) for prof in PROFILES}
    before: dict[str, tuple[list, list]] = {prof: ([], []) for prof in PROFILES}
    print("CV / in-sample (CV windows hit/missed, FPs):", " | ".join(PROFILES))
    cells = []
    for prof in PROFILES:
        level = ADOPTED_LEVELS[prof]
        terms = grid_terms(files, [tail.at(prof, level)])
        cells.append(cell(select(files, prof, [("adopted", level)], terms)))
    print(f"  {'adopted tail-probability (its level)':<44}" + " | ".join(cells), flush=True)
    for setting in SETTINGS:
        out = scores(setting, files)
        for strong in (None, *STRONG_LEVELS):
            cells = []
            for prof in PROFILES:
                configs = [(setting, strong, lv) for lv in OUTPUT_LEVELS]
                terms = grid_terms(files, union_detections(files, out, tail.at(prof, strong)))
                cells.append(cell(select(files, prof, configs, terms)))
                if strong is not None:
                    for rows in (union, before) if setting.relearn_growth is None else (union,):
                        rows[prof][0].extend(configs)
                        rows[prof][1].extend(terms)
                params = {**setting.params(), "strong": strong}
                name = f"{setting.round} {'resonance' if strong is None else 'union'} {prof}"
                keys += [rule_key(name, params, lv) for lv in OUTPUT_LEVELS]
            label = setting.label() if strong is None else f"  or tail >= {strong}"
            print(f"  {label:<44}" + " | ".join(cells), flush=True)
    for label, rows in (("seventh round's union rows", before), ("every union row", union)):
        offered = {prof: select(files, prof, *rows[prof]) for prof in PROFILES}
        cells = [cell(offered[prof]) for prof in PROFILES]
        print(f"  {label + ' offered to each fold':<44}" + " | ".join(cells), flush=True)
        for prof in PROFILES:
            # the configurations offered are (row, strong level, output level)
            chosen = cast(dict[str, tuple[Setting, float | None, float]], offered[prof].chosen)
            for cat, (setting, strong, lv) in chosen.items():
                print(
                    f"    {prof}, chosen without {cat}: {setting.label()}, tail >= {strong}, "
                    f"output >= {lv:.2f}"
                )
    fresh, total = record(keys)
    print(
        f"{len(keys)} configurations in this run ({fresh} new to the ledger, {total} in it); "
        f"running total {RUNNING_TOTAL_BEFORE} before this round + {total} = "
        f"{RUNNING_TOTAL_BEFORE + total}"
    )


if __name__ == "__main__":
    main()

"""Choose the scaling policy's settings by leave-one-trace-out cross-validation, and replay.

The harness (service model, autoscalers, traces) is `bench/scaling_sim.py`. Every
configuration in `GRID` (the settings of `ours` a default could take) is replayed on every
trace at start-up 30 s and 60 s, next to HPA. A configuration's loss on one (trace, start-up)
is `max(under / (0.5 x HPA's under), hours / (1.05 x HPA's hours))`: at most 1 exactly when
it meets the target there (HPA's under-provisioned time is floored at 0.1 % so a trace where
HPA never falls short still counts). A configuration is ranked on a set of traces by its
number of (trace, start-up) failures, then by its mean loss.

* in-sample: the configuration ranked best on all traces, scored on each of them (what a
  sweep on the dev data reports, optimistic by construction);
* cross-validated: for each trace, the configuration ranked best on the *other* traces,
  scored on the one left out (an estimate of the figure on a trace not tuned on).

Both are printed side by side, with every configuration scored counted. A new default is
adopted only when its cross-validated figure beats the previous default's (`legacy`: the
forecast when trusted, else the Cantelli burst envelope; kept in the grid and printed beside).
Calibration (the calibrated configurations of `GRID` are the ones the last protocol run
scored; earlier variants are listed in the docs and counted there) and `FEEDBACK` (legacy with
miss feedback, `ScalingParams.miss_feedback_*`, and with the start-up hold,
`scale_down_window_startups`) never did. `DISPERSION` adds legacy with the dispersion headroom
(`ScalingParams.dispersion_*`: margin for the per-second noise the 15 s metric hides) at two
half-lives of its estimator, its index read from the 15 s means every 15 s (`DISPERSION`, five
z) or every 5 s (`DISPERSION_5S`, six z: overlapping means, which tell noise smooth at 1 s
from per-second noise). One of the latter beat legacy cross-validated on the eight traces and
was adopted; `TREND` (fourth pass) adds the burst envelope's spread about the load's trend
(`ScalingParams.burst_trend_seconds`) or a shorter envelope window to it, and one of them,
600 s of trend, beat it cross-validated (every configuration before it runs with the plain
envelope). `PRICED` (eighth pass, with four low-rate per-second traces added to the protocol)
prices the dispersion headroom against the risk the target's margin leaves
(`dispersion_risk_ratio`, with the normal tail or, `PRICED_CANTELLI`, Cantelli's bound) and/or
caps it (`dispersion_max_headroom`); ratio 0.4 (normal) with cap 0.3
beat the previous default cross-validated (the same passes, a lower mean loss) and is
`ADOPTED` (its settings are `ScalingParams`' defaults; every configuration before it runs
without the pricing). `BUDGET` (ninth pass) adds to it a cost budget, a headroom factor moved
to hold its instance-hours at a ratio of a reactive shadow's (`ScalingParams.cost_budget*`);
none beat it.
Replays are cached under .cache/bench/scaling (keyed by the code of intelligence/scaling,
this harness, the trace and the configuration), so a rerun only replays what changed.

Run from the repository root::

    .venv/bin/python bench/scaling_replay.py                 # the protocol (~10 min cold)
    .venv/bin/python bench/scaling_replay.py --startup 60    # one table: hpa/keda/phpa/ours
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one thread: predictable on a busy host

import argparse
import functools
import hashlib
import json
import multiprocessing
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from scaling_sim import (  # noqa: E402
    CACHE,
    ForecastTape,
    Hpa,
    Keda,
    Ours,
    Outcome,
    PredictiveHpa,
    Trace,
    all_traces,
    hpa_params,
    service,
    simulate,
)

from intelligence.scaling import (  # noqa: E402
    CalibrationBase,
    DispersionComposition,
    RiskTail,
    ScalingParams,
)

STARTUPS = (30, 60)
HPA_UNDER_FLOOR = 0.001


@dataclass(frozen=True)
class Config:
    """Overrides of `ScalingParams`' defaults for `ours`, and whether it gets a forecast."""

    name: str
    overrides: tuple[tuple[str, Any], ...] = ()
    forecast: bool = False

    def params(self, trace: Trace, startup: int) -> ScalingParams:
        target, capacity = service(trace)
        spec = ScalingParams(
            target_per_instance=target,
            min_instances=1,
            max_instances=1000,
            startup_seconds=float(startup),
            horizon_seconds=15.0,
            capacity_per_instance=capacity,
            burst_trend_seconds=None,  # every configuration before the trend was a default
            dispersion_risk_ratio=None,  # and before the eighth pass's pricing
            dispersion_max_headroom=None,
        )
        return replace(spec, **dict(self.overrides))


LEGACY = Config(
    "legacy",
    (
        ("target_under_provisioning", None),
        ("predictive_scale_down_window_seconds", 120),
        ("burst_scale_down_window_seconds", 60),
    ),
    forecast=True,
)
CALIBRATED = (
    ("calibration_base", CalibrationBase.LOAD_OR_MEAN),
    ("calibration_scale_seconds", 3600.0),
    ("calibrated_scale_down_window_seconds", 60),
    ("predictive_scale_down_window_seconds", 120),
    ("burst_scale_down_window_seconds", 60),
)
GRID = (
    LEGACY,
    *(
        Config(
            f"a{alpha}_g{step}_w{window}_f",
            (
                *CALIBRATED,
                ("target_under_provisioning", alpha),
                ("calibration_step", step),
                ("calibration_window", window),
            ),
            forecast=True,
        )
        for alpha in (0.05, 0.1)
        for step in (0.002, 0.01)
        for window in (200, 1000)
    ),
    *(
        Config(
            f"a{alpha}_g0.002_w1000_nof",
            (
                *CALIBRATED,
                ("target_under_provisioning", alpha),
                ("calibration_step", 0.002),
                ("calibration_window", 1000),
            ),
        )
        for alpha in (0.05, 0.1)
    ),
)
FEEDBACK = tuple(
    Config(f"legacy_{name}", (*LEGACY.overrides, *extra), forecast=True)
    for name, extra in (
        ("fb0.005", (("miss_feedback_target", 0.005),)),
        ("fb0.02", (("miss_feedback_target", 0.02),)),
        ("hold2", (("scale_down_window_startups", 2.0),)),
        ("hold2_fb0.005", (("scale_down_window_startups", 2.0), ("miss_feedback_target", 0.005))),
        *(
            (
                f"fb{target}_s0.2_min{floor}",
                (
                    ("miss_feedback_target", target),
                    ("miss_feedback_step", 0.2),
                    ("miss_feedback_floor", floor),
                ),
            )
            for target, floor in (
                (0.01, -0.3),
                (0.03, -0.3),
                (0.03, -0.5),
                (0.003, -0.15),
                (0.003, -0.3),
                (0.01, -0.15),
                (0.001, -0.3),
            )
        ),
        *(  # shed only: the headroom never rises above 0
            (
                f"shed{target}_min{floor}",
                (
                    ("miss_feedback_target", target),
                    ("miss_feedback_step", 0.2),
                    ("miss_feedback_floor", floor),
                    ("miss_feedback_cap", 0.0),
                ),
            )
            for target, floor in ((0.003, -0.2), (0.003, -0.3), (0.01, -0.2))
        ),
    )
)
DISPERSION = tuple(  # legacy plus the dispersion headroom (issue 22 item 3, third pass)
    Config(
        f"legacy_disp_z{sigmas}_h{half_life}",
        (
            *LEGACY.overrides,
            ("dispersion_sigmas", sigmas),
            ("dispersion_half_life_seconds", half_life),
            ("dispersion_window_seconds", 15.0),  # the harness's metric: 15 s means
            ("dispersion_sample_seconds", None),
        ),
        forecast=True,
    )
    for sigmas in (0.5, 0.75, 1.0, 2.0, 3.0)
    for half_life in (300.0, 1800.0)
)
DISPERSION_5S = tuple(  # the same, the index read from the 15 s means taken every 5 s
    Config(
        f"legacy_disp5s_z{sigmas}_h{half_life}",
        (
            *LEGACY.overrides,
            ("dispersion_sigmas", sigmas),
            ("dispersion_half_life_seconds", half_life),
            ("dispersion_window_seconds", 15.0),
            ("dispersion_sample_seconds", 5.0),
        ),
        forecast=True,
    )
    for sigmas in (1.0, 1.5, 2.0, 2.5, 3.0, 4.0)
    for half_life in (300.0, 1800.0)
)
_DISP5S = next(g for g in DISPERSION_5S if g.name == "legacy_disp5s_z3.0_h1800.0")
TREND = (  # issue 22, fourth pass: the envelope's spread about the load's trend
    *(
        Config(
            f"{_DISP5S.name}_tr{trend:.0f}" + ("" if exceedance == 0.1 else f"_e{exceedance}"),
            (
                *_DISP5S.overrides,
                ("burst_trend_seconds", trend),
                ("burst_exceedance", exceedance),
            ),
            forecast=True,
        )
        for trend, exceedance in (
            (300.0, 0.1),
            (450.0, 0.1),
            (600.0, 0.1),
            (900.0, 0.1),
            (1200.0, 0.1),
            (450.0, 0.08),
            (600.0, 0.08),
            (900.0, 0.08),
        )
    ),
    *(  # a shorter envelope window instead (no trend)
        Config(
            f"{_DISP5S.name}_w{window:.0f}",
            (*_DISP5S.overrides, ("burst_window_seconds", window)),
            forecast=True,
        )
        for window in (900.0, 1800.0)
    ),
)
_TR600 = next(g for g in TREND if g.name == f"{_DISP5S.name}_tr600")
COMPOSITION = tuple(  # issue 22, fifth pass: whose noise, and how it adds to the mode's margin
    Config(
        f"{_TR600.name}_{composition.value.lower()}_z{sigmas}",
        (
            *(o for o in _TR600.overrides if o[0] != "dispersion_sigmas"),
            ("dispersion_sigmas", sigmas),
            ("dispersion_composition", composition),
        ),
        forecast=True,
    )
    for composition in (DispersionComposition.LEVEL, DispersionComposition.QUADRATURE)
    for sigmas in (2.0, 2.5, 3.0, 4.0)
)
LEAD = tuple(  # issue 22, sixth pass: the envelope's spread as the base's error at the lead
    Config(
        f"{_DISP5S.name}_tr{trend:.0f}_lead",
        (*_DISP5S.overrides, ("burst_trend_seconds", trend), ("burst_trend_lead", True)),
        forecast=True,
    )
    for trend in (300.0, 600.0, 900.0)
)


def _priced(name: str, *extra: tuple[str, Any]) -> Config:
    return Config(f"{_TR600.name}_{name}", (*_TR600.overrides, *extra), forecast=True)


PRICED = (  # issue 22, eighth pass: what the dispersion headroom may spend
    *(
        _priced(f"rr{r}", ("dispersion_risk_ratio", r))
        for r in (0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.7)
    ),
    *(
        _priced(f"rr{r}_z4", ("dispersion_risk_ratio", r), ("dispersion_sigmas", 4.0))
        for r in (0.1, 0.25)
    ),
    *(_priced(f"cap{c}", ("dispersion_max_headroom", c)) for c in (0.1, 0.15, 0.2, 0.25, 0.3, 0.4)),
    *(
        _priced(f"rr{r}_cap{c}", ("dispersion_risk_ratio", r), ("dispersion_max_headroom", c))
        for r in (0.1, 0.25, 0.4)
        for c in (0.2, 0.3)
    ),
)
PRICED_CANTELLI = tuple(  # the same, the ratio priced with Cantelli's bound (a heavier tail)
    _priced(
        f"rrc{r}_cap{c}",
        ("dispersion_risk_ratio", r),
        ("dispersion_max_headroom", c),
        ("dispersion_risk_tail", RiskTail.CANTELLI),
    )
    for r in (0.25, 0.4, 0.5, 0.6)
    for c in (0.2, 0.3)
)
BUDGET = tuple(  # issue 22, ninth pass: a cost budget against a reactive shadow (not adopted)
    _priced(
        f"rr0.4_cap0.3_b{budget}_s{step}_f{floor}",
        ("dispersion_risk_ratio", 0.4),
        ("dispersion_max_headroom", 0.3),
        ("cost_budget", budget),
        ("cost_budget_step", step),
        ("cost_budget_floor", floor),
    )
    for budget in (0.97, 1.0, 1.03)
    for step in (0.003, 0.01)
    for floor in (-0.5, 0.0)
)
GRID = (
    *GRID,
    *FEEDBACK,
    *DISPERSION,
    *DISPERSION_5S,
    *TREND,
    *COMPOSITION,
    *LEAD,
    *PRICED,
    *PRICED_CANTELLI,
    *BUDGET,
)
SCORED_BEFORE = 53  # configurations scored in earlier runs and no longer in GRID (docs list them)
# What the protocol adopted: legacy plus the dispersion headroom at ScalingParams' dispersion
# defaults, told the harness's metric window (15 s) (issue 22 item 3, third pass: it beat legacy
# cross-validated), plus the envelope's spread about a 600 s trend (fourth pass: 11/16 against
# 10/16 cross-validated), with the headroom priced against the target's own risk (ratio 0.4,
# at most 30 % above the mode's demand: eighth pass, on twelve traces 11/24 cross-validated at
# mean loss 1.236 against 11/24 at 1.309; docs/intelligence/scaling.md).
ADOPTED = next(g for g in GRID if g.name == f"{_TR600.name}_rr0.4_cap0.3")


@functools.cache
def _code_digest() -> str:
    files = sorted((ROOT / "intelligence" / "scaling").glob("*.py"))
    files.append(ROOT / "bench" / "scaling_sim.py")
    return hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:12]


def replay(trace: Trace, config: Config | None, startup: int) -> Outcome:
    """One replay (None: HPA), cached on disk."""
    key = json.dumps([_code_digest(), trace.name, startup, repr(config)]).encode()
    path = CACHE / f"outcome_{hashlib.sha256(key).hexdigest()[:20]}.json"
    if path.exists():
        return Outcome(**json.loads(path.read_text()))
    _, capacity = service(trace)
    if config is None:
        scaler: Any = Hpa(hpa_params(trace))
    else:
        tape = ForecastTape.load(trace, startup=startup, sync=5) if config.forecast else None
        scaler = Ours(config.params(trace, startup), tape=tape)
    outcome = simulate(trace, scaler, capacity=capacity, startup=startup)
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(outcome)))
    return outcome


def _replay_cell(config: Config | None, cell: tuple[str, int]) -> Outcome:
    """`replay` of one (trace, start-up) cell by trace name (a worker process's job)."""
    return replay(traces_by_name()[cell[0]], config, cell[1])


@functools.cache
def traces_by_name() -> dict[str, Trace]:
    """Every trace of the harness by name, built once per process."""
    return {t.name: t for t in all_traces()}


def ratios(ours: Outcome, hpa: Outcome) -> tuple[float, float]:
    """(under-provisioned time, instance-hours) relative to HPA's."""
    return ours.under / max(hpa.under, HPA_UNDER_FLOOR), ours.instance_hours / hpa.instance_hours


def loss(ours: Outcome, hpa: Outcome) -> float:
    under, hours = ratios(ours, hpa)
    return max(under / 0.5, hours / 1.05)


Cell = tuple[str, int]  # (trace, start-up)


def rank(
    config: str, cells: list[Cell], losses: dict[tuple[str, Cell], float]
) -> tuple[int, float]:
    values = [losses[config, c] for c in cells]
    return sum(v > 1.0 for v in values), sum(values) / len(values)


def best(
    cells: list[Cell], losses: dict[tuple[str, Cell], float], grid: tuple[Config, ...] = ()
) -> str:
    return min((c.name for c in grid or GRID), key=lambda name: rank(name, cells, losses))


def cross_validated(
    cells: list[Cell], losses: dict[tuple[str, Cell], float], grid: tuple[Config, ...]
) -> tuple[int, float]:
    """(cells passed, mean loss) when each trace's configuration is chosen from `grid` on the
    other traces."""
    scored = []
    for name in dict.fromkeys(c[0] for c in cells):
        chosen = best([c for c in cells if c[0] != name], losses, grid)
        scored += [losses[chosen, c] for c in cells if c[0] == name]
    return sum(v <= 1.0 for v in scored), sum(scored) / len(scored)


def protocol() -> None:
    started = time.perf_counter()
    traces = all_traces()
    cells = [(t.name, s) for t in traces for s in STARTUPS]
    by_name = {t.name: t for t in traces}
    jobs = [(None, c) for c in cells] + [(g, c) for g in GRID for c in cells]
    with multiprocessing.Pool(os.cpu_count()) as pool:  # cached replays return at once
        done = pool.starmap(_replay_cell, jobs, chunksize=4)
    hpa = {c: o for (g, c), o in zip(jobs, done, strict=True) if g is None}
    outcomes = {(g.name, c): o for (g, c), o in zip(jobs, done, strict=True) if g is not None}
    losses = {k: loss(o, hpa[k[1]]) for k, o in outcomes.items()}
    chosen_in = best(cells, losses)
    print(
        f"{len(GRID)} configurations scored on {len(traces)} traces x {len(STARTUPS)} start-up "
        f"times ({len(GRID) * len(cells)} replays, plus HPA); {len(GRID) + SCORED_BEFORE} "
        f"configurations scored in all, counting earlier runs; in-sample choice: {chosen_in}\n"
    )
    header = (
        "trace",
        "start",
        "hpa under",
        "in-sample under x / hours x",
        "cross-val under x / hours x (chosen without it)",
        "adopted under x / hours x",
        "legacy under x / hours x",
    )
    rows: list[tuple[str, ...]] = [header]
    columns = ("in", "cv", "adopted", "legacy")
    passes, total = dict.fromkeys(columns, 0), dict.fromkeys(columns, 0.0)
    for name in by_name:
        chosen_cv = best([c for c in cells if c[0] != name], losses)
        for s in STARTUPS:
            cell = (name, s)
            figures = []
            for key, config in zip(
                columns, (chosen_in, chosen_cv, ADOPTED.name, "legacy"), strict=True
            ):
                u, h = ratios(outcomes[config, cell], hpa[cell])
                passes[key] += losses[config, cell] <= 1.0
                total[key] += losses[config, cell]
                label = f" ({config})" if key == "cv" else ""
                figures.append(f"{u:.2f} / {h:.3f}{label}")
            rows.append((name, f"{s} s", f"{hpa[cell].under:.2%}", *figures))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    n = len(cells)
    met = ", ".join(
        f"{passes[k]}/{n} {label} (mean loss {total[k] / n:.3f})"
        for k, label in zip(
            columns,
            ("in-sample", "cross-validated", "by the adopted default", "by the legacy default"),
            strict=True,
        )
    )
    print(
        "\ntarget (<= 0.5 x HPA under-provisioned time at <= 1.05 x its instance-hours) met in "
        + met
    )
    before = tuple(g for g in GRID if g not in BUDGET)
    passed, mean = cross_validated(cells, losses, before)
    print(
        f"cross-validated with the grid before the ninth pass (without BUDGET): {passed}/{n} "
        f"(mean loss {mean:.3f})"
    )
    print(f"ranking on all traces (failures, mean loss): {_ranking(cells, losses)}")
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


def _ranking(cells: list[Cell], losses: dict[tuple[str, Cell], float]) -> str:
    ranked = sorted(GRID, key=lambda g: rank(g.name, cells, losses))
    return "; ".join(
        f"{g.name} {rank(g.name, cells, losses)[0]}, {rank(g.name, cells, losses)[1]:.2f}"
        for g in ranked
    )


def table(startup: int) -> None:
    """The per-autoscaler table of one start-up time, ours as the protocol adopted it."""
    header = (
        "trace",
        "autoscaler",
        "under (all)",
        "under-prov",
        "unserved",
        "inst-hours",
        "actions",
        "vs hpa",
    )
    rows: list[tuple[str, ...]] = [header]
    for trace in all_traces():
        _, capacity = service(trace)
        base = hpa_params(trace)
        results = {"hpa": replay(trace, None, startup)}
        for scaler in (Keda(base), PredictiveHpa(base, day=trace.day)):
            results[scaler.name] = simulate(trace, scaler, capacity=capacity, startup=startup)
        results["ours"] = replay(trace, ADOPTED, startup)
        for name, r in results.items():
            u, h = ratios(r, results["hpa"])
            rows.append(
                (
                    trace.name,
                    name,
                    f"{r.under_all:.2%}",
                    f"{r.under:.2%}",
                    f"{r.unserved:.3%}",
                    f"{r.instance_hours:.2f}",
                    str(r.actions),
                    f"under x{u:.2f}, hours x{h:.3f}",
                )
            )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    print(f"start-up {startup} s; ours = {ADOPTED.name}")
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--startup", type=int, help="print one start-up time's table instead")
    args = parser.parse_args()
    if args.startup is None:
        protocol()
    else:
        table(args.startup)


if __name__ == "__main__":
    main()

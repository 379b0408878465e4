"""A digest of everything `decide()` returns on the cost bench's load, per mode.

A change of `decide()`'s cost (fewer copies of its state, a faster rule) must not change a
decision. This drives `decide()` as `bench/scaling_cost.py` does (the same synthetic load, one
call per 15 s step, the state carried from call to call) in several modes and hashes the
`repr` of every `Decision`: the desired count, mode, reason, message, the evidence in its
order, the fallback, the active schedules and the whole new state (every field of every nested
state; floats by `repr`, which round-trips exactly). Equal digests on two trees mean
bit-identical outputs for those calls.

Modes: `calibrated` (the cost bench's default: calibration, miss feedback, start-up hold,
dispersion headroom), `budget` (plus the cost budget's reactive shadow), `envelope` (the cost
bench's `--envelope`: an hour of load at 5 s spacing, the burst envelope about its trend),
`level` (calibrated on the load's mean, dispersion composed on the level, Cantelli's tail, no
cap), `quadrature` (the envelope with the trend lead and the quadrature composition),
`reactive` (HPA's rule with Pods/Percent limits, a `Min` scale-down policy and a cron schedule)
and `forecast` (the cost bench's `--legacy` pipeline: `AutoForecaster` refitted every
`--refit` seconds; its steps are `--steps` / 3).

Run from the repository root; `--root` imports `intelligence` from another checkout (e.g. an
export of main) so the two digests can be compared::

    .venv/bin/python bench/scaling_digest.py --steps 60000
    .venv/bin/python bench/scaling_digest.py --steps 60000 --root /tmp/main-export
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import hashlib
import importlib.util
import math
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODES = ("calibrated", "budget", "envelope", "level", "quadrature", "reactive", "forecast")


def _cost_bench() -> ModuleType:
    """`bench/scaling_cost.py` of this tree (its load and parameters), loaded after
    `intelligence` so that its own `sys.path` entry does not decide which tree is measured."""
    spec = importlib.util.spec_from_file_location("scaling_cost", ROOT / "bench/scaling_cost.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _observations(loads: np.ndarray, *, recent: bool) -> Iterator[tuple[float, float, Any]]:
    """(now, load, recent_load) per step; the recent load as the cost bench's `--envelope`."""
    hour = int(3600 / 5)
    seen_t: deque[float] = deque(maxlen=hour)
    seen_v: deque[float] = deque(maxlen=hour)
    for i, value in enumerate(loads):
        now, load = 1_700_000_000.0 + i * 15.0, float(value)
        window = None
        if recent:
            for k in (2, 1, 0):
                seen_t.append(now - 5.0 * k)
                seen_v.append(load)
            window = (np.fromiter(seen_t, np.float64), np.fromiter(seen_v, np.float64))
        yield now, load, window


def _run(scaling: Any, spec: Any, loads: np.ndarray, *, recent: bool) -> tuple[str, Counter[str]]:
    """Hash every decision of `spec` on `loads`; how many decisions each mode made and how
    many changed the count, as a sanity figure (a digest of a policy that never moves, or of
    a path never taken, would prove little)."""
    digest, state, current, tally = hashlib.sha256(), scaling.ScalingState(), 6, Counter[str]()
    for now, load, window in _observations(loads, recent=recent):
        d = scaling.decide(
            scaling.Observation(now, current, load, recent_load=window), params=spec, state=state
        )
        digest.update(repr(d).encode())
        tally[d.mode] += 1
        tally["moves"] += d.desired != current
        state, current = d.state, d.desired
    return digest.hexdigest(), tally


def _forecast(scaling: Any, cost: ModuleType, steps: int, refit: float) -> tuple[str, Counter[str]]:
    """The cost bench's `--legacy` pipeline, refitting every `refit` seconds."""
    from intelligence.forecasting import DAY, WEEK, AutoForecaster

    loads = cost.synthetic(steps + 4000)
    spec = replace(
        cost.params(),
        target_under_provisioning=None,
        miss_feedback_target=None,
        scale_down_window_startups=None,
        dispersion_sigmas=None,
    )
    times = list(1_700_000_000.0 + np.arange(4000) * 15.0)
    values = list(loads[:4000])
    seen: deque[tuple[float, float]] = deque(maxlen=240)
    digest, state, current, tally = hashlib.sha256(), scaling.ScalingState(), 6, Counter[str]()
    last_fit, forecast, smape = -math.inf, None, None
    for i in range(4000, 4000 + steps):
        now, load = 1_700_000_000.0 + i * 15.0, float(loads[i])
        times.append(now)
        values.append(load)
        del times[:-4000], values[:-4000]
        seen.append((now, load))
        if now - last_fit >= refit:
            auto = AutoForecaster(periods=(DAY, WEEK), step=15.0, horizon=4, origins=4)
            auto.fit(times, values)
            forecast, last_fit = auto.predict(8), now
            smape = auto.chosen.smape if auto.chosen else None
        recent = ([t for t, _ in seen], [v for _, v in seen])
        observed = scaling.Observation(now, current, load, forecast, smape, 4000 * 15.0, recent)
        d = scaling.decide(observed, params=spec, state=state)
        digest.update(repr(d).encode())
        tally[d.mode] += 1
        tally["moves"] += d.desired != current
        state, current = d.state, d.desired
    return digest.hexdigest(), tally


def _specs(scaling: Any, cost: ModuleType) -> dict[str, Callable[[], Any]]:
    base = cost.params()
    rates = scaling.Rates(
        scale_up=scaling.RateRules(
            30,
            (
                scaling.StepLimit(scaling.PolicyType.PODS, 3, 60),
                scaling.StepLimit(scaling.PolicyType.PERCENT, 50, 30),
            ),
        ),
        scale_down=scaling.RateRules(
            120,
            (
                scaling.StepLimit(scaling.PolicyType.PODS, 2, 60),
                scaling.StepLimit(scaling.PolicyType.PERCENT, 20, 45),
            ),
            scaling.SelectPolicy.MIN,
        ),
    )
    return {
        "calibrated": lambda: base,
        "budget": lambda: replace(base, cost_budget=1.03),
        "envelope": lambda: replace(
            base, target_under_provisioning=None, miss_feedback_target=None
        ),
        "level": lambda: replace(
            base,
            calibration_base=scaling.CalibrationBase.MEAN,
            calibration_cap_at_peak=False,
            dispersion_composition=scaling.DispersionComposition.LEVEL,
            dispersion_risk_tail=scaling.RiskTail.CANTELLI,
            dispersion_max_headroom=None,
            miss_feedback_floor=-0.2,
        ),
        "quadrature": lambda: replace(
            base,
            target_under_provisioning=None,
            burst_trend_lead=True,
            burst_scale_down_window_seconds=60,
            dispersion_composition=scaling.DispersionComposition.QUADRATURE,
            dispersion_risk_ratio=None,
        ),
        "reactive": lambda: replace(
            base,
            predictive=False,
            behavior=rates,
            min_instances=2,
            max_instances=40,
            schedules=(scaling.CronSchedule("0 9 * * 1-5", 3 * 3600, 25, name="office"),),
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60_000)
    parser.add_argument("--root", type=Path, default=ROOT, help="the tree to import from")
    parser.add_argument("--refit", type=float, default=300.0, help="forecast mode's refit (s)")
    parser.add_argument("--modes", nargs="*", default=list(MODES), choices=MODES)
    args = parser.parse_args()
    sys.path.insert(0, str(args.root.resolve()))
    import intelligence.scaling as scaling

    cost = _cost_bench()
    print(f"intelligence from {Path(scaling.__file__).resolve().parents[1]}")
    specs, loads = _specs(scaling, cost), cost.synthetic(args.steps)
    for mode in args.modes:
        started = time.perf_counter()
        if mode == "forecast":
            steps = args.steps // 3
            digest, tally = _forecast(scaling, cost, steps, args.refit)
        else:
            steps = args.steps
            recent = mode in ("envelope", "quadrature")
            digest, tally = _run(scaling, specs[mode](), loads, recent=recent)
        took = time.perf_counter() - started
        counts = " ".join(f"{k} {v}" for k, v in sorted(tally.items()))
        print(f"{mode:<11} {steps:>7} calls  {digest[:32]}  ({took:.0f} s; {counts})")


if __name__ == "__main__":
    main()

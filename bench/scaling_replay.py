"""Replay real load traces through a simulated service under four autoscalers.

Service model (1-second resolution): each ready instance serves `capacity` load units per
second; a new instance serves after `--startup` seconds (30 s: pods; Cloud Run cold starts are
10-60 s) and is billed from the moment it is requested; a scale-down removes starting
instances first. Every autoscaler sees the same metric: the mean load over the 15 s before it
looks, and aims at the same `targetPerInstance` = 70 % of capacity.

Autoscalers:
* hpa        - HPA v2 replica of its documented defaults: 15 s sync, 10 % tolerance, 300 s
               scale-down stabilization, scale-up max(100 %, 4 pods) per 15 s
               (`intelligence.scaling.decide` with the default behaviour, no forecast).
* keda       - KEDA-like poller: every 30 s, desired = ceil(load / target); scales up at once,
               scales down only when the last scaling was at least 300 s ago (cooldown).
* phpa       - predictive HPA replica (jthomperoo/predictive-horizontal-pod-autoscaler style):
               Holt-Winters with fixed alpha = beta = gamma = 0.9 on the history of HPA's
               replica recommendations (two seasons kept), one sync ahead; the larger of that
               and the reactive count goes through the HPA behaviour.
* ours       - `intelligence.scaling.decide` fed by `AutoForecaster` (refitted every 60 s on
               the 15 s metric history, HPA's default behaviour otherwise): over start-up +
               15 s it provisions the forecast's point peak at the target and keeps its 90th
               percentile under capacity; while the forecast is trusted the scale-down window
               is 120 s instead of 300 s. When it is not (backtest sMAPE > 30 % or history
               < 10 min) it provisions the burst envelope of the last hour's metric samples
               under capacity (min(mean + 3 sd, peak): by Cantelli's inequality exceeded at
               most 10 % of the time, whatever the shape of the bursts) with a 60 s scale-down
               window (the envelope keeps the instances while load is bursty); plain reactive
               with less than 5 min of samples. It syncs every 5 s, on the same metric (the
               mean of the 15 s before it looks), which the Pods / Percent policies (per 15 s)
               still rate-limit. One setting for every trace and start-up time.

Traces (read from ../shared/data, never copied):
* azure_code, azure_conv - Azure LLM inference traces (one hour each), load = requests per
  second as a 10 s moving average (queues absorb shorter bursts).
* nyc_taxi_30x - NAB nyc_taxi, the first 14 days, time compressed 30x (a day lasts 48 min,
  a 30-minute bucket 60 s) and linearly interpolated: a seasonal load whose ramps are steep
  against the start-up time.

Per trace: share of time under-provisioned (load > ready capacity), share of load not served,
instance-hours, scaling actions. Every autoscaler starts with the instances the first minute
needs; the first 10 minutes are a warm-up (no autoscaler can have learnt anything yet) and are
left out of every figure except "under (all)", which covers the whole trace. Target: ours <= 0.5 x HPA's under-provisioned time with
<= 1.05 x HPA's instance-hours, on every trace.

Run from the repository root::

    .venv/bin/python bench/scaling_replay.py               # start-up 30 s
    .venv/bin/python bench/scaling_replay.py --startup 60  # a slow Cloud Run cold start
    .venv/bin/python bench/scaling_replay.py --startup 10  # a fast one

Sensitivity of ours (docs/intelligence/scaling.md): `--ours-sync 15` (HPA's sync interval),
`--burst-exceedance 0.08` / `0.12` (more / fewer instances for bursts).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one thread: predictable on a busy host

import argparse
import csv
import math
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"

from intelligence.forecasting import DAY, AutoForecaster, Forecast, HoltWinters  # noqa: E402
from intelligence.scaling import Observation, ScalingParams, ScalingState, decide  # noqa: E402

UTILIZATION_TARGET = 0.7
METRIC_WINDOW = 15
T0 = 1_700_000_000.0  # simulated epoch of every trace's first second


# --------------------------------------------------------------------------- traces


@dataclass(frozen=True)
class Trace:
    name: str
    load: np.ndarray  # load units per second, one value per second
    day: float  # the trace's daily period in simulated seconds


def azure(name: str) -> Trace:
    with open(DATA / "azure-llm" / f"AzureLLMInferenceTrace_{name}.csv") as fh:
        rows = list(csv.reader(fh))[1:]
    t = np.array([datetime.fromisoformat(r[0][:26] + "+00:00").timestamp() for r in rows])
    per_second = np.bincount((t - t[0]).astype(int)).astype(float)
    kernel = np.ones(10) / 10.0
    load = np.convolve(per_second, kernel)[: per_second.size]
    return Trace(f"azure_{name}", load, DAY)


def nyc_taxi(days: int = 14, compression: float = 30.0) -> Trace:
    with open(DATA / "nab" / "data" / "realKnownCause" / "nyc_taxi.csv") as fh:
        rows = list(csv.reader(fh))[1:]
    values = np.array([float(r[1]) for r in rows[: days * 48 + 1]])
    seconds = 1800.0 / compression
    grid = np.arange(0, (values.size - 1) * seconds)
    return Trace(
        f"nyc_taxi_{compression:.0f}x",
        np.interp(grid, np.arange(values.size) * seconds, values),
        DAY / compression,
    )


# --------------------------------------------------------------------------- autoscalers


class Autoscaler(Protocol):
    name: str
    sync: int

    def step(self, now: float, current: int, metric: float) -> int: ...


@dataclass
class Hpa:
    spec: ScalingParams
    name: str = "hpa"
    sync: int = 15
    state: ScalingState = field(default_factory=ScalingState)

    def step(self, now: float, current: int, metric: float) -> int:
        d = decide(Observation(now, current, metric), params=self.spec, state=self.state)
        self.state = d.state
        return d.desired


@dataclass
class Keda:
    spec: ScalingParams
    name: str = "keda"
    sync: int = 30
    cooldown: float = 300.0
    last_change: float = -math.inf

    def step(self, now: float, current: int, metric: float) -> int:
        want = math.ceil(metric / self.spec.target_per_instance - 1e-9)
        want = min(max(want, self.spec.min_instances), self.spec.max_instances)
        if want > current or (want < current and now - self.last_change >= self.cooldown):
            self.last_change = now
            return want
        return current


@dataclass
class PredictiveHpa:
    spec: ScalingParams
    day: float
    name: str = "phpa"
    sync: int = 15
    state: ScalingState = field(default_factory=ScalingState)
    times: list[float] = field(default_factory=list)
    replicas: list[float] = field(default_factory=list)

    def step(self, now: float, current: int, metric: float) -> int:
        reactive = math.ceil(metric / self.spec.target_per_instance - 1e-9)
        self.times.append(now)
        self.replicas.append(float(reactive))
        season = max(2, round(self.day / self.sync))
        keep = 2 * season + 2
        del self.times[:-keep], self.replicas[:-keep]
        demand = metric
        if len(self.replicas) >= 4:
            hw = HoltWinters(
                period=self.day, step=self.sync, alpha=0.9, beta=0.9, gamma=0.9, damping=1.0
            )
            fc = hw.fit(self.times, self.replicas).predict(1)
            demand = max(metric, float(fc.point[0]) * self.spec.target_per_instance)
        d = decide(Observation(now, current, demand), params=self.spec, state=self.state)
        self.state = d.state
        return d.desired


@dataclass
class Ours:
    spec: ScalingParams
    day: float
    name: str = "ours"
    sync: int = 5
    metric_step: int = METRIC_WINDOW
    refit_seconds: int = 60
    state: ScalingState = field(default_factory=ScalingState)
    times: list[float] = field(default_factory=list)  # the forecaster's history: one per 15 s
    metrics: list[float] = field(default_factory=list)
    seen_times: list[float] = field(default_factory=list)  # every sample, for the envelope
    seen: list[float] = field(default_factory=list)
    forecast: Forecast | None = None
    smape: float | None = None
    last_fit: float = -math.inf
    modes: dict[str, int] = field(default_factory=dict)
    steps: int = 0
    fallbacks: dict[str, int] = field(default_factory=dict)

    def step(self, now: float, current: int, metric: float) -> int:
        self.seen_times.append(now)
        self.seen.append(metric)
        if not self.times or now - self.times[-1] >= self.metric_step:
            self.times.append(now)
            self.metrics.append(metric)
        lead = self.spec.startup_seconds + self.spec.horizon_seconds
        ahead = math.ceil(lead / self.metric_step)
        refit_steps = math.ceil(self.refit_seconds / self.metric_step)
        if len(self.metrics) >= 16 and now - self.last_fit >= self.refit_seconds:
            auto = AutoForecaster(
                periods=(self.day, 7 * self.day),
                step=self.metric_step,
                horizon=ahead,
                origins=4,
                level=0.8,
            )
            auto.fit(self.times[-4000:], self.metrics[-4000:])
            self.forecast = auto.predict(ahead + refit_steps)
            self.smape = auto.chosen.smape if auto.chosen else None
            self.last_fit = now
        keep = self.spec.burst_window_seconds
        while self.seen_times and self.seen_times[0] <= now - keep:
            del self.seen_times[0], self.seen[0]
        self.steps += 1
        observed = Observation(
            now=now,
            current_instances=current,
            current_load=metric,
            forecast=self.forecast,
            forecast_smape=self.smape,
            history_seconds=now - self.times[0],
            recent_load=(self.seen_times, self.seen),
        )
        d = decide(observed, params=self.spec, state=self.state)
        self.state = d.state
        self.modes[d.mode] = self.modes.get(d.mode, 0) + 1
        if d.fallback:
            self.fallbacks[d.fallback] = self.fallbacks.get(d.fallback, 0) + 1
        return d.desired


# --------------------------------------------------------------------------- simulation


@dataclass(frozen=True)
class Outcome:
    under_all: float  # share of seconds with load > ready capacity, whole trace
    under: float  # the same after the warm-up
    unserved: float  # share of load above ready capacity, after the warm-up
    instance_hours: float  # after the warm-up
    actions: int


def simulate(
    trace: Trace, scaler: Autoscaler, *, capacity: float, startup: int, warmup: int
) -> Outcome:
    load = trace.load
    n = load.size
    target = capacity * UTILIZATION_TARGET
    start = max(1, math.ceil(float(load[:60].mean()) / target))
    ready_diff = np.zeros(n + startup + 2)
    total_diff = np.zeros(n + 2)
    ready_diff[0] += start
    total_diff[0] += start
    instances: list[int] = [0] * start  # ready-at second of each live instance, oldest first
    actions = 0
    cumsum = np.concatenate([[0.0], np.cumsum(load)])
    for t in range(scaler.sync, n, scaler.sync):
        lo = max(0, t - METRIC_WINDOW)
        metric = float((cumsum[t] - cumsum[lo]) / (t - lo))
        current = len(instances)
        desired = scaler.step(T0 + t, current, metric)
        if desired == current:
            continue
        actions += 1
        if desired > current:
            for _ in range(desired - current):
                instances.append(t + startup)
                ready_diff[t + startup] += 1
            total_diff[t] += desired - current
        else:
            for _ in range(current - desired):
                ready_at = instances.pop()  # newest (still starting) first
                if ready_at > t:
                    ready_diff[ready_at] -= 1
                else:
                    ready_diff[t] -= 1
            total_diff[t] -= current - desired
    ready = np.cumsum(ready_diff)[:n]
    total = np.cumsum(total_diff)[:n]
    served = ready * capacity
    short = np.maximum(0.0, load - served)
    w = slice(warmup, None)
    return Outcome(
        under_all=float(np.mean(load > served + 1e-9)),
        under=float(np.mean(load[w] > served[w] + 1e-9)),
        unserved=float(short[w].sum() / max(load[w].sum(), 1e-12)),
        instance_hours=float(total[w].sum() / 3600.0),
        actions=actions,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--startup", type=int, default=30, help="instance start-up seconds")
    parser.add_argument("--instances", type=float, default=10.0, help="mean instances at target")
    parser.add_argument("--warmup", type=int, default=600, help="seconds left out of the figures")
    parser.add_argument(
        "--ours-sync", type=int, default=5, help="our sync interval, seconds (sensitivity check)"
    )
    parser.add_argument(
        "--burst-exceedance",
        type=float,
        default=0.1,
        help="our burst envelope's exceedance share (sensitivity check)",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    traces = [azure("code"), azure("conv"), nyc_taxi()]
    print(
        f"start-up {args.startup} s; capacity set so the mean load needs {args.instances:.0f} "
        f"instances at {UTILIZATION_TARGET:.0%} utilization; ours syncs every {args.ours_sync} s, "
        f"burst envelope exceeded at most {args.burst_exceedance:.0%} of the time\n"
    )
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
    rows: list[tuple[str, ...]] = []
    verdicts: list[str] = []
    for trace in traces:
        target = float(trace.load.mean()) / args.instances
        capacity = target / UTILIZATION_TARGET
        hpa_spec = ScalingParams(target_per_instance=target, min_instances=1, max_instances=1000)
        ours_spec = ScalingParams(
            target_per_instance=target,
            min_instances=1,
            max_instances=1000,
            startup_seconds=float(args.startup),
            horizon_seconds=15.0,
            capacity_per_instance=capacity,
            predictive_scale_down_window_seconds=120,
            burst_scale_down_window_seconds=60,
            burst_exceedance=args.burst_exceedance,
        )
        scalers: list[Autoscaler] = [
            Hpa(hpa_spec),
            Keda(hpa_spec),
            PredictiveHpa(hpa_spec, day=trace.day),
            Ours(ours_spec, day=trace.day, sync=args.ours_sync),
        ]
        results = {}
        for scaler in scalers:
            results[scaler.name] = simulate(
                trace, scaler, capacity=capacity, startup=args.startup, warmup=args.warmup
            )
        base = results["hpa"]
        for name, r in results.items():
            if base.under > 0:
                under_rel = f"under x{r.under / base.under:.2f}"
            else:
                under_rel = "under 0 = hpa" if r.under == 0 else "under > hpa's 0"
            rel = f"{under_rel}, hours x{r.instance_hours / base.instance_hours:.3f}"
            rows.append(
                (
                    trace.name,
                    name,
                    f"{r.under_all:.2%}",
                    f"{r.under:.2%}",
                    f"{r.unserved:.3%}",
                    f"{r.instance_hours:.2f}",
                    str(r.actions),
                    rel,
                )
            )
        ours = results["ours"]
        ok_under = ours.under <= 0.5 * base.under
        ok_hours = ours.instance_hours <= 1.05 * base.instance_hours
        scaler_ours = scalers[-1]
        assert isinstance(scaler_ours, Ours)
        fb = ", ".join(f"{k} {v}" for k, v in sorted(scaler_ours.fallbacks.items())) or "none"
        modes = ", ".join(f"{k} {v}" for k, v in sorted(scaler_ours.modes.items()))
        verdicts.append(
            f"{trace.name}: {'PASS' if ok_under and ok_hours else 'FAIL'} "
            f"(under {ours.under:.2%} vs 0.5 x {base.under:.2%}; hours {ours.instance_hours:.2f} "
            f"vs 1.05 x {base.instance_hours:.2f}); {scaler_ours.steps} syncs: {modes}; "
            f"forecast not used: {fb}"
        )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    print("\ntarget: ours <= 0.5 x hpa under-provisioned time at <= 1.05 x hpa instance-hours")
    for v in verdicts:
        print("  " + v)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()

"""What a scaling decision costs, and that the cost does not grow with history.

`decide()` with calibrated headroom (`target_under_provisioning` 0.05, the other calibration
settings at `ScalingParams`' defaults; no forecast to fit), miss feedback (target 0.01), the
start-up hold (2 x start-up + horizon) and the dispersion headroom (z up to 2, priced) is called
once per 15 s step on a synthetic load (a daily cycle, noise and random bursts), carrying its
state from call to call as a controller does, for `--steps` steps (1,000,000 by default: 174
days of 15 s steps). Every 100k steps it prints the time per call, the process's resident
memory and the size of the serialised state: all three should stay flat.

`--envelope` gives `decide()` no forecast and no calibration but the last hour of load as
`recent_load`, a sample every 5 s (720, as the replay harness passes them), so every call
provisions the burst envelope at `ScalingParams`' defaults (its spread about a 600 s trend).

`--budget` adds the cost budget (ratio 1.03): a reactive shadow stepped every 15 s and the
headroom factor, both in the state.

`--legacy N` instead times N steps of the pipeline the bench used before (issue 22):
`AutoForecaster` refitted every 60 s on the last 4000 15 s points (daily and weekly periods),
then `decide()` with the forecast and the last hour of load for the burst envelope.

Run from the repository root::

    .venv/bin/python bench/scaling_cost.py                 # ~2 min idle
    .venv/bin/python bench/scaling_cost.py --envelope --steps 100000 --block 50000
    .venv/bin/python bench/scaling_cost.py --budget --steps 300000
    .venv/bin/python bench/scaling_cost.py --legacy 2000
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one thread: predictable on a busy host

import argparse
import json
import math
import sys
import time
from collections import deque
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from intelligence.forecasting import DAY, WEEK, AutoForecaster  # noqa: E402
from intelligence.scaling import Observation, ScalingParams, ScalingState, decide  # noqa: E402

STEP = 15.0
T0 = 1_700_000_000.0


def synthetic(n: int, seed: int = 0) -> np.ndarray:
    """A daily cycle between 20 and 100, 5 % noise and a burst (x3) one step in 200."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) * STEP
    base = 60.0 - 40.0 * np.cos(2 * np.pi * t / DAY)
    bursts = np.where(rng.random(n) < 0.005, 3.0, 1.0)
    return base * bursts * rng.lognormal(0.0, 0.05, n)


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def params() -> ScalingParams:
    return ScalingParams(
        target_per_instance=10.0,
        max_instances=1000,
        horizon_seconds=15.0,
        capacity_per_instance=14.0,
        target_under_provisioning=0.05,
        miss_feedback_target=0.01,
        scale_down_window_startups=2.0,
        dispersion_sigmas=2.0,
        dispersion_window_seconds=15.0,  # a 15 s mean per 15 s step: non-overlapping
        dispersion_sample_seconds=None,
    )


def bounded(steps: int, block: int, *, envelope: bool = False, budget: bool = False) -> None:
    loads = synthetic(steps)
    spec, state, current = params(), ScalingState(), 6
    if budget:
        spec = replace(spec, cost_budget=1.03)
    if envelope:
        spec = replace(spec, target_under_provisioning=None, miss_feedback_target=None)
    hour = int(3600 / 5)
    seen_t: deque[float] = deque(maxlen=hour)
    seen_v: deque[float] = deque(maxlen=hour)
    print(f"{steps} decide() calls, one per {STEP:.0f} s step; per {block} steps:")
    print("  steps      us/call  RSS MiB  state bytes  mode of the last call")
    started = time.perf_counter()
    for i in range(steps):
        now, load = T0 + i * STEP, float(loads[i])
        recent = None
        if envelope:  # three 5 s samples per 15 s step (the same load: the cost is the count)
            for k in (2, 1, 0):
                seen_t.append(now - 5.0 * k)
                seen_v.append(load)
            recent = (np.fromiter(seen_t, np.float64), np.fromiter(seen_v, np.float64))
        observed = Observation(now, current, load, recent_load=recent)
        d = decide(observed, params=spec, state=state)
        state, current = d.state, d.desired
        if (i + 1) % block == 0:
            now = time.perf_counter()
            size = len(json.dumps(state.to_dict()))
            us = (now - started) / block * 1e6
            print(f"  {i + 1:>9}  {us:7.1f}  {rss_mib():7.1f}  {size:11d}  {d.mode}")
            started = time.perf_counter()


def legacy(steps: int) -> None:
    """The old pipeline's cost per step (forecast refits amortised)."""
    loads = synthetic(steps + 4000)
    spec = replace(
        params(),
        target_under_provisioning=None,
        miss_feedback_target=None,
        scale_down_window_startups=None,
        dispersion_sigmas=None,
    )
    times = list(T0 + np.arange(4000) * STEP)
    values = list(loads[:4000])
    seen: deque[tuple[float, float]] = deque(maxlen=int(3600 / STEP))
    state, current, last_fit, forecast, smape = ScalingState(), 6, -math.inf, None, None
    started = time.perf_counter()
    for i in range(4000, 4000 + steps):
        now, load = T0 + i * STEP, float(loads[i])
        times.append(now)
        values.append(load)
        del times[:-4000], values[:-4000]
        seen.append((now, load))
        if now - last_fit >= 60:
            auto = AutoForecaster(periods=(DAY, WEEK), step=STEP, horizon=4, origins=4)
            auto.fit(times, values)
            forecast, last_fit = auto.predict(8), now
            smape = auto.chosen.smape if auto.chosen else None
        recent = ([t for t, _ in seen], [v for _, v in seen])
        observed = Observation(now, current, load, forecast, smape, 4000 * STEP, recent)
        d = decide(observed, params=spec, state=state)
        state, current = d.state, d.desired
    per_call = (time.perf_counter() - started) / steps * 1e3
    print(f"legacy pipeline: {steps} steps, {per_call:.2f} ms per step (forecast refits amortised)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--block", type=int, default=100_000)
    parser.add_argument("--envelope", action="store_true", help="time the burst envelope path")
    parser.add_argument(
        "--budget", action="store_true", help="with the cost budget on (ratio 1.03)"
    )
    parser.add_argument("--legacy", type=int, help="time this many steps of the old pipeline")
    args = parser.parse_args()
    if args.legacy:
        legacy(args.legacy)
    else:
        bounded(args.steps, args.block, envelope=args.envelope, budget=args.budget)


if __name__ == "__main__":
    main()

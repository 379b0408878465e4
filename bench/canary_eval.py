"""Canary judge evaluation on scenarios built from real request traces.

Each scenario replays a window of an Azure LLM inference trace (real arrival times and token
counts, ``../shared/data/azure-llm``). Every request is routed to the canary with probability
``share`` (2% = low traffic, 10%, 50%) and to a baseline of the stable version with the same
probability (Kayenta's baseline-vs-canary setup: equal sizes keep per-bucket quantiles
comparable), so both versions see the same real, bursty load. Per 30-second bucket and per version we derive three metrics:

* ``latency_p95``: p95 of request latencies modelled from the request's own tokens
  (50 ms + 0.2 ms per context token + 30 ms per generated token, lognormal noise sd 0.15);
* ``error_rate``: share of failed requests, each failing with the baseline probability
  (0 = zero-error baseline, 1%, 3%); a bucket without requests is NaN;
* ``saturation``: tokens per second per unit of traffic share (what a CPU gauge follows),
  with 5% gauge noise.

Regressions are injected into the canary only: error rate +2 / +5 / +20 percentage points
(and +20% relative), p95 latency x1.10 / x1.25 / x1.50, saturation x1.10 / x1.25 / x1.50;
healthy controls inject nothing. The judge runs after each 5-minute analysis interval on all
samples so far (3 intervals). Reported: recall per regression and size within 1 and 2
intervals, false failures on healthy pairs (Failed at any interval), mean intervals to
detection, and the time to judge one metric.

Run from the repository root::

    .venv/bin/python bench/canary_eval.py
"""

from __future__ import annotations

import csv
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from intelligence.canary import MetricConfig, Outcome, judge, judge_metric  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "azure-llm"
BUCKET_S = 30.0
INTERVAL_BUCKETS = 10  # 5-minute analysis interval
INTERVALS = 3
SHARES = (0.02, 0.1, 0.5)
BASE_ERRORS = (0.0, 0.01, 0.03)

METRICS = [
    MetricConfig("error_rate", critical=True, tolerance=0.2, absolute_tolerance=0.01),
    MetricConfig("latency_p95", tolerance=0.1),
    MetricConfig("saturation", tolerance=0.1),
]

REGRESSIONS: list[tuple[str, str, float]] = [
    ("healthy", "none", 0.0),
    ("error_rate", "+2pp", 0.02),
    ("error_rate", "+5pp", 0.05),
    ("error_rate", "+20pp", 0.20),
    ("error_rate", "+20%rel", -0.20),  # negative: relative increase
    ("latency_p95", "+10%", 0.10),
    ("latency_p95", "+25%", 0.25),
    ("latency_p95", "+50%", 0.50),
    ("saturation", "+10%", 0.10),
    ("saturation", "+25%", 0.25),
    ("saturation", "+50%", 0.50),
]


@dataclass(frozen=True)
class Trace:
    """Arrival times (s from start) and token counts of one real trace."""

    name: str
    t: NDArray[np.float64]
    context: NDArray[np.float64]
    generated: NDArray[np.float64]


def load_traces() -> list[Trace]:
    """Read the Azure LLM traces."""
    out = []
    for path in sorted(DATA.glob("*.csv")):
        with path.open() as fh:
            rows = list(csv.reader(fh))[1:]
        ts = np.array([np.datetime64(r[0].replace(" ", "T")[:26]) for r in rows])
        t = (ts - ts[0]) / np.timedelta64(1, "us") / 1e6
        out.append(
            Trace(
                name=path.stem.replace("AzureLLMInferenceTrace_", ""),
                t=t.astype(np.float64),
                context=np.array([float(r[1]) for r in rows]),
                generated=np.array([float(r[2]) for r in rows]),
            )
        )
    return out


def bucket_metrics(
    *,
    bucket: NDArray[np.int64],
    latency: NDArray[np.float64],
    failed: NDArray[np.bool_],
    tokens: NDArray[np.float64],
    share: float,
    n_buckets: int,
    rng: np.random.Generator,
) -> dict[str, NDArray[np.float64]]:
    """Per-bucket p95 latency, error rate and saturation of one version."""
    p95 = np.full(n_buckets, np.nan)
    err = np.full(n_buckets, np.nan)
    sat = np.full(n_buckets, np.nan)
    order = np.argsort(bucket, kind="stable")
    b_sorted = bucket[order]
    edges = np.searchsorted(b_sorted, np.arange(n_buckets + 1))
    for b in range(n_buckets):
        idx = order[edges[b] : edges[b + 1]]
        if idx.size:
            p95[b] = np.quantile(latency[idx], 0.95)
            err[b] = failed[idx].mean()
        sat[b] = tokens[idx].sum() / (share * BUCKET_S) * (1.0 + rng.normal(0.0, 0.05))
    return {"latency_p95": p95, "error_rate": err, "saturation": sat}


def scenario(
    trace: Trace,
    *,
    start: float,
    share: float,
    base_error: float,
    metric: str,
    size: float,
    rng: np.random.Generator,
) -> list[Outcome]:
    """Run one stable/canary scenario; the judge's outcome after each interval."""
    n_buckets = INTERVAL_BUCKETS * INTERVALS
    end = start + n_buckets * BUCKET_S
    sel = (trace.t >= start) & (trace.t < end)
    t = trace.t[sel] - start
    ctx, gen = trace.context[sel], trace.generated[sel]
    n = t.size
    bucket = np.minimum((t // BUCKET_S).astype(np.int64), n_buckets - 1)
    latency = (0.05 + 0.0002 * ctx + 0.03 * gen) * rng.lognormal(0.0, 0.15, n)
    route = rng.random(n)
    canary = route < share
    baseline = (route >= share) & (route < 2.0 * share)
    p_err = np.full(n, base_error)
    if metric == "latency_p95":
        latency = np.where(canary, latency * (1.0 + size), latency)
    if metric == "error_rate":
        bumped = base_error * (1.0 - size) if size < 0 else base_error + size
        p_err = np.where(canary, bumped, p_err)
    failed = rng.random(n) < p_err
    tokens = ctx + gen
    sides = {}
    for name, mask in (("stable", baseline), ("canary", canary)):
        sides[name] = bucket_metrics(
            bucket=bucket[mask],
            latency=latency[mask],
            failed=failed[mask],
            tokens=tokens[mask],
            share=share,
            n_buckets=n_buckets,
            rng=rng,
        )
    if metric == "saturation":
        sides["canary"]["saturation"] = sides["canary"]["saturation"] * (1.0 + size)
    outcomes = []
    for k in range(1, INTERVALS + 1):
        upto = k * INTERVAL_BUCKETS
        samples = {
            m.name: (sides["stable"][m.name][:upto], sides["canary"][m.name][:upto])
            for m in METRICS
        }
        outcomes.append(judge(samples, METRICS).outcome)
    return outcomes


def timing() -> tuple[float, float]:
    """Mean milliseconds to judge one metric with 20 and with 60 samples per side."""
    rng = np.random.default_rng(0)
    out = []
    for n in (20, 60):
        s = rng.lognormal(5.0, 0.2, n)
        c = rng.lognormal(5.0, 0.2, n)
        judge_metric(s, c, METRICS[1])
        reps = 300
        t0 = time.perf_counter()
        for _ in range(reps):
            judge_metric(s, c, METRICS[1])
        out.append((time.perf_counter() - t0) / reps * 1e3)
    return out[0], out[1]


def main() -> int:
    """Build the scenarios, judge them and print the tables."""
    traces = load_traces()
    rng = np.random.default_rng(20231116)
    span = INTERVAL_BUCKETS * INTERVALS * BUCKET_S
    results: dict[tuple[str, str], list[list[Outcome]]] = defaultdict(list)
    t0 = time.perf_counter()
    for trace in traces:
        for share in SHARES:
            for base in BASE_ERRORS:
                for metric, label, size in REGRESSIONS:
                    if label == "+20%rel" and base == 0.0:
                        continue  # +20% of zero is zero
                    reps = 8 if metric == "healthy" else 3
                    for _ in range(reps):
                        start = float(rng.uniform(0.0, trace.t[-1] - span))
                        res = scenario(
                            trace,
                            start=start,
                            share=share,
                            base_error=base,
                            metric=metric,
                            size=size,
                            rng=rng,
                        )
                        results[(metric, label)].append(res)
                        results[(f"{metric}@share={share}", label)].append(res)
    elapsed = time.perf_counter() - t0
    total = sum(len(v) for k, v in results.items() if "@" not in k[0])
    print(f"Canary judge on {total} stable/canary scenarios from real Azure LLM traces")
    print(f"(5-minute intervals of 30 s samples, judged after each of {INTERVALS} intervals)\n")
    print(
        f"{'regression':<14}{'size':<9}{'n':>5}{'<=1 int':>9}{'<=2 int':>9}{'<=3 int':>9}"
        f"{'mean int':>10}"
    )
    for metric, label, _ in REGRESSIONS:
        if metric == "healthy":
            continue
        runs = results[(metric, label)]
        first = [next((k + 1 for k, o in enumerate(r) if o == Outcome.FAILED), None) for r in runs]
        rec = [np.mean([f is not None and f <= k for f in first]) for k in (1, 2, 3)]
        found = [f for f in first if f is not None]
        mean_int = float(np.mean(found)) if found else float("nan")
        print(
            f"{metric:<14}{label:<9}{len(runs):5d}{rec[0]:9.1%}{rec[1]:9.1%}{rec[2]:9.1%}"
            f"{mean_int:10.2f}"
        )
    print("\nRecall within 2 intervals by canary traffic share:")
    for metric, label in (("error_rate", "+20pp"), ("latency_p95", "+25%")):
        cells = []
        for share in SHARES:
            runs = results[(f"{metric}@share={share}", label)]
            ok = np.mean([Outcome.FAILED in r[:2] for r in runs])
            cells.append(f"share {share:.0%}: {ok:.1%} (n={len(runs)})")
        print(f"  {metric} {label}: " + ", ".join(cells))
    healthy = results[("healthy", "none")]
    ff = np.mean([Outcome.FAILED in r for r in healthy])
    ok_last = np.mean([r[-1] == Outcome.SUCCESSFUL for r in healthy])
    inc_last = np.mean([r[-1] == Outcome.INCONCLUSIVE for r in healthy])
    print(
        f"\nHealthy pairs: n={len(healthy)}, false failures {ff:.1%} (target <= 1%), "
        f"Successful after 3 intervals {ok_last:.1%}, Inconclusive {inc_last:.1%}"
    )
    for share in SHARES:
        runs = results[(f"healthy@share={share}", "none")]
        print(
            f"  share {share:.0%}: false failures {np.mean([Outcome.FAILED in r for r in runs]):.1%}"
            f" (n={len(runs)})"
        )
    e20 = np.mean([Outcome.FAILED in r[:2] for r in results[("error_rate", "+20pp")]])
    l25 = np.mean([Outcome.FAILED in r[:2] for r in results[("latency_p95", "+25%")]])
    print(
        f"\nTarget: >= 99% recall within 2 intervals -> error +20pp {e20:.1%}, "
        f"p95 latency +25% {l25:.1%}; false failures {ff:.1%} (<= 1%)"
    )
    ms20, ms60 = timing()
    print(
        f"Speed: judging one metric {ms20:.2f} ms (20 vs 20 samples), "
        f"{ms60:.2f} ms (60 vs 60) (target <= 5 ms)"
    )
    print(f"bench wall time {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

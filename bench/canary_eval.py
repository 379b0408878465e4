"""Canary judge evaluation on scenarios built from real request traces.

Each scenario replays a window of an Azure LLM inference trace (real arrival times and token
counts, ``../shared/data/azure-llm``). Every request is routed to the canary with probability
``share`` (2% = low traffic, 10%, 50%) and to a baseline of the stable version with the same
probability (Kayenta's baseline-vs-canary setup), so both versions see the same real, bursty
load, including the trace's silent stretches (the ``code`` trace has gaps of up to 217 s). Per
version we measure:

* ``latency``: one sample per request, modelled from the request's own tokens (50 ms + 0.2 ms
  per context token + 30 ms per generated token, lognormal noise sd 0.15);
* ``error_rate``: ``(errors, requests)`` per 30-second bucket, each request failing with the
  baseline probability (0 = zero-error baseline, 1%, 3%); an empty bucket is ``(0, 0)``;
* ``saturation``: tokens per second per unit of traffic share per 30-second bucket (what a CPU
  gauge follows), with 5% gauge noise.

``--legacy`` judges the inputs the first version of this bench used instead: a p95 latency and
an error ratio per 30-second bucket (NaN when the bucket had no request), with the same judge.

Regressions are injected into the canary only. Error rate: ``+Npp`` is absolute (the canary's
rate is the baseline's plus N percentage points), ``+20%rel`` is relative (baseline x 1.2; not
run on the zero-error baseline, where it is no change). Latency: every canary request is slower
by the factor, so its p95 (and every other quantile) rises by it. Saturation: the canary's gauge
is scaled. Healthy controls inject nothing. The judge runs after each 5-minute analysis interval
on all samples so far (3 intervals). Reported: recall per regression and size within 1, 2, 3
intervals, by traffic share, false failures on healthy pairs (Failed at any interval), mean
intervals to detection, and the time to judge one metric.

Run from the repository root::

    .venv/bin/python bench/canary_eval.py            # per-request / count inputs
    .venv/bin/python bench/canary_eval.py --legacy   # per-bucket p95 and ratio inputs
"""

from __future__ import annotations

import argparse
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

from intelligence.canary import (  # noqa: E402
    JudgeConfig,
    MetricConfig,
    Outcome,
    judge,
    judge_metric,
)

DATA = ROOT.parent / "shared" / "data" / "azure-llm"
BUCKET_S = 30.0
INTERVAL_BUCKETS = 10  # 5-minute analysis interval
INTERVALS = 3
SHARES = (0.02, 0.1, 0.5)
BASE_ERRORS = (0.0, 0.01, 0.03)
HEALTHY_REPS = 24
REGRESSION_REPS = 6
CONFIG = JudgeConfig()

METRICS = [
    MetricConfig(
        "error_rate",
        kind="proportion",
        critical=True,
        tolerance=0.2,
        absolute_tolerance=0.01,
    ),
    MetricConfig("latency", tolerance=0.1, series=False),  # one sample per request
    MetricConfig("saturation", tolerance=0.1),
]
LEGACY_METRICS = [
    MetricConfig("error_rate", critical=True, tolerance=0.2, absolute_tolerance=0.01),
    MetricConfig("latency", tolerance=0.1),
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
MEANING = {
    "+2pp": "absolute: canary = baseline + 0.02 (0%->2%, 1%->3%, 3%->5%)",
    "+5pp": "absolute: canary = baseline + 0.05 (0%->5%, 1%->6%, 3%->8%)",
    "+20pp": "absolute: canary = baseline + 0.20 (0%->20%, 1%->21%, 3%->23%)",
    "+20%rel": "relative: canary = baseline x 1.2 (1%->1.2%, 3%->3.6%; not on 0%)",
}


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
    """Per-bucket metrics of one version: counts, saturation, and the legacy p95 / ratio."""
    p95 = np.full(n_buckets, np.nan)
    ratio = np.full(n_buckets, np.nan)
    counts = np.zeros((n_buckets, 2))
    sat = np.full(n_buckets, np.nan)
    order = np.argsort(bucket, kind="stable")
    b_sorted = bucket[order]
    edges = np.searchsorted(b_sorted, np.arange(n_buckets + 1))
    for b in range(n_buckets):
        idx = order[edges[b] : edges[b + 1]]
        if idx.size:
            p95[b] = np.quantile(latency[idx], 0.95)
            ratio[b] = failed[idx].mean()
        counts[b] = (failed[idx].sum(), idx.size)
        sat[b] = tokens[idx].sum() / (share * BUCKET_S) * (1.0 + rng.normal(0.0, 0.05))
    return {"latency_p95": p95, "error_ratio": ratio, "error_counts": counts, "saturation": sat}


def scenario(
    trace: Trace,
    *,
    start: float,
    share: float,
    base_error: float,
    metric: str,
    size: float,
    rng: np.random.Generator,
    legacy: bool,
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
    requests = {}
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
        requests[name] = (bucket[mask], latency[mask])
    if metric == "saturation":
        sides["canary"]["saturation"] = sides["canary"]["saturation"] * (1.0 + size)
    outcomes = []
    for k in range(1, INTERVALS + 1):
        upto = k * INTERVAL_BUCKETS
        samples = {}
        for name in ("stable", "canary"):
            b, lat = requests[name]
            sd = sides[name]
            if legacy:
                cur = {
                    "error_rate": sd["error_ratio"][:upto],
                    "latency": sd["latency_p95"][:upto],
                    "saturation": sd["saturation"][:upto],
                }
            else:
                cur = {
                    "error_rate": sd["error_counts"][:upto],
                    "latency": lat[b < upto],
                    "saturation": sd["saturation"][:upto],
                }
            for m, v in cur.items():
                samples.setdefault(m, []).append(v)
        pairs = {m: (v[0], v[1]) for m, v in samples.items()}
        outcomes.append(judge(pairs, LEGACY_METRICS if legacy else METRICS, config=CONFIG).outcome)
    return outcomes


def timing() -> list[tuple[str, float]]:
    """Mean milliseconds to judge one metric at the sample sizes this bench produces."""
    rng = np.random.default_rng(0)
    cases: list[tuple[str, object, object, MetricConfig]] = []
    for n in (60, 2500):
        cases.append(
            (
                f"continuous, {n} vs {n} samples",
                rng.lognormal(0.0, 0.6, n),
                rng.lognormal(0.0, 0.6, n),
                METRICS[1],
            )
        )
    counts = np.column_stack([rng.binomial(80, 0.01, 30), np.full(30, 80)])
    cases.append(("proportion, 30 vs 30 count rows", counts, counts[::-1], METRICS[0]))
    out = []
    for label, s, c, m in cases:
        judge_metric(s, c, m)  # type: ignore[arg-type]
        reps = 200
        t0 = time.perf_counter()
        for _ in range(reps):
            judge_metric(s, c, m)  # type: ignore[arg-type]
        out.append((label, (time.perf_counter() - t0) / reps * 1e3))
    return out


def first_failure(outcomes: list[Outcome]) -> int | None:
    """The 1-based interval of the first Failed verdict, or None."""
    return next((k + 1 for k, o in enumerate(outcomes) if o == Outcome.FAILED), None)


def main(argv: list[str] | None = None) -> int:
    """Build the scenarios, judge them and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--legacy", action="store_true", help="per-bucket p95 / ratio inputs")
    args = parser.parse_args(argv)
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
                    reps = HEALTHY_REPS if metric == "healthy" else REGRESSION_REPS
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
                            legacy=args.legacy,
                        )
                        results[(metric, label)].append(res)
                        results[(f"{metric}@share={share}", label)].append(res)
                        results[(f"{metric}@{trace.name}@share={share}", label)].append(res)
    elapsed = time.perf_counter() - t0
    total = sum(len(v) for k, v in results.items() if "@" not in k[0])
    inputs = (
        "legacy inputs: per-bucket p95 latency and error ratio"
        if args.legacy
        else "per-request latencies, (errors, requests) counts per bucket"
    )
    print(f"Canary judge on {total} stable/canary scenarios from real Azure LLM traces")
    print(f"({inputs}; alpha {CONFIG.alpha} per metric and look;")
    print(
        f" 5-minute intervals, judged after each of {INTERVALS} intervals on all samples so far)\n"
    )
    print("What the error-rate sizes mean:")
    for label, text in MEANING.items():
        print(f"  {label:<9}{text}")
    print()
    print(
        f"{'regression':<14}{'size':<9}{'n':>5}{'<=1 int':>9}{'<=2 int':>9}{'<=3 int':>9}"
        f"{'mean int':>10}"
    )
    for metric, label, _ in REGRESSIONS:
        if metric == "healthy":
            continue
        runs = results[(metric, label)]
        first = [first_failure(r) for r in runs]
        rec = [np.mean([f is not None and f <= k for f in first]) for k in (1, 2, 3)]
        found = [f for f in first if f is not None]
        mean_int = float(np.mean(found)) if found else float("nan")
        print(
            f"{metric:<14}{label:<9}{len(runs):5d}{rec[0]:9.1%}{rec[1]:9.1%}{rec[2]:9.1%}"
            f"{mean_int:10.2f}"
        )
    print("\nRecall within 2 intervals by trace and canary traffic share:")
    for metric, label in (
        ("error_rate", "+20pp"),
        ("error_rate", "+20%rel"),
        ("latency_p95", "+25%"),
    ):
        for trace in traces:
            cells = []
            for share in SHARES:
                runs = results[(f"{metric}@{trace.name}@share={share}", label)]
                ok = np.mean([Outcome.FAILED in r[:2] for r in runs])
                cells.append(f"{share:4.0%}: {ok:6.1%} (n={len(runs)})")
            print(f"  {metric:<12}{label:<8}{trace.name:<5} " + "  ".join(cells))
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
            f", Successful after 3 intervals {np.mean([r[-1] == Outcome.SUCCESSFUL for r in runs]):.1%}"
            f" (n={len(runs)})"
        )
    e20 = np.mean([Outcome.FAILED in r[:2] for r in results[("error_rate", "+20pp")]])
    l25 = np.mean([Outcome.FAILED in r[:2] for r in results[("latency_p95", "+25%")]])
    print(
        f"\nTarget: >= 99% recall within 2 intervals -> error +20pp {e20:.1%}, "
        f"p95 latency +25% {l25:.1%}; false failures {ff:.1%} (<= 1%)"
    )
    for label, ms in timing():
        print(f"Speed: judging one metric, {label}: {ms:.2f} ms (target <= 5 ms)")
    print(f"bench wall time {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

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
is scaled. ``latency_tail`` (drawn after the others from its own random stream, so every other
scenario is what it was before this family existed): only the canary's requests slower than the
window's p90 are slower by the factor, so its p95 rises by it and its median not at all (a slow
path). Healthy controls inject nothing.

The judge runs after each 5-minute analysis interval on all samples so far (3 looks). Its level:
1% false failures for the whole run (the issue's target), split evenly over the 3 metrics
(``alpha`` 0.0033 each) and over the looks by Pocock-like alpha spending. The judge must be able
to show +25% on latency and +20pp on errors at 99% power (``detectable``), else the metric is
Underpowered and the run Inconclusive, with the MDE in its evidence.

Reported: recall per regression and size within 1, 2, 3 intervals, overall and by traffic share,
mean intervals to detection; "powered": the share of runs whose MDE (the judge's own, at look 2)
was at most the injected regression, and the recall within 2 intervals among those; MDE on
healthy pairs by share; false failures on healthy pairs (Failed at any look) with the metric
that failed; Successful / Inconclusive (underpowered or not) after the last look; the time to
judge one metric.

Run from the repository root::

    .venv/bin/python bench/canary_eval.py            # per-request / count inputs
    .venv/bin/python bench/canary_eval.py --legacy   # per-bucket p95 and ratio inputs
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from intelligence.canary import (  # noqa: E402
    CanaryJudgement,
    JudgeConfig,
    MetricConfig,
    MetricKind,
    MetricResult,
    Outcome,
    Spending,
    judge,
    judge_metric,
)

DATA = Path(os.environ.get("XYNERGY_SHARED_DATA") or ROOT.parent / "shared" / "data") / "azure-llm"
BUCKET_S = 30.0
INTERVAL_BUCKETS = 10  # 5-minute analysis interval
INTERVALS = 3
SHARES = (0.02, 0.1, 0.5)
BASE_ERRORS = (0.0, 0.01, 0.03)
HEALTHY_REPS = 24
REGRESSION_REPS = 6
RUN_ALPHA = 0.01  # the "at most 1% false failures", over 3 metrics and 3 looks
POWER = 0.99  # the "99% recall"
CONFIG = JudgeConfig(
    alpha=RUN_ALPHA / 3, looks=INTERVALS, spending=Spending.POCOCK, power=POWER, tail_weight=0.2
)
TARGET_ERROR_PP = 0.20
TARGET_LATENCY = 0.25

METRICS = [
    MetricConfig(
        "error_rate",
        kind=MetricKind.PROPORTION,
        critical=True,
        tolerance=0.2,
        absolute_tolerance=0.01,
        detectable_absolute=TARGET_ERROR_PP,
    ),
    # one sample per request
    MetricConfig("latency", tolerance=0.1, series=False, detectable=TARGET_LATENCY),
    # one gauge value per bucket, the same buckets for both versions: compared pair by pair
    MetricConfig("saturation", tolerance=0.1, paired=True),
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
# Drawn after the others, from their own random stream, so that adding them left every other
# scenario exactly as it was.
TAIL_REGRESSIONS: list[tuple[str, str, float]] = [
    ("latency_tail", "+25%", 0.25),
    ("latency_tail", "+50%", 0.50),
]
FAMILIES = [(m, lab) for m, lab, _ in REGRESSIONS + TAIL_REGRESSIONS if m != "healthy"]
"""The injected regressions (metric, size label) the recall tables have a row for."""
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
) -> list[CanaryJudgement]:
    """Run one stable/canary scenario; the judgement after each interval."""
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
    if metric == "latency_tail" and n:
        slow = latency > np.quantile(latency, 0.9)
        latency = np.where(canary & slow, latency * (1.0 + size), latency)
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
        samples: dict[str, list[NDArray[np.float64]]] = {}
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
        metrics = LEGACY_METRICS if legacy else METRICS
        outcomes.append(judge(pairs, metrics, config=CONFIG, look=k))
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
    load = rng.lognormal(0.0, 1.0, 30)
    cases.append(
        (
            "paired series, 30 buckets",
            load * rng.lognormal(0.0, 0.1, 30),
            load * rng.lognormal(0.0, 0.1, 30),
            METRICS[2],
        )
    )
    out = []
    for label, s, c, m in cases:
        judge_metric(s, c, m, config=CONFIG)  # type: ignore[arg-type]
        reps = 200
        t0 = time.perf_counter()
        for _ in range(reps):
            judge_metric(s, c, m, config=CONFIG)  # type: ignore[arg-type]
        out.append((label, (time.perf_counter() - t0) / reps * 1e3))
    return out


def first_failure(outcomes: list[Outcome]) -> int | None:
    """The 1-based interval of the first Failed verdict, or None."""
    return next((k + 1 for k, o in enumerate(outcomes) if o == Outcome.FAILED), None)


@dataclass
class Run:
    """One scenario and the judgement after each interval."""

    trace: str
    share: float
    base: float
    metric: str
    label: str
    size: float
    judgements: list[CanaryJudgement]

    @property
    def outcomes(self) -> list[Outcome]:
        return [j.outcome for j in self.judgements]

    @property
    def first(self) -> int | None:
        return first_failure(self.outcomes)

    def injected(self, look: int) -> MetricResult:
        """The judge's result, at ``look``, for the metric the regression was injected in."""
        name = {"latency_p95": "latency", "latency_tail": "latency"}.get(self.metric, self.metric)
        return self.judgements[look - 1].metric(name)

    def powered(self, look: int = 2) -> bool | None:
        """Whether the judge's own MDE at ``look`` was at most the injected regression.

        ``None`` where the MDE does not describe the regression: healthy pairs, and tail-only
        latency regressions (the MDE is that of a shift of every request).
        """
        if self.metric in ("healthy", "latency_tail"):
            return None
        m = self.injected(look)
        if self.metric == "error_rate":
            target = self.base * -self.size if self.size < 0 else self.size
            return bool(m.mde <= target)
        return bool(m.mde_relative <= self.size)


def recall(runs: list[Run], within: int) -> float:
    return float(np.mean([r.first is not None and r.first <= within for r in runs]))


def pct(x: float) -> str:
    return "     -" if np.isnan(x) else f"{x:6.1%}"


def run_all(legacy: bool) -> list[Run]:
    """Every scenario, in a fixed order from fixed seeds."""
    traces = load_traces()
    span = INTERVAL_BUCKETS * INTERVALS * BUCKET_S
    runs: list[Run] = []
    for families, seed in ((REGRESSIONS, 20231116), (TAIL_REGRESSIONS, 20231117)):
        rng = np.random.default_rng(seed)
        for trace in traces:
            for share in SHARES:
                for base in BASE_ERRORS:
                    for metric, label, size in families:
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
                                legacy=legacy,
                            )
                            runs.append(Run(trace.name, share, base, metric, label, size, res))
    return runs


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--legacy", action="store_true", help="per-bucket p95 / ratio inputs")
    return parser.parse_args(argv)


def runs_of(runs: list[Run], metric: str, label: str, share: float | None = None) -> list[Run]:
    """The runs of one injected regression, at one traffic share (None: every share)."""
    return [
        r
        for r in runs
        if r.metric == metric and r.label == label and (share is None or r.share == share)
    ]


def false_failures(runs: list[Run]) -> float:
    """The share of runs with a Failed verdict at any look."""
    return float(np.mean([Outcome.FAILED in r.outcomes for r in runs]))


def print_setup(n_runs: int, *, legacy: bool) -> None:
    """What was judged and how: inputs, looks, alpha spending, MDE targets, error-rate sizes."""
    inputs = (
        "legacy inputs: per-bucket p95 latency and error ratio"
        if legacy
        else "per-request latencies, (errors, requests) counts per bucket"
    )
    print(f"Canary judge on {n_runs} stable/canary scenarios from real Azure LLM traces")
    print(f"({inputs}; 5-minute intervals, judged after each of {INTERVALS} on all samples so far;")
    print(
        f" alpha {CONFIG.alpha:.4f} per metric over the run, {CONFIG.spending} spending: looks at "
        + ", ".join(f"{CONFIG.alpha_at(k):.5f}" for k in range(1, INTERVALS + 1))
        + f"; {len(METRICS)} metrics -> run-level false failures <= {RUN_ALPHA:.0%};"
    )
    print(
        f" MDE at {CONFIG.power:.0%} power; latency must be able to show +{TARGET_LATENCY:.0%}, "
        f"errors +{TARGET_ERROR_PP:.0%} absolute, else Underpowered -> Inconclusive)\n"
    )
    print("What the error-rate sizes mean:")
    for label, text in MEANING.items():
        print(f"  {label:<9}{text}")
    print(
        "  (the bench's error_rate tolerance is +20% relative AND +1pp absolute: +20%rel is"
        " inside it, the judge is configured not to fail it)"
    )
    print()


def print_recall(runs: list[Run]) -> None:
    """Per regression: recall within 1, 2, 3 intervals, mean intervals to detection, and the
    share powered at look 2 with the recall among those."""
    print(
        f"{'regression':<14}{'size':<9}{'n':>5}{'<=1 int':>9}{'<=2 int':>9}{'<=3 int':>9}"
        f"{'mean int':>10}{'powered@2':>11}{'<=2 if powered':>16}"
    )
    for metric, label in FAMILIES:
        sel = runs_of(runs, metric, label)
        found = [r.first for r in sel if r.first is not None]
        mean_int = float(np.mean(found)) if found else float("nan")
        flags = [r.powered(2) for r in sel]
        if flags[0] is None:
            pw, rec_pw = "-", "-"
        else:
            pw_runs = [r for r, f in zip(sel, flags, strict=True) if f]
            pw = f"{len(pw_runs) / len(sel):.0%}"
            rec_pw = f"{recall(pw_runs, 2):.1%} (n={len(pw_runs)})" if pw_runs else "- (n=0)"
        print(
            f"{metric:<14}{label:<9}{len(sel):5d}{recall(sel, 1):9.1%}{recall(sel, 2):9.1%}"
            f"{recall(sel, 3):9.1%}{mean_int:10.2f}{pw:>11}{rec_pw:>16}"
        )


def print_recall_by_share(runs: list[Run]) -> None:
    print("\nRecall within 1 / 2 / 3 intervals by canary traffic share (both traces):")
    print(f"{'regression':<14}{'size':<9}" + "".join(f"{f'share {s:.0%}':>24}" for s in SHARES))
    for metric, label in FAMILIES:
        cells = []
        for share in SHARES:
            sel = runs_of(runs, metric, label, share)
            cells.append(
                f"{recall(sel, 1):5.0%} {recall(sel, 2):5.0%} {recall(sel, 3):5.0%} n={len(sel):<3d}"
            )
        print(f"{metric:<14}{label:<9}" + "".join(f"{c:>24}" for c in cells))


def print_recall_by_trace(runs: list[Run]) -> None:
    print("\nRecall within 2 intervals by trace and share (all / powered at look 2):")
    for metric, label in (
        ("error_rate", "+20pp"),
        ("error_rate", "+20%rel"),
        ("latency_p95", "+25%"),
    ):
        for trace in sorted({r.trace for r in runs}):
            cells = []
            for share in SHARES:
                sel = [r for r in runs_of(runs, metric, label, share) if r.trace == trace]
                pw_runs = [r for r in sel if r.powered(2)]
                pw = f"{recall(pw_runs, 2):.0%} of {len(pw_runs)}" if pw_runs else "- of 0"
                cells.append(f"{share:3.0%}: {recall(sel, 2):5.1%} (n={len(sel)}; {pw})")
            print(f"  {metric:<12}{label:<8}{trace:<5} " + "  ".join(cells))


def print_mde(healthy: list[Run]) -> None:
    """The judge's minimum detectable effects at look 2 on healthy pairs, by traffic share."""
    print("\nMinimum detectable effect at look 2 on healthy pairs (median [p10, p90]):")
    for share in SHARES:
        sel = [r for r in healthy if r.share == share]
        lat = np.array([r.judgements[1].metric("latency").mde_relative for r in sel])
        sat = np.array([r.judgements[1].metric("saturation").mde_relative for r in sel])
        cells = [
            f"latency x{np.median(lat):+.0%} [{np.quantile(lat, 0.1):+.0%}, "
            f"{np.quantile(lat, 0.9):+.0%}]",
            f"saturation x{np.median(sat):+.0%}",
        ]
        for base in BASE_ERRORS:
            err = np.array(
                [r.judgements[1].metric("error_rate").mde for r in sel if r.base == base]
            )
            cells.append(f"errors {base:.0%}: +{np.median(err) * 100:.1f}pp")
        print(f"  share {share:3.0%}: " + ", ".join(cells))


def print_healthy(healthy: list[Run]) -> None:
    """False failures on healthy pairs, with the metrics that failed, and the verdicts after
    the last look; overall and by traffic share."""
    print(
        f"\nHealthy pairs: n={len(healthy)}, false failures {false_failures(healthy):.1%}"
        " (target <= 1%)"
    )
    for subset in [None, *SHARES]:
        sel = [r for r in healthy if subset is None or r.share == subset]
        last = [r.judgements[-1] for r in sel]
        succ = np.mean([j.outcome == Outcome.SUCCESSFUL for j in last])
        under = np.mean(
            [j.outcome == Outcome.INCONCLUSIVE and "MetricUnderpowered" in j.reasons for j in last]
        )
        other = np.mean(
            [
                j.outcome == Outcome.INCONCLUSIVE and "MetricUnderpowered" not in j.reasons
                for j in last
            ]
        )
        name = "all" if subset is None else f"share {subset:.0%}"
        culprits = sorted(
            {
                m.name
                for r in sel
                for j in r.judgements
                if j.outcome == Outcome.FAILED
                for m in j.metrics
                if m.failed
            }
        )
        print(
            f"  {name:<10} n={len(sel):<4d} false failures {false_failures(sel):5.1%}"
            f" {'(' + ', '.join(culprits) + ')' if culprits else ''}; after 3 intervals:"
            f" Successful {succ:.1%}, Inconclusive underpowered {under:.1%}, other {other:.1%}"
        )


def print_targets(runs: list[Run], healthy: list[Run]) -> None:
    """The issue's targets: 99% recall within 2 intervals, at most 1% false failures."""
    for metric, label in (("error_rate", "+20pp"), ("latency_p95", "+25%")):
        sel = runs_of(runs, metric, label)
        pw_runs = [r for r in sel if r.powered(2)]
        print(
            f"\nTarget >= 99% within 2 intervals: {metric} {label}: {recall(sel, 2):.1%} of all"
            f" {len(sel)}; {recall(pw_runs, 2):.1%} of the {len(pw_runs)} the judge had the power"
            " for (its MDE at look 2 <= the regression)"
        )
    print(
        f"Target false failures <= 1%: {false_failures(healthy):.1%} of {len(healthy)} healthy pairs"
    )


def print_speed(elapsed: float) -> None:
    for label, ms in timing():
        print(f"Speed: judging one metric, {label}: {ms:.2f} ms (target <= 5 ms)")
    print(f"bench wall time {elapsed:.1f} s")


def main(argv: list[str] | None = None) -> int:
    """Build the scenarios, judge them and print the tables."""
    args = parse_args(argv)
    t0 = time.perf_counter()
    runs = run_all(args.legacy)
    elapsed = time.perf_counter() - t0
    healthy = [r for r in runs if r.metric == "healthy"]
    print_setup(len(runs), legacy=args.legacy)
    print_recall(runs)
    print_recall_by_share(runs)
    print_recall_by_trace(runs)
    print_mde(healthy)
    print_healthy(healthy)
    print_targets(runs, healthy)
    print_speed(elapsed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

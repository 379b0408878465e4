"""The canary judge: compares a canary's metrics with the stable version's and decides.

Modelled on Kayenta's NetflixACAJudge, with two kinds of metric.

``continuous`` metrics (latency, saturation) take raw samples, best one per request (a latency
per request, not a p95 per 30-second bucket: a bucket quantile of a handful of requests is mostly
noise, and it turns an empty bucket into a missing value):

1. clean: drop NaN / inf samples (``NaNsDropped``); too many of them (``TooManyNaNs``) or too
   few samples left (``FewSamples``) makes the metric ``NoData``;
2. test, two ways, combined by a weighted Holm procedure (shares ``1 - tail_weight`` and
   ``tail_weight`` of the look's level) so that the metric's false-failure rate stays at it:

   * shift: a Mann-Whitney U test of canary against stable, one-sided in the metric's bad
     direction (two-sided for ``either``), and the Hodges-Lehmann estimate of the shift (median
     of all pairwise differences) with its distribution-free confidence interval;
   * tail: how many samples of each version exceed the pooled sample's ``tail_quantile`` (the
     p95 by default; fall below its mirror image for a ``decrease`` metric), tested with the
     same one-sided Fisher mid-p test as a proportion. It is a permutation test (the threshold
     depends on the pooled sample only), and it sees a regression of the slowest requests that
     hardly moves the ranks of the others (a slow path, a timeout), which the U test misses;
     its effect is the relative change of the ``tail_quantile`` itself;

3. classify: the metric is ``High`` (or ``Low``) when a test rejects and its effect is in the
   metric's bad direction and larger than its tolerance (relative to the stable median, or
   absolute when the stable median is zero: ``ZeroBaseline``); ``TailRegression`` says the tail
   test made the call; otherwise ``Pass``;
4. watch the canary's own series with anomaly detectors (robust z-score and CUSUM, primed on the
   stable samples): a passing metric whose canary series is persistently anomalous becomes
   ``Marginal`` (``AnomalousCanarySeries``), which costs half its weight.

A ``paired`` continuous metric (a gauge scraped per bucket, the same buckets for both versions)
replaces step 2 by a bucket-by-bucket comparison (:func:`paired_test`: Wilcoxon's signed-rank
test on the symmetric relative difference of each bucket): both versions ride the same swings of
load, and comparing them within a bucket takes those swings out of the comparison.

``proportion`` metrics (error rate) take counts, ``(events, trials)`` per bucket or in total,
because a rate is a binomial proportion: a bucket with no requests carries no information (it
is not a missing value), and a bucket with 3 requests weighs less than one with 300. The test is
the one-sided Fisher exact test on the pooled 2x2 table (mid-p, which keeps its size close to
the nominal level instead of far below it); the effect is the difference of the two rates with
Newcombe's hybrid-score interval, and the tolerance applies to that difference (``ZeroBaseline``
when the stable version had no events).

Looks. A rollout judges after each of ``looks`` analysis intervals on all samples so far
(``judge(..., look=k)``). ``alpha`` is one metric's false-failure budget for the whole run; an
alpha-spending function (Lan-DeMets: Pocock-like ``alpha * ln(1 + (e - 1) t)``, O'Brien-Fleming-
like ``2 - 2 Phi(z_(alpha/2) / sqrt(t))``, or uniform) at the planned information fraction
``t = k / looks`` says how much of it may be spent by look ``k``, and look ``k`` tests at the
increment. By the union bound the chance of failing a healthy canary on one metric at any look
is at most ``alpha`` whatever the traffic of each interval (conservative: the looks share their
samples); a run of ``M`` metrics fails a healthy canary with chance at most ``M * alpha``. With
``looks=1`` (the default) every call tests at ``alpha``.

Power. A test that does not reject is not evidence of no regression when the samples are few.
Every result carries the minimum detectable effect (MDE): the smallest regression the test of
this look would catch with probability ``power`` (Noether's formula for the U test, evaluated
on the stable sample's own distribution of pairwise differences, on the log scale when the
metric is positive: a relative shift of every sample; the pooled-variance normal approximation
for two proportions). A metric with a ``detectable`` (relative) or ``detectable_absolute``
target whose MDE exceeds it cannot pass: it is ``Underpowered`` (``InsufficientPower``), and so
is the run (Inconclusive, ``MetricUnderpowered``) unless something failed.

The run: a failing critical metric fails the run on its own (``CriticalMetricFailed``); otherwise
the weighted share of passing metrics (0-100) is compared with ``pass_score`` (Successful) and
``marginal_score`` (below it: Failed; in between: Inconclusive). Every verdict carries its
numbers (``MetricResult.evidence()``), the level it was tested at and its MDE included. Pure:
numpy and scipy only, no I/O, no clock reads.

Layout: ``types`` (the enums, configuration and results), ``samples`` (cleaning, counts,
sorted-sample quantiles), ``significance`` (the statistical tests and estimates), ``power``
(MDE and the power guard), ``anomalies`` (the canary series' detectors), ``verdicts`` (the
shared guards and classification), ``continuous`` and ``proportion`` (one metric of each
kind), ``judge`` (``judge_metric`` and the run).
"""

from intelligence.canary.judge import judge, judge_metric
from intelligence.canary.significance import hodges_lehmann, mann_whitney_p, paired_test
from intelligence.canary.types import (
    CanaryJudgement,
    Direction,
    JudgeConfig,
    MetricConfig,
    MetricKind,
    MetricResult,
    MetricVerdict,
    Outcome,
    Spending,
)

__all__ = [
    "CanaryJudgement",
    "Direction",
    "JudgeConfig",
    "MetricConfig",
    "MetricKind",
    "MetricResult",
    "MetricVerdict",
    "Outcome",
    "Spending",
    "hodges_lehmann",
    "judge",
    "judge_metric",
    "mann_whitney_p",
    "paired_test",
]

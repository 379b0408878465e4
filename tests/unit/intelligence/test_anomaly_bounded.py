"""Bounded state: windows, reservoirs, the context table and the gate do not grow with the stream."""

from __future__ import annotations

import bisect
import math
import random
import tracemalloc

import numpy as np
import pytest
from numpy.typing import NDArray

from intelligence.anomaly import TailProbabilityDetector
from intelligence.anomaly._windows import SortedReservoir, SortedWindow
from intelligence.anomaly.context import ContextModel, Quantiser
from intelligence.anomaly.tail_probability import TailCalibrator


def wandering(n: int, seed: int = 3) -> NDArray[np.float64]:
    """A random walk with noise and spikes: new levels and contexts keep appearing."""
    rng = np.random.default_rng(seed)
    x = np.cumsum(rng.normal(0.0, 1.0, n)) + rng.normal(0.0, 3.0, n)
    x[rng.random(n) < 0.002] += 40.0
    return x


def small_detector() -> TailProbabilityDetector:
    return TailProbabilityDetector(
        window=100, calibration_window=300, context_max_contexts=200, rate_window=80
    )


def test_detector_state_stops_growing_with_the_stream() -> None:
    x = wandering(12_000)
    det = small_detector()
    sizes = []
    for lo, hi in ((0, 3_000), (3_000, 6_000), (6_000, 12_000)):
        for v in x[lo:hi]:
            det.update(float(v))
        sizes.append(det.state_size())
    assert sizes[1] == sizes[2]  # full: every table at its cap, however long the stream
    final = sizes[2]
    assert all(final[f"calibrator.{k}"] <= 300 for k in ("value", "level", "context"))
    assert final["value_window"] == 100
    assert 0 < final["context_table"] <= 200
    assert final["gate"] <= 4 * 80
    assert final["warmup"] == 0


def test_sorted_window_holds_exactly_the_last_values_in_order() -> None:
    rng = random.Random(5)
    win = SortedWindow(50)
    seen: list[float] = []
    for _ in range(500):
        v = rng.choice([rng.random(), 0.5, float("nan")])  # ties and NaNs too
        win.append(v)
        if v == v:
            seen.append(v)
        last = sorted(seen[-50:])
        assert len(win) == len(last)
        if not last:
            continue
        assert win.median() == pytest.approx(float(np.median(last)))
        assert win.at(0.9) == last[int(0.9 * (len(last) - 1))]
        assert win.count_at_least(0.5) == len(last) - bisect.bisect_left(last, 0.5)
        for q in (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0, rng.random()):  # numpy default, exactly
            assert win.quantile(q) == float(np.quantile(last, q))


def test_reservoir_is_bounded_uniform_over_the_whole_stream_and_deterministic() -> None:
    a, b = SortedReservoir(500), SortedReservoir(500)
    stream = np.concatenate([np.zeros(20_000), np.ones(20_000)])  # old and new halves
    for v in stream:
        a.append(float(v))
        b.append(float(v))
    assert len(a) == 500
    assert a.seen == 40_000
    assert 0.4 < a.fraction_at_least(1.0) < 0.6  # the first half is still represented
    assert [a.at(q) for q in (0.1, 0.5, 0.9)] == [b.at(q) for q in (0.1, 0.5, 0.9)]


def test_reservoir_keeps_exactly_the_sample_of_vitters_algorithm_r() -> None:
    """The inlined draw must pick the same members as Algorithm R with ``randrange``."""
    capacity = 64
    reservoir = SortedReservoir(capacity, seed=7)
    members: list[float] = []
    rng = random.Random(7)
    for n, v in enumerate(np.random.default_rng(5).normal(size=5_000).tolist(), start=1):
        reservoir.append(v)
        if n <= capacity:
            members.append(v)
        elif (j := rng.randrange(n)) < capacity:
            members[j] = v
    assert [reservoir.at(i / (capacity - 1)) for i in range(capacity)] == sorted(members)


def test_a_full_reservoir_holds_its_sample_as_doubles_not_float_objects() -> None:
    """Each calibrator keeps 2,000 values: as C doubles (two arrays, 16 bytes a value) where
    lists of Python floats took about 42 (two 8-byte pointers and a 24-byte object)."""
    rng = random.Random(3)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        reservoir = SortedReservoir(2000)
        for _ in range(10_000):
            reservoir.append(rng.random() * 100.0)  # a new float object each time
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(reservoir) == 2000
    assert held < 24 * 2000  # arrays, their spare room and the seeded generator


def _tail_surprise(sample: list[float], value: float, cal: TailCalibrator) -> float:
    """The calibrator's formula on a sorted sample, read afresh (the reference)."""
    n = len(sample)
    if n < cal.min_history or not math.isfinite(value):
        return 0.0
    q_lo = sample[int(cal.lower * (n - 1))]
    if value <= q_lo:
        return 0.0
    q_hi = sample[int(cal.upper * (n - 1))]
    beta = max((q_hi - q_lo) / math.log(2.0), 1e-12, 1e-3 * abs(q_hi), cal.min_scale)
    log_p = -math.log10(1.0 - cal.lower) + (value - q_lo) / beta / math.log(10.0)
    larger = (n - bisect.bisect_left(sample, value)) / n
    return min(log_p, -math.log10(larger)) if larger > 0.0 else log_p


def test_the_calibrators_tail_follows_every_change_of_its_sample() -> None:
    """The tail's start and scale are read once per change of the sample, not once per value:
    every surprise must still be the one read afresh, while the sample fills, as members are
    replaced, after a clear, and at the edges (NaN, infinities, the tail's start)."""
    rng = np.random.default_rng(8)
    cal = TailCalibrator(min_history=50, capacity=400, min_scale=0.25)
    for round_ in range(2):
        for v in np.concatenate([rng.exponential(1.0, 3_000), rng.exponential(3.0, 3_000)]):
            cal.add(float(v))
            sample = list(cal._hist.sorted_values())
            probes = (float(v), 0.0, 2.0, 9.0, 40.0, math.nan, math.inf, -math.inf)
            for probe in (*probes, sample[int(cal.lower * (len(sample) - 1))]):
                assert cal.surprise(probe) == _tail_surprise(sample, probe, cal), (round_, probe)
        cal.clear()
        assert cal.surprise(50.0) == 0.0  # short history again


def test_calibrator_on_a_reservoir_keeps_the_tail_of_a_long_stream() -> None:
    rng = np.random.default_rng(4)
    cal = TailCalibrator(min_history=50, capacity=1000)
    for v in rng.exponential(1.0, 50_000):
        cal.add(float(v))
    assert len(cal) == 1000
    # exponential(1): P(X > 7) = 10**-3.04; the fitted tail must say about the same
    assert cal.surprise(7.0) == pytest.approx(7.0 / np.log(10.0), abs=0.5)


def test_context_table_and_alphabet_are_bounded() -> None:
    model = ContextModel(order=3, max_contexts=64)
    q = Quantiser(np.arange(100.0), bins=8)
    rng = np.random.default_rng(2)
    for v in rng.uniform(-1e4, 1e4, 5_000):
        model.learn(q.symbol(float(v)))
    assert len(model) == 64
    assert {q.symbol(-1e9), q.symbol(1e9)} == {-8, 16}
    with pytest.raises(ValueError, match="max_contexts"):
        ContextModel(order=4, max_contexts=3)

"""Context novelty: the n-gram model, the quantiser, and TailProbabilityDetector with the feature."""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from intelligence.anomaly import AnomalyDetector, Severity, TailProbabilityDetector
from intelligence.anomaly.context import ContextModel, ContextNovelty, Quantiser
from intelligence.anomaly.tail_probability import TailCalibrator

PERIOD = 100
WINDOW = 300


def seasonal(n: int = 1500, seed: int = 7) -> NDArray[np.float64]:
    """A clean daily-like pattern: sine of amplitude 10 plus unit Gaussian noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 50.0 + 10.0 * np.sin(2 * np.pi * t / PERIOD) + rng.normal(0.0, 1.0, n)


def smooth(n: int = 1500, seed: int = 5) -> NDArray[np.float64]:
    """A slowly wandering level (AR(1), phi 0.97) with no season."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, 1.0, n)
    x = np.zeros(n)
    for i in range(1, n):
        x[i] = 0.97 * x[i - 1] + noise[i]
    return 50.0 + x


def jumpy(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """``x`` with points 1000-1099 jumping at random inside its usual range (45-57)."""
    y = x.copy()
    y[1000:1100] = np.random.default_rng(1).uniform(45.0, 57.0, 100)
    return y


def detector(**kw: Any) -> TailProbabilityDetector:
    """The NAB bench setting, at the unit tests' window."""
    return TailProbabilityDetector(
        window=WINDOW, alarm_level=2.5 + math.log10(4 / 3), context_order=4, escalation=1.0, **kw
    )


def alarms(det: TailProbabilityDetector, x: NDArray[np.float64]) -> list[int]:
    return [i for i, v in enumerate(x) if det.update(v).evidence.get("alarm", 0.0) > 0.0]


def test_model_predicts_a_repeating_pattern_and_is_surprised_by_a_new_symbol() -> None:
    model = ContextModel(order=3)
    pattern = [0, 1, 2, 3, 2, 1]
    for s in pattern * 50:
        model.learn(s)
    assert model.code_length(0) < 0.2  # after ...2, 1 the pattern continues with 0
    assert model.code_length(2) > 4.0  # seen symbol, never in this context
    assert model.code_length(9) > model.code_length(2)  # never seen at all


def test_model_probabilities_sum_to_one_over_the_alphabet_and_a_new_symbol() -> None:
    model = ContextModel(order=2)
    rng = np.random.default_rng(3)
    for s in rng.integers(0, 5, 200):
        model.learn(int(s))
    total = sum(model.probability(s) for s in range(5)) + model.probability(99)
    assert total == pytest.approx(1.0)


class TextbookModel:
    """Witten-Bell n-gram in its plain form (tuple contexts, a dict of counts each, LRU table)."""

    def __init__(self, order: int, max_contexts: int) -> None:
        self.order, self.max_contexts = order, max_contexts
        self.table: OrderedDict[tuple[int, ...], dict[int | None, int]] = OrderedDict()
        self.alphabet: set[int] = set()
        self.history: list[int] = []

    def contexts(self) -> list[tuple[int, ...]]:
        h = self.history[max(0, len(self.history) - self.order) :]
        return [tuple(h[len(h) - d :]) if d else () for d in range(len(h) + 1)]

    def code_length(self, symbol: int) -> float:
        p = 1.0 / (len(self.alphabet) + 1)
        for ctx in self.contexts():
            counts = self.table.get(ctx)
            if counts is None:
                break
            distinct = len(counts) - 1
            p = (counts.get(symbol, 0) + distinct * p) / (counts[None] + distinct)
        return -math.log2(p)

    def learn(self, symbol: int) -> None:
        self.alphabet.add(symbol)
        for ctx in self.contexts():
            if ctx not in self.table:
                self.table[ctx] = {None: 0}
                if len(self.table) > self.max_contexts:
                    self.table.popitem(last=False)
            self.table.move_to_end(ctx)
            counts = self.table[ctx]
            counts[None] += 1
            counts[symbol] = counts.get(symbol, 0) + 1
        self.history.append(symbol)


@pytest.mark.parametrize(("order", "max_contexts"), [(0, 1), (2, 16), (4, 64), (4, 4096)])
def test_compact_model_codes_every_symbol_as_the_textbook_model_does(
    order: int, max_contexts: int
) -> None:
    """Integer context keys, list rows and the one-pass update change no bit, evictions included."""
    rng = np.random.default_rng(order + max_contexts)
    # a few symbols most of the time, bursts of rarer ones: contexts are reused and evicted
    symbols = np.where(rng.random(3000) < 0.9, rng.integers(0, 4, 3000), rng.integers(-9, 30, 3000))
    compact, textbook = (
        ContextModel(order, max_contexts=max_contexts),
        TextbookModel(order, max_contexts),
    )
    for s in symbols.tolist():
        expected = textbook.code_length(s)
        assert compact.code_length(s) == pytest.approx(expected, rel=1e-12)
        assert compact.update(s) == pytest.approx(expected, rel=1e-12)
        textbook.learn(s)
    assert len(compact) == len(textbook.table)


def test_model_refuses_more_symbols_than_it_was_sized_for() -> None:
    model = ContextModel(order=2, max_symbols=3)
    for s in (5, -1, 7, 5):
        model.learn(s)
    with pytest.raises(ValueError, match="max_symbols=3"):
        model.learn(8)
    assert model.code_length(5) < model.code_length(8)  # the refused symbol was not learnt
    with pytest.raises(ValueError, match="max_symbols"):
        ContextModel(max_symbols=0)


def test_quantiser_extends_its_grid_beyond_the_reference() -> None:
    q = Quantiser(np.linspace(0.0, 100.0, 1001), bins=9)
    assert q.symbol(5.0) == 0
    assert q.symbol(94.9) == 8
    assert q.symbol(-5.0) == -1
    assert q.symbol(1000.0) == 18  # far values share the last cell: a bounded alphabet
    with pytest.raises(ValueError, match="finite"):
        Quantiser([float("nan")])


def test_novelty_rises_when_a_smooth_series_starts_jumping_within_its_range() -> None:
    x = jumpy(smooth())
    nov = ContextNovelty(x[:WINDOW], order=4, bins=8, short_window=6)
    bits = np.array([nov.update(float(v)) for v in x])
    assert np.isnan(bits[:5]).all()
    assert np.max(bits[1000:1030]) > np.percentile(bits[WINDOW:1000], 99)


def test_calibrator_min_scale_ignores_tiny_excesses() -> None:
    flat, floored = TailCalibrator(min_history=10), TailCalibrator(min_history=10, min_scale=1.0)
    for v in np.linspace(0.0, 0.01, 100):
        flat.add(float(v))
        floored.add(float(v))
    assert flat.surprise(0.5) > 10.0
    assert floored.surprise(0.5) < 1.5


def test_is_an_anomaly_detector() -> None:
    assert isinstance(detector(), AnomalyDetector)


def test_quiet_on_clean_seasonal_series() -> None:
    x = seasonal()
    fired = [i for i in alarms(detector(), x) if i >= WINDOW]
    assert len(fired) <= 3
    result = detector().score(x)
    assert np.sum(result.severities[WINDOW:] >= Severity.CRITICAL) == 0


def test_spike_raises_an_alarm_at_once() -> None:
    x = seasonal()
    x[1000] += 15.0
    fired = [i for i in alarms(detector(), x) if i >= WINDOW]
    assert 1000 in fired
    assert len(fired) <= 4
    assert detector().score(x).severities[1000] >= Severity.CRITICAL


def test_level_shift_is_flagged_quickly() -> None:
    x = seasonal()
    x[1000:] += 5.0
    fired = [i for i in alarms(detector(), x) if i >= WINDOW]
    assert any(1000 <= i <= 1010 for i in fired)


def test_jumpy_segment_in_range_is_flagged_by_the_context_feature() -> None:
    x = jumpy(smooth())
    det = detector()
    evidence = [det.update(v).evidence for v in x]
    hits = [i for i, e in enumerate(evidence) if e.get("alarm", 0.0) > 0.0 and i >= 1000]
    assert hits
    assert hits[0] < 1010
    first = evidence[hits[0]]
    assert first["context_surprise"] >= 2.5
    assert max(first["value_surprise"], first["level_surprise"]) < 2.5  # only context sees it


def test_escalation_lets_a_much_rarer_event_through_the_refractory_period() -> None:
    x = seasonal()
    x[1000] += 6.0  # scores about 4: a later score of 5 and more is ten times rarer
    x[1020] += 40.0
    with_escalation = [i for i in alarms(detector(), x) if i >= 1000]
    assert 1000 in with_escalation
    assert 1020 in with_escalation
    x[1000] += 2.0  # scores about 5: within the escalation of the ceiling (6), nothing is rarer
    assert 1020 not in alarms(detector(), x)
    assert 1020 in alarms(detector(max_surprise=None), x)
    without = TailProbabilityDetector(
        window=WINDOW, context_order=4, alarm_level=2.6, escalation=None
    )
    assert 1020 not in alarms(without, x)


def test_causal_scores_do_not_change_when_future_points_change() -> None:
    x = seasonal(1200)
    y = x.copy()
    y[1000:] = 200.0 - y[1000:]  # a different future
    a = detector().score(x).scores
    b = detector().score(y).scores
    np.testing.assert_array_equal(a[:1000], b[:1000])
    assert not np.array_equal(a[1000:], b[1000:])


def test_deterministic_batch_and_streaming_agree_and_reset_forgets() -> None:
    x = seasonal(900)
    det = detector()
    batch = det.score(x).scores
    np.testing.assert_array_equal(batch, detector().score(x).scores)
    stream = np.array([det.update(v).score for v in x])
    np.testing.assert_array_equal(batch, stream)
    det.reset()
    again = np.array([det.update(v).score for v in x])
    np.testing.assert_array_equal(batch, again)


def test_context_is_on_by_default_can_be_turned_off_and_is_validated() -> None:
    x = seasonal(600)
    plain = TailProbabilityDetector(window=WINDOW, context_order=None)
    default = TailProbabilityDetector(window=WINDOW)
    for v in x:
        off, on = plain.update(v).evidence, default.update(v).evidence
    assert off["context_surprise"] == 0.0
    assert math.isfinite(on["context_bits"])
    with pytest.raises(ValueError, match="context_order"):
        TailProbabilityDetector(context_order=-1)
    with pytest.raises(ValueError, match="escalation"):
        TailProbabilityDetector(escalation=0.0)

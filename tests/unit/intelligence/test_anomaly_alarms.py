"""False-alarm control: the gate's rate discount, lone-evidence penalty, quiet rule; refractory;
and the season test that needs several cycles."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.typing import NDArray

from intelligence.anomaly import TailProbabilityDetector
from intelligence.anomaly.alarms import GateScorer, Refractory
from intelligence.anomaly.season import detect_season
from intelligence.anomaly.tail_probability import FEATURES


def test_a_feature_that_keeps_firing_is_discounted_by_its_own_rate() -> None:
    gate = GateScorer(features=2, rate_window=10, rate_level=2.0)
    first = gate.update([3.0, 0.0])
    for _ in range(3):
        gate.update([3.0, 0.0])
    assert first == 3.0
    assert gate.update([3.0, 0.0]) == pytest.approx(3.0 - math.log10(5.0))
    assert gate.update([0.0, 3.0]) == 3.0  # the other feature has no history of firing
    for _ in range(10):
        gate.update([0.0, 0.0])
    assert gate.update([3.0, 0.0]) == 3.0  # the window has passed


def test_weak_evidence_alone_is_penalised_agreement_is_not() -> None:
    gate = GateScorer(features=3, lone_penalty=1.0, support_level=1.3)
    assert gate.update([3.0, 0.5, 0.0]) == 2.0
    assert gate.update([3.0, 0.0, 1.5]) == 3.0


def test_the_default_gates_shortcut_scores_as_the_general_loop_does() -> None:
    """Without a rate discount or silent features the gate takes the two largest surprises in
    one sort; a discount that never applies (rate level unreachable) runs the general loop."""
    kw = {"features": 5, "lone_penalty": 0.5, "quiet_window": 3, "quiet_penalty": 1.0}
    shortcut = GateScorer(**kw)  # type: ignore[arg-type]
    loop = GateScorer(rate_window=4, rate_level=math.inf, **kw)  # type: ignore[arg-type]
    rng = np.random.default_rng(11)
    for _ in range(2000):
        # ties, zeros, NaN and weak values, as feature surprises come
        row = np.round(rng.exponential(1.0, 5) * rng.integers(0, 2, 5), 1)
        row[rng.random(5) < 0.1] = np.nan
        assert shortcut.update(row.tolist()) == loop.update(row.tolist())


def test_a_score_after_a_loud_lead_in_is_penalised() -> None:
    gate = GateScorer(features=1, quiet_window=5, quiet_level=2.0, quiet_penalty=1.0)
    assert gate.update([2.5]) == 2.5
    assert gate.update([3.0]) == 2.0  # 2.5 one point before broke the quiet
    for _ in range(5):
        gate.update([0.0])
    assert gate.update([3.0]) == 3.0


def test_refractory_silences_echoes_but_not_escalation() -> None:
    ref = Refractory(refractory=10, escalation=1.0)
    assert ref.check(100, 3.0)
    assert not ref.check(105, 3.5)
    assert ref.check(106, 4.0)
    assert ref.check(117, 2.0)
    with pytest.raises(ValueError, match="escalation"):
        Refractory(refractory=1, escalation=0.0)


def test_an_escalation_gap_makes_a_growing_shift_alarm_once() -> None:
    """Scores 3, 4.5, 6 on three points in a row (a level shift entering the recent mean):
    without a gap each step escalates; with a gap of 3 only the first alarms, and a later,
    larger score past the gap still breaks through."""
    steps = [(100, 3.0), (101, 4.5), (102, 6.0)]
    at_once = Refractory(refractory=50, escalation=1.0)
    assert [at_once.check(t, s) for t, s in steps] == [True, True, True]
    gapped = Refractory(refractory=50, escalation=1.0, escalation_gap=3)
    assert [gapped.check(t, s) for t, s in steps] == [True, False, False]
    assert gapped.check(103, 4.0)  # 3 points after the alarm, 1.0 above its score
    with pytest.raises(ValueError, match="escalation_gap"):
        Refractory(refractory=1, escalation=1.0, escalation_gap=-1)


def test_the_detector_passes_its_escalation_gap_to_the_refractory_rule() -> None:
    x = np.zeros(700)
    x += np.random.default_rng(4).normal(0.0, 1.0, x.size)
    x[600:] += np.linspace(8.0, 30.0, 100)  # a shift that keeps growing
    alarms = {}
    for gap in (0, 20):
        # uncapped: the growing shift's scores pass 6, where the default ceiling stops them
        det = TailProbabilityDetector(window=200, escalation_gap=gap, max_surprise=None)
        fired = [i for i, v in enumerate(x) if det.update(float(v)).evidence.get("alarm", 0.0)]
        alarms[gap] = [i for i in fired if i >= 600]
    assert alarms[0][0] == alarms[20][0]  # the first alarm is not delayed
    assert len(alarms[20]) < len(alarms[0])
    assert all(b - a >= 20 for a, b in zip(alarms[20], alarms[20][1:], strict=False))


def test_detector_score_is_the_gate_over_its_own_feature_surprises() -> None:
    rng = np.random.default_rng(8)
    x = rng.normal(0.0, 1.0, 1200)
    x[900] += 9.0
    kw = {"rate_window": 50, "lone_penalty": 0.5, "quiet_window": 20, "quiet_penalty": 1.0}
    det = TailProbabilityDetector(window=200, **kw)  # type: ignore[arg-type]
    gate = GateScorer(features=len(FEATURES), **kw)  # type: ignore[arg-type]
    for v in x:
        d = det.update(float(v))
        if math.isnan(d.score):
            continue
        assert d.score == gate.update([d.evidence[f"{k}_surprise"] for k in FEATURES])


def ar2(n: int, seed: int = 0) -> NDArray[np.float64]:
    """Noise through an AR(2) filter with a damped 10-point oscillation: no real season."""
    rng = np.random.default_rng(seed)
    e = rng.normal(0.0, 1.0, n)
    x = np.zeros(n)
    a1, a2 = 2 * 0.8 * math.cos(2 * math.pi / 10), -(0.8**2)
    for i in range(2, n):
        x[i] = a1 * x[i - 1] + a2 * x[i - 2] + e[i]
    return x


def sine(n: int, period: int, seed: int = 1) -> NDArray[np.float64]:
    rng = np.random.default_rng(seed)
    return 10.0 * np.sin(2 * np.pi * np.arange(n) / period) + rng.normal(0.0, 1.0, n)


def test_season_needs_several_cycles_and_repeats_at_multiples() -> None:
    assert detect_season(sine(250, 100), min_acf=0.5)[0] is None  # 2.5 cycles
    period = detect_season(sine(500, 100), min_acf=0.5)[0]
    assert period is not None
    assert abs(period - 100) <= 2
    found, _acf = detect_season(ar2(750), min_acf=0.3)
    assert found is None  # a damped oscillation does not line up at twice its lag
    with pytest.raises(ValueError, match="min_cycles"):
        detect_season(sine(500, 100), min_acf=0.5, min_cycles=1)


def test_detector_trusts_a_long_period_only_once_the_stream_holds_enough_cycles() -> None:
    det = TailProbabilityDetector(window=150, season_min_cycles=4)
    x = sine(1400, 100)
    found_at = None
    for i, v in enumerate(x):
        det.update(float(v))
        if found_at is None and det.period is not None:
            found_at = i
    assert det.period is not None
    assert abs(det.period - 100) <= 2
    assert found_at is not None
    assert 400 <= found_at < 1000

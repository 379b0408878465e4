"""The adaptive-resonance detector (sixth NAB round): alarms on kinds of window never seen."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.typing import NDArray

from intelligence.anomaly import AdaptiveResonanceDetector, AnomalyDetector
from intelligence.anomaly.adaptive_resonance import haar

pytestmark = pytest.mark.unit

PERIOD = 40
PROBATION = 600


def square_wave(n: int, seed: int = 1, noise: float = 0.1) -> NDArray[np.float64]:
    """A noisy square wave between 0 and 10 (period 40)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return np.where(t % PERIOD < PERIOD // 2, 10.0, 0.0) + rng.normal(0.0, noise, n)


def alarms(x: NDArray[np.float64], **kw: object) -> NDArray[np.intp]:
    det = AdaptiveResonanceDetector(probation=PROBATION, **kw)  # type: ignore[arg-type]
    return np.flatnonzero(det.score(x).scores > 0.0)


def test_haar_is_orthonormal_and_orders_coarse_to_fine() -> None:
    rng = np.random.default_rng(0)
    v = rng.normal(size=8).tolist()
    h = haar(v)
    assert math.isclose(sum(a * a for a in h), sum(a * a for a in v))
    assert math.isclose(h[0], sum(v) / math.sqrt(8))  # the approximation
    step = haar([1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    # the coarsest detail of a half-and-half step, second half less first (Wavelets.jl's sign)
    assert math.isclose(step[1], -4.0 / math.sqrt(8))
    assert all(abs(c) < 1e-12 for c in step[2:])
    assert haar([0.0, 1.0]) == [1.0 / math.sqrt(2.0)] * 2


def test_a_repeating_pattern_never_alarms_once_learned() -> None:
    # a calibrated tail would alarm a fixed share of these points for ever
    assert alarms(square_wave(12_000)).size == 0


def test_a_new_shape_in_range_alarms_inside_it() -> None:
    x = square_wave(8_000)
    t = np.arange(6_000, 6_200)
    x[t] = 10.0 * np.abs((t % PERIOD) / PERIOD * 2.0 - 1.0)  # triangles in the same range
    found = alarms(x)
    assert ((found >= 6_000) & (found < 6_200)).any(), found
    assert not (found > 6_400).any(), found


def test_a_spike_beyond_the_range_alarms_and_the_model_survives_the_wider_scale() -> None:
    x = square_wave(10_000)
    x[7_000] = 60.0  # six times the range seen so far: the scale widens
    det = AdaptiveResonanceDetector(probation=PROBATION)
    found = np.flatnonzero(det.score(x[:7_100]).scores > 0.0)
    assert ((found >= 7_000) & (found < 7_020)).any(), found
    for v in x[:7_100]:
        det.update(float(v))
    after_spike = det.categories
    later = [det.update(float(v)).score for v in x[7_100:]]
    # the boxes were re-expressed in the wider scale, so the old pattern is still known: no
    # alarm and no new box (with the old boxes left in the old scale it learns 14 more)
    assert max(later) == 0.0
    assert det.categories == after_spike


def test_a_rebuild_relearns_the_remembered_windows_in_the_wider_scale() -> None:
    x = square_wave(10_000)
    x[7_000] = 60.0
    counts = {}
    for growth in (None, 0.1):
        det = AdaptiveResonanceDetector(probation=PROBATION, relearn_growth=growth)
        out = [det.update(float(v)).score for v in x[:6_990]]
        before = det.categories
        out += [det.update(float(v)).score for v in x[6_990:7_010]]
        counts[growth] = (before, det.categories)
        assert max(out[7_000:7_010]) > 0.0  # the spike alarms either way
        assert det.state_size()["memory"] == (0 if growth is None else det.warmup_steps)
    # re-expressed boxes are kept (and the spike adds some); a rebuild starts the table again
    # from one warm-up of remembered values, which the 6x coarser scale codes with fewer boxes
    assert counts[None][1] > counts[None][0]
    assert counts[0.1][1] < counts[0.1][0]


def test_a_rebuild_keeps_streaming_equal_to_batch() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=6_000).cumsum()  # a random walk widens its range again and again
    det = AdaptiveResonanceDetector(probation=PROBATION, relearn_growth=0.1, relearn_memory=2.0)
    batch = det.score(x).scores
    streamed = np.array([det.update(float(v)).score for v in x])
    np.testing.assert_array_equal(batch, streamed)
    assert det.state_size()["memory"] == 2 * det.warmup_steps


def test_clipping_to_the_warmup_range_is_the_other_mode() -> None:
    x = square_wave(10_000)
    x[7_000:7_010] = 60.0
    det = AdaptiveResonanceDetector(probation=PROBATION, range_mode="warmup")
    det.score(x[:6_000])  # score() leaves the streaming state alone
    for v in x:
        det.update(float(v))
    assert det._hi == pytest.approx(float(x[:PROBATION].max()))  # never widened


def test_streaming_equals_batch_and_is_causal() -> None:
    x = square_wave(3_000)
    x[2_000:2_100] += 4.0
    det = AdaptiveResonanceDetector(probation=PROBATION)
    batch = det.score(x).scores
    streamed = np.array([det.update(float(v)).score for v in x])
    np.testing.assert_array_equal(batch, streamed)
    prefix = AdaptiveResonanceDetector(probation=PROBATION).score(x[:2_050]).scores
    np.testing.assert_array_equal(prefix, batch[:2_050])


def test_nothing_alarms_during_the_warmup_and_alarms_carry_their_evidence() -> None:
    x = square_wave(4_000)
    x[2_500:2_540] = 5.0
    det = AdaptiveResonanceDetector(probation=PROBATION)
    out = [det.update(float(v)) for v in x]
    assert all(d.score == 0.0 for d in out[:PROBATION])
    fired = [d for d in out if d.score > 0.0]
    assert fired
    for d in fired:
        assert 0.0 < d.score <= 1.0
        assert d.evidence["alarm"] == 1.0
        assert d.evidence["match"] < d.evidence["vigilance_lower"]


def test_state_is_bounded_on_noise_that_never_repeats() -> None:
    rng = np.random.default_rng(3)
    det = AdaptiveResonanceDetector(probation=240, max_categories=64)
    for v in rng.normal(size=20_000).cumsum():  # a random walk: new windows all the time
        det.update(float(v))
    first = det.state_size()
    for v in rng.normal(size=20_000).cumsum():
        det.update(float(v))
    assert det.categories == 64
    assert det.state_size() == first
    assert first["median"] == 2000
    assert first["categories"] == 64


@pytest.mark.parametrize(
    ("kw", "name"),
    [
        ({"probation": 8}, "probation"),
        ({"probation": 600, "window": 6}, "window"),
        ({"probation": 600, "levels": 1}, "levels"),
        ({"probation": 600, "snap": 1.0}, "snap"),
        ({"probation": 600, "initial_vigilance": 1.0}, "initial_vigilance"),
        ({"probation": 600, "max_categories": 1}, "max_categories"),
        ({"probation": 600, "range_mode": "file"}, "range_mode"),
        ({"probation": 600, "windows_per_probation": 1}, "windows_per_probation"),
        ({"probation": 600, "relearn_growth": -0.1}, "relearn_growth"),
        ({"probation": 600, "relearn_growth": 0.1, "range_mode": "warmup"}, "relearn_growth"),
        ({"probation": 600, "relearn_memory": 0.0}, "relearn_memory"),
    ],
)
def test_bad_parameters_name_themselves(kw: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        AdaptiveResonanceDetector(**kw)  # type: ignore[arg-type]


def test_a_flat_series_divides_by_nothing_and_a_step_out_of_it_alarms() -> None:
    x = np.full(3_000, 5.0)
    assert alarms(x).size == 0
    x[2_000:] = 6.0  # the range was a point: the first widening maps everything to 0
    found = alarms(x)
    assert found.size, found
    assert 2_000 <= found[0] < 2_020, found


def test_it_satisfies_the_detector_protocol() -> None:
    assert isinstance(AdaptiveResonanceDetector(probation=PROBATION), AnomalyDetector)

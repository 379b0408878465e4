"""TailProbabilityDetector's feature options (third round, off by default): each does what it says."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy.stats import genpareto

from intelligence.anomaly import TailProbabilityDetector
from intelligence.anomaly._recent import RecentMean
from intelligence.anomaly.alarms import GateScorer
from intelligence.anomaly.calibration import GPDTailCalibrator, TailCalibrator, fit_gpd_pwm
from intelligence.anomaly.tail_probability import FeatureOptions

pytestmark = pytest.mark.unit


def evidence(det: TailProbabilityDetector, x: NDArray[np.float64]) -> list[Mapping[str, float]]:
    return [det.update(float(v)).evidence for v in x]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"value_mode": "ratio"}, "value_mode"),
        ({"value_step_window": -1}, "value_step_window"),
        ({"context_relative_window": -3}, "context_relative_window"),
        ({"calibration_min_history": 1}, "calibration_min_history"),
        ({"calibration_quantiles": (0.95, 0.9)}, "calibration_quantiles"),
        ({"context_min_scale": -1.0}, "context_min_scale"),
        ({"calibration_tail": "weibull"}, "calibration_tail"),
        ({"scored_features": ("value", "trend")}, "scored_features"),
    ],
)
def test_bad_feature_options_are_refused_by_name(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        FeatureOptions(**kwargs)  # type: ignore[arg-type]


def test_calibration_window_must_hold_the_minimum_history() -> None:
    opts = FeatureOptions(calibration_min_history=500)
    with pytest.raises(ValueError, match="calibration_window"):
        TailProbabilityDetector(calibration_window=400, options=opts)


def det(**options: object) -> TailProbabilityDetector:
    """A window-300 detector with these feature options."""
    return TailProbabilityDetector(window=300, options=FeatureOptions(**options))  # type: ignore[arg-type]


def test_two_scale_z_discounts_a_bump_inside_a_noisy_stretch() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(0.0, 1.0, 600)
    x[560:] = rng.normal(0.0, 5.0, 40)  # a noisy stretch at the end of a quiet window
    x[-1] = 8.0
    plain = evidence(TailProbabilityDetector(window=300), x)[-1]
    two = evidence(det(value_step_window=30), x)[-1]
    assert plain["value_z"] > 5.0  # against the quiet window's scale: a large z
    assert two["value_z"] < 0.5 * plain["value_z"]  # against the recent step scale: ordinary
    quiet = rng.normal(0.0, 1.0, 600)
    quiet[-1] = 8.0  # no noisy stretch: the window's scale is the larger, z unchanged
    a = evidence(TailProbabilityDetector(window=300), quiet)[-1]["value_z"]
    b = evidence(det(value_step_window=30), quiet)[-1]["value_z"]
    assert a == pytest.approx(b)


def test_difference_mode_sees_a_level_shift_once_not_for_the_whole_new_level() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(0.0, 1.0, 700)
    x[500:] += 20.0
    plain = evidence(TailProbabilityDetector(window=300), x)
    diff = evidence(det(value_mode="diff"), x)
    smaller = evidence(det(value_mode="min"), x)
    assert diff[500]["value_z"] > 10.0
    assert plain[520]["value_z"] > 10.0
    assert diff[520]["value_z"] < 5.0
    assert smaller[520]["value_z"] == pytest.approx(
        min(plain[520]["value_z"], diff[520]["value_z"])
    )


def test_calibration_min_history_holds_surprises_back() -> None:
    rng = np.random.default_rng(6)
    x = rng.normal(0.0, 1.0, 800)
    x[200] += 30.0
    x[700] += 30.0
    ev = evidence(
        TailProbabilityDetector(window=100, options=FeatureOptions(calibration_min_history=300)), x
    )
    assert ev[200]["value_z"] > 10.0
    assert ev[200]["value_surprise"] == 0.0
    assert ev[700]["value_surprise"] > 2.0
    early = evidence(TailProbabilityDetector(window=100), x)
    assert early[200]["value_surprise"] > 2.0  # the default calibrates after 50 values


def test_context_relative_to_its_recent_mean_changes_only_the_context_surprise() -> None:
    rng = np.random.default_rng(7)
    x = np.sin(np.arange(1500) / 5.0) + rng.normal(0.0, 0.2, 1500)
    x[1000:1100] = rng.normal(0.0, 1.0, 100)  # the rhythm breaks for a while
    plain = evidence(TailProbabilityDetector(window=300), x)
    rel = evidence(det(context_relative_window=100), x)
    for key in ("context_bits", "value_surprise", "level_surprise"):
        np.testing.assert_array_equal([e[key] for e in plain], [e[key] for e in rel])
    late = slice(1050, 1100)  # inside the broken stretch: novelty is no longer news
    assert sum(e["context_surprise"] for e in rel[late]) < sum(
        e["context_surprise"] for e in plain[late]
    )


def test_feature_options_keep_the_detector_causal_and_bounded() -> None:
    rng = np.random.default_rng(8)
    x = np.cumsum(rng.normal(0.0, 1.0, 4000))
    opts = FeatureOptions(value_mode="min", value_step_window=20, context_relative_window=50)
    short = TailProbabilityDetector(window=100, options=opts).score(x[:2500]).scores
    stream = TailProbabilityDetector(window=100, options=opts)
    full = [stream.update(float(v)).score for v in x]
    np.testing.assert_array_equal(short, full[:2500])
    sizes = stream.state_size()
    assert sizes["diff_window"] == 100
    assert sizes["step_window"] == 20
    assert sizes["context_recent"] == 50


def test_recent_mean_is_the_mean_of_the_last_values() -> None:
    rm = RecentMean(3)
    assert np.isnan(rm.mean())
    for v in (1.0, 2.0, float("nan"), 3.0, 10.0):
        rm.append(v)
    assert len(rm) == 3
    assert rm.mean() == pytest.approx(5.0)
    with pytest.raises(ValueError, match="capacity"):
        RecentMean(0)


def test_silent_features_support_and_break_the_quiet_but_never_carry_the_score() -> None:
    gate = GateScorer(features=2, silent=(1,), quiet_window=3, quiet_penalty=1.0)
    assert gate.update([0.0, 5.0]) == 0.0  # a silent feature alone scores nothing...
    assert gate.update([2.5, 0.0]) == pytest.approx(1.5)  # ...but broke the quiet: 2.5 - 1
    plain = GateScorer(features=2, lone_penalty=1.0)
    silent = GateScorer(features=2, silent=(1,), lone_penalty=1.0)
    assert plain.update([2.5, 5.0]) == 5.0
    assert silent.update([2.5, 5.0]) == 2.5  # supported by the silent feature: no lone penalty
    with pytest.raises(ValueError, match="silent"):
        GateScorer(features=2, silent=(2,))


def test_scored_features_leave_the_others_as_context() -> None:
    rng = np.random.default_rng(9)
    x = rng.normal(0.0, 1.0, 900)
    x[600:] += 3.0  # a level shift: the level feature carries it
    everything = evidence(TailProbabilityDetector(window=300), x)
    no_level = evidence(det(scored_features=("value", "seasonal", "context")), x)
    np.testing.assert_array_equal(
        [e["level_surprise"] for e in everything], [e["level_surprise"] for e in no_level]
    )
    others = [
        max(e["value_surprise"], e["seasonal_surprise"], e["context_surprise"]) for e in no_level
    ]
    np.testing.assert_allclose([e["score"] for e in no_level], np.nan_to_num(others))
    carried = [a["score"] - b["score"] for a, b in zip(everything, no_level, strict=True)]
    assert max(carried) > 1.0  # points the level feature carried score less without it


def test_pwm_fit_recovers_a_generalised_pareto_tail() -> None:
    sample = np.sort(genpareto.rvs(0.3, scale=1.5, size=4000, random_state=1))
    sigma, xi = fit_gpd_pwm(sample)
    assert sigma == pytest.approx(1.5, rel=0.1)
    assert xi == pytest.approx(0.3, abs=0.08)
    sigma, xi = fit_gpd_pwm(np.sort(np.random.default_rng(2).exponential(2.0, 4000)))
    assert sigma == pytest.approx(2.0, rel=0.1)
    assert xi == pytest.approx(0.0, abs=0.08)


def test_gpd_tail_is_less_surprised_than_the_exponential_by_a_heavy_tail() -> None:
    x = np.abs(np.random.default_rng(3).standard_t(2, 3000))
    gpd, expo = GPDTailCalibrator(), TailCalibrator()
    for v in x:
        gpd.add(float(v))
        expo.add(float(v))
    beyond = 3.0 * float(x.max())  # past every value seen: only the tail model speaks
    assert gpd.surprise(beyond) < expo.surprise(beyond) - 1.0
    assert gpd.surprise(float(np.median(x))) == 0.0  # below the tail: no surprise
    gpd.clear()
    assert gpd.surprise(beyond) == 0.0  # no history, no evidence
    with pytest.raises(ValueError, match="refit_every"):
        GPDTailCalibrator(refit_every=0)


def test_a_wider_context_tail_scale_only_lowers_context_surprises() -> None:
    rng = np.random.default_rng(10)
    x = np.sin(np.arange(1500) / 5.0) + rng.normal(0.0, 0.3, 1500)
    x[1200:1230] = rng.normal(0.0, 1.0, 30)
    one = evidence(TailProbabilityDetector(window=300), x)
    two = evidence(det(context_min_scale=4.0), x)
    a = np.array([e["context_surprise"] for e in one])
    b = np.array([e["context_surprise"] for e in two])
    assert np.all(b <= a + 1e-12)
    assert np.any(b < a - 0.5)

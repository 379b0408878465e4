"""Dispersion headroom: margin for per-second noise seen only through 15 s means."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from statistics import NormalDist
from typing import Any, cast

import numpy as np
import pytest
from scaling_support import FREE, params_with

from intelligence.scaling import (
    DispersionComposition,
    Observation,
    Reason,
    RiskTail,
    ScalingParams,
    ScalingState,
    decide,
)
from intelligence.scaling.dispersion import (
    Dispersion,
    dispersion_level,
    observe_dispersion,
    quadrature_level,
    relative_sigmas,
)

pytestmark = pytest.mark.unit

NOW = 1_700_000_000.0
SYNC = 5  # decisions every 5 s on the mean of the 15 s before, as the replay bench does
WINDOW = 15


params = params_with(
    target_per_instance=2.0,
    capacity_per_instance=2.0 / 0.7,
    max_instances=10_000,
    behavior=FREE,
    startup_seconds=30.0,
    horizon_seconds=15.0,
    dispersion_sigmas=2.0,
    dispersion_window_seconds=15.0,
    dispersion_sample_seconds=None,
    dispersion_risk_ratio=None,  # a fixed z, uncapped: the mechanism on its own
    dispersion_max_headroom=None,
)


def replay(spec: ScalingParams, per_second: np.ndarray, *, through_json: bool = False) -> dict:
    """Decide every SYNC s on the 15 s mean of `per_second`; instances are ready at once.
    Returns the desired counts, the share of seconds above capacity, the last decision and the
    serialised state sizes."""
    cumsum = np.concatenate([[0.0], np.cumsum(per_second)])
    state, current, served = ScalingState(), 10, np.zeros(per_second.size)
    desired, sizes, d = [], [], None
    for t in range(WINDOW, per_second.size, SYNC):
        metric = float(cumsum[t] - cumsum[t - WINDOW]) / WINDOW
        d = decide(Observation(NOW + t, current, metric), params=spec, state=state)
        state, current = d.state, d.desired
        if through_json:
            state = ScalingState.from_dict(json.loads(json.dumps(state.to_dict())))
        served[t : t + SYNC] = current * (spec.capacity_per_instance or 0.0)
        desired.append(current)
        sizes.append(len(json.dumps(state.to_dict())))
    short = np.mean(per_second[WINDOW:] > served[WINDOW:])
    return {"desired": np.array(desired), "short": float(short), "last": d, "sizes": sizes}


def poisson_counts(rate: float, seconds: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).poisson(rate, seconds).astype(float)


def test_poisson_counts_seen_through_15s_means_get_margin_and_fewer_short_seconds() -> None:
    load = poisson_counts(20.0, 7200)
    with_it = replay(params(dispersion_sigmas=3.0), load)
    without = replay(params(dispersion_sigmas=None), load)
    evidence = with_it["last"].evidence
    assert 0.6 < evidence["dispersionIndex"] < 1.6  # Poisson: variance / mean = 1
    assert with_it["desired"][-200:].mean() > without["desired"][-200:].mean() + 0.5
    assert with_it["short"] < 0.5 * without["short"]
    assert with_it["last"].reason in (Reason.DISPERSION_HEADROOM, Reason.WITHIN_TOLERANCE)
    assert "dispersion headroom" in with_it["last"].message


def test_overdispersed_counts_read_a_larger_index() -> None:
    rng = np.random.default_rng(3)
    load = rng.negative_binomial(5, 5 / (5 + 20.0), 7200).astype(float)  # mean 20, var 100
    evidence = replay(params(), load)["last"].evidence
    assert 3.0 < evidence["dispersionIndex"] < 8.0


@pytest.mark.parametrize("sample", [None, 5.0])
def test_poisson_counts_read_index_one_from_overlapping_or_separate_means(
    sample: float | None,
) -> None:
    load = poisson_counts(30.0, 7200, seed=11)
    evidence = replay(params(dispersion_sample_seconds=sample), load)["last"].evidence
    assert 0.6 < evidence["dispersionIndex"] < 1.6


def test_a_long_half_life_is_not_held_by_the_first_products() -> None:
    """Regression: the average of the products started at the first product, which kept a
    third of the weight after an hour of 5 s samples at half-life 1800 s."""
    load = poisson_counts(30.0, 3600, seed=17)
    spec = params(dispersion_sample_seconds=5.0, dispersion_half_life_seconds=1800.0)
    assert 0.6 < replay(spec, load)["last"].evidence["dispersionIndex"] < 1.6
    rng = np.random.default_rng(19)
    means = np.concatenate([[0.0, 0.0, 30.0, 90.0], 90.0 + rng.normal(0.0, 1.0, 720)])
    disp = Dispersion()
    for i, m in enumerate(means):
        disp = observe_dispersion(disp, now=NOW + 5 * i, load=float(m), sample=5, half_life=1800)
    d = np.diff(means, 2)
    products = d[1:] * d[:-1]
    a = 1 - 0.5 ** (5 / 1800)
    weights = a * (1 - a) ** np.arange(products.size)[::-1]
    expected = (
        -float(products @ weights / weights.sum()) * 15 * 15 / (2 * 5) / cast(float, disp.mean)
    )
    assert disp.index(15, 5) == pytest.approx(max(0.0, expected), rel=1e-6)
    assert cast(float, disp.index(15, 5)) > 0  # the ramp's first products no longer hide the noise


def test_overlapping_means_tell_noise_smooth_at_one_second_from_per_second_noise() -> None:
    """A 10 s moving average of bursty counts is noisy at 15 s but smooth at 1 s: separate
    15 s means read it as large per-second noise, 15 s means every 5 s do not."""
    rng = np.random.default_rng(13)
    counts = rng.negative_binomial(1, 1 / (1 + 20.0), 7200).astype(float)
    smooth = np.convolve(counts, np.ones(10) / 10.0)[: counts.size]
    separate = replay(params(), smooth)["last"].evidence["dispersionIndex"]
    overlapping = replay(params(dispersion_sample_seconds=5.0), smooth)
    assert separate > 5.0
    assert overlapping["last"].evidence["dispersionIndex"] < 0.25 * separate
    raw = replay(params(dispersion_sample_seconds=5.0), counts)["last"].evidence
    assert raw["dispersionIndex"] > 5.0  # the same counts unsmoothed: per-second noise


@pytest.mark.parametrize("sample", [None, 5.0])
@pytest.mark.parametrize("shape", ["sine", "interpolated"])
def test_a_smooth_series_gets_no_margin(shape: str, sample: float | None) -> None:
    t = np.arange(14_400.0)
    if shape == "sine":  # a cycle of 48 min, as nyc_taxi compressed 30x
        load = 20.0 + 10.0 * np.sin(2 * np.pi * t / 2880.0)
    else:  # knots every 60 s, linearly interpolated, as the NAB traces compressed 30x
        knots = np.random.default_rng(5).uniform(10.0, 30.0, t.size // 60 + 1)
        load = np.interp(t, np.arange(knots.size) * 60.0, knots)
    with_it = replay(params(dispersion_sigmas=3.0, dispersion_sample_seconds=sample), load)
    without = replay(params(dispersion_sigmas=None), load)
    extra = with_it["desired"].sum() / without["desired"].sum() - 1
    assert extra < 0.01
    assert with_it["last"].evidence["dispersionIndex"] < 0.05


def test_state_is_bounded_and_round_trips_through_json() -> None:
    load = poisson_counts(20.0, 20_000, seed=7)
    direct = replay(params(), load)
    via_json = replay(params(), load, through_json=True)
    np.testing.assert_array_equal(direct["desired"], via_json["desired"])
    sizes = direct["sizes"]
    assert max(sizes[-1000:]) <= max(sizes[:1000]) + 16  # nothing grows with history
    disp = direct["last"].state.dispersion
    assert Dispersion.from_dict(json.loads(json.dumps(disp.to_dict()))) == disp


def test_means_are_sampled_once_per_window_and_a_gap_restarts_the_chain() -> None:
    disp = Dispersion()
    for i, value in enumerate([10.0, 12.0, 9.0]):
        disp = observe_dispersion(disp, now=NOW + 15 * i, load=value, sample=15, half_life=900)
    assert disp.d1 == pytest.approx(9.0 - 2 * 12.0 + 10.0)
    same = observe_dispersion(disp, now=NOW + 35, load=50.0, sample=15, half_life=900)
    assert same == disp  # less than a window after the last sample: not a new sample
    after_gap = observe_dispersion(disp, now=NOW + 200, load=11.0, sample=15, half_life=900)
    assert (after_gap.m2, after_gap.d1, after_gap.products) == (None, None, disp.products)


def test_off_without_a_metric_window_and_in_reactive_mode() -> None:
    load = poisson_counts(20.0, 3600)
    for spec in (
        params(dispersion_window_seconds=None),
        params(dispersion_sigmas=None),
        params(predictive=False),
    ):
        last = replay(spec, load)["last"]
        assert "dispersionIndex" not in last.evidence
        assert last.state.dispersion == Dispersion()


def test_the_defaults_act_on_15s_means_every_5s_and_not_on_decisions_15s_apart() -> None:
    defaults = ScalingParams(target_per_instance=1.0)
    assert (defaults.dispersion_sigmas, defaults.dispersion_sample_seconds) == (3.0, 5.0)
    assert (defaults.dispersion_risk_ratio, defaults.dispersion_max_headroom) == (0.4, 0.3)
    load = poisson_counts(20.0, 3600)
    spec = params(dispersion_sigmas=3.0, dispersion_sample_seconds=5.0)
    assert 0.6 < replay(spec, load)["last"].evidence["dispersionIndex"] < 1.6
    cumsum = np.concatenate([[0.0], np.cumsum(load)])
    state = ScalingState()
    for t in range(WINDOW, load.size, 15):  # a decision every 15 s: no two samples in a row
        metric = float(cumsum[t] - cumsum[t - WINDOW]) / WINDOW
        d = decide(Observation(NOW + t, 10, metric), params=spec, state=state)
        state = d.state
    assert "dispersionIndex" not in d.evidence


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("dispersion_sigmas", 0.0),
        ("dispersion_sigmas", float("nan")),
        ("dispersion_half_life_seconds", 0.0),
        ("dispersion_window_seconds", -15.0),
        ("dispersion_sample_seconds", 0.0),
        ("dispersion_sample_seconds", 4.0),
        ("dispersion_sample_seconds", 30.0),
    ],
)
def test_bad_dispersion_parameters_name_the_field(field: str, value: float) -> None:
    changes: dict[str, Any] = {field: value}
    with pytest.raises(ValueError, match=field):
        replace(params(), **changes)


def test_recent_means_in_one_decision_read_what_a_decision_at_each_would_read() -> None:
    """A controller that decides every 30 s passes the 5 s means since its last decision
    (`Observation.recent_means`): the estimate is the one a decision every 5 s reaches."""
    spec = params(dispersion_sample_seconds=5.0)
    load = poisson_counts(20.0, 3600, seed=23)
    cumsum = np.concatenate([[0.0], np.cumsum(load)])
    means = [(NOW + t, float(cumsum[t] - cumsum[t - WINDOW]) / WINDOW)
             for t in range(WINDOW, load.size, 5)]  # fmt: skip
    means = means[: len(means) // 6 * 6]
    every = ScalingState()
    for at, m in means:
        every = decide(Observation(at, 10, m), params=spec, state=every).state
    batched, last = ScalingState(), 0
    for i in range(5, len(means), 6):  # every sixth mean is a decision, the five before it passed
        at, m = means[i]
        observed = Observation(at, 10, m, recent_means=tuple(means[last:i]))
        batched = decide(observed, params=spec, state=batched).state
        last = i + 1
    assert batched.dispersion.products == every.dispersion.products > 600
    assert batched.dispersion.index(15, 5) == pytest.approx(every.dispersion.index(15, 5))
    alone = ScalingState()  # without them, 30 s apart: a gap of more than two samples each time
    for i in range(5, len(means), 6):
        at, m = means[i]
        alone = decide(Observation(at, 10, m), params=spec, state=alone).state
    assert alone.dispersion.products == 0


def test_for_the_current_load_every_composition_is_the_same() -> None:
    load = poisson_counts(20.0, 3600)
    runs = [
        replay(params(dispersion_sigmas=3.0, dispersion_composition=c), load)["desired"]
        for c in DispersionComposition
    ]
    for other in runs[1:]:
        np.testing.assert_array_equal(runs[0], other)


@pytest.mark.parametrize("composition", list(DispersionComposition))
def test_the_envelope_level_and_the_noise_compose_as_stated(
    composition: DispersionComposition,
) -> None:
    load = poisson_counts(20.0, 3600)
    spec = params(dispersion_sigmas=3.0, dispersion_composition=composition)
    state = replay(spec, load)["last"].state  # an estimated index
    t = np.arange(0.0, 3600.0, 5.0) + NOW
    bursty = np.where(np.arange(t.size) % 40 < 4, 60.0, 20.0)  # bursts: an envelope above 20
    d = decide(
        Observation(NOW + 3600.0, 10, 20.0, recent_load=(t, bursty)), params=spec, state=state
    )
    ev = d.evidence
    z, index = 3.0, ev["dispersionIndex"]
    level, mean = ev["burstLevel"], ev["burstMean"]
    assert level > mean > 0.0
    assert index > 0.0
    expected = {
        DispersionComposition.DEMAND: dispersion_level(ev["burstDemand"], index=index, sigmas=z),
        DispersionComposition.LEVEL: dispersion_level(level, index=index, sigmas=z),
        DispersionComposition.QUADRATURE: mean
        + math.sqrt((level - mean) ** 2 + z * z * mean * index),
    }[composition]
    assert ev["dispersionLevel"] == pytest.approx(expected)
    # the envelope's margin and the noise: stacked > in quadrature > the margin alone
    assert (
        dispersion_level(level, index=index, sigmas=z)
        > quadrature_level(mean, level - mean, index=index, sigmas=z)
        > level
    )


@pytest.mark.parametrize(("rate", "index"), [(2.6, 1.0), (20.0, 4.0), (50.0, 4.4)])
@pytest.mark.parametrize("ratio", [0.1, 0.4])
def test_the_relative_z_is_exceeded_ratio_times_as_often_as_the_targets_margin(
    rate: float, index: float, ratio: float
) -> None:
    """Under the normal approximation the level at the returned z is exceeded `ratio` times
    as often as the level the target provisions (`rate x capacity / target`)."""
    spare = 1 / 0.7 - 1
    z = relative_sigmas(rate, index=index, spare=spare, risk_ratio=ratio, sigmas=10.0)
    sd = math.sqrt(rate * index)
    target_tail = 1 - NormalDist(rate, sd).cdf(rate * (1 + spare))
    assert 1 - NormalDist(rate, sd).cdf(rate + z * sd) == pytest.approx(ratio * target_tail)


def test_the_relative_z_is_small_where_the_target_covers_little_and_capped_by_sigmas() -> None:
    spare = 1 / 0.7 - 1
    z_at = {
        rate: relative_sigmas(rate, index=1.0, spare=spare, risk_ratio=0.4, sigmas=3.0)
        for rate in (0.7, 2.6, 17.0, 50.0)
    }
    assert z_at[0.7] < z_at[2.6] < z_at[17.0] < 3.0  # priced: a low rate buys less
    assert z_at[50.0] == 3.0  # the target's margin covers 3 sigmas already: nothing to add
    assert relative_sigmas(20.0, index=0.0, spare=spare, risk_ratio=0.4, sigmas=3.0) == 3.0
    # without a capacity the target leaves no margin: z = Q^-1(ratio / 2)
    no_spare = relative_sigmas(20.0, index=1.0, spare=0.0, risk_ratio=0.4, sigmas=3.0)
    assert no_spare == pytest.approx(-NormalDist().inv_cdf(0.2))


def test_a_risk_ratio_spends_less_at_low_rates_than_fixed_sigmas_and_still_cuts_misses() -> None:
    load = poisson_counts(2.6, 7200, seed=5)
    fixed = replay(params(dispersion_sigmas=3.0), load)
    priced = replay(params(dispersion_sigmas=3.0, dispersion_risk_ratio=0.4), load)
    none = replay(params(dispersion_sigmas=None), load)
    assert none["desired"].mean() < priced["desired"].mean() < fixed["desired"].mean()
    assert priced["short"] < 0.75 * none["short"]
    assert priced["last"].evidence["dispersionSigmas"] < 3.0


def test_the_headroom_cap_bounds_what_the_noise_adds_to_the_modes_demand() -> None:
    load = poisson_counts(2.6, 7200, seed=5)
    capped = replay(params(dispersion_sigmas=3.0, dispersion_max_headroom=0.25), load)
    fixed = replay(params(dispersion_sigmas=3.0), load)
    last = capped["last"]
    assert last.evidence["dispersionDemand"] == pytest.approx(1.25 * 2.6, rel=0.35)
    assert "capped at 25% above the mode's demand" in last.message
    assert capped["desired"].mean() < 0.8 * fixed["desired"].mean()
    # one decision by hand: the demand is at most 1.25 x the current load
    state = last.state
    d = decide(Observation(NOW + 7200.0, 10, 2.0), params=params(
        dispersion_sigmas=3.0, dispersion_max_headroom=0.25), state=state)  # fmt: skip
    assert d.evidence["dispersionDemand"] == pytest.approx(2.5)
    assert d.desired == math.ceil(2.5 / 2.0)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("dispersion_risk_ratio", 0.0),
        ("dispersion_risk_ratio", 1.0),
        ("dispersion_max_headroom", -0.1),
        ("dispersion_max_headroom", float("inf")),
    ],
)
def test_bad_pricing_parameters_name_the_field(field: str, value: float) -> None:
    changes: dict[str, Any] = {field: value}
    with pytest.raises(ValueError, match=field):
        replace(params(), **changes)


@pytest.mark.parametrize("covered_rate", [0.0, 2.6, 20.0])
def test_a_cantelli_priced_z_meets_the_bound_and_buys_more_sigmas_than_the_normal(
    covered_rate: float,
) -> None:
    """With Cantelli's bound the level's exceedance bound is `ratio` times the target's bound
    `1 / (1 + z_t^2)`; a heavier tail than the normal one, so z is larger."""
    spare = 0.0 if covered_rate == 0.0 else 1 / 0.7 - 1
    rate = covered_rate or 20.0
    z_t = spare * math.sqrt(rate)

    def z_of(*, cantelli: bool, sigmas: float = 10.0) -> float:
        return relative_sigmas(
            rate, index=1.0, spare=spare, risk_ratio=0.4, sigmas=sigmas, cantelli=cantelli
        )

    z = z_of(cantelli=True)
    assert 1 / (1 + z * z) == pytest.approx(0.4 / (1 + z_t * z_t))
    assert z > z_of(cantelli=False)
    assert z_of(cantelli=True, sigmas=1.0) == min(1.0, z)


def test_the_risk_tail_reaches_the_decision() -> None:
    load = poisson_counts(2.6, 3600, seed=5)
    kw = {"dispersion_sigmas": 3.0, "dispersion_risk_ratio": 0.4}
    normal = replay(params(**kw), load)["last"].evidence
    cantelli = replay(params(**kw, dispersion_risk_tail=RiskTail.CANTELLI), load)["last"]
    assert cantelli.evidence["dispersionSigmas"] > normal["dispersionSigmas"]

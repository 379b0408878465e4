"""The resonance feature (fourth round, off by default): a learned model of normal windows."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from intelligence.anomaly import TailProbabilityDetector
from intelligence.anomaly.resonance import (
    ErrorLikelihood,
    ResonanceNovelty,
    gaussian_tail_surprise,
)
from intelligence.anomaly.tail_probability import FeatureOptions

pytestmark = pytest.mark.unit

PERIOD = 40


def square_wave(n: int, seed: int = 1) -> NDArray[np.float64]:
    """A noisy square wave between 0 and 10 (period 40)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return np.where(t % PERIOD < PERIOD // 2, 10.0, 0.0) + rng.normal(0.0, 0.3, n)


def with_triangles(x: NDArray[np.float64], lo: int, hi: int) -> NDArray[np.float64]:
    """``x`` with a triangle wave in the same range (0-10) between ``lo`` and ``hi``."""
    y = x.copy()
    t = np.arange(lo, hi)
    y[lo:hi] = 10.0 * np.abs((t % PERIOD) / PERIOD * 2.0 - 1.0)
    return y


def detector(**options: object) -> TailProbabilityDetector:
    opts = FeatureOptions(resonance_window=8, **options)  # type: ignore[arg-type]
    return TailProbabilityDetector(window=300, options=opts)


def surprises(
    det: TailProbabilityDetector, x: NDArray[np.float64], key: str
) -> NDArray[np.float64]:
    return np.array([det.update(float(v)).evidence[key] for v in x])


@pytest.mark.parametrize("output", ["calibrated", "likelihood"])
def test_a_new_shape_in_range_is_surprising_and_a_familiar_repeat_is_not(output: str) -> None:
    x = with_triangles(square_wave(4_000), 3_000, 3_080)
    res = surprises(detector(resonance_output=output), x, "resonance_surprise")
    assert res[1_000:3_000].max() < 1.0  # the learned square wave: no news
    assert res[3_000:3_100].max() >= 2.5  # the triangles: a window no category resonates with
    value = surprises(TailProbabilityDetector(window=300), x, "value_surprise")
    assert value[3_000:3_100].max() < 2.0  # in range: the value feature does not see them


def test_resonance_is_off_by_default_and_leaves_the_other_features_alone() -> None:
    x = with_triangles(square_wave(1_500), 1_200, 1_280)
    det, on = TailProbabilityDetector(window=300), detector()
    for v in x:
        a, b = det.update(float(v)).evidence, on.update(float(v)).evidence
        assert a["resonance_surprise"] == 0.0
        for key in ("value_surprise", "level_surprise", "context_surprise"):
            assert a[key] == b[key]
    assert det.state_size()["resonance_table"] == 0
    assert on.state_size()["resonance_table"] > 0


@pytest.mark.parametrize("output", ["calibrated", "likelihood"])
def test_resonance_is_causal(output: str) -> None:
    x = with_triangles(square_wave(2_000), 1_500, 1_600)
    cut = 1_550
    full = surprises(detector(resonance_output=output), x, "resonance_surprise")
    prefix = surprises(detector(resonance_output=output), x[:cut], "resonance_surprise")
    assert np.array_equal(full[:cut], prefix)
    changed = x.copy()
    changed[cut:] += 50.0  # what comes after t never changes the score at t
    later = surprises(detector(resonance_output=output), changed, "resonance_surprise")
    assert np.array_equal(later[:cut], full[:cut])
    assert not np.array_equal(later[cut:], full[cut:])


def test_resonance_is_deterministic() -> None:
    x = np.random.default_rng(7).normal(0.0, 1.0, 3_000).cumsum()
    a = surprises(detector(), x, "resonance_surprise")
    b = surprises(detector(), x, "resonance_surprise")
    assert np.array_equal(a, b)
    assert a.max() > 0.0


@pytest.mark.parametrize("output", ["calibrated", "likelihood"])
def test_resonance_state_stops_growing_at_its_caps(output: str) -> None:
    rng = np.random.default_rng(3)
    x = np.cumsum(rng.normal(0.0, 1.0, 12_000)) + rng.normal(0.0, 3.0, 12_000)
    det = TailProbabilityDetector(
        window=100,
        calibration_window=300,
        context_max_contexts=200,
        options=FeatureOptions(
            resonance_window=8, resonance_categories=16, resonance_output=output
        ),
    )
    sizes = []
    for lo, hi in ((0, 6_000), (6_000, 12_000)):
        for v in x[lo:hi]:
            det.update(float(v))
        sizes.append(det.state_size())
    assert sizes[0] == sizes[1]
    assert sizes[1]["resonance_table"] == 16  # a wandering series keeps founding categories
    if output == "likelihood":
        assert sizes[1]["resonance_likelihood"] == 300  # calibration_window // step (step 1)
    else:
        assert sizes[1]["calibrator.resonance"] == 300


def test_art_table_founds_a_category_per_new_shape_and_resonates_with_a_known_one() -> None:
    x = square_wave(2_000)
    model = ResonanceNovelty(x[:300], window=8, step=2, categories=64, shape="reference")
    out = np.array([model.update(float(v)) for v in x])
    assert np.isnan(out[::2]).all()  # one novelty per step of 2 points
    learned = len(model)
    assert learned < 32  # one square wave: a few phases, not a category per noisy window
    late = out[1_500:][~np.isnan(out[1_500:])]
    assert late.max() < 0.01  # every window now lies in (or next to) a learned box
    tri = with_triangles(x, 0, 200)[:200]
    novel = np.array([model.update(float(v)) for v in tri])
    assert np.nanmax(novel) > 10 * late.max()
    assert len(model) > learned  # the new shape founded categories


def test_own_range_shapes_blow_noise_up_and_fill_the_table() -> None:
    """ARTime's coding (a window over its own range) on a flat noisy stretch: every window is a
    new full-range shape, which is why the reference-range coding was added."""
    x = square_wave(2_000)
    own = ResonanceNovelty(x[:300], window=8, step=2, categories=64, shape="window")
    ref = ResonanceNovelty(x[:300], window=8, step=2, categories=64, shape="reference")
    for v in x:
        own.update(float(v))
        ref.update(float(v))
    assert len(own) == 64 > 2 * len(ref)


def test_pending_novelty_is_what_the_step_will_report() -> None:
    x = with_triangles(square_wave(1_000), 800, 900)
    model = ResonanceNovelty(x[:300], window=8, step=3, shape="reference")
    checked = 0
    for v in x:
        before = model.pending()
        out = model.update(float(v))
        if out == out:
            assert model.pending() == out  # right after a step: the window just scored
            checked += 1
        elif before == before:
            assert model.pending() == model.pending()  # asking does not learn
    assert checked > 250


def test_veto_lowers_only_strong_enough_scores_of_familiar_windows() -> None:
    rng = np.random.default_rng(11)
    x = square_wave(3_000)
    x[rng.random(x.size) < 0.01] += 6.0  # value alarms inside familiar windows
    x = with_triangles(x, 2_500, 2_600)
    opts = {"resonance_shape": "reference"}
    plain, vetoed = detector(**opts), detector(resonance_veto=1.0, **opts)
    lowered = 0
    for v in x:
        a, b = plain.update(float(v)), vetoed.update(float(v))
        familiar = vetoed.resonance_familiarity() >= 0.5
        if a.score >= 2.0 and familiar:
            assert b.score == pytest.approx(a.score - 1.0)
            lowered += 1
        else:
            assert b.score == a.score
    assert lowered > 5


def test_error_likelihood_sees_sustained_error_not_usual_error() -> None:
    rng = np.random.default_rng(2)
    lik = ErrorLikelihood(short=10, long=500, min_history=50)
    usual = [lik.update(float(e)) for e in rng.exponential(1.0, 1_000)]
    assert max(usual[100:]) < 5.0
    sustained = [lik.update(float(e)) for e in 3.0 + rng.exponential(1.0, 10)]
    assert sustained[-1] > 6.0
    assert np.isnan(lik.update(float("nan")))


def test_gaussian_tail_surprise_matches_the_normal_tail() -> None:
    from scipy.stats import norm

    for z in (0.5, 2.0, 5.0, 20.0, 35.0):
        assert gaussian_tail_surprise(z) == pytest.approx(-norm.logsf(z) / np.log(10.0), rel=1e-3)
    assert gaussian_tail_surprise(-1.0) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"resonance_window": 1}, "resonance_window"),
        ({"resonance_step": -1}, "resonance_step"),
        ({"resonance_vigilance": 1.5}, "resonance_vigilance"),
        ({"resonance_categories": 0}, "resonance_categories"),
        ({"resonance_output": "bayes"}, "resonance_output"),
        ({"resonance_shape": "wavelet"}, "resonance_shape"),
        ({"resonance_window": 8, "resonance_familiar": 1.5}, "resonance_familiar"),
        ({"resonance_veto": 1.0}, "resonance_veto"),
    ],
)
def test_bad_resonance_options_are_refused_by_name(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        FeatureOptions(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"window": 1}, "window"), ({"step": 0}, "step"), ({"vigilance": 0.0}, "vigilance")],
)
def test_bad_model_parameters_are_refused_by_name(kwargs: dict[str, int], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        ResonanceNovelty([0.0, 1.0], **kwargs)  # type: ignore[arg-type]

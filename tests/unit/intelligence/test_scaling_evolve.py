"""`evolve`: the fast copy `decide()` uses instead of `dataclasses.replace`."""

from __future__ import annotations

import dataclasses

import pytest

from intelligence.scaling import ScalingParams, ScalingState
from intelligence.scaling._evolve import evolve
from intelligence.scaling.dispersion import Dispersion
from intelligence.scaling.types import Recommendation

pytestmark = pytest.mark.unit


def test_it_equals_dataclasses_replace_and_leaves_the_original_alone() -> None:
    state = ScalingState(recommendations=(Recommendation(1.0, 3),))
    recs = (Recommendation(2.0, 4),)
    copied = evolve(state, recommendations=recs)
    assert copied == dataclasses.replace(state, recommendations=recs)
    assert hash(copied) == hash(dataclasses.replace(state, recommendations=recs))
    assert state.recommendations == (Recommendation(1.0, 3),)
    assert copied.calibration is state.calibration  # the unchanged fields are shared
    with pytest.raises(dataclasses.FrozenInstanceError):
        copied.recommendations = ()  # type: ignore[misc]


def test_several_fields_at_once() -> None:
    disp = Dispersion()
    moved = evolve(disp, last=5.0, m1=2.0)
    assert (moved.last, moved.m1) == (5.0, 2.0)
    assert dataclasses.asdict(evolve(moved)) == dataclasses.asdict(moved)


def test_an_unknown_field_is_refused_by_name() -> None:
    with pytest.raises(TypeError, match="ScalingState has no field 'recommendation'"):
        evolve(ScalingState(), recommendation=())


def test_a_class_that_validates_is_refused() -> None:
    params = ScalingParams(target_per_instance=10.0, max_instances=5)
    with pytest.raises(TypeError, match="ScalingParams validates in __post_init__"):
        evolve(params, max_instances=-1)

"""The anomaly engine's per-metric settings: each detector's window and warm-up, and which
points open an alert."""

from __future__ import annotations

import pytest

from intelligence.anomaly import RobustZScore, TailProbabilityDetector
from services.analytics.alerts import alert_step, make_detector, opens
from services.analytics.settings import AnalyticsSettings, MetricQuery

Q = {"name": "errors", "query": 'sum(rate(x{service="$service"}[1m]))'}


def test_the_default_metrics_run_the_tail_detector_on_240_points() -> None:
    for metric in AnalyticsSettings().anomaly_metrics:
        assert metric.detector == "tailProbability"
        assert (metric.points, metric.warmup) == (240, 50)
        assert isinstance(make_detector(metric), TailProbabilityDetector)


@pytest.mark.parametrize(
    ("fields", "points", "warmup"),
    [
        ({"detector": "robustZ"}, 60, 20),
        ({"window": 30}, 30, 30),  # the warm-up never exceeds the window
        ({"window": 500, "min_history": 100}, 500, 100),
    ],
)
def test_a_window_and_warm_up_default_per_detector(
    fields: dict[str, object], points: int, warmup: int
) -> None:
    metric = MetricQuery.model_validate(Q | fields)
    assert (metric.points, metric.warmup) == (points, warmup)


def test_robust_z_is_kept_as_an_option() -> None:
    metric = MetricQuery.model_validate(Q | {"detector": "robustZ", "direction": "down"})
    det = make_detector(metric)
    assert isinstance(det, RobustZScore)
    assert det.direction == "down"


@pytest.mark.parametrize(
    ("direction", "jump", "alerts"),
    [("up", +5.0, True), ("up", -5.0, False), ("down", -5.0, True), ("both", -5.0, True)],
)
def test_the_tail_detector_alerts_on_its_alarm_in_the_metrics_direction(
    direction: str, jump: float, alerts: bool
) -> None:
    metric = MetricQuery.model_validate(Q | {"direction": direction, "window": 60})
    det = make_detector(metric)
    for i in range(120):
        assert not opens(metric, det.update(10.0 + 0.1 * (i % 7)))
    jumped = det.update(10.0 + jump)
    assert jumped.score > 5  # scored either way
    assert opens(metric, jumped) is alerts


def test_an_alert_opens_stays_while_abnormal_and_resolves_after_normal_points() -> None:
    metric = MetricQuery.model_validate(Q | {"detector": "robustZ", "window": 20})
    det = make_detector(metric)
    for i in range(40):
        det.update(10.0 + 0.1 * (i % 5))
    spike, calm = det.update(50.0), det.update(10.2)
    step = {"resolve_after": 2}
    assert alert_step(metric, calm, is_open=False, streak=0, **step) == (None, 0)
    assert alert_step(metric, spike, is_open=False, streak=0, **step) == ("opened", 0)
    assert alert_step(metric, spike, is_open=True, streak=1, **step) == ("abnormal", 0)
    assert alert_step(metric, calm, is_open=True, streak=0, **step) == ("normal", 1)
    assert alert_step(metric, calm, is_open=True, streak=1, **step) == ("resolved", 2)

"""`kubectl xynergy forecast`: the 80-column chart and plan from a status fixture (golden text),
JSON for scripts, and the command end to end on a fake client."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from click.testing import CliRunner

from controllers.plugin.forecast import forecast, plan, render

NOW = dt.datetime(2024, 7, 2, 12, 0, tzinfo=dt.UTC).timestamp()


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def policy() -> dict[str, Any]:
    points = [
        {"time": iso(NOW + 150 * (i + 1)), "value": 200 + 10 * i,
         "lower": 180 + 8 * i, "upper": 230 + 12 * i}
        for i in range(12)
    ]  # fmt: skip
    return {
        "apiVersion": "xynergy.io/v1alpha1", "kind": "ScalingPolicy",
        "metadata": {"name": "crm", "namespace": "prod", "generation": 1},
        "spec": {
            "targetRef": {"name": "crm"},
            "metric": {"source": "prometheus", "query": "sum(rate(x[1m]))",
                       "targetPerInstance": 50},
            "minInstances": 2, "maxInstances": 8, "forecast": {"horizon": "30m"},
        },
        "status": {
            "observedGeneration": 1, "mode": "predictive",
            "modeReason": "forecast trusted (predictive)",
            "currentInstances": 4, "desiredInstances": 5, "currentLoad": 201.5,
            "model": "ridge", "modelError": 7.5, "forecast": points,
            "conditions": [{"type": "Ready", "status": "True", "reason": "Scaling",
                            "message": "ok", "lastTransitionTime": iso(NOW)}],
        },
    }  # fmt: skip


RECENT: list[tuple[float, float]] = [(NOW - 3600 + 120 * i, 120 + 3 * i) for i in range(30)]


GOLDEN = """\
ScalingPolicy prod/crm -> crm   mode predictive
instances 4 -> 5   load 201.5   50 per instance
model ridge   sMAPE 7.5%
why: forecast trusted (predictive)
    362 |                                               |                     ::
        |                                               |                 ::::::
        |                                               |              ::::::::o
        |                                               |          ::::::::oooo:
        |                                               |      :::::::ooooo:::::
        |-------------------------------------------------  ::::::oooo::::::::
    230 |                                               | ::::oooo:::::::
        |                                        * * ** | oooo::::::
        |                              ** ** ** *       | ::::
        |                   ** ** ** *                  |
        |      * ** ** * **                             |
    120 |* ** *                                         |
        +-----------------------------------------------------------------------
         -1h00m                                        now                  +30m
* load  o forecast  : bounds  - desired capacity  | now
Plan: +2m: 5 | +8m: 6 | +12m: 6 | +18m: 7 | +22m: 7 | +28m: 7
"""


def test_the_chart_and_plan_fit_80_columns() -> None:
    text = render(policy(), recent=RECENT, now=NOW)
    assert text + "\n" == GOLDEN
    assert max(len(line) for line in text.splitlines()) <= 80


def test_the_plan_is_the_upper_bound_in_instances_within_the_policy_bounds() -> None:
    data = plan(policy(), recent=RECENT, now=NOW)
    uppers = [p["upper"] for p in data["forecast"]]
    assert [p["instances"] for p in data["forecast"]] == [
        min(8, max(2, -(-int(u) // 50))) for u in uppers
    ]
    assert data["forecast"][-1]["instances"] == 8  # 362 / 50 -> 8, the policy's max
    assert (data["currentInstances"], data["desiredInstances"]) == (4, 5)
    assert len(data["recent"]) == len(RECENT)


def test_without_recent_load_the_chart_says_why() -> None:
    text = render(policy(), recent=None, now=NOW, why_no_recent="Prometheus unreachable")
    assert "recent load not shown: Prometheus unreachable" in text
    assert "*" not in text.split("\n* load")[0]
    no_status = {k: v for k, v in policy().items() if k != "status"}
    assert render(no_status, recent=None, now=NOW) == "ScalingPolicy prod/crm: no status yet"


class FakeClient:
    def get(self, resource: Any, name: str, *, namespace: str) -> Any:
        assert (name, namespace) == ("crm", "prod")
        body = policy()

        class Obj:
            def to_dict(self) -> dict[str, Any]:
                return body

        return Obj()


def test_the_command_prints_json_for_scripts() -> None:
    result = CliRunner().invoke(
        forecast, ["crm", "-n", "prod", "-o", "json"], obj={"client_factory": FakeClient}
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["name"] == "crm"
    assert len(data["forecast"]) == 12
    assert data["recent"] == []  # the policy names no Prometheus and none is configured


def test_long_names_and_large_numbers_still_fit() -> None:
    body = policy()
    body["metadata"]["namespace"] = "a-very-long-namespace-name-from-a-test-run-0123456789"
    body["status"]["currentLoad"] = 123456789.123456
    body["status"]["modeReason"] = "ForecastErrorTooHigh: " + "x" * 200
    for p in body["status"]["forecast"]:
        p["value"], p["lower"], p["upper"] = p["value"] * 1e5, p["lower"] * 1e5, p["upper"] * 1e5
    text = render(body, recent=[(t, v * 1e5) for t, v in RECENT], now=NOW)
    assert max(len(line) for line in text.splitlines()) <= 80

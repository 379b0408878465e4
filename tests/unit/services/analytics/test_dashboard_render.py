"""The dashboard's server-rendered panels: plots carry the forecast's points and band, values
from the cluster are escaped, an unreadable section says why; what counts as a status change."""

from __future__ import annotations

import re
from typing import Any

from services.analytics.dashboard.render import panels, scaling_plot
from services.analytics.dashboard.watch import summary

NOW = 1_700_000_000.0


def _policy(**extra: Any) -> dict[str, Any]:
    forecast = [
        {"time": f"2023-11-14T22:{15 + i:02d}:00Z", "value": 10.0 + i, "lower": 8.0, "upper": 14.0}
        for i in range(5)
    ]
    return {
        "name": "crm",
        "target": "crm",
        "mode": "predictive",
        "target_per_instance": 5,
        "current_instances": 2,
        "desired_instances": 3,
        "current_load": 12.5,
        "forecast": forecast,
        **extra,
    }


def test_the_scaling_plot_draws_every_forecast_point_the_band_load_and_replicas() -> None:
    svg = scaling_plot(_policy(), now=NOW)
    values = re.findall(r'<circle class="pt"[^>]*data-value="([^"]+)"', svg)
    assert values == ["10", "11", "12", "13", "14"]
    assert svg.count('<polygon class="band"') == 1
    assert '<circle class="load"' in svg
    assert 'class="replicas current"' in svg
    assert 'class="replicas desired"' in svg


def test_a_policy_that_observed_nothing_has_no_plot() -> None:
    assert "<svg" not in scaling_plot(_policy(forecast=[], current_load=None), now=NOW)


def test_cluster_values_are_escaped() -> None:
    html = panels(
        {
            "tenant": "acme",
            "services": [
                {"name": "<script>x</script>", "ready": {"status": "False", "reason": "A&B"}}
            ],
            "deployments": [],
            "scaling": [],
            "anomalies": {"enabled": False},
            "costs": {"services": []},
        },
        now=NOW,
    )
    assert "<script>" not in html
    assert "&lt;script&gt;x&lt;/script&gt;" in html
    assert 'data-ready="False"' in html


def test_a_section_that_cannot_be_read_says_why() -> None:
    html = panels({"services": {"error": "no access to the Kubernetes API"}}, now=NOW)
    assert re.search(r'id="services".*no access to the Kubernetes API', html)


def test_a_status_change_is_a_change_of_what_the_dashboard_shows() -> None:
    def svc(ready: str, generation: int) -> dict[str, Any]:
        return {
            "metadata": {"generation": generation},
            "status": {"readyReplicas": 1, "conditions": [{"type": "Ready", "status": ready}]},
        }

    assert summary("XynergyService", svc("True", 1)) == summary("XynergyService", svc("True", 2))
    assert summary("XynergyService", svc("True", 1)) != summary("XynergyService", svc("False", 1))

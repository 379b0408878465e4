"""Reports from a real (in-memory DuckDB) store: each kind's rows are the seeded data inside
the period and the tenant's only; the CSV holds exactly the rows; bad kind, format and period
are refused naming the parameter."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import ValidationError

from apis.v1alpha1.rollout import Rollout
from apis.v1alpha1.scalingpolicy import ScalingPolicy
from services.analytics.cluster import Parsed
from services.analytics.records import AiUsageRow, EventRow, UsageRow
from services.analytics.reports import (
    Period,
    ReportError,
    Sources,
    build_report,
    parse_format,
    parse_kind,
    parse_period,
    render,
)
from services.analytics.reports.model import MAX_DAYS
from services.analytics.routers.reports import Delivery
from services.analytics.settings import CloudRunPrices
from services.analytics.stores.duckdb import DuckDBStore

pytestmark = pytest.mark.unit

START = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
PERIOD = Period(START, START + 24 * HOUR)
PRICES = CloudRunPrices()
# (service, instances, vcpu, GiB) sampled once an hour for the period's 24 hours
FLEET = [("crm", 2.0, 1.0, 0.5), ("billing", 1.0, 2.0, 4.0)]


def _usage(tenant: str, service: str, at: dt.datetime, n: float, cpu: float, gib: float) -> Any:
    return UsageRow(tenant, service, at, "api-service", n, 3600.0, cpu, gib)


def _alert(
    at: dt.datetime, change: str, severity: str, tenant: str = "acme", service: str = "crm"
) -> EventRow:
    alert = {"service": service, "metric": "error_rate", "severity": severity, "value": 4.25}
    body = json.dumps({"change": change, "alert": alert})
    return EventRow(tenant, "anomaly-alerts", at, f"e-{at.timestamp()}-{change}", None, body)


@pytest.fixture
async def store() -> AsyncIterator[DuckDBStore]:
    s = DuckDBStore()
    await s.open()
    rows = [
        _usage("acme", svc, START + h * HOUR + dt.timedelta(minutes=10), n, cpu, gib)
        for h in range(24)
        for svc, n, cpu, gib in FLEET
    ]
    # outside the period (before and at its end) and another tenant's: never reported
    rows += [
        _usage("acme", "crm", START - HOUR, 50, 1.0, 0.5),
        _usage("acme", "crm", PERIOD.end, 50, 1.0, 0.5),
        _usage("other", "secret-svc", START + HOUR, 9, 1.0, 1.0),
    ]
    await s.add_usage(rows)
    ledger = [(START - HOUR, 1.0), (START + 5 * HOUR, 3.5), (PERIOD.end + HOUR, 10.0)]
    await s.add_ai_usage(
        [AiUsageRow("acme", at, "openai", "gpt-4o-mini", 1, 100, 50, usd) for at, usd in ledger]
    )
    await s.add_events(
        [
            _alert(START + 2 * HOUR, "opened", "WARNING"),
            _alert(START + 3 * HOUR, "escalated", "CRITICAL"),
            _alert(START + 4 * HOUR, "resolved", "CRITICAL"),
            _alert(START - HOUR, "opened", "EMERGENCY"),
            _alert(START + 2 * HOUR, "opened", "EMERGENCY", tenant="other", service="secret-svc"),
        ]
    )
    yield s
    await s.close()


class _Cluster:
    """The two reads reports make of ``ClusterReader``, over objects parsed by the models."""

    def __init__(self, policies: list[Parsed], rollouts: list[Parsed]) -> None:
        self._policies, self._rollouts = policies, rollouts

    async def policies(self, tenant: str) -> list[Parsed]:
        return self._policies if tenant == "acme" else []

    async def rollouts(self, tenant: str) -> list[Parsed]:
        return self._rollouts if tenant == "acme" else []


def _parsed(model: Any, body: dict[str, Any]) -> Parsed:
    meta = body["metadata"]
    return Parsed("default", meta["name"], model.model_validate(body), body)


def _policy() -> Parsed:
    body = {
        "apiVersion": "xynergy.io/v1alpha1",
        "kind": "ScalingPolicy",
        "metadata": {"name": "crm-scaling", "namespace": "default"},
        "spec": {
            "targetRef": {"name": "crm"},
            "mode": "reactive",
            "minInstances": 1,
            "maxInstances": 4,
            "metric": {"source": "prometheus", "query": "sum(up)", "targetPerInstance": 50},
        },
        "status": {"desiredInstances": 3},
    }
    return _parsed(ScalingPolicy, body)


def _rollout(name: str, created: dt.datetime, phase: str) -> Parsed:
    body = {
        "apiVersion": "xynergy.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {
            "name": name,
            "namespace": "default",
            "creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        "spec": {
            "targetRef": {"kind": "XynergyService", "name": "crm"},
            "image": f"registry.example/crm:{name}",
            "strategy": {"canary": {"steps": [{"setWeight": 20}, {"setWeight": 100}]}},
        },
        "status": {"phase": phase, "currentStepIndex": 1, "failedRuns": 1, "message": "judged"},
    }
    return _parsed(Rollout, body)


def _hour_usd(n: float, cpu: float, gib: float) -> float:
    return n * 3600 * (cpu * PRICES.vcpu_second + gib * PRICES.gib_second)


async def _table(sources: Sources, kind: str) -> list[dict[str, str]]:
    report = await build_report(sources, kind=kind, tenant="acme", period=PERIOD)
    text = render(report, "csv").content.decode()
    return list(csv.DictReader(io.StringIO(text)))


async def test_the_cost_report_is_the_periods_usage_priced_and_the_ledger_accrued_in_it(
    store: DuckDBStore,
) -> None:
    rows = await _table(Sources(store, PRICES), "cost")
    by = {r["service"]: r for r in rows}
    assert set(by) == {"crm", "billing", "ai-tokens openai/gpt-4o-mini"}
    for svc, n, cpu, gib in FLEET:
        assert float(by[svc]["cost_usd"]) == pytest.approx(24 * _hour_usd(n, cpu, gib), abs=1e-4)
        assert by[svc]["billed_hours"] == "24"
    # the ledger grew from 1.0 (before the start) to 3.5 inside; 10.0 came after the end
    assert float(by["ai-tokens openai/gpt-4o-mini"]["cost_usd"]) == pytest.approx(2.5)
    assert sum(float(r["share_pct"]) for r in rows) == pytest.approx(100, abs=0.05)
    assert [float(r["cost_usd"]) for r in rows] == sorted(
        (float(r["cost_usd"]) for r in rows), reverse=True
    )


async def test_the_scaling_report_has_each_services_instances_and_its_policy(
    store: DuckDBStore,
) -> None:
    sources = Sources(store, PRICES, _Cluster([_policy()], []))  # type: ignore[arg-type]
    by = {r["service"]: r for r in await _table(sources, "scaling")}
    assert set(by) == {"crm", "billing"}
    for svc, n, cpu, _ in FLEET:
        assert float(by[svc]["instance_hours"]) == pytest.approx(24 * n)
        assert float(by[svc]["mean_instances"]) == pytest.approx(n)
        assert float(by[svc]["peak_instances"]) == pytest.approx(n)
        assert float(by[svc]["vcpu_hours"]) == pytest.approx(24 * n * cpu)
    assert (by["crm"]["policy"], by["crm"]["min_max"], by["crm"]["desired_now"]) == (
        "crm-scaling",
        "1-4",
        "3",
    )
    assert by["billing"]["policy"] == ""


async def test_the_anomaly_report_lists_the_tenants_alert_changes_in_the_period(
    store: DuckDBStore,
) -> None:
    rows = [r for r in await _table(Sources(store, PRICES), "anomaly") if r["source"] == "alert"]
    assert [(r["change"], r["severity"]) for r in rows] == [
        ("opened", "WARNING"),
        ("escalated", "CRITICAL"),
        ("resolved", "CRITICAL"),
    ]
    assert {(r["service"], r["metric"], r["value"]) for r in rows} == {
        ("crm", "error_rate", "4.25")
    }


async def test_the_deployment_report_lists_rollouts_created_in_the_period(
    store: DuckDBStore,
) -> None:
    rollouts = [
        _rollout("v2", START + 3 * HOUR, "Promoted"),
        _rollout("v3", START + 20 * HOUR, "Aborted"),
        _rollout("v1", START - HOUR, "Promoted"),
    ]
    sources = Sources(store, PRICES, _Cluster([], rollouts))  # type: ignore[arg-type]
    rows = await _table(sources, "deployment")
    assert [(r["rollout"], r["phase"], r["strategy"]) for r in rows] == [
        ("v2", "Promoted", "canary"),
        ("v3", "Aborted", "canary"),
    ]
    assert rows[0]["image"] == "registry.example/crm:v2"
    assert (rows[0]["step"], rows[0]["failed_runs"]) == ("1", "1")


async def test_without_a_cluster_the_deployment_report_says_why(store: DuckDBStore) -> None:
    report = await build_report(
        Sources(store, PRICES), kind="deployment", tenant="acme", period=PERIOD
    )
    assert report.table.rows == []
    assert any("Kubernetes" in n for n in report.notes)


async def test_another_tenant_sees_none_of_acmes_rows(store: DuckDBStore) -> None:
    for kind in ("cost", "scaling", "anomaly"):
        report = await build_report(
            Sources(store, PRICES), kind=kind, tenant="other", period=PERIOD
        )
        text = render(report, "csv").content.decode()
        assert "crm" not in text, kind
    cost = await build_report(Sources(store, PRICES), kind="cost", tenant="other", period=PERIOD)
    assert [r[0] for r in cost.table.rows] == ["secret-svc"]
    alerts = await build_report(
        Sources(store, PRICES), kind="anomaly", tenant="other", period=PERIOD
    )
    assert [(r[1], r[2]) for r in alerts.table.rows] == [("alert", "secret-svc")]


def test_the_period_defaults_to_the_last_seven_days_and_reads_naive_times_as_utc() -> None:
    now = dt.datetime(2026, 3, 10, 12, tzinfo=dt.UTC)
    assert parse_period(None, None, now=now) == Period(now - dt.timedelta(days=7), now)
    got = parse_period("2026-03-01", "2026-03-02T06:00+02:00", now=now)
    assert got == Period(START, dt.datetime(2026, 3, 2, 4, tzinfo=dt.UTC))


@pytest.mark.parametrize(
    ("start", "end", "parameter"),
    [
        ("yesterday", None, "from"),
        (None, "2026-13-01", "to"),
        ("2026-03-02", "2026-03-01", "from"),
        ("2026-01-01", (dt.date(2026, 1, 1) + dt.timedelta(days=MAX_DAYS + 1)).isoformat(), "from"),
    ],
)
def test_a_bad_period_names_its_parameter(
    start: str | None, end: str | None, parameter: str
) -> None:
    with pytest.raises(ReportError) as err:
        parse_period(start, end, now=dt.datetime(2026, 3, 10, tzinfo=dt.UTC))
    assert err.value.parameter == parameter


def test_a_bad_kind_or_format_names_its_parameter() -> None:
    with pytest.raises(ReportError, match=r"^kind: expected one of cost, scaling"):
        parse_kind("costs")
    with pytest.raises(ReportError, match=r"^format: expected one of csv, pdf"):
        parse_format("xlsx")


@pytest.mark.parametrize("address", ["a:b@example.com", "a]b@example.com", "a\x11b@example.com"])
def test_a_recipient_that_is_no_addr_spec_is_refused_naming_it(address: str) -> None:
    """Found by fuzzing: such a recipient passed, went into the To header of the Gmail
    service's message, and the delivery failed as a 502 (a group, a comment or a bracket
    changes what the header says)."""
    with pytest.raises(ValidationError) as err:
        Delivery.model_validate({"recipients": ["ada@example.com", address]})
    assert [e["loc"] for e in err.value.errors()] == [("recipients", 1)]
    assert Delivery.model_validate({"recipients": ["o'brien+x@mail.example.co.uk"]})


@pytest.mark.parametrize("brk", ["\n", "\x0b", "\x85", "\u2028"])
def test_a_subject_with_any_line_break_is_refused_naming_it(brk: str) -> None:
    """Found by fuzzing: NEL in the subject passed, and the Gmail service's MIME header
    refused it (a 500 there, a 502 here)."""
    with pytest.raises(ValidationError) as err:
        Delivery.model_validate({"recipients": ["ada@example.com"], "subject": f"a{brk}b"})
    assert [e["loc"] for e in err.value.errors()] == [("subject",)]

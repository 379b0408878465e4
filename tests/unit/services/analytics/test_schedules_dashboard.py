"""The dashboard's Schedules panel: one row per schedule with its last run, values escaped,
no panel when the caller gave no schedules, and why when they could not be read."""

from __future__ import annotations

from typing import Any

import pytest

from services.analytics.dashboard.render import panels

pytestmark = pytest.mark.unit


def _schedule(**over: Any) -> dict[str, Any]:
    return {
        "id": "abc123",
        "workflow": "analytics_processing",
        "cron": "*/5 * * * *",
        "timezone": "Europe/Berlin",
        "missed_run_policy": "catchUpOnce",
        "enabled": True,
        "last_run": None,
    } | over


def test_each_schedule_is_a_row_with_its_last_run() -> None:
    failed = {"due": "2026-06-01T08:10:00Z", "outcome": "failed", "error": "<b>boom</b>"}
    html = panels(
        {"schedules": [_schedule(), _schedule(id="def456", last_run=failed, enabled=False)]},
        now=0,
    )
    assert html.count("data-schedule=") == 2
    assert 'class="outcome o-none">never run' in html
    assert 'class="outcome o-failed">failed' in html
    assert "&lt;b&gt;boom&lt;/b&gt;" in html
    assert "<b>boom" not in html
    assert "<code>*/5 * * * *</code> Europe/Berlin" in html


def test_no_schedules_panel_unless_given_and_an_unreadable_one_says_why() -> None:
    assert 'id="schedules"' not in panels({}, now=0)
    assert "no schedules" in panels({"schedules": []}, now=0)
    html = panels({"schedules": {"error": "schedules not readable: ConnectionError"}}, now=0)
    assert "schedules not readable: ConnectionError" in html

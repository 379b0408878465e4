"""A schedule's fields are checked one by one (each error names its field), and what a run's
error keeps is free of credentials."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from services.analytics.schedules.models import ScheduleSpec, redact

pytestmark = pytest.mark.unit

GOOD: dict[str, Any] = {"workflow": "analytics_processing", "cron": "*/5 * * * *"}


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"cron": "*/5 * * *"}, "cron", "five cron fields"),
        ({"timezone": "Europe/Atlantis"}, "timezone", "IANA time zone"),
        ({"workflow": "mine_bitcoin"}, "workflow", "analytics_processing"),
        ({"missed_run_policy": "catchUpAll"}, "missed_run_policy", "catchUpOnce"),
        ({"goal": "cheap"}, "goal", "balanced"),
        ({"workflow": "content_generation"}, "inputs", "topic: required"),
        ({"owner": "me"}, "owner", "Extra inputs"),
    ],
)
def test_each_bad_field_is_named(change: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(ValidationError) as info:
        ScheduleSpec.model_validate(GOOD | change)
    errors = info.value.errors()
    assert [e["loc"] for e in errors] == [(field,)]
    assert words in errors[0]["msg"]


def test_defaults() -> None:
    spec = ScheduleSpec.model_validate(GOOD)
    assert (spec.timezone, spec.missed_run_policy, spec.enabled, spec.goal) == (
        "UTC",
        "skip",
        True,
        "balanced",
    )


@pytest.mark.parametrize(
    "secret",
    [
        "Authorization: Bearer abc.def-ghi",
        "token=0123456789abcdef",
        '{"api_key": "k-0123456789"}',
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl",
        "sk-live-0123456789abcdef",
        "xoxb-1234567890-abcdef",
        "password:hunter22",
    ],
)
def test_redact_removes_credentials_and_keeps_the_rest(secret: str) -> None:
    text = f"RuntimeError: AI router answered 401: {secret} (step summary)"
    out = redact(text)
    value = secret.split()[-1].split("=")[-1].split(":")[-1].strip('"}')
    assert value not in out
    assert "REDACTED" in out
    assert out.startswith("RuntimeError: AI router answered 401:")
    assert out.endswith("(step summary)")


def test_redact_cuts_long_text() -> None:
    assert len(redact("x" * 1000)) == 300

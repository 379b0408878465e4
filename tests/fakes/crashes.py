"""Test support for a fake's own failures: a call that raises once, and the log it must leave.

Every fake answers an exception of its own with its API's internal-error answer and logs the
traceback (``fakes.serving.JsonHandler``); the tests of each fake provoke one with these.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import pytest

CRASH = "a bug in the fake"
"""The message of the exception the tests raise inside a fake."""


def raising_once(call: Callable[..., Any]) -> Callable[..., Any]:
    """`call`, except that its first call raises (a bug in the fake)."""
    failures = iter([RuntimeError(CRASH)])

    def wrapper(*args: Any) -> Any:
        for exc in failures:
            raise exc
        return call(*args)

    return wrapper


def crash(*_: Any) -> Any:
    """A fake's method that always raises."""
    raise RuntimeError(CRASH)


def assert_crash_logged(
    caplog: pytest.LogCaptureFixture, *, times: int = 1, secrets: Iterable[str] = ()
) -> None:
    """The fake logged `times` tracebacks at error level, of our crash, and none of `secrets`."""
    crashes = [r for r in caplog.records if r.levelno == logging.ERROR and r.exc_info]
    assert len(crashes) == times
    assert CRASH in caplog.text
    leaked = [s for s in secrets if s in caplog.text]
    assert not leaked, "a secret reached the fake's log"

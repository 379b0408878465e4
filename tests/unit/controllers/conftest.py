"""Fixtures shared by the controllers' unit tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fakes.cloudrun import FakeCloudRun


@pytest.fixture
def cloud_run() -> Iterator[FakeCloudRun]:
    """The in-process fake Cloud Run Admin API v2 (operations done after 20 ms); the test
    fails if the fake crashed on a request."""
    with FakeCloudRun(operation_delay=0.02) as run:
        yield run
        assert not run.crashes, run.crashes[0]

"""Fixtures for the Cloud Run provider against the fake Cloud Run Admin API v2.

`cloudrun_fake` starts a fresh fake (in a thread, on a free 127.0.0.1 port) per test;
`make_provider` builds the XynergyService Cloud Run backend on a CloudRunProvider pointed at it
with fast retries and a recorded operation-poll sleep;
`make_xservice` builds Cloud Run XynergyServices.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fakes.cloudrun import FakeCloudRun

from apis.v1alpha1.xynergyservice import XynergyService
from controllers.core.retry import RetryPolicy
from controllers.providers.cloudrun import CloudRunProvider
from controllers.xynergyservice.backends import CloudRunBackend

PROJECT = "xynergy-test"
REGION = "us-central1"


@pytest.fixture
def cloudrun_fake() -> Iterator[FakeCloudRun]:
    """A fresh fake whose operations complete 50 ms after they start."""
    with FakeCloudRun(operation_delay=0.05) as fake:
        yield fake
        assert not fake.crashes, fake.crashes[0]


class RecordingSleep:
    """The provider's operation-poll sleep: really waits, and records each wait."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(delay)


@pytest.fixture
def make_provider(cloudrun_fake: FakeCloudRun) -> Callable[..., CloudRunBackend]:
    def make(**overrides: Any) -> CloudRunBackend:
        kwargs: dict[str, Any] = {
            "api_endpoint": cloudrun_fake.endpoint,
            "retry": RetryPolicy(initial=0.01, maximum=0.08, deadline=10.0, max_attempts=6),
            "operation_timeout": 5.0,
            "poll_interval": 0.02,
            "sleep": RecordingSleep(),
        }
        kwargs.update(overrides)
        return CloudRunBackend(CloudRunProvider(**kwargs))

    return make


@pytest.fixture
def make_xservice() -> Callable[..., XynergyService]:
    return xservice


def xservice(
    name: str = "crm",
    *,
    generation: int = 1,
    namespace: str = "team-a",
    **spec: Any,
) -> XynergyService:
    """A Cloud Run XynergyService as the apiserver would hand it over."""
    body: dict[str, Any] = {
        "apiVersion": "xynergy.io/v1alpha1",
        "kind": "XynergyService",
        "metadata": {"name": name, "namespace": namespace, "generation": generation},
        "spec": {
            "image": "us-docker.pkg.dev/xynergy-test/platform/crm:1.0.0",
            "backend": "cloudRun",
            "cloudRun": {"project": PROJECT, "region": REGION},
            "profile": "api-service",
            **spec,
        },
    }
    return XynergyService.model_validate(body)

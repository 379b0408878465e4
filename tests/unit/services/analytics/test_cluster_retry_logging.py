"""How the analytics service logs the apiserver's transient answers (429, 5xx): at debug while
it retries them (under load every list and watch may see a 429), at warning only when a list
gives up or once per back-off episode of a watch; any other failure of a watch warns."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from lightkube import ApiError as KubeApiError
from lightkube.models.meta_v1 import Status

from apis.v1alpha1.scalingpolicy import ScalingPolicy
from services.analytics.cluster import ClusterReader
from services.analytics.dashboard.watch import WARN_AFTER, StatusPublisher
from services.common.errors import ApiError

TOKEN = "kube-token-" + "s" * 24


class Stop(BaseException):
    """Ends a watch loop the test drives (the publisher retries every Exception)."""


def kube_error(code: int) -> KubeApiError:
    return KubeApiError(status=Status(code=code, message=f"answered {code}"))


def refused(code: int) -> httpx.HTTPStatusError:
    """A watch refused at once: lightkube raises httpx's own error, the request included."""
    request = httpx.Request(
        "GET", "https://apiserver/apis/x?watch=true", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    response = httpx.Response(code, request=request)
    return httpx.HTTPStatusError(f"{code} for {request.url}", request=request, response=response)


EVENT = object()


class Kube:
    """Each list or watch call takes the next step: an exception to raise, EVENT (a watch
    delivers one event of an untenanted object, a list nothing), or the end (Stop)."""

    def __init__(self, *steps: Any) -> None:
        self.steps = list(steps)

    async def _call(self, watching: bool) -> AsyncIterator[Any]:
        if not self.steps:
            raise Stop
        step = self.steps.pop(0)
        if isinstance(step, BaseException):
            raise step
        if watching:
            yield "ADDED", {"metadata": {"name": "x", "namespace": "team"}}

    def list(self, res: Any, **kwargs: Any) -> Any:
        return self._call(watching=False)

    def watch(self, res: Any, **kwargs: Any) -> Any:
        return self._call(watching=True)

    async def create(self, obj: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


async def no_sleep(_: float) -> None:
    pass


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    # configure_logging (any app built earlier in this process) stops "xynergy" propagating
    monkeypatch.setattr(logging.getLogger("xynergy"), "propagate", True)
    with caplog.at_level(logging.DEBUG, logger="xynergy.analytics"):
        yield caplog


def levels(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.levelname for r in caplog.records if r.name.startswith("xynergy.analytics")]


async def test_a_list_retries_transient_answers_at_debug_and_warns_once_giving_up(
    logs: pytest.LogCaptureFixture,
) -> None:
    reader = ClusterReader(Kube(kube_error(429), kube_error(500), EVENT), sleep=no_sleep)
    assert await reader.policies("acme") == []
    assert levels(logs) == ["DEBUG", "DEBUG"]
    assert "list of ScalingPolicy: Kubernetes API answered 429" in logs.records[0].getMessage()

    logs.clear()
    reader = ClusterReader(Kube(*(kube_error(429) for _ in range(4))), sleep=no_sleep)
    with pytest.raises(ApiError) as gave_up:
        await reader.policies("acme")
    assert gave_up.value.status == 503
    assert levels(logs) == ["DEBUG", "DEBUG", "DEBUG", "WARNING"]
    assert "answered 429 4 times" in logs.records[-1].getMessage()


async def test_a_watch_warns_once_per_episode_of_transient_answers(
    logs: pytest.LogCaptureFixture,
) -> None:
    first = [refused(429), kube_error(429), refused(503), kube_error(429), refused(429)]
    kube = Kube(*first, EVENT, *(refused(429) for _ in range(WARN_AFTER)), refused(403))
    publisher = StatusPublisher(ClusterReader(kube), redis=None, rand=lambda: 0.0, sleep=no_sleep)
    with pytest.raises(Stop):
        await publisher._watch("ScalingPolicy", ScalingPolicy)
    quiet = ["DEBUG"] * (WARN_AFTER - 1)
    # 5 failures, an event (the episode ends), 4 failures, then a 403: not transient, a warning
    assert levels(logs) == [*quiet, "WARNING", "DEBUG", *quiet, "WARNING", "WARNING"]
    warnings = [r.getMessage() for r in logs.records if r.levelno == logging.WARNING]
    assert warnings[0].startswith(
        f"watch of ScalingPolicy: Kubernetes API answered 429, {WARN_AFTER} failures in a row"
    )
    assert "failed" in warnings[2]
    assert TOKEN not in logs.text

"""How the analytics service logs the apiserver's transient answers (429, 5xx): at debug while
it retries them (under load every list and watch may see a 429), at warning only when a list
gives up or once per back-off episode of a watch; any other failure of a watch warns. An
episode of a watch ends when the apiserver answers it 200 (even with no event after) or an
event arrives; the watch tests at the end run the real lightkube client against a stand-in
apiserver (an httpx2 MockTransport), since only its requests show a 200 with no event."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import httpx2
import pytest
from lightkube import ApiError as KubeApiError
from lightkube import AsyncClient, KubeConfig
from lightkube.config.models import Cluster, User
from lightkube.models.meta_v1 import Status

from apis.v1alpha1.scalingpolicy import ScalingPolicy
from services.analytics.cluster import ClusterReader, on_watch_open
from services.analytics.dashboard.watch import WARN_AFTER, StatusPublisher
from services.common.errors import ApiError

TOKEN = "kube-token-" + "s" * 24


class Stop(BaseException):
    """Ends a watch loop the test drives (the publisher retries every Exception)."""


def kube_error(code: int) -> KubeApiError:
    return KubeApiError(status=Status(code=code, message=f"answered {code}"))


def refused(code: int) -> httpx.HTTPStatusError:
    """A watch refused at once as lightkube before 1.0 raised it: httpx's own error, the request
    included (1.x raises httpx2's: the tests through the real client below)."""
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


STOP = 0


class Apiserver:
    """Stands in for the apiserver behind the real lightkube client. Each request (a watch's
    first, and each one lightkube re-makes by itself after a stream ended) takes the next
    answer: a status code to refuse it with, 200 for a stream the apiserver ends without an
    event (its timeout, on an idle cluster or a kind with no objects), or STOP (raised, as
    when no answer is left)."""

    def __init__(self, *answers: int) -> None:
        self.answers = list(answers)
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        code = self.answers.pop(0) if self.answers else STOP
        if code == STOP:
            raise Stop
        if request.url.params.get("watch") != "true":
            items = {"kind": "ScalingPolicyList", "metadata": {"resourceVersion": "7"}, "items": []}
            return httpx2.Response(code, json=items)
        if code == 200:
            return httpx2.Response(200, content=b"")
        status = {"kind": "Status", "status": "Failure", "code": code, "message": f"{code}"}
        return httpx2.Response(code, json=status)

    def client(self) -> AsyncClient:
        config = KubeConfig.from_one(
            cluster=Cluster(server="https://apiserver.test"), user=User(token=TOKEN)
        )
        return AsyncClient(config, transport=httpx2.MockTransport(self))


async def watch_through_lightkube(apiserver: Apiserver) -> list[float]:
    """Run the publisher's watch of ScalingPolicies until the apiserver has no answer left;
    the back-off delays it chose."""
    delays: list[float] = []

    async def sleep(delay: float) -> None:
        delays.append(delay)

    client = apiserver.client()
    reader = ClusterReader(client)  # type: ignore[arg-type]
    publisher = StatusPublisher(reader, redis=None, rand=lambda: 0.0, sleep=sleep)
    try:
        with pytest.raises(Stop):
            await publisher._watch("ScalingPolicy", reader.kinds[ScalingPolicy])
    finally:
        await client.close()
    assert not apiserver.answers
    return delays


async def test_a_watch_through_lightkube_counts_refusals_before_any_200_as_one_episode(
    logs: pytest.LogCaptureFixture,
) -> None:
    apiserver = Apiserver(429, 503, 429, 503, 429)  # httpx2 errors: debug, not a warning each
    delays = await watch_through_lightkube(apiserver)
    quiet = ["DEBUG"] * (WARN_AFTER - 1)
    assert levels(logs) == [*quiet, "WARNING", "DEBUG"]
    warning = next(r.getMessage() for r in logs.records if r.levelno == logging.WARNING)
    assert warning.startswith(
        f"watch of ScalingPolicy: Kubernetes API answered 503, {WARN_AFTER} failures in a row"
    )
    assert delays == [0.2, 0.4, 0.8, 1.6, 3.2]  # the back-off grows through the episode
    assert TOKEN not in logs.text


async def test_a_watch_through_lightkube_ends_its_episode_when_the_apiserver_answers_200(
    logs: pytest.LogCaptureFixture,
) -> None:
    refusals = [429] * (WARN_AFTER - 1)
    apiserver = Apiserver(
        *refusals,  # an episode that has not warned yet
        200,  # the watch opens, no event, the apiserver ends it; lightkube re-makes it:
        429,  # one failure: a new episode, at debug (not the old episode's warning)
        200,  # our re-made watch opens, no event; lightkube's re-made one is refused:
        *refusals,
        429,  # a new run of WARN_AFTER failures: one warning
    )
    delays = await watch_through_lightkube(apiserver)
    quiet = ["DEBUG"] * (WARN_AFTER - 1)
    assert levels(logs) == [*quiet, "DEBUG", *quiet, "WARNING"]
    failures = [r.args[2] for r in logs.records if r.levelno == logging.DEBUG]  # type: ignore[index]
    assert failures == [1, 2, 3, 1, 1, 2, 3]
    assert f"{WARN_AFTER} failures in a row" in logs.records[-1].getMessage()
    assert delays == [0.2, 0.4, 0.8, 0.2, 0.2, 0.4, 0.8, 1.6]  # and so does the back-off
    assert len(apiserver.requests) == 2 * WARN_AFTER + 3  # the last one: Stop
    assert TOKEN not in logs.text


async def test_only_a_watch_answered_200_ends_an_episode() -> None:
    """A list's 200, or a watch refused, made within the watch's task, is no watch that works."""
    apiserver = Apiserver(200, 429, 200, STOP, 200, STOP)
    client = apiserver.client()
    reader = ClusterReader(client)  # type: ignore[arg-type]
    opened: list[str] = []
    res = reader.kinds[ScalingPolicy]
    try:
        with on_watch_open(lambda: opened.append("200")):
            assert await reader.policies("acme") == []  # a list answered 200
            assert opened == []
            watch = client.watch(res, namespace="*")
            with pytest.raises(httpx2.HTTPStatusError):
                await anext(aiter(watch))  # refused 429
            assert opened == []
            with pytest.raises(Stop):  # 200, the stream ends; lightkube's next request: Stop
                await anext(aiter(client.watch(res, namespace="*")))
            assert opened == ["200"]
        with pytest.raises(Stop):  # the same outside the block: nobody is told
            await anext(aiter(client.watch(res, namespace="*")))
        assert opened == ["200"]
        assert not apiserver.answers
    finally:
        await client.close()

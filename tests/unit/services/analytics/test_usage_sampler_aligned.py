"""The usage sampler samples at each interval start of the wall clock (UTC), not every
interval after the previous sample finished: a slow cluster read does not drift it into
skipping an interval, a sample that overran skips to the next start, a sleep that wakes early
does not sample the interval it already sampled, and a failed sample does not stop it.
The clock and the sleep are injected, so nothing waits."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any, cast

import pytest

from services.analytics.cluster import ClusterReader
from services.analytics.collectors import UsageSampler
from services.analytics.records import UsageRow
from services.analytics.stores import AnalyticsStore

pytestmark = pytest.mark.unit
EVERY = 60.0
T0 = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC).timestamp()


class _StopError(Exception):
    """Ends the sampler's loop once the clock passes the test's horizon."""


class _World:
    """A wall clock, a sleep that moves it (``early`` seconds short of what was asked, as when
    the monotonic clock runs ahead of the wall clock), a cluster whose reads take ``read(n)``
    seconds (``fail`` lists reads that raise) and a store that keeps what it is given."""

    def __init__(self, start: float, *, horizon: float, early: float = 0.0) -> None:
        self.now, self.horizon, self.early = start, horizon, early
        self.read_times: list[float] = []
        self.rows: list[UsageRow] = []
        self.durations: dict[int, float] = {}
        self.fail: set[int] = set()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.now += seconds - self.early if seconds > self.early else seconds
        if self.now > self.horizon:
            raise _StopError

    async def services(self, _namespace: Any) -> list[Any]:
        n = len(self.read_times)
        self.read_times.append(self.now)
        self.now += self.durations.get(n, 2.0)
        if n in self.fail:
            raise RuntimeError("apiserver unavailable")
        obj = SimpleNamespace(
            metadata=SimpleNamespace(labels={"xynergy.io/tenant": "acme"}),
            spec=SimpleNamespace(
                profile="api-service", sizing=lambda: SimpleNamespace(cpu="1", memory="512Mi")
            ),
            status=SimpleNamespace(ready_replicas=1),
        )
        return [SimpleNamespace(obj=obj, name="crm")]

    async def add_usage(self, rows: list[UsageRow]) -> int:
        self.rows.extend(rows)
        return len(rows)

    async def run(self) -> None:
        sampler = UsageSampler(
            cast(ClusterReader, self),  # _World has what the sampler calls of each
            cast(AnalyticsStore, self),
            interval=EVERY,
            clock=self.clock,
            sleep=self.sleep,
        )
        with pytest.raises(_StopError):
            await sampler.run()

    def ids(self) -> list[str]:
        return [r.sample_id or "" for r in self.rows]


def _ids(*intervals: int) -> list[str]:
    return [
        f"crm/{dt.datetime.fromtimestamp(T0 + i * EVERY, dt.UTC).isoformat()}" for i in intervals
    ]


async def test_each_interval_is_sampled_once_at_its_start_however_long_reads_take() -> None:
    world = _World(T0 + 17, horizon=T0 + 30 * EVERY + 30)
    await world.run()
    # started mid-interval: that interval at once, then every start (2 s reads do not drift)
    assert world.read_times == [T0 + 17] + [T0 + i * EVERY for i in range(1, 31)]
    assert world.ids() == _ids(*range(31))
    assert [r.ts.timestamp() for r in world.rows] == [T0 + i * EVERY for i in range(31)]


async def test_an_overrun_sample_skips_to_the_next_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = _World(T0, horizon=T0 + 6 * EVERY + 30)
    world.durations[1] = 2.5 * EVERY  # the read at T0+60 ends at T0+210
    await world.run()
    assert world.read_times == [T0 + i * EVERY for i in (0, 1, 4, 5, 6)]
    assert world.ids() == _ids(0, 1, 4, 5, 6)
    assert "2 interval(s) not sampled" in caplog.text


async def test_an_early_wake_waits_for_the_start_instead_of_sampling_again() -> None:
    world = _World(T0 + 5, horizon=T0 + 4 * EVERY + 30, early=1.0)
    await world.run()
    assert world.read_times == [T0 + 5] + [T0 + i * EVERY for i in (1, 2, 3, 4)]
    assert world.ids() == _ids(0, 1, 2, 3, 4)


async def test_a_failed_sample_is_logged_and_the_next_start_sampled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = _World(T0, horizon=T0 + 3 * EVERY + 30)
    world.fail.add(1)
    await world.run()
    assert world.read_times == [T0 + i * EVERY for i in range(4)]
    assert world.ids() == _ids(0, 2, 3)
    assert "usage sampling failed" in caplog.text
    assert "apiserver unavailable" in caplog.text

"""The recent load tail across a refit: the new fit's tail is the history's last hour (at the
history's step, minutes apart) plus the 15 s loads the syncs saw after the history's last
sample, so a refit never loses the newest points the burst envelope reads."""

from __future__ import annotations

import numpy as np
import pytest

from controllers.providers.metrics import Samples
from controllers.scalingpolicy.models import RECENT_POINTS, FitKey, ModelCache

pytestmark = pytest.mark.unit

KEY = FitKey("prometheus:", "q", ("daily",), 86400.0, 0.9, 600.0)
T0 = 1_700_000_000.0
STEP = 300.0


def _history(end: float) -> Samples:
    """Ten samples at the history's step up to `end` (too few to fit: no CPU in a test)."""
    times = end - STEP * np.arange(9, -1, -1, dtype=np.float64)
    return Samples(times, np.full(times.size, 100.0))


async def _fitted(cache: ModelCache, now: float, *, key: FitKey = KEY, end: float) -> None:
    async def history(k: FitKey) -> tuple[Samples, float]:
        return _history(end), STEP

    await cache.refit("u1", key, now, history, keep=True)


@pytest.mark.parametrize("keep", [True, False])
async def test_a_refit_keeps_the_tail_newer_than_its_history(keep: bool) -> None:
    cache = ModelCache(refit_seconds=3600, concurrency=1)
    await _fitted(cache, T0, end=T0)
    old = cache.get("u1")
    assert old is not None
    for i in range(1, 241):  # an hour of 15 s syncs
        old.observe(T0 + 15.0 * i, 200.0 + i)
    now = T0 + 3600.0
    history_end = now - 120.0  # Prometheus's last sample on the range step's grid

    async def history(k: FitKey) -> tuple[Samples, float]:
        return _history(history_end), STEP

    await cache.refit("u1", KEY, now, history, keep=keep)
    new = cache.get("u1")
    assert new is not None
    assert new is not old
    times = [t for t, _ in new.recent]
    assert times == sorted(times)
    carried = [(t, v) for t, v in new.recent if t > history_end]
    assert carried == [(T0 + 15.0 * i, 200.0 + i) for i in range(233, 241)]
    assert len(new.recent) <= RECENT_POINTS


async def test_a_refit_for_another_query_starts_its_own_tail() -> None:
    cache = ModelCache(refit_seconds=3600, concurrency=1)
    await _fitted(cache, T0, end=T0)
    old = cache.get("u1")
    assert old is not None
    old.observe(T0 + 3590.0, 999.0)
    other = FitKey("prometheus:", "other", ("daily",), 86400.0, 0.9, 600.0)
    await _fitted(cache, T0 + 3600.0, key=other, end=T0 + 3480.0)
    new = cache.get("u1")
    assert new is not None
    assert all(v != 999.0 for _, v in new.recent)

"""Forecast models per policy, refitted on their own schedule, never on every sync.

A sync only reads the load now and decides; the model behind the forecast is fitted when a
policy has none, when the last fit is `refit_seconds` old, or when what it was fitted for
changed (the query, the source, seasonalities, history window, quantile, lead time). A fit
reads the history window through `query_range` at a step that keeps it near
`history_points` points, runs `intelligence.forecasting.AutoForecaster` (rolling-origin
backtest over about the last day, so its sMAPE / MASE are the model's recent error) on the
cache's own `concurrency` worker threads, and predicts far enough to serve every sync until
the next fit (refit period and half again, + start-up + horizon).

Only a policy without a usable model (its first fit, or what it was fitted for changed) waits
for a fit. The periodic refit runs in the background (`refresh`): the sync that finds its model
due decides from the current one and goes on, so a fit (a history read, then CPU in a worker
thread waiting for a free fit slot) never holds a sync, nor the scheduler slot that sync
occupies. At most `max_pending` refits wait at once; a sync that finds the queue full leaves
its refit to the next sync. A failed refit drops the model, as a failed first fit has none:
the next sync fits in the foreground and reports why it cannot.

The fitted forecast lives in memory: after a restart the first sync fits again (the history
is in Prometheus, not here). The load seen at each sync is appended to the fit's recent tail
(bounded), which is what the burst envelope reads when the forecast is not trusted; a refit
of the same series carries over the loads seen after its history's last sample (the history
is minutes apart, the syncs' loads seconds).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from controllers.providers.metrics import Samples
from intelligence.forecasting import DAY, WEEK, AutoForecaster, Forecast

__all__ = ["FitKey", "Fitted", "ModelCache", "backtest_steps", "fit_forecast"]

log = logging.getLogger(__name__)

RECENT_SECONDS = 3600.0
RECENT_POINTS = 512
BACKTEST_ORIGINS = 3
MIN_POINTS = 16


@dataclass(frozen=True)
class FitKey:
    """What a fit depends on; a change of any part refits at once."""

    source: str
    query: str
    seasonalities: tuple[str, ...]
    history_seconds: float
    quantile: float
    lead_seconds: float


@dataclass
class Fitted:
    """One policy's fitted model and the recent load seen since."""

    key: FitKey
    fitted_at: float
    forecast: Forecast | None
    history_seconds: float
    smape: float | None = None
    mase: float | None = None
    model: str | None = None
    note: str = ""
    recent: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=RECENT_POINTS))

    def observe(self, now: float, load: float) -> None:
        """Remember the load seen at a sync (the recent tail the burst envelope reads); what
        is older than the last hour is never read again and goes (memory at a thousand
        policies: a full tail of 512 points is about 50 KB)."""
        if not self.recent or now > self.recent[-1][0]:
            self.recent.append((now, load))
        while self.recent and self.recent[0][0] <= now - RECENT_SECONDS:
            self.recent.popleft()

    def carry(self, old: Fitted) -> None:
        """Take over the loads `old` (the fit this one replaces, of the same series) saw
        after this fit's history ends: the syncs' 15 s points the history (minutes apart)
        has not caught up with, and those seen while this fit ran. Bounded as `observe`."""
        if (old.key.source, old.key.query) != (self.key.source, self.key.query):
            return  # another series: its loads say nothing of this one
        last = self.recent[-1][0] if self.recent else -math.inf
        for t, v in list(old.recent):
            if t > last:
                self.observe(t, v)

    def recent_load(self, now: float) -> tuple[list[float], list[float]] | None:
        """(timestamps, values) of the last hour, or None when there is nothing."""
        points = [(t, v) for t, v in self.recent if t > now - RECENT_SECONDS]
        if len(points) < 2:
            return None
        return [t for t, _ in points], [v for _, v in points]


def _periods(seasonalities: tuple[str, ...], span: float) -> tuple[float, ...]:
    """Seasonal periods the history can show at least twice (daily first)."""
    wanted = [DAY if s == "daily" else WEEK for s in ("daily", "weekly") if s in seasonalities]
    return tuple(p for p in wanted if span >= 2 * p) or ((DAY,) if span >= DAY else ())


def backtest_steps(*, span: float, lead_steps: int, step: float, day: float = DAY) -> int:
    """Steps per backtest window: the lead, or a third of the last day (a quarter of a
    shorter history) when that is longer. The model is chosen, and its error reported, over
    these windows. `day` is the series' day in its own seconds (a bench replaying a
    time-compressed trace passes its own)."""
    return max(lead_steps, int(min(day, span / 4) / BACKTEST_ORIGINS / step))


def fit_forecast(history: Samples, *, key: FitKey, step: float, ahead: float) -> Fitted:
    """Fit AutoForecaster on `history` and forecast `ahead` seconds past its end (CPU-bound:
    run it in a worker thread). Errors are the backtest's, over about the last day."""
    span = history.span
    if len(history) < MIN_POINTS:
        fitted = Fitted(
            key=key,
            fitted_at=float(history.timestamps[-1]),
            forecast=None,
            history_seconds=span,
            note=f"{len(history)} points of history is too few to fit a model",
        )
        fitted.observe(float(history.timestamps[-1]), float(history.values[-1]))
        return fitted
    lead_steps = max(1, math.ceil(key.lead_seconds / step))
    horizon = backtest_steps(span=span, lead_steps=lead_steps, step=step)
    model = AutoForecaster(
        periods=_periods(key.seasonalities, span) or (DAY,),
        step=step,
        horizon=horizon,
        origins=BACKTEST_ORIGINS,
        level=2 * key.quantile - 1,
    ).fit(history.timestamps, history.values)
    forecast = model.predict(max(1, math.ceil(ahead / step)))
    chosen = model.chosen
    fitted = Fitted(
        key=key,
        fitted_at=float(history.timestamps[-1]),
        forecast=forecast,
        history_seconds=span,
        smape=_finite(chosen.smape) if chosen else None,
        mase=_finite(chosen.mase) if chosen else None,
        model=forecast.model,
        note="; ".join(model.notes[:1]),
    )
    tail = history.timestamps > history.timestamps[-1] - RECENT_SECONDS
    for t, v in zip(history.timestamps[tail], history.values[tail], strict=True):
        fitted.observe(float(t), float(v))
    return fitted


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


History = Callable[[FitKey], Awaitable[tuple[Samples, float]]]
"""Reads the history a key asks for: (samples, step)."""


class ModelCache:
    """The fitted model of every policy (by uid), refitted when due."""

    def __init__(
        self, *, refit_seconds: float, concurrency: int, max_pending: int | None = None
    ) -> None:
        self.refit_seconds = refit_seconds
        self._fits: dict[str, Fitted] = {}
        self._limit = asyncio.Semaphore(concurrency)
        # Fits run on their own `concurrency` threads, not the loop's default executor: they
        # never queue behind (or hold up) other blocking calls, and the memory the allocator
        # keeps per thread after a fit stays with those few threads.
        self._executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="refit")
        self._fitting: dict[str, asyncio.Lock] = {}
        self._pending: dict[str, asyncio.Task[None]] = {}
        self.max_pending = max_pending if max_pending is not None else 8 * concurrency
        self.fits = 0
        self._failed: dict[str, tuple[FitKey, float, str]] = {}
        """Per uid: the key, time and message of a failed history read (backoff)."""

    def get(self, uid: str) -> Fitted | None:
        return self._fits.get(uid)

    def failed(self, uid: str, key: FitKey, now: float, message: str) -> None:
        """The history read for `key` failed at `now`: no foreground retry until a refit
        period later (`backoff`)."""
        self._failed[uid] = (key, now, message)

    def backoff(self, uid: str, key: FitKey, now: float) -> str | None:
        """The message of a failed history read of `key` less than a refit period before
        `now` (the sync decides without a model and says why), else None (read again)."""
        failed = self._failed.get(uid)
        if failed is None or failed[0] != key or now - failed[1] >= self.refit_seconds:
            self._failed.pop(uid, None)
            return None
        return failed[2]

    def forget(self, uid: str) -> None:
        self._fits.pop(uid, None)
        self._failed.pop(uid, None)
        self._fitting.pop(uid, None)
        task = self._pending.pop(uid, None)
        if task is not None:
            task.cancel()

    def due(self, uid: str, key: FitKey, now: float) -> bool:
        """Whether the policy's model must be (re)fitted before deciding at `now`."""
        fitted = self._fits.get(uid)
        return fitted is None or fitted.key != key or now - fitted.fitted_at >= self.refit_seconds

    def usable(self, uid: str, key: FitKey) -> Fitted | None:
        """The policy's model if it was fitted for `key` (however old)."""
        fitted = self._fits.get(uid)
        return fitted if fitted is not None and fitted.key == key else None

    def refresh(
        self, uid: str, key: FitKey, now: float, history: History, *, name: str = ""
    ) -> bool:
        """Refit in the background, keeping the current model until the new one is ready;
        False when a refit of `uid` already waits or `max_pending` refits do. `name` (the
        policy's) is for the log of a failed refit."""
        if uid in self._pending or len(self._pending) >= self.max_pending:
            return False
        refit = self._refresh(uid, key, now, history, name=name or uid)
        task = asyncio.create_task(refit, name=f"refit {name or uid}")
        self._pending[uid] = task
        task.add_done_callback(lambda t: self._done(uid, t))
        return True

    def _done(self, uid: str, task: asyncio.Task[None]) -> None:
        if self._pending.get(uid) is task:
            del self._pending[uid]

    async def _refresh(
        self, uid: str, key: FitKey, now: float, history: History, *, name: str
    ) -> None:
        try:
            await self.refit(uid, key, now, history, keep=True)
        except Exception as exc:  # the next sync refits in the foreground and reports it
            log.info("%s: refit failed, model dropped: %s: %s", name, type(exc).__name__, exc)
            self._fits.pop(uid, None)

    async def settle(self) -> None:
        """Wait for the background refits started so far (tests, shutdown)."""
        while self._pending:
            await asyncio.gather(*self._pending.values(), return_exceptions=True)

    @property
    def pending(self) -> int:
        """Background refits waiting or running."""
        return len(self._pending)

    async def refit(
        self, uid: str, key: FitKey, now: float, history: History, *, keep: bool = False
    ) -> Fitted:
        """Fit anew from `history` (errors of the read propagate; the old fit is dropped so
        a failing source is not forecast from stale data forever). With `keep` (a background
        refit) the old fit serves until the new one replaces it."""
        async with self._fitting.setdefault(uid, asyncio.Lock()):
            if not self.due(uid, key, now):
                return self._fits[uid]
            previous = self._fits.get(uid)
            if not keep:
                self._fits.pop(uid, None)
            samples, step = await history(key)
            last = float(samples.timestamps[-1])
            ahead = (now - last) + 1.5 * self.refit_seconds + key.lead_seconds
            fit = functools.partial(fit_forecast, samples, key=key, step=step, ahead=ahead + step)
            async with self._limit:
                fitted = await asyncio.get_running_loop().run_in_executor(self._executor, fit)
            fitted.fitted_at = now
            replaced = self._fits.get(uid) if keep else previous  # with what syncs saw since
            if replaced is not None:
                fitted.carry(replaced)
            self._fits[uid] = fitted
            self.fits += 1
            return fitted

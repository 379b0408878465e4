"""The one Events helper: Kubernetes Events a user cares about, posted on the object.

Reconcilers return `Event`s (pure data); the controller posts them after the status write with
the operator's own client, from any task (an event handler or the resync scheduler alike).
kopf's own log-to-event posting is turned off below ERROR (runtime.py), so these are the only
events the operator posts. A failed post is logged, never fatal: the status is the record.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from lightkube import ApiError, AsyncClient
from lightkube.models.core_v1 import EventSource, ObjectReference
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Event as KubeEvent

__all__ = ["COMPONENT", "Event", "EventRecorder", "SaidOnce"]

COMPONENT = "xynergy-operator"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    """One Event: Normal or Warning, a CamelCase reason and a message (never a secret)."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str
    key: str | None = field(default=None, compare=False)
    """What makes it the same news as the last Event said of something that lasts (a held
    deletion, `SaidOnce`) when no status is written with it: by default its reason and
    message; a kind whose message carries a detail that changes between tries (an error's
    text) names the reason it stands for. A held deletion whose status says why it waits is
    keyed by that status instead (`SaidOnce`: the key a restarted operator can read back)."""

    @property
    def news_key(self) -> str:
        """The key `SaidOnce` compares."""
        return self.key if self.key is not None else f"{self.reason}: {self.message}"


def kube_event(body: Mapping[str, Any], event: Event, *, now: dt.datetime) -> KubeEvent:
    """The core/v1 Event for `event` on the object `body` (pure)."""
    meta = body.get("metadata") or {}
    return KubeEvent(
        metadata=ObjectMeta(generateName=f"{meta.get('name')}.", namespace=meta.get("namespace")),
        involvedObject=ObjectReference(
            apiVersion=body.get("apiVersion"),
            kind=body.get("kind"),
            name=meta.get("name"),
            namespace=meta.get("namespace"),
            uid=meta.get("uid"),
            resourceVersion=meta.get("resourceVersion"),
        ),
        type=event.type,
        reason=event.reason,
        message=event.message[:1024],
        source=EventSource(component=COMPONENT),
        reportingComponent=COMPONENT,
        reportingInstance=COMPONENT,
        firstTimestamp=now,
        lastTimestamp=now,
        count=1,
    )


@dataclass
class SaidOnce:
    """Per object, the keys of the Events already said about something that lasts and is tried
    again and again (a deletion that waits, `Controller.finalize`) during this wait: each
    distinct one is said once per wait, not on every try. The one record of it for every kind
    (each kind kept its own dict before).

    The key is what the status written with the Event says (`record`: a held deletion's
    `Reconciling` reason and message), when the kind writes one, else `Event.news_key`. Kept in
    memory, a small set per object (the last `limit` distinct keys), cleared by `forget` when
    the wait ends, and seeded from what the object's stored status says (`stored`), so an
    operator restarted during the wait, which remembers nothing, does not say again what the
    status says already. (The in-process key used to be `news_key`, an error's reason, while a
    restart compared the stored message: a new error text of the same reason was not said
    in-process, and said once more after a restart. Then only the last key was kept: two texts
    of one reason that alternate, a ReadTimeout and a ConnectTimeout, were said at every try.)"""

    limit: int = 8
    _said: dict[str, list[str]] = field(default_factory=dict, repr=False)

    def news(
        self, uid: str, event: Event, *, record: str | None = None, stored: str | None = None
    ) -> bool:
        """Whether `event` is news for the object (and remember it as said): its key
        (`record`, else `event.news_key`) was not said yet during this wait, in this process,
        nor, with nothing said in this process, is it what the stored status says (`stored`;
        None: nothing)."""
        key = record if record is not None else event.news_key
        said = self._said.get(uid)
        if said is None:
            said = self._said[uid] = [stored] if stored is not None else []
        if key in said:
            return False
        said.append(key)
        del said[: -self.limit]
        return True

    def forget(self, uid: str) -> None:
        """The wait is over (or the object gone): the next one is news again."""
        self._said.pop(uid, None)

    def __contains__(self, uid: object) -> bool:
        return uid in self._said


class EventRecorder:
    """Posts Events through the operator's client and its shared API slots."""

    def __init__(self, client: AsyncClient, *, limit: asyncio.Semaphore) -> None:
        self._client = client
        self._limit = limit
        self.posted = 0

    async def post(self, body: Mapping[str, Any], events: Iterable[Event]) -> None:
        """Post `events` on `body`; failures are logged."""
        for event in events:
            try:
                async with self._limit:
                    await self._client.create(kube_event(body, event, now=dt.datetime.now(dt.UTC)))
                self.posted += 1
            except (ApiError, OSError) as exc:
                log.warning("event %s on %s not posted: %s", event.reason, _name(body), exc)


def _name(body: Mapping[str, Any]) -> str:
    meta = body.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"

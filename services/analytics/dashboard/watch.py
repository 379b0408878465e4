"""Status changes of the platform's objects, published on the event bus for the dashboard.

Watches the tenant-labelled XynergyServices, ScalingPolicies and Rollouts (one lightkube
watch per kind, all namespaces or the configured one) and publishes, per tenant, topic
``platform-status``, ``{kind, namespace, name, op, summary}`` whenever what the dashboard shows
of an object changes (Ready, phase, replicas, step, desired instances; a DELETED object). The
gateway streams the topic to that tenant's sockets; the page re-reads its panels. Watches
that fail are re-made with capped, jittered backoff; the listing a re-made watch starts with
publishes nothing for objects whose summary did not change meanwhile.

The apiserver's transient answers (429, 5xx), frequent under load, are logged at debug while
the watch retries, with one warning per back-off episode once it has failed
:data:`WARN_AFTER` times in a row. The episode (and the back-off) ends when the watch works
again: the apiserver answers a watch request with 200 (the stream opened, even if no event
ever follows: an idle cluster, or a kind with no objects; also each re-open lightkube makes
after the apiserver ends a stream) or an event arrives; failures with no such answer between
them stay one episode. Any other failure is a warning each time.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

from lightkube import operators

from services.analytics.cluster import (
    TENANT_LABEL,
    ClusterReader,
    on_watch_open,
    transient_status,
)
from services.common.events import publish_event

__all__ = ["TOPIC", "WARN_AFTER", "StatusPublisher", "summary"]

TOPIC = "platform-status"
WARN_AFTER = 4
"""Failures in a row after which a watch failing on transient answers warns, once per
back-off episode (as many as the reader's attempts at a list)."""
log = logging.getLogger("xynergy.analytics.dashboard")


def _ready(status: dict[str, Any]) -> str | None:
    for c in status.get("conditions") or []:
        if c.get("type") == "Ready":
            return f"{c.get('status')}:{c.get('reason') or ''}"
    return None


def summary(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """What the dashboard shows of an object (its change is worth an event)."""
    st = body.get("status") or {}
    keys = {
        "XynergyService": ("replicas", "readyReplicas", "url"),
        "ScalingPolicy": ("currentInstances", "desiredInstances", "currentLoad", "mode"),
        "Rollout": ("phase", "currentStepIndex", "canaryWeight", "message"),
    }[kind]
    out = {k: st.get(k) for k in keys}
    out["ready"] = _ready(st)
    if kind == "Rollout":
        out["verdicts"] = len(st.get("analysisRuns") or [])
    return out


class StatusPublisher:
    def __init__(
        self,
        cluster: ClusterReader,
        redis: Any,
        *,
        rand: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.cluster = cluster
        self.redis = redis
        self.rand = rand
        self.sleep = sleep
        self.seen: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.published = 0

    async def run(self) -> None:
        """Watch every kind until cancelled."""
        await asyncio.gather(
            *(self._watch(model.crd.kind, res) for model, res in self.cluster.kinds.items())
        )

    async def _watch(self, kind: str, res: Any) -> None:
        failures = 0

        def opened() -> None:  # the apiserver answered 200: the watch works, the episode ends
            nonlocal failures
            failures = 0

        with on_watch_open(opened):
            while True:
                try:
                    async for op, obj in self.cluster.client.watch(  # type: ignore[attr-defined]
                        res,
                        namespace=self.cluster.namespace,
                        labels={TENANT_LABEL: operators.exists()},
                    ):
                        failures = 0
                        body = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
                        await self.observe(kind, op, body)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    failures += 1
                    delay = min(10.0, 0.2 * 2**failures) * (0.5 + self.rand() / 2)
                    self._log_failure(kind, exc, failures, delay)
                    await self.sleep(delay)

    @staticmethod
    def _log_failure(kind: str, exc: Exception, failures: int, delay: float) -> None:
        code = transient_status(exc)
        if code is None:
            log.warning("watch of %s failed (%s); again in %.1fs", kind, exc, delay)
        elif failures == WARN_AFTER:
            log.warning(
                "watch of %s: Kubernetes API answered %s, %d failures in a row; retrying, "
                "again in %.1fs",
                kind,
                code,
                failures,
                delay,
            )
        else:
            log.debug(
                "watch of %s: Kubernetes API answered %s; failure %d, again in %.1fs",
                kind,
                code,
                failures,
                delay,
            )

    async def observe(self, kind: str, op: str, body: dict[str, Any]) -> bool:
        """Publish the object's change if the dashboard would show one; True if published."""
        meta = body.get("metadata") or {}
        tenant = (meta.get("labels") or {}).get(TENANT_LABEL)
        if not tenant:
            return False
        key = (kind, str(meta.get("namespace")), str(meta.get("name")))
        now = None if op == "DELETED" else summary(kind, body)
        if now is not None and self.seen.get(key) == now:
            return False
        if now is None:
            self.seen.pop(key, None)
        else:
            self.seen[key] = now
        payload = {"kind": kind, "namespace": key[1], "name": key[2], "op": op, "summary": now}
        await publish_event(self.redis, tenant_id=tenant, topic=TOPIC, payload=payload)
        self.published += 1
        return True

"""Where a Rollout moves traffic: one backend per XynergyService backend, each the kind's glue
between the pure split it wants and a provider that knows only its cloud.

`CloudRunRollout`: the new revision is created in the target's Cloud Run service with no
traffic (one write: template named after its content, traffic pinned to the stable revision),
then traffic is split by revision percent, the new revision reachable at its tag's URL
(`canary` or `preview`). A tag and the service's name together have at most 46 characters
(`MAX_TAGGED_NAME`): the reconciler refuses a Rollout whose target's name leaves no room for
the tags it will set before anything is written. The revision name is a digest of its
configuration, so a repeated attempt (an operator killed mid-write) finds the revision instead
of making a second one.
A revision whose rollout an internal error interrupted (its Ready failed with reason INTERNAL:
the operation failed half-way) is no failed canary: it is reported `interrupted`, and the next
converge (after the core's backoff) writes the same template again, which makes Cloud Run
deploy that revision again (no second revision). Any other failure of its Ready fails it.
A promotion is one write (template and traffic: both move or neither) whose outcome is read
back from what Cloud Run serves: Promoted only once it serves the new revision alone; a
failed one gives the service back what it had and raises `PromotionFailed` (`promote`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from apis.v1alpha1.rollout import RevisionTemplate, TrafficRouting, TrafficTarget
from apis.v1alpha1.xynergyservice import XynergyService
from controllers.core.errors import ProviderError, StalledError, TransientError
from controllers.rollout.resources import restored

if TYPE_CHECKING:
    from google.cloud import run_v2

    from controllers.providers.cloudrun import CloudRunProvider, Traffic

__all__ = [
    "CANARY_TAG",
    "MAX_TAGGED_NAME",
    "PREVIEW_TAG",
    "PREVIOUS_TAG",
    "PROMOTION_FAILED",
    "STABLE_TAG",
    "CanaryState",
    "CloudRunRollout",
    "RolloutBackend",
    "Routed",
    "Serving",
    "tag_fits",
]

log = logging.getLogger(__name__)
STABLE_TAG = "stable"
CANARY_TAG = "canary"
PREVIEW_TAG = "preview"
"""The new revision's tag while a blue-green Rollout previews it (`canary` otherwise)."""
PREVIOUS_TAG = "previous"
"""The old revision's tag during a blue-green keep window (`scaleDownDelaySeconds` > 0)."""
PROMOTION_FAILED = "PromotionFailed"
"""The reason of the TransientError a promotion the platform did not carry out raises."""
MAX_TAGGED_NAME = 46
"""Cloud Run refuses a traffic tag whose length plus the service's name's exceeds 46
(INVALID_ARGUMENT "Combined traffic tag and service name cannot exceed 46 characters"): the
tag's URL `https://TAG---SERVICE-HASH-REGION.a.run.app` is one DNS label (63 characters)."""


def tag_fits(service: str, tag: str) -> bool:
    """Whether Cloud Run accepts `tag` on the service named `service`."""
    return len(service) + len(tag) <= MAX_TAGGED_NAME


@dataclass(frozen=True)
class Serving:
    """What the target serves now."""

    revision: str | None
    """The revision with the most traffic (None: nothing ready yet)."""
    ready: bool
    template: str | None = None
    """The revision the platform's template names (Cloud Run: a promotion's write moved it to
    the new revision, whether or not the Rollout recorded it); None where the target's spec
    is the template (Kubernetes) or it names none."""


@dataclass(frozen=True)
class CanaryState:
    """The new revision as the backend sees it."""

    ready: bool
    failed: str | None = None
    """The revision failed on its own (REVISION_FAILED etc.): the canary failed."""
    interrupted: str | None = None
    """An internal error interrupted its rollout: it is deployed again (after a backoff)."""
    url: str | None = None
    writes: int = 0


@dataclass(frozen=True)
class Routed:
    """What a traffic write did."""

    writes: int
    urls: dict[str, str]
    """URL per tag (stable, canary, preview, previous) where the backend knows one."""
    traffic: tuple[TrafficTarget, ...] | None = None
    """The upstreams the gateway is to apply (None: the backend routes by itself)."""
    settled: bool = True
    """A promotion is complete (False: come back soon, e.g. the target is still rolling)."""
    pending: str | None = None
    """A promotion written but not carried out yet (Cloud Run's operation still runs): what
    it waits for. The Rollout is not promoted yet; the next converge reads it back."""


class RolloutBackend(Protocol):
    """What a strategy's moves need of a runtime."""

    routing: TrafficRouting | None
    """How traffic is split (None: the platform's own revision traffic, Cloud Run)."""
    defers_target_patch: bool
    """Blue-green keeps the old revision by not patching the target until the delay ends."""

    def revision_name(self, canary: XynergyService) -> str:
        """The new revision's name (deterministic: the same configuration, the same name)."""
        ...

    async def serving(self, target: XynergyService) -> Serving: ...

    async def ensure_canary(
        self, target: XynergyService, canary: XynergyService, *, name: str, stable: str, tag: str
    ) -> CanaryState:
        """The new revision exists (created with no traffic when missing); its state."""
        ...

    async def route(self, target: XynergyService, split: Traffic) -> Routed:
        """Traffic as `split`."""
        ...

    async def promote(
        self,
        target: XynergyService,
        canary: XynergyService,
        *,
        name: str,
        keep: str | None,
        confirmed: bool = False,
    ) -> Routed:
        """All traffic to the new revision for good (`keep` reachable a while). TransientError
        `PromotionFailed` when the platform did not carry it out (retried, bounded by the
        reconciler). `confirmed`: a promotion done before, held (no read-back, no retry)."""
        ...

    async def restore(
        self,
        target: XynergyService,
        *,
        kept: str,
        image: str | None,
        template: RevisionTemplate | None = None,
    ) -> Routed:
        """The blue-green fast rollback: all traffic back on `kept` (the old revision a
        promotion still keeps) at once, with no new revision; `image` is its image and
        `template` its env, args and resources as recorded (None: not recorded)."""
        ...

    async def retire(self, *, keep: str | None) -> int:
        """Remove this Rollout's new revisions other than `keep` (None: all of them): one
        its spec replaced mid-rollout, or what is left once its target moved on. Writes."""
        ...


def _short(resource: str) -> str:
    return resource.rpartition("/")[2]


class CloudRunRollout:
    """Revisions and traffic of the target's Cloud Run service."""

    routing: TrafficRouting | None = None
    defers_target_patch = False

    def __init__(self, provider: CloudRunProvider) -> None:
        self.provider = provider

    def revision_name(self, canary: XynergyService) -> str:
        from controllers.xynergyservice.resources import cloudrun

        view = cloudrun.managed_view(cloudrun.desired_service(canary, None), canary)["template"]
        digest = hashlib.sha256(json.dumps(view, sort_keys=True).encode()).hexdigest()[:8]
        return f"{canary.metadata.name}-ro-{digest}"

    async def serving(self, target: XynergyService) -> Serving:
        from controllers.xynergyservice.resources import cloudrun

        service = await self.provider.get(cloudrun.service_path(target))
        if service is None:
            return Serving(None, ready=False)
        return Serving(
            _serving_revision(service),
            ready=not service.reconciling,
            template=_short(service.template.revision) or None,
        )

    async def ensure_canary(
        self, target: XynergyService, canary: XynergyService, *, name: str, stable: str, tag: str
    ) -> CanaryState:
        """Create the revision (no traffic), then give the service its previous template
        back (naming the revision it was), so the target's own controller finds the service
        as it left it and makes no revision of its own while the rollout runs."""
        from controllers.providers.cloudrun import traffic_targets
        from controllers.xynergyservice.resources import cloudrun

        path = cloudrun.service_path(target)
        previous: list[run_v2.RevisionTemplate] = []

        def build(existing: run_v2.Service) -> run_v2.Service:
            previous[:] = [type(existing.template)(existing.template)]
            service = cloudrun.desired_service(canary, existing)
            service.template.revision = name
            service.traffic = traffic_targets(((stable, 100, STABLE_TAG), (name, 0, tag)))
            return service

        revision, writes = await self.provider.create_revision(path, name, build)
        if not writes and revision is not None and _interrupted_message(revision) is not None:
            log.info("rollout: revision %s was interrupted; deploying it again", name)
            revision, writes = await self._redeploy(path, name, build)
        if writes and previous and previous[0].revision:
            _, restored = await self.provider.set_template(path, previous[0])
            writes += restored
        return _canary_state(revision, writes)

    async def _redeploy(
        self, path: str, name: str, build: Callable[[run_v2.Service], run_v2.Service]
    ) -> tuple[run_v2.Revision | None, int]:
        """Write the revision's template (`build` names it `name`: same configuration) again:
        Cloud Run deploys that revision again instead of making a new one (nothing when the
        service is gone: the revision then is too)."""
        _, writes = await self.provider.apply(
            path, lambda existing: None if existing is None else (build(existing), None)
        )
        return await self.provider.revision(path, name), writes

    async def promote(
        self,
        target: XynergyService,
        canary: XynergyService,
        *,
        name: str,
        keep: str | None,
        confirmed: bool = False,
    ) -> Routed:
        """The service's template becomes the new revision's (by name: no new revision) and
        all traffic goes to the latest revision (so the target's later changes deploy as they
        would without a Rollout), in one write: Cloud Run carries both out or neither. `keep`
        stays reachable at the `previous` tag (kept without it when the tag does not fit
        beside the service's name: `_previous`). A template Cloud Run refuses because the
        configuration drifted from the revision's (ALREADY_EXISTS, `RevisionConflict`) is
        left as it is and the revision pinned at 100 % by name instead (one write too).

        What Cloud Run serves is read back (`trafficStatuses`): done only once it serves the
        new revision alone, the promotion's write carried out. While its operation runs the
        answer says so (`pending`: no write, read again at the next converge). Its own write
        found failed is written again; a write that failed now gives the service back the
        template and traffic it had before it (`_give_back`: the target's controller, whose
        spec is not patched yet, then finds the service as it left it) and raises
        TransientError `PromotionFailed` naming Cloud Run's error and what it serves.

        `confirmed`: the promotion was seen carried out before (an ended Rollout holding it,
        its keep window ending): the template and traffic are made so (each only when it
        differs), with no read-back, no write again because some operation failed (the
        target's own controller writes the same service) and nothing given back."""
        from controllers.providers.cloudrun import traffic_of
        from controllers.xynergyservice.resources import cloudrun

        path = cloudrun.service_path(target)
        if confirmed:
            return await self._hold(path, target, canary, name=name, keep=keep)
        existing = await self.provider.get(path)
        split: Traffic = ((None, 100, None), *_previous(keep, target))
        if existing is None:  # NotFound: the service and its traffic are gone
            return await self._route(path, split, 0)
        template = cloudrun.desired_service(canary, existing).template
        template.revision = name
        pinned: Traffic = ((name, 100, None), *_previous(keep, target))

        def written(service: run_v2.Service) -> tuple[run_v2.RevisionTemplate | None, Traffic]:
            """The promotion's own write when `service`'s spec is it: (its template, or None
            for the pinned form; its split); else (None, ()): an empty split."""
            traffic = traffic_of(service)
            if traffic == split and service.template == template:
                return template, split
            if traffic == pinned:
                return None, pinned
            return None, ()

        def ours(service: run_v2.Service) -> bool:
            return bool(written(service)[1])

        ours_template, ours_split = written(existing)
        if ours_split:
            if existing.reconciling:
                return _pending(existing, name)
            if _serves(existing, name):
                return _routed(existing, writes=0)
        # its operation failed: the promotion's own write, again; else the promotion's write
        to = (ours_template, ours_split) if ours_split else (template, split)
        service, writes = await self._write_promotion(
            path,
            name,
            to,
            pinned=pinned,
            again=bool(ours_split),
            ours=ours,
        )
        if service is None:  # deleted meanwhile: nothing to serve
            return Routed(writes, {})
        if _serves(service, name):
            return _routed(service, writes=writes)
        if service.reconciling:  # still deploying past the provider's operation timeout
            return _pending(service, name, writes=writes)
        before = None if ours_split else existing
        raise await self._promotion_failed(path, service, before, name, ours=ours)

    async def _write_promotion(
        self,
        path: str,
        name: str,
        to: tuple[run_v2.RevisionTemplate | None, Traffic],
        *,
        pinned: Traffic,
        again: bool,
        ours: Callable[[run_v2.Service], bool],
    ) -> tuple[run_v2.Service | None, int]:
        """The promotion's one write (`to`: its template, None to leave it, and its split;
        `again`: its own earlier write, whose operation failed); the service written and the
        writes. A template Cloud Run refuses as a drifted configuration (`RevisionConflict`)
        is left as it is and `pinned` written instead. A transient error is read back: a
        write whose answer was lost may be done (`ours`: the service's spec is the promotion's
        own write); a StalledError (403, 400) is a refusal, nothing moved, and re-reading
        would hide it as a failed promotion retried."""
        template, split = to
        try:
            try:
                return await self.provider.set_service(path, template, split, again=again)
            except StalledError as exc:
                if exc.reason != "RevisionConflict" or template is None:
                    raise
                log.info("rollout: %s not adopted as the template (%s)", name, exc.message)
                return await self.provider.set_service(path, None, pinned)
        except TransientError:
            after = await self.provider.get(path)
            if after is None or not ours(after):
                raise  # not written: nothing moved
            return after, 1

    async def _promotion_failed(
        self,
        path: str,
        service: run_v2.Service,
        before: run_v2.Service | None,
        name: str,
        *,
        ours: Callable[[run_v2.Service], bool],
    ) -> TransientError:
        """The failure report of a promotion whose write Cloud Run did not carry out: the
        TransientError `PromotionFailed` naming Cloud Run's error and what it serves, after
        the service got back (`_give_back`) what it had `before` the write (None: the write
        was the promotion's own earlier one, nothing to give back)."""
        failed = service.terminal_condition.message or "its operation failed"
        given = "" if before is None else await self._give_back(path, before, name, ours=ours)
        return TransientError(
            f"Cloud Run did not promote revision {name}: {failed}; it serves "
            f"{_describe(service)}{given}",
            reason=PROMOTION_FAILED,
        )

    async def _hold(
        self,
        path: str,
        target: XynergyService,
        canary: XynergyService,
        *,
        name: str,
        keep: str | None,
    ) -> Routed:
        """A confirmed promotion kept as before this change: the template names the new
        revision (the revision pinned by name instead when the configuration drifted), then
        the traffic; each written only when it differs."""
        from controllers.xynergyservice.resources import cloudrun

        existing = await self.provider.get(path)
        writes = 0
        if existing is not None:
            template = cloudrun.desired_service(canary, existing).template
            template.revision = name
            try:
                _, writes = await self.provider.set_template(path, template)
            except ProviderError as exc:  # configuration drifted: pin the revision instead
                log.info("rollout: %s not adopted as the template (%s)", name, exc.message)
                split: Traffic = ((name, 100, None),)
                return await self._route(path, split + _previous(keep, target), writes)
        return await self._route(path, ((None, 100, None), *_previous(keep, target)), writes)

    async def _give_back(
        self,
        path: str,
        before: run_v2.Service,
        name: str,
        *,
        ours: Callable[[run_v2.Service], bool],
    ) -> str:
        """Write the template and traffic `before` (as read before the promotion's write)
        back, in one write, when the service no longer has them and its spec is still the
        promotion's own write (`ours`): a spec written meanwhile by someone else (the
        XynergyService controller) is theirs, not overwritten; what the error message adds
        about it."""
        from controllers.providers.cloudrun import traffic_of

        now = await self.provider.get(path)
        if now is None or (
            now.template == before.template and traffic_of(now) == traffic_of(before)
        ):
            return ""
        if not ours(now):
            log.info("rollout: %s changed since the promotion's write; not given back", path)
            return "; the service was written since (not by this Rollout), so it is left as it is"
        try:
            back, _ = await self.provider.set_service(path, before.template, traffic_of(before))
        except ProviderError as exc:
            why = exc.message
        else:
            if back is None or back.reconciling or not _failed(back):
                return "; its template and traffic are back as they were"
            why = f"its operation failed: {back.terminal_condition.message or 'no message'}"
        log.info("rollout: template of %s not given back (%s)", path, why)
        return (
            f"; its template and traffic could not be given back ({why}): they may name "
            f"revision {name}"
        )

    async def restore(
        self,
        target: XynergyService,
        *,
        kept: str,
        image: str | None,
        template: RevisionTemplate | None = None,
    ) -> Routed:
        """The service's template becomes the kept revision's again (by name: no new
        revision; the target's spec is then patched back to it, so its controller finds the
        service as it wants it), and all traffic is pinned to that revision. The template is
        built from the kept revision's recorded `image` and `template` (env, args, resources),
        not from the target's spec, which may hold the promotion's patch (the new env under
        the stable revision's name would be refused). A template that cannot name it (its
        env, args and resources not recorded, and the Rollout changed more than the image)
        leaves the template: traffic still moves at once."""
        from controllers.xynergyservice.resources import cloudrun

        path = cloudrun.service_path(target)
        existing = await self.provider.get(path)
        writes = 0
        if existing is not None:
            old = restored(target, image, template)
            revision = cloudrun.desired_service(old, existing).template
            revision.revision = kept
            try:
                _, writes = await self.provider.set_template(path, revision)
            except ProviderError as exc:
                log.info("rollout: %s not restored as the template (%s)", kept, exc.message)
        return await self._route(path, ((kept, 100, None),), writes)

    async def retire(self, *, keep: str | None) -> int:
        """Nothing: a revision of the service with no traffic scales to zero (each new
        revision's first write pins the traffic to the stable one and itself)."""
        return 0

    async def _route(self, path: str, split: Traffic, writes: int) -> Routed:
        service, more = await self.provider.set_traffic(path, split)
        urls = {t.tag: t.uri for t in service.traffic_statuses if t.tag} if service else {}
        return Routed(writes + more, urls)

    async def route(self, target: XynergyService, split: Traffic) -> Routed:
        from controllers.xynergyservice.resources import cloudrun

        return await self._route(cloudrun.service_path(target), split, 0)


def _previous(keep: str | None, target: XynergyService) -> Traffic:
    """The kept old revision at the `previous` tag. A blue-green Rollout whose target's name
    leaves room for `preview` but not for that tag, which the reconciler's start check did not
    see (started before the check, or `scaleDownDelaySeconds` set during its preview), is not
    failed at its promotion by Cloud Run's refusal: the old revision is left out of the split
    (no URL of its own; a fast rollback still routes to it by name)."""
    if not keep:
        return ()
    name = target.metadata.name or ""
    if not tag_fits(name, PREVIOUS_TAG):
        log.info(
            "rollout: %s kept without the %r tag: %r has %d characters and Cloud Run allows %d "
            "for a tag and the service's name together",
            keep, PREVIOUS_TAG, name, len(name), MAX_TAGGED_NAME,
        )  # fmt: skip
        return ()
    return ((keep, 0, PREVIOUS_TAG),)


def _served(service: run_v2.Service) -> dict[str, int]:
    """Percent per revision Cloud Run serves (`trafficStatuses`, LATEST resolved to the latest
    ready revision), not the split it was asked for (`traffic`)."""
    served: dict[str, int] = {}
    for t in service.traffic_statuses:
        revision = _short(t.revision) or _short(service.latest_ready_revision)
        if revision and t.percent:
            served[revision] = served.get(revision, 0) + t.percent
    return served


def _serves(service: run_v2.Service, name: str) -> bool:
    """Whether the service serves revision `name` alone, its last write carried out."""
    return (
        not service.reconciling
        and service.observed_generation == service.generation
        and _served(service).get(name) == 100
    )


def _failed(service: run_v2.Service) -> bool:
    """The service's last operation ended failed (its terminal condition)."""
    from google.cloud import run_v2

    return service.terminal_condition.state == run_v2.Condition.State.CONDITION_FAILED


def _describe(service: run_v2.Service) -> str:
    served = _served(service)
    ordered = sorted(served.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{r} {p}%" for r, p in ordered) or "nothing"


def _routed(service: run_v2.Service | None, *, writes: int) -> Routed:
    urls = {t.tag: t.uri for t in service.traffic_statuses if t.tag} if service else {}
    return Routed(writes, urls)


def _pending(service: run_v2.Service, name: str, *, writes: int = 0) -> Routed:
    urls = {t.tag: t.uri for t in service.traffic_statuses if t.tag}
    return Routed(
        writes,
        urls,
        pending=f"Cloud Run is still carrying out the promotion of revision {name} (it serves "
        f"{_describe(service)})",
    )


def _serving_revision(service: run_v2.Service) -> str | None:
    best: tuple[int, str] | None = None
    for t in service.traffic_statuses:
        revision = _short(t.revision) or _short(service.latest_ready_revision)
        if revision and (best is None or t.percent > best[0]):
            best = (t.percent, revision)
    return best[1] if best else (_short(service.latest_ready_revision) or None)


def _ready_condition(revision: run_v2.Revision) -> run_v2.Condition | None:
    return next((c for c in revision.conditions if c.type_ == "Ready"), None)


def _interrupted_message(revision: run_v2.Revision) -> str | None:
    """Why an internal error interrupted the revision's rollout (its Ready failed with reason
    INTERNAL: the operation failed half-way, deploying it again may succeed); None when not."""
    from google.cloud import run_v2

    ready = _ready_condition(revision)
    if (
        ready is None
        or ready.state != run_v2.Condition.State.CONDITION_FAILED
        or ready.reason != run_v2.Condition.CommonReason.INTERNAL
    ):
        return None
    return ready.message or "internal error"


def _canary_state(revision: run_v2.Revision | None, writes: int) -> CanaryState:
    from google.cloud import run_v2

    if revision is None:
        return CanaryState(ready=False, writes=writes)
    state = run_v2.Condition.State
    ready = _ready_condition(revision)
    interrupted = _interrupted_message(revision)
    if interrupted is not None:
        return CanaryState(ready=False, interrupted=interrupted, writes=writes)
    if ready is not None and ready.state == state.CONDITION_FAILED:
        return CanaryState(ready=False, failed=ready.message or "revision failed", writes=writes)
    ok = ready is not None and ready.state == state.CONDITION_SUCCEEDED
    return CanaryState(ready=ok, writes=writes)

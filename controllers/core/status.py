"""The one status writer, and the bookkeeping every kind's status shares.

As Knative's reconcile_common does it once for all kinds: `observedGeneration` is set to the
object's integer generation here, conditions come from `apis.conditions` (kstatus: Ready always
present, Reconciling/Stalled only while True), and the status subresource is patched only when
something a reader cares about changed (compare before write), so an unchanged object causes
no write. `spec_error` turns a validation error into the one message a Stalled condition shows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from typing import Any, TypeVar

from lightkube import ApiError, AsyncClient
from lightkube.types import PatchType
from pydantic import BaseModel, ValidationError

__all__ = ["StatusWriter", "comparable", "merge_patch", "spec_error", "status_changed"]

S = TypeVar("S", bound=BaseModel)

# Moves on every converge by design; never a reason to write.
ALWAYS_VOLATILE = frozenset({"lastReconcileTime"})


def spec_error(exc: ValidationError) -> str:
    """The first validation error as `path: message`, the path as a user writes it
    (`spec.env[0].name`), from an error raised validating the whole object."""
    first = exc.errors()[0]
    path = ""
    for part in first["loc"]:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return f"{path or 'object'}: {first['msg']}"


def comparable(status: BaseModel | None, *, volatile: Collection[str] = ()) -> dict[str, Any]:
    """The status as a reader sees it, without fields that move on their own."""
    if status is None:
        return {}
    data = status.model_dump(by_alias=True, mode="json", exclude_none=True)
    for key in (*ALWAYS_VOLATILE, *volatile):
        data.pop(key, None)
    return data


def status_changed(
    old: Mapping[str, Any] | BaseModel | None, new: S, *, volatile: Collection[str] = ()
) -> bool:
    """True when writing `new` over `old` (a stored status) would change anything."""
    if old is not None and not isinstance(old, BaseModel):
        try:
            old = type(new).model_validate(dict(old))
        except ValidationError:
            return True  # whatever is stored is not a valid status: replace it
    return comparable(old, volatile=volatile) != comparable(new, volatile=volatile)


def merge_patch(status: BaseModel, stored: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The status as a JSON merge patch body: fields we do not set are removed (null). A
    merge patch merges an object into the stored one, so in an object field (not a list,
    which is replaced whole) a key `stored` (the status as read) has and `status` no longer
    sets is removed too (null, at any depth): `{}` alone would change nothing, and an object
    known to be empty now would read back as it was."""
    dumped = status.model_dump(by_alias=True, mode="json", exclude_none=True)
    for name, info in type(status).model_fields.items():
        dumped.setdefault(info.alias or name, None)
    if isinstance(stored, Mapping):
        _null_dropped(dumped, stored)
    return dumped


def _null_dropped(patch: dict[str, Any], stored: Mapping[str, Any]) -> None:
    for key, value in patch.items():
        old = stored.get(key)
        if isinstance(value, dict) and isinstance(old, Mapping):
            _null_dropped(value, old)
            for gone in old.keys() - value.keys():
                value[gone] = None


def with_generation(status: S, body: Mapping[str, Any]) -> S:
    """`status` with observedGeneration set to the object's generation (an integer)."""
    if "observed_generation" not in type(status).model_fields:
        return status
    generation = (body.get("metadata") or {}).get("generation")
    value = int(generation) if generation is not None else None
    return status.model_copy(update={"observed_generation": value})


class StatusWriter:
    """Patches the status subresource, only when it changed; every kind writes through it."""

    def __init__(self, client: AsyncClient, *, limit: asyncio.Semaphore) -> None:
        self._client = client
        self._limit = limit
        self.writes = 0

    async def write(
        self,
        resource: Any,
        body: Mapping[str, Any],
        status: BaseModel,
        *,
        volatile: Collection[str] = (),
    ) -> bool:
        """Write `status` for the object `body` unless the stored one is the same; True if
        written. observedGeneration is set from `body` here, for every kind."""
        status = with_generation(status, body)
        if not status_changed(body.get("status"), status, volatile=volatile):
            return False
        meta = body.get("metadata") or {}
        async with self._limit:
            try:
                await self._client.patch(
                    resource.Status,
                    meta["name"],
                    {"status": merge_patch(status, body.get("status"))},
                    namespace=meta.get("namespace"),
                    patch_type=PatchType.MERGE,
                )
            except ApiError as exc:
                if exc.status.code == 404:
                    return False  # deleted meanwhile: nothing to report on
                raise
        self.writes += 1
        return True

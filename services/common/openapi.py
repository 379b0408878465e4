"""The platform's error responses in a service's OpenAPI: the one error shape
(:mod:`services.common.errors`) documented for the statuses an operation can answer; and the
event stream of chat completion chunks the AI router and the Internal AI answer with
(:func:`chat_chunk_events`).

A service's routers pass ``responses=error_responses(...)`` with what their operations can
answer, from the service itself or from the gateway in front of it, so a client (and the fuzz
tests, tests/integration/security) can rely on the documented statuses and bodies. The CRM has
its own, more detailed list (services/crm/errors.py).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["BEHIND_GATEWAY", "ErrorBody", "FieldProblem", "chat_chunk_events", "error_responses"]


class FieldProblem(BaseModel):
    field: str = Field(description="The field, parameter or header at fault, e.g. `body.to`.")
    message: str


class ErrorBody(BaseModel):
    """Every error response of a service, and of the gateway in front of it."""

    # a 409 of an unusable OAuthConnection adds connection, phase and authorizationURL
    model_config = ConfigDict(extra="allow")

    error: str = Field(description="A stable code: unauthorized, not_found, validation_failed...")
    message: str = Field(description="For people; names the field or parameter at fault.")
    status: int = Field(ge=400, le=599, description="The HTTP status, repeated.")
    fields: list[FieldProblem] | None = Field(
        default=None, description="On 422: every bad field, parameter or header."
    )


_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying."}}
_DESCRIPTIONS: dict[int, tuple[str, dict[str, Any]]] = {
    400: ("Refused by the gateway or the service: an unreadable path, header or body.", {}),
    401: (
        "No valid identity: a missing, expired or forged bearer token at the gateway.",
        {"WWW-Authenticate": {"description": "Bearer challenge (gateway)."}},
    ),
    403: ("The caller's roles (or the connection's scopes) do not allow this.", {}),
    404: ("No such resource for your tenant.", {}),
    409: (
        "The tenant's OAuthConnection is not usable (`oauth_not_connected`: `connection`, "
        "`phase`, `authorizationURL` say which and how to connect), or its token was refused.",
        {},
    ),
    413: ("The body is over the gateway's or the service's limit.", {}),
    422: ("A body field, query parameter or header is invalid; `fields` names each.", {}),
    429: ("A rate limit (the gateway's, or the provider's).", _RETRY_AFTER),
    502: ("The provider behind the service answered something unusable.", {}),
    503: ("A dependency is unavailable (or the gateway's breaker is open).", _RETRY_AFTER),
    504: ("The provider or upstream did not answer in time.", {}),
}
BEHIND_GATEWAY = (400, 401, 413, 429, 503)
"""What any operation can answer through the gateway, whatever its parameters."""


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries documenting :class:`ErrorBody` for these statuses."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in sorted(set(statuses)):
        description, headers = _DESCRIPTIONS[status]
        out[status] = {"model": ErrorBody, "description": description}
        if headers:
            out[status]["headers"] = headers
    return out


def chat_chunk_events() -> dict[str, Any]:
    """OpenAPI ``content`` entry of a chat completion streamed as server-sent events (``data:
    <chunk>``, then ``data: [DONE]``); a new dict each call, as FastAPI adds to what it is
    given."""
    return {
        # one event, as OpenAPI 3.2 reads an event stream's schema (3.1 has no itemSchema)
        "text/event-stream": {
            "schema": {
                "type": "object",
                "required": ["data"],
                "properties": {
                    "data": {"type": "string", "description": "A chunk's JSON, or [DONE]."}
                },
            }
        }
    }

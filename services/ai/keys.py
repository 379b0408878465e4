"""Normalised requests and cache keys. Pure: no I/O.

Two requests share a cache entry when they would ask a provider the same thing: the same
tenant, the same requested model and the same normalised body. Normalising drops what does not
change the answer (``user``, ``metadata``, ``store``, ``service_tier``, ``stream_options``
unless streaming), strips the whitespace around message texts, writes numbers as floats
(``0`` and ``0.0`` are one temperature) and sorts keys. A request is deterministic, and so
cached without being asked to, when ``temperature`` is 0 and it asks for one choice.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from services.common.tenancy import tenant_key, user_key

__all__ = [
    "CACHE_PREFIX",
    "cache_key",
    "deterministic",
    "key_pattern",
    "last_user_text",
    "normalise",
]

CACHE_PREFIX = "ai:c"
_IGNORED = frozenset({"user", "metadata", "store", "service_tier"})


def _norm(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, list):
        return [_norm(v) for v in value]
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items() if v is not None}
    return value


def _message(message: dict[str, Any]) -> dict[str, Any]:
    out = _norm(message)
    if isinstance(out.get("content"), str):
        out["content"] = out["content"].strip()
    return dict(out)


def normalise(body: dict[str, Any]) -> str:
    """The canonical text of what a request asks (without its model: that is in the key)."""
    stream = bool(body.get("stream"))
    out: dict[str, Any] = {}
    for name, value in body.items():
        if name in _IGNORED or name == "model" or value is None:
            continue
        if name == "stream_options" and not stream:
            continue
        if name == "messages":
            out[name] = [_message(m) for m in value]
        else:
            out[name] = _norm(value)
    out["stream"] = stream
    return json.dumps(out, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def deterministic(body: dict[str, Any]) -> bool:
    """Temperature 0 and one choice: the same request gets the same answer."""
    temperature = body.get("temperature")
    n = body.get("n")
    return temperature is not None and float(temperature) == 0.0 and (n is None or n == 1)


def key_pattern(tenant: str, model: str | None = None) -> str:
    """The SCAN pattern of a tenant's entries (of one model when given)."""
    model_part = user_key(model) if model is not None else "*"
    return f"{CACHE_PREFIX}:{tenant_key(tenant)}:{model_part}:*"


def cache_key(tenant: str, model: str, body: dict[str, Any]) -> str:
    """``ai:c:<tenant>:<model>:<sha256 of the normalised body>``; the tenant id is checked to
    hold no separator, and a model name that could is replaced by a digest."""
    digest = hashlib.sha256(normalise(body).encode()).hexdigest()[:40]
    return f"{CACHE_PREFIX}:{tenant_key(tenant)}:{user_key(model)}:{digest}"


def last_user_text(body: dict[str, Any]) -> str:
    """The text of the last user message (what invalidation by prompt prefix matches)."""
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content.strip()
            if isinstance(content, list):
                return " ".join(
                    str(p.get("text", "")) for p in content if isinstance(p, dict)
                ).strip()
    return ""

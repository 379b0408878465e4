"""JSON mode of the fake: what a model that follows its instructions answers when asked for
JSON (``response_format`` ``json_object``, or ``json_schema`` with a schema).

With ``json_schema`` the answer is an instance of the given schema. With ``json_object`` it is
an instance of the last JSON Schema found in the messages (the way callers describe the object
they want), else ``{"answer": <the fake's usual text>}``. The instance is the smallest honest
one: every property, arrays at their minimum length (at least one item), strings made of
"fake" words within their length limits and matching their pattern when a simple candidate
does, numbers at the middle of their range; a string whose description asks to cite ids as
``[id]`` (``ids: q1, q2``) cites the first one. As at the API, ``json_object`` needs the word
"json" somewhere in the messages (400 otherwise).
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["json_answer", "json_mode_error", "schema_instance"]

_CITE = re.compile(r"\[id\].*?ids: ([\w-]+)")
_CANDIDATES = ("fake", "#fake", "fake-1", "q1", "en", "a", "1", "fake@example.com")


def json_mode_error(body: dict[str, Any]) -> str | None:
    """The API's refusal of a ``json_object`` request that never mentions JSON, else None."""
    if _mode(body) != "json_object":
        return None
    if "json" in json.dumps(body.get("messages"), ensure_ascii=False).lower():
        return None
    return (
        "'messages' must contain the word 'json' in some form, to use 'response_format' of "
        "type 'json_object'."
    )


def json_answer(body: dict[str, Any], text: str) -> str | None:
    """The JSON text to answer with, or None when the request asks for no JSON."""
    mode = _mode(body)
    if mode == "json_schema":
        spec = body["response_format"].get("json_schema") or {}
        return json.dumps(schema_instance(spec.get("schema") or {}))
    if mode != "json_object":
        return None
    schema = _schema_in(body.get("messages") or [])
    return json.dumps(schema_instance(schema) if schema else {"answer": text})


def _mode(body: dict[str, Any]) -> str | None:
    fmt = body.get("response_format")
    return fmt.get("type") if isinstance(fmt, dict) else None


def _schema_in(messages: list[Any]) -> dict[str, Any] | None:
    """The last JSON object in the messages that looks like a JSON Schema."""
    decoder = json.JSONDecoder()
    found = None
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str):
            continue
        at = content.find("{")
        while at != -1:
            try:
                obj, end = decoder.raw_decode(content, at)
            except ValueError:
                at = content.find("{", at + 1)
                continue
            if isinstance(obj, dict) and ("properties" in obj or "$defs" in obj):
                found = obj
            at = content.find("{", end)
    return found


def schema_instance(schema: dict[str, Any], root: dict[str, Any] | None = None) -> Any:
    """The smallest honest instance of ``schema`` (``root`` holds its ``$defs``)."""
    root = root if root is not None else schema
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return schema_instance({**root.get("$defs", {}).get(name, {})}, root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        options = [o for o in schema.get(key, []) if o.get("type") != "null"]
        if options:
            return schema_instance(options[0], root)
    if schema.get("allOf"):
        return schema_instance(schema["allOf"][0], root)
    kind = schema.get("type", "object")
    kind = next((k for k in kind if k != "null"), "null") if isinstance(kind, list) else kind
    return _BUILDERS.get(kind, lambda _s, _r: None)(schema, root)


def _object(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    props = schema.get("properties", {})
    return {name: schema_instance(sub, root) for name, sub in props.items()}


def _array(schema: dict[str, Any], root: dict[str, Any]) -> list[Any]:
    count = min(max(schema.get("minItems", 1), 1), schema.get("maxItems", 1 << 30))
    items = schema.get("items") or {}
    return [schema_instance(items, root) for _ in range(count)]


def _string(schema: dict[str, Any], _root: dict[str, Any]) -> str:
    low, high = schema.get("minLength", 1), schema.get("maxLength", 40)
    pattern = schema.get("pattern")
    fits = [c for c in _CANDIDATES if pattern and re.search(pattern, c) and low <= len(c) <= high]
    if fits:
        return fits[0]
    words = max(1, (low + 4) // 5)
    text = " ".join(["fake"] * words)
    cite = _CITE.search(schema.get("description", ""))
    if cite and len(text) + len(cite[1]) + 3 <= high:
        text += f" [{cite[1]}]"
    return text[:high]


def _number(schema: dict[str, Any], _root: dict[str, Any]) -> float | int:
    low: float = schema.get("minimum", schema.get("exclusiveMinimum", 0))
    high: float = schema.get("maximum", schema.get("exclusiveMaximum", low + 2))
    middle = (low + high) / 2
    return round(middle) if schema.get("type") == "integer" else middle


_BUILDERS: dict[str, Any] = {
    "object": _object,
    "array": _array,
    "string": _string,
    "integer": _number,
    "number": _number,
    "boolean": lambda _s, _r: True,
    "null": lambda _s, _r: None,
}

"""What the fake OpenAI API answers, and what it counts.

Chat completions as the API returns them: ``chat.completion`` objects with ``usage``
(``prompt_tokens``, ``completion_tokens``, ``total_tokens``), or with ``stream: true`` a
``text/event-stream`` of ``chat.completion.chunk`` objects (role first, then the content word
by word, then ``finish_reason``; one more chunk with ``usage`` and empty ``choices`` when
``stream_options.include_usage`` is set) ended by ``data: [DONE]``. Errors in the API's shape
``{"error": {"message", "type", "param", "code"}}``: 400 for a bad body, 401 for a wrong key,
404 for an unknown model when ``models`` is set, 500 ``server_error`` for an exception in the
fake itself.

The answer is deterministic: ``"<name> says: <last user message>"``, so a test can tell which
provider answered; asked for JSON (``response_format``), a JSON object instead (jsonmode.py). Tokens are counted as whitespace-separated words (plus 3 per message, as
the API's chat format adds a few), so usage is exact and predictable.

Faults, queued with :meth:`OpenAIState.fail` (each one used by one call) or set with
``sticky`` (every call until cleared): ``"429"`` (rate limited, ``Retry-After`` from
``retry_after``), ``"500"``/``"502"``/``"503"`` (server errors), ``"hang"`` (no answer until
released or ``hang_seconds`` pass: a client timeout), ``"cut"`` (a stream that stops after its
first chunk, without ``[DONE]``).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from .jsonmode import json_answer, json_mode_error

__all__ = ["Fault", "OpenAIState", "count_tokens"]

FAULTS = ("429", "500", "502", "503", "hang", "cut")
SERVER_ERROR = "The server had an error while processing your request. Sorry about that!"


def count_tokens(text: str) -> int:
    return len(text.split())


@dataclass(frozen=True)
class Fault:
    kind: str

    def __post_init__(self) -> None:
        if self.kind not in FAULTS:
            raise ValueError(f"fault must be one of {FAULTS}, got {self.kind!r}")


def _error(status: int, message: str, kind: str, code: str | None = None) -> tuple[int, Any]:
    return status, {"error": {"message": message, "type": kind, "param": None, "code": code}}


def server_error(status: int) -> tuple[int, Any]:
    """The API's answer to a failure of its own (500; the ``"5xx"`` faults answer it too)."""
    return _error(status, SERVER_ERROR, "server_error")


@dataclass
class OpenAIState:
    name: str = "openai"
    api_key: str | None = None
    models: frozenset[str] | None = None
    retry_after: str = "1"
    faults: list[Fault] = field(default_factory=list)
    sticky: Fault | None = None
    calls: int = 0
    """Chat completion requests received (whatever became of them)."""
    served: int = 0
    """Requests answered with a completion (200)."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)
    """The last bodies received (at most 200)."""

    @property
    def usage(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}

    def fail(self, *kinds: str) -> None:
        self.faults.extend(Fault(k) for k in kinds)

    def next_fault(self) -> Fault | None:
        if self.faults:
            return self.faults.pop(0)
        return self.sticky

    def check(self, auth: str | None, body: Any) -> tuple[int, Any] | None:
        """An error answer for a request the API would refuse, else None."""
        if self.api_key is not None and auth != f"Bearer {self.api_key}":
            return _error(
                401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key"
            )
        if not isinstance(body, dict):
            return _error(
                400, "We could not parse the JSON body of your request.", "invalid_request_error"
            )
        if not isinstance(body.get("model"), str):
            return _error(400, "you must provide a model parameter", "invalid_request_error")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return _error(400, "'messages' must be a non-empty array", "invalid_request_error")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in (
                "system",
                "user",
                "assistant",
                "developer",
                "tool",
            ):
                return _error(
                    400, f"Invalid value for 'messages[{i}].role'", "invalid_request_error"
                )
        refused = json_mode_error(body)
        if refused:
            return _error(400, refused, "invalid_request_error", "invalid_response_format")
        if self.models is not None and body["model"] not in self.models:
            msg = f"The model `{body['model']}` does not exist or you do not have access to it."
            return _error(404, msg, "invalid_request_error", "model_not_found")
        return None

    def record(self, body: dict[str, Any]) -> None:
        self.calls += 1
        self.requests.append(body)
        del self.requests[:-200]

    def answer(self, body: dict[str, Any]) -> tuple[str, dict[str, int]]:
        """The completion's text and usage; counted as served."""
        messages = body["messages"]
        last = next((m for m in reversed(messages) if m.get("role") == "user"), messages[-1])
        text = f"{self.name} says: {_text(last.get('content'))}"
        text = json_answer(body, text) or text
        prompt = sum(count_tokens(_text(m.get("content"))) + 3 for m in messages)
        completion = count_tokens(text)
        self.served += 1
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        return text, usage


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def completion(body: dict[str, Any], text: str, usage: dict[str, int]) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "system_fingerprint": "fp_fake",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": usage,
    }


def chunks(body: dict[str, Any], text: str, usage: dict[str, int]) -> list[bytes]:
    """The SSE events of a streamed answer, ``[DONE]`` last."""
    base = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body["model"],
        "system_fingerprint": "fp_fake",
    }

    def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return b"data: " + json.dumps({**base, "choices": choices, **extra}).encode() + b"\n\n"

    def choice(delta: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

    out = [event(choice({"role": "assistant", "content": ""}))]
    words = text.split(" ")
    out += [event(choice({"content": (" " if i else "") + w})) for i, w in enumerate(words)]
    out.append(event(choice({}, "stop")))
    options = body.get("stream_options") or {}
    if isinstance(options, dict) and options.get("include_usage"):
        out.append(event([], usage=usage))
    out.append(b"data: [DONE]\n\n")
    return out

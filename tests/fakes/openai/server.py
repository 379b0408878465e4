"""HTTP front of the fake OpenAI API on 127.0.0.1, in a thread of the test process or as a
script (``PYTHONPATH=tests python -m fakes.openai --port 8090 --name openai``).

``POST /v1/chat/completions`` (JSON or an SSE stream) and ``GET /v1/models``, with the key as
``Authorization: Bearer``, as the ``openai`` client sends them; point
``AsyncOpenAI(base_url=fake.base_url)`` at it. HTTP/1.1 keep-alive; streams are chunked.
Test controls: ``fail(*kinds)``, ``sticky(kind)``, ``release()`` (ends hangs), and the
counters ``calls``, ``served``, ``usage`` (see state.py). An exception in the fake itself is
the API's 500 ``server_error``, its traceback logged (fakes/serving.py), the connection
kept (closed when part of a stream is out).
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
from typing import Any

from fakes.serving import JsonHandler, ThreadedFake

from .state import Fault, OpenAIState, chunks, completion, server_error

__all__ = ["FakeOpenAI"]


class FakeOpenAI(ThreadedFake):
    """The fake API. Use as a context manager, or start()/stop()."""

    def __init__(
        self,
        *,
        name: str = "openai",
        api_key: str | None = None,
        models: set[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        hang_seconds: float = 30.0,
    ) -> None:
        self.state = OpenAIState(
            name=name, api_key=api_key, models=frozenset(models) if models else None
        )
        self.lock = threading.Lock()
        self.hang_seconds = hang_seconds
        self._release = threading.Event()
        super().__init__(_handler(self), host=host, port=port, name=f"fake-openai-{name}")

    @property
    def base_url(self) -> str:
        """What ``AsyncOpenAI(base_url=...)`` takes."""
        return f"{self.endpoint}/v1"

    # -- controls and counters --------------------------------------------------------------

    def fail(self, *kinds: str) -> None:
        """The next len(kinds) calls fail so, in order."""
        with self.lock:
            self.state.fail(*kinds)

    def sticky(self, kind: str | None) -> None:
        """Every call fails so until ``sticky(None)``."""
        with self.lock:
            self.state.sticky = Fault(kind) if kind else None
            if kind is None:
                self._release.set()
                self._release = threading.Event()

    def release(self) -> None:
        """Let every hanging call end (with a 504, as a proxy in front of a stuck model would)."""
        self._release.set()

    @property
    def calls(self) -> int:
        return self.state.calls

    @property
    def served(self) -> int:
        return self.state.served

    @property
    def usage(self) -> dict[str, int]:
        with self.lock:
            return self.state.usage

    @property
    def requests(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.state.requests)

    # -- lifecycle --------------------------------------------------------------------------

    def stop(self) -> None:
        self._release.set()  # a hanging call ends rather than hold up the shutdown
        super().stop()


def _handler(fake: FakeOpenAI) -> type[JsonHandler]:
    class Handler(JsonHandler):
        json_type = "application/json"

        def setup(self) -> None:
            super().setup()
            # headers and body go out in separate writes: without NODELAY, Nagle and delayed
            # ACKs add ~40 ms to a keep-alive client's next request
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def answer(self, raw: bytes) -> None:
            if self.command == "GET":
                self._models()
            else:
                self._completion(raw)

        def internal_error(self, exc: Exception) -> tuple[int, dict[str, Any], dict[str, str]]:
            return *server_error(500), {}

        def _models(self) -> None:
            if self.path.rstrip("/") != "/v1/models":
                self._json(
                    404, {"error": {"message": "not found", "type": "invalid_request_error"}}
                )
                return
            models = sorted(fake.state.models or {"fake-model"})
            data = [
                {"id": m, "object": "model", "created": 0, "owned_by": fake.state.name}
                for m in models
            ]
            self._json(200, {"object": "list", "data": data})

        def _completion(self, raw: bytes) -> None:
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._json(
                    404, {"error": {"message": "not found", "type": "invalid_request_error"}}
                )
                return
            try:
                body: Any = json.loads(raw)
            except ValueError:
                body = None
            with fake.lock:
                refused = fake.state.check(self.headers.get("Authorization"), body)
                if refused is None:
                    fake.state.record(body)
                    fault = fake.state.next_fault()
                    release = fake._release
            if refused is not None:
                self._json(*refused)
                return
            if fault is not None and fault.kind != "cut":
                self._fault(fault, release)
                return
            with fake.lock:
                text, usage = fake.state.answer(body)
            if body.get("stream"):
                self._stream(chunks(body, text, usage), cut=fault is not None)
            else:
                self._json(200, completion(body, text, usage))

        def _fault(self, fault: Fault, release: threading.Event) -> None:
            if fault.kind == "hang":
                release.wait(fake.hang_seconds)
                self._json(504, {"error": {"message": "upstream timed out", "type": "timeout"}})
            elif fault.kind == "429":
                msg = "Rate limit reached for requests. Please try again later."
                self._json(
                    429,
                    {
                        "error": {
                            "message": msg,
                            "type": "requests",
                            "param": None,
                            "code": "rate_limit_exceeded",
                        }
                    },
                    {"Retry-After": fake.state.retry_after},
                )
            else:
                self._json(*server_error(int(fault.kind)))

        def _stream(self, events: list[bytes], *, cut: bool) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for event in events[:1] if cut else events:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                self.wfile.flush()
            if cut:  # the connection drops mid-stream: no final chunk, no [DONE]
                self.close_connection = True
                return
            self.wfile.write(b"0\r\n\r\n")

        def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            self.send_json(status, payload, headers or {})

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description="fake OpenAI chat completions API")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--name", default="openai", help="who the answers say they come from")
    parser.add_argument("--api-key", default=None, help="the key to accept (any when unset)")
    args = parser.parse_args()
    fake = FakeOpenAI(name=args.name, api_key=args.api_key, port=args.port)
    print(f"fake OpenAI API on {fake.base_url}", flush=True)
    fake.serve_forever()

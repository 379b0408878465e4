"""A TCP fault injector between one client (the operator) and the kube-apiserver, in the
manner of toxiproxy: it forwards bytes untouched (TLS passes through, the certificate still
names 127.0.0.1), records when each connection was attempted, and on demand cuts every open
connection (watch streams included) or refuses new ones (an outage only this client sees).

It counts connection attempts, which is what a client in a tight reconnect loop multiplies:
each failed request or watch opens a new connection.

`CountingProxy` counts requests instead (a client that keeps its connections alive while the
apiserver only answers slowly, as with etcd paused, opens no new ones): it terminates TLS with
the apiserver's own serving certificate and forwards each request, streamed both ways, with the
client's identity (its kubeconfig's client certificate). `paused` SIGSTOPs a component of a
cluster the tests started (etcd) until the block ends, and always SIGCONTs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import yaml
from gateway.conftest import free_port

from controllers.devcluster.cluster import ClusterState


class ApiProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = free_port()
        self.attempts: list[float] = []
        self.refused: list[float] = []
        """The attempts that reached no apiserver (cut by `outage`, or it was down)."""
        self.refusing = False
        self._open: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def start(self) -> ApiProxy:
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._accept, "127.0.0.1", self.port))
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def cut(self) -> None:
        """Close every open connection now (each side sees its stream end)."""

        async def close_all() -> None:
            for writer in list(self._open):
                writer.transport.abort()

        self._call(close_all())

    @contextlib.contextmanager
    def outage(self) -> Iterator[None]:
        """Open connections are cut and new ones are closed at once until the block ends."""
        self.refusing = True
        self.cut()
        try:
            yield
        finally:
            self.refusing = False

    def rate(self, start: float, end: float, *, refused: bool = False) -> float:
        """Connection attempts per second between two `time.monotonic()` instants (with
        `refused`, only those that reached no apiserver: the retry storm a down apiserver
        sees, without the legitimate reconnections once it is back)."""
        n = sum(1 for t in (self.refused if refused else self.attempts) if start <= t < end)
        return n / max(end - start, 1e-9)

    def kubeconfig(self, original: Path, dest: Path) -> Path:
        """A copy of `original` whose server is this proxy."""
        cfg = yaml.safe_load(original.read_text())
        for entry in cfg["clusters"]:
            entry["cluster"]["server"] = f"https://127.0.0.1:{self.port}"
        dest.write_text(yaml.safe_dump(cfg))
        return dest

    def _call(self, coro: object) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)  # type: ignore[arg-type]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        now = time.monotonic()
        self.attempts.append(now)
        if self.refusing:
            self.refused.append(now)
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:  # the apiserver itself is down
            self.refused.append(now)
            writer.transport.abort()
            return
        self._open.update((writer, up_writer))
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._open.difference_update((writer, up_writer))
            writer.transport.abort()
            up_writer.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()


# Headers that belong to one hop (RFC 9110 7.6.1), and Host and Content-Length, which httpx
# sets for the upstream request itself.
_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
                  b"transfer-encoding", b"upgrade", b"host", b"content-length"})  # fmt: skip


class CountingProxy:
    """An HTTP proxy in front of the apiserver for one client, recording each request's
    (monotonic time, method, path) as it arrives. Watches stream through."""

    def __init__(self, upstream: str, client_kubeconfig: Path) -> None:
        cfg = yaml.safe_load(client_kubeconfig.read_text())
        ca = Path(cfg["clusters"][0]["cluster"]["certificate-authority"])
        user = cfg["users"][0]["user"]
        self.upstream, self.port = upstream, free_port()
        self.tls = ca.parent / "apiserver.crt", ca.parent / "apiserver.key"
        self._client_tls = ca, Path(user["client-certificate"]), Path(user["client-key"])
        self.attempts: list[float] = []
        self.requests: list[tuple[float, str, str]] = []
        self._http: httpx.AsyncClient | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    kubeconfig = ApiProxy.kubeconfig
    rate = ApiProxy.rate

    def start(self) -> CountingProxy:
        cert, key = self.tls
        config = uvicorn.Config(self._app, host="127.0.0.1", port=self.port, lifespan="off",
                                ssl_certfile=str(cert), ssl_keyfile=str(key),
                                log_level="warning", access_log=False, interface="asgi3")  # fmt: skip
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the counting proxy did not start on port {self.port}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = self._server.force_exit = True
            self._thread.join(timeout=20)

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            ca, cert, key = self._client_tls
            ctx = ssl.create_default_context(cafile=str(ca))
            ctx.load_cert_chain(str(cert), str(key))
            limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
            self._http = httpx.AsyncClient(verify=ctx, timeout=None, limits=limits)
        return self._http

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        now = time.monotonic()
        self.attempts.append(now)
        self.requests.append((now, scope["method"], scope["path"]))
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        query = scope["query_string"].decode()
        url = self.upstream + scope["raw_path"].decode() + (f"?{query}" if query else "")
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _HOP]
        client = self._client()
        request = client.build_request(scope["method"], url, headers=headers, content=body)
        try:
            response = await client.send(request, stream=True)
        except httpx.TransportError as exc:  # the apiserver dropped it: a gateway's answer
            await _bad_gateway(send, exc)
            return
        try:
            await send({"type": "http.response.start", "status": response.status_code,
                        "headers": [(k, v) for k, v in response.headers.raw
                                    if k.lower() not in _HOP - {b"content-length"}]})  # fmt: skip
            # a watch that sees no event would never notice its client leaving: end either way
            relay = asyncio.ensure_future(_relay(response, send))
            gone = asyncio.ensure_future(_disconnected(receive))
            _, pending = await asyncio.wait((relay, gone), return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
        finally:
            await response.aclose()


async def _bad_gateway(send: Any, exc: Exception) -> None:
    body = f'{{"apiVersion":"v1","kind":"Status","status":"Failure","code":502,"message":"{type(exc).__name__}"}}'
    await send({"type": "http.response.start", "status": 502,
                "headers": [(b"content-type", b"application/json")]})  # fmt: skip
    await send({"type": "http.response.body", "body": body.encode()})


async def _relay(response: httpx.Response, send: Any) -> None:
    with contextlib.suppress(httpx.HTTPError, OSError):
        async for chunk in response.aiter_raw():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _disconnected(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


@contextlib.contextmanager
def paused(workdir: Path, component: str = "etcd") -> Iterator[int]:
    """SIGSTOP `component` of the cluster in `workdir` (its PID from state.json) until the block
    ends, then SIGCONT it, whatever happened meanwhile. Yields the PID."""
    state = ClusterState.load(workdir)
    if state is None:
        raise RuntimeError(f"no cluster runs from {workdir}")
    proc = state.find(component)
    if proc.exit_code() is not None:
        raise RuntimeError(f"{component} (pid {proc.pid}) is not running")
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        yield proc.pid
    finally:
        os.kill(proc.pid, signal.SIGCONT)

"""A TCP fault injector between one client (the operator) and the kube-apiserver, in the
manner of toxiproxy: it forwards bytes untouched (TLS passes through, the certificate still
names 127.0.0.1), records when each connection was attempted, and on demand cuts every open
connection (watch streams included) or refuses new ones (an outage only this client sees).

It counts connection attempts, which is what a client in a tight reconnect loop multiplies:
each failed request or watch opens a new connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import yaml
from gateway.conftest import free_port


class ApiProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = free_port()
        self.attempts: list[float] = []
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

    def rate(self, start: float, end: float) -> float:
        """Connection attempts per second between two `time.monotonic()` instants."""
        n = sum(1 for t in self.attempts if start <= t < end)
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
        self.attempts.append(time.monotonic())
        if self.refusing:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:  # the apiserver itself is down
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

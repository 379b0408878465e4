"""One pipelined Redis connection per worker for the per-request script call.

Every request makes one Redis call (the gate script: rate limit and cache lookup). Through
redis-py's pool that call took a connection under an ``asyncio.Lock``, wrote it with its own
``send`` system call on its own connection, and parsed the reply through several layers:
about 20% of the gateway's CPU per proxied request. :class:`RedisMux` sends the calls of all
concurrent requests over one connection, in order: commands issued within one event-loop
iteration are written with one ``write``, and replies (parsed by hiredis, which redis-py
already uses) resolve the callers' futures first-in, first-out, as Redis answers in order.

Failure rules: a lost connection fails every call in flight with ``ConnectionError`` (an
``OSError``, which the gate treats like any Redis failure) and the next call reconnects; a
caller that gives up (timeout) leaves its future behind, whose reply is then dropped; a
timeout also drops the connection (:meth:`reset`), since a Redis that stopped answering
would otherwise hold every later call. Plain ``redis://`` and ``unix://`` URLs only (with
password, username and database); for anything else (TLS) :func:`mux_for_url` returns None
and the gate keeps using redis-py.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import hiredis
from redis.exceptions import NoScriptError, ResponseError

__all__ = ["RedisMux", "mux_for_url", "pack_command"]


def pack_command(args: tuple[Any, ...]) -> bytes:
    """A command in RESP: an array of bulk strings (str, bytes, int or float arguments;
    ``TypeError`` for anything else, booleans included). Packed by hiredis in C: the Python
    loop it replaced was about 4% of a proxied request's CPU in cProfile."""
    return cast(bytes, hiredis.pack_command(args))


class _Protocol(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._reader = hiredis.Reader()
        self.transport: asyncio.Transport | None = None
        self.waiters: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._out: list[bytes] = []
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods
        self.transport = cast(asyncio.Transport, transport)

    def send(self, command: bytes) -> asyncio.Future[Any]:
        if self.closed:
            raise ConnectionError("redis connection closed")
        future: asyncio.Future[Any] = self._loop.create_future()
        if not self._out:
            self._loop.call_soon(self._flush)
        self._out.append(command)
        self.waiters.append(future)
        return future

    def _flush(self) -> None:
        out, self._out = self._out, []
        if out and self.transport is not None and not self.closed:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        while True:
            reply = reader.gets()
            if reply is False:
                return
            if not self.waiters:  # a reply nobody asked for: the stream is out of step
                self.abort(ConnectionError("unexpected reply from redis"))
                return
            future = self.waiters.popleft()
            if future.done():  # its caller gave up
                continue
            if isinstance(reply, hiredis.ReplyError):
                message = str(reply)
                if message.startswith("NOSCRIPT"):
                    future.set_exception(NoScriptError(message))
                else:
                    future.set_exception(ResponseError(message))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionError(f"redis connection lost: {exc!r}" if exc else "redis closed"))

    def abort(self, exc: Exception) -> None:
        if self.transport is not None:
            self.transport.abort()
        self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        self.closed = True
        self._out = []
        while self.waiters:
            future = self.waiters.popleft()
            if not future.done():
                future.set_exception(exc)


class RedisMux:
    """Redis commands from many tasks over one ordered, pipelined connection."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 6379,
        path: str | None = None,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        connect_timeout: float = 2.0,
    ) -> None:
        self._host, self._port, self._path = host, port, path
        self._db, self._username, self._password = db, username, password
        self._connect_timeout = connect_timeout
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Task[_Protocol] | None = None

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self._connect_timeout):
            if self._path is not None:
                _, protocol = await loop.create_unix_connection(lambda: _Protocol(loop), self._path)
            else:
                _, protocol = await loop.create_connection(
                    lambda: _Protocol(loop), self._host, self._port
                )
            setup: list[asyncio.Future[Any]] = []
            if self._password is not None:
                auth = (self._username, self._password) if self._username else (self._password,)
                setup.append(protocol.send(pack_command(("AUTH", *auth))))
            if self._db:
                setup.append(protocol.send(pack_command(("SELECT", self._db))))
            try:
                for future in setup:
                    await future
            except BaseException:
                protocol.abort(ConnectionError("redis connection setup failed"))
                raise
        return protocol

    async def _connection(self) -> _Protocol:
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._connect())
            self._connecting.add_done_callback(self._connected)
        # shielded: one caller's timeout must not cancel the connect that others wait for
        return await asyncio.shield(self._connecting)

    def _connected(self, task: asyncio.Task[_Protocol]) -> None:
        if self._connecting is task:
            self._connecting = None
        if not task.cancelled() and task.exception() is None:
            self._protocol = task.result()

    async def execute(self, *args: Any) -> Any:
        """Send one command and wait for its reply (``ResponseError`` for an error reply)."""
        protocol = self._protocol
        if protocol is None or protocol.closed:
            protocol = await self._connection()
        return await protocol.send(pack_command(args))

    async def evalsha(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        """Run a Lua script by its SHA1, loading it with EVAL when Redis does not have it."""
        try:
            return await self.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self.execute("EVAL", script.source, len(keys), *keys, *args)

    def reset(self) -> None:
        """Drop the connection (after a timeout); calls in flight fail, the next reconnects."""
        protocol, self._protocol = self._protocol, None
        if protocol is not None:
            protocol.abort(ConnectionError("redis connection reset after a timeout"))

    async def aclose(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()


class Script:
    """A Lua script's source and SHA1."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


def mux_for_url(url: str, *, connect_timeout: float = 2.0) -> RedisMux | None:
    """A mux for a ``redis://`` or ``unix://`` URL, or None for URLs it does not handle."""
    parts = urlsplit(url)
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
    if parts.scheme == "redis":
        db_text = parts.path.lstrip("/") or query.get("db", "0")
        if set(query) - {"db"}:
            return None  # options we would not honour: leave it to redis-py
        return RedisMux(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 6379,
            db=int(db_text),
            username=username,
            password=password,
            connect_timeout=connect_timeout,
        )
    if parts.scheme == "unix":
        if set(query) - {"db"}:
            return None
        return RedisMux(
            path=parts.path,
            db=int(query.get("db", "0")),
            username=username,
            password=password,
            connect_timeout=connect_timeout,
        )
    return None

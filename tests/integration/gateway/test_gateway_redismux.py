"""RedisMux (the gateway's pipelined connection for the gate script) against a real Redis."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
import uvloop

from services.gateway.redismux import RedisMux, Script, mux_for_url

from .conftest import RedisServer, free_port


async def test_concurrent_commands_get_their_own_replies(redis_server: RedisServer) -> None:
    mux = mux_for_url(redis_server.url)
    assert mux is not None
    try:
        replies = await asyncio.gather(*(mux.execute("ECHO", f"v{i}") for i in range(300)))
        assert replies == [f"v{i}".encode() for i in range(300)]
        assert await mux.execute("SET", "mux:k", 7) == b"OK"
        assert await mux.execute("INCRBY", "mux:k", 2) == 9
        with pytest.raises(aioredis.ResponseError):
            await mux.execute("INCR", "mux:k", "extra-arg")
        assert await mux.execute("GET", "mux:k") == b"9"  # still in step after an error
    finally:
        await mux.aclose()


async def test_a_caller_that_gives_up_does_not_shift_replies(redis_server: RedisServer) -> None:
    mux = mux_for_url(redis_server.url)
    assert mux is not None
    try:
        await mux.execute("PING")
        abandoned = asyncio.ensure_future(mux.execute("ECHO", "abandoned"))
        await asyncio.sleep(0)  # sent, then cancelled before its reply arrives
        abandoned.cancel()
        assert await mux.execute("ECHO", "mine") == b"mine"
    finally:
        await mux.aclose()


async def test_evalsha_loads_a_flushed_script(
    redis_server: RedisServer, redis_client: aioredis.Redis
) -> None:
    mux = mux_for_url(redis_server.url)
    assert mux is not None
    script = Script("return {KEYS[1], ARGV[1], tonumber(ARGV[2]) + 1}")
    try:
        await redis_client.script_flush()
        assert await mux.evalsha(script, ["k"], ["a", 41]) == [b"k", b"a", 42]
        assert await redis_client.script_exists(script.sha) == [True]
        assert await mux.evalsha(script, ["k"], ["b", 1]) == [b"k", b"b", 2]
    finally:
        await mux.aclose()


async def test_reconnects_after_the_connection_is_killed(
    redis_server: RedisServer, redis_client: aioredis.Redis
) -> None:
    mux = mux_for_url(redis_server.url)
    assert mux is not None
    try:
        client_id = await mux.execute("CLIENT", "ID")
        await redis_client.client_kill_filter(_id=str(client_id))
        for _ in range(50):  # the loss is noticed on the next read; then it reconnects
            try:
                assert await mux.execute("PING") == b"PONG"
                break
            except ConnectionError:
                await asyncio.sleep(0.01)
        else:
            pytest.fail("the mux did not reconnect")
        assert await mux.execute("CLIENT", "ID") != client_id
        mux.reset()  # what the gate does after a timeout
        assert await mux.execute("PING") == b"PONG"
    finally:
        await mux.aclose()


async def test_selects_the_database_of_the_url(
    redis_server: RedisServer, redis_client: aioredis.Redis
) -> None:
    mux = mux_for_url(f"redis://127.0.0.1:{redis_server.port}/3")
    assert mux is not None
    db3 = aioredis.Redis(port=redis_server.port, db=3)
    try:
        await mux.execute("SET", "mux:db", "three")
        assert await db3.get("mux:db") == b"three"
        assert await redis_client.get("mux:db") is None  # not db 0
    finally:
        await mux.aclose()
        await db3.aclose()


async def test_unreachable_redis_fails_fast_with_a_connection_error() -> None:
    mux = RedisMux(port=free_port(), connect_timeout=2.0)
    with pytest.raises(ConnectionRefusedError, match="Connect call failed"):
        await mux.execute("PING")
    await mux.aclose()


def test_works_on_uvloop(redis_server: RedisServer) -> None:
    """The gateway serves on uvloop, whose transports are not asyncio.Transport subclasses."""

    async def run() -> list[bytes]:
        mux = mux_for_url(redis_server.url)
        assert mux is not None
        try:
            return list(await asyncio.gather(*(mux.execute("ECHO", str(i)) for i in range(20))))
        finally:
            await mux.aclose()

    assert uvloop.run(run()) == [str(i).encode() for i in range(20)]


def test_urls_it_does_not_handle_stay_on_redis_py() -> None:
    assert mux_for_url("rediss://example:6380/0") is None
    assert mux_for_url("redis://h:6379/0?socket_timeout=3") is None
    assert mux_for_url("redis://:secret@h:6390/2") is not None
    assert mux_for_url("unix:///run/redis.sock?db=1") is not None

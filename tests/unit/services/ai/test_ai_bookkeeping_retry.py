"""The writes after an answer: retried while Redis is unreachable, logged (without secrets)
when it stays so, and waited for by drain()."""

from __future__ import annotations

import asyncio
import logging

import pytest
import redis.exceptions

from services.ai.bookkeeping import Bookkeeping

pytestmark = pytest.mark.unit


async def test_a_write_that_loses_its_connection_is_tried_again_until_it_lands() -> None:
    landed: list[int] = []
    attempts = 0

    async def write() -> None:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise redis.exceptions.ConnectionError("Connection reset by peer")
        landed.append(attempts)

    books = Bookkeeping(retry_seconds=10)
    task = books.later(write, what={"tenant": "acme"})
    await books.drain()
    assert task.done()
    assert landed == [3]
    assert books.pending == 0


async def test_a_write_that_never_lands_is_logged_with_what_it_held(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def write() -> None:
        raise redis.exceptions.ConnectionError("Connection refused")

    books = Bookkeeping(retry_seconds=0.2)
    what = {"tenant": "acme", "provider": "openai", "model": "gpt-4o", "cost_picousd": 42}
    with caplog.at_level(logging.ERROR, logger="xynergy.ai"):
        books.later(write, what=what)
        await books.drain()
    [record] = [r for r in caplog.records if r.name == "xynergy.ai"]
    assert record.fields == {**what, "error": "ConnectionError"}  # type: ignore[attr-defined]


async def test_a_bug_is_not_retried() -> None:
    attempts = 0

    async def write() -> None:
        nonlocal attempts
        attempts += 1
        raise KeyError("not transient")

    books = Bookkeeping(retry_seconds=10)
    books.later(write, what={})
    await books.drain()
    assert attempts == 1


async def test_drain_waits_for_writes_started_while_it_waits() -> None:
    order: list[str] = []
    gate = asyncio.Event()

    async def second() -> None:
        order.append("second")

    async def first() -> None:
        await gate.wait()
        books.later(second, what={})
        order.append("first")

    books = Bookkeeping()
    books.later(first, what={})
    drained = asyncio.create_task(books.drain())
    gate.set()
    await drained
    assert order == ["first", "second"]

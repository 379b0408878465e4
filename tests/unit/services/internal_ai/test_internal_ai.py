"""The internal model's honest answers (real all-MiniLM-L6-v2 from its package), the bounded
queue and the load/unload lifecycle, through the app's API."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import httpx
import numpy as np
import pytest
from pydantic import SecretStr

from services.common.identity import IDENTITY_HEADER, InternalIdentitySigner
from services.common.settings import InternalIdentitySettings
from services.common.tenancy import Identity
from services.internal_ai.answers import answer_chat, sentences
from services.internal_ai.app import create_app
from services.internal_ai.model import MiniLM
from services.internal_ai.runner import BusyError, ModelRunner
from services.internal_ai.settings import InternalAiSettings

KEY = InternalIdentitySettings(signing_key=SecretStr("k" * 40))


def headers() -> dict[str, str]:
    """A fresh identity per request: one signed at import expires before a long run gets here."""
    return {
        IDENTITY_HEADER: InternalIdentitySigner(KEY).sign(Identity("u", "acme", roles=("admin",)))
    }


@pytest.fixture(scope="module")
def model() -> MiniLM:
    m = MiniLM()
    m.load()
    return m


def test_embeddings_are_unit_vectors_and_similar_texts_are_closer(model: MiniLM) -> None:
    v = model.embed(
        ["The cat sits on the mat.", "A kitten rests on a rug.", "Interest rates rose."]
    )
    assert v.shape == (3, 384)
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.3


def test_classification_picks_the_closest_label(model: MiniLM) -> None:
    reply = answer_chat(
        [
            {"role": "system", "content": "Labels: sport, finance, cooking"},
            {"role": "user", "content": "Whisk the eggs and fold in the flour."},
        ],
        model.embed,
        sentences_max=3,
        max_words=None,
    )
    assert reply.task == "classification"
    assert reply.text == "cooking"
    assert max(reply.scores, key=reply.scores.__getitem__) == "cooking"


def test_extractive_summary_only_quotes_the_text(model: MiniLM) -> None:
    text = (
        "The quarterly report shows revenue up 12 percent. Marketing spend was flat. "
        "The weather in March was mild. Revenue growth came from the new subscription tier. "
        "Lunch was served at noon."
    )
    reply = answer_chat(
        [{"role": "user", "content": text}], model.embed, sentences_max=2, max_words=None
    )
    chosen = sentences(reply.text)
    assert reply.task == "extractive_summary"
    assert len(chosen) == 2
    assert all(s in sentences(text) for s in chosen)
    assert sentences(text).index(chosen[0]) < sentences(text).index(chosen[1])  # original order
    short = answer_chat(
        [{"role": "user", "content": text}], model.embed, sentences_max=5, max_words=10
    )
    assert len(sentences(short.text)) == 1


async def test_a_full_queue_refuses_at_once_and_unload_waits_for_running_work() -> None:
    class Gate(MiniLM):
        def __init__(self) -> None:
            super().__init__()
            self.go = threading.Event()

        def load(self) -> None:
            self.go.wait(10)
            self.loads += 1
            self._session = object()

        def unload(self) -> None:
            self._session = None

    gated = Gate()
    runner = ModelRunner(gated, max_pending=2)
    first = asyncio.create_task(runner.run(lambda m: m.loaded))
    second = asyncio.create_task(runner.run(lambda m: m.loaded))
    await asyncio.sleep(0)
    with pytest.raises(BusyError):
        await runner.run(lambda m: m.loaded)
    unload = asyncio.create_task(runner.unload())
    gated.go.set()
    assert await first is True
    assert await second is True
    await unload
    assert not gated.loaded
    assert runner.state()["refused"] == 1
    await runner.aclose()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(InternalAiSettings(log_level="WARNING", max_inputs=4), internal_settings=KEY)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ai") as c,
    ):
        yield c


async def test_api_embeddings_chat_and_lifecycle(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/embeddings", json={"input": ["hello", "world"]}, headers=headers())
    assert r.status_code == 200
    assert [len(d["embedding"]) for d in r.json()["data"]] == [384, 384]
    assert r.json()["usage"]["prompt_tokens"] == 2
    too_many = await client.post("/v1/embeddings", json={"input": ["x"] * 5}, headers=headers())
    assert too_many.status_code == 422
    assert too_many.json()["fields"][0]["field"] == "input"
    assert (await client.post("/v1/embeddings", json={"input": "x"})).status_code == 401
    unloaded = await client.post("/admin/model/unload", headers=headers())
    assert unloaded.json()["loaded"] is False
    chat = await client.post(
        "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "Labels: yes, no\nAbsolutely, I agree."}]},
        headers=headers(),
    )
    assert chat.status_code == 200
    assert chat.json()["choices"][0]["message"]["content"] in ("yes", "no")
    state = (await client.get("/admin/model", headers=headers())).json()
    assert state["loaded"] is True
    assert state["loads"] == 2


async def test_after_an_unload_the_service_stays_ready_and_the_next_request_loads_it(
    client: httpx.AsyncClient,
) -> None:
    """An unload frees the model's memory; it does not take the pod out of rotation (a 503
    there kept every request away, so nothing loaded the model again until an admin did)."""
    assert (await client.post("/admin/model/unload", headers=headers())).status_code == 200
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ready"
    assert (ready.json()["model"]["loaded"], ready.json()["model"]["loads"]) == (False, 1)
    served = await client.post("/v1/embeddings", json={"input": "hello"}, headers=headers())
    assert served.status_code == 200, served.text
    state = (await client.get("/readyz")).json()["model"]
    assert (state["loaded"], state["loads"]) == (True, 2)


@pytest.mark.parametrize(
    ("idle", "before"), [(0, 503), (60, 200)], ids=["no idle unload", "idle unload"]
)
async def test_a_model_that_never_loaded_is_ready_only_if_it_loads_on_first_use(
    idle: float, before: int
) -> None:
    """Without the start-up load and without idle unloading, the pod waits for an admin's
    load (503, documented); with idle unloading the first request loads it (200). Loaded
    once, it stays ready through an unload."""
    settings = InternalAiSettings(
        log_level="WARNING", load_at_start=False, idle_unload_seconds=idle
    )
    app = create_app(settings, internal_settings=KEY)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ai") as c,
    ):
        r = await c.get("/readyz")
        assert r.status_code == before, r.text
        assert r.json()["status"] == ("ready" if before == 200 else "not_ready")
        assert r.json()["model"]["loaded"] is False
        for action in ("load", "unload"):
            assert (await c.post(f"/admin/model/{action}", headers=headers())).status_code == 200
            assert (await c.get("/readyz")).status_code == 200, action

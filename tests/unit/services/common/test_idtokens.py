"""ID tokens for Cloud Run calls: which URLs get one and for which audience, the cache and its
refresh, one fetch for concurrent callers, failures that leave requests without a token (logged
once, never a token), and the real google-auth path against a faithful token endpoint."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path

import pytest
from fakes.googletoken import FakeGoogleToken

from services.common.idtokens import HEADER, IdTokens, cloud_run_audience

pytestmark = pytest.mark.unit

SERVICE = "https://crm-abc123-uc.a.run.app"


@pytest.mark.parametrize(
    ("url", "audience"),
    [
        (f"{SERVICE}/api/v2/crm?x=1", SERVICE),
        ("https://canary---crm-abc123-uc.a.run.app/readyz", SERVICE),
        ("https://CRM-abc123-UC.a.run.app", SERVICE),
        ("https://crm-7n2k-ew.europe-west1.run.app/x", "https://crm-7n2k-ew.europe-west1.run.app"),
        ("http://crm-abc123-uc.a.run.app", None),
        ("http://crm.prod.svc.cluster.local/api", None),
        ("https://run.app.example.com/x", None),
        ("https://example.com/.run.app", None),
    ],
)
def test_only_cloud_run_urls_have_an_audience(url: str, audience: str | None) -> None:
    assert cloud_run_audience(url) == audience


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _token(exp: float) -> str:
    import jwt

    return jwt.encode({"exp": int(exp), "aud": SERVICE}, "k" * 32, algorithm="HS256")


async def test_a_token_is_cached_until_shortly_before_it_expires() -> None:
    clock = Clock()
    fetched: list[str] = []

    def fetch(audience: str) -> str:
        fetched.append(audience)
        return _token(clock.now + 3600)

    tokens = IdTokens(fetch, clock=clock)
    first = await tokens.header(f"{SERVICE}/a")
    assert first is not None
    assert first[0] == HEADER
    assert first[1].startswith("Bearer ey")
    assert await tokens.header("https://tag---crm-abc123-uc.a.run.app/b") == first
    assert await tokens.header("http://crm.prod.svc.cluster.local/") is None
    clock.now += 3600 - 301
    assert await tokens.header(SERVICE) == first
    clock.now += 2
    renewed = await tokens.header(SERVICE)
    assert fetched == [SERVICE, SERVICE]
    assert renewed is not None
    assert renewed != first


async def test_concurrent_callers_share_one_fetch() -> None:
    started, release = threading.Event(), threading.Event()
    calls: list[str] = []

    def fetch(audience: str) -> str:
        calls.append(audience)
        started.set()
        release.wait(5)
        return _token(2_000_000_000)

    tokens = IdTokens(fetch)
    waiting = [asyncio.create_task(tokens.token(SERVICE)) for _ in range(5)]
    assert await asyncio.to_thread(started.wait, 5)
    release.set()
    got = await asyncio.gather(*waiting)
    assert len(set(got)) == 1
    assert got[0]
    assert calls == [SERVICE]


async def test_a_failed_fetch_goes_without_a_token_logs_once_and_retries_later(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    answers: list[Exception | str] = [RuntimeError("secret-ish detail"), RuntimeError("again")]

    def fetch(audience: str) -> str:
        answer = answers.pop(0) if answers else _token(clock.now + 3600)
        if isinstance(answer, Exception):
            raise answer
        return answer

    tokens = IdTokens(fetch, clock=clock, retry_seconds=60)
    with caplog.at_level(logging.WARNING, logger="xynergy.idtokens"):
        assert await tokens.header(SERVICE) is None
        assert await tokens.header(SERVICE) is None, "not fetched again within the retry time"
        assert len(answers) == 1
        clock.now += 61
        assert await tokens.header(SERVICE) is None
        clock.now += 61
        got = await tokens.header(SERVICE)
    assert got is not None
    records = [r for r in caplog.records if r.name == "xynergy.idtokens"]
    assert len(records) == 1, "one line per audience and cause"
    assert records[0].fields == {"audience": SERVICE, "error": "RuntimeError"}  # type: ignore[attr-defined]
    assert "secret-ish" not in caplog.text
    assert got[1].removeprefix("Bearer ") not in caplog.text


async def test_google_auth_fetches_from_a_service_account_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default fetch is google-auth's fetch_id_token with ADC: a key file here (the
    metadata server on GKE and Cloud Run), the JWT-bearer grant to its token URI."""
    with FakeGoogleToken() as fake:
        key = fake.key_file(tmp_path / "sa.json")
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
        tokens = IdTokens()
        header = await tokens.header("https://canary---crm-abc123-uc.a.run.app/readyz")
        assert header is not None
        claims = fake.verify(header[1].removeprefix("Bearer "), audience=SERVICE)
        assert claims["email"] == "gateway@proj.iam.gserviceaccount.com"
        assert await tokens.header(f"{SERVICE}/other") == header
        assert fake.issued == [SERVICE]

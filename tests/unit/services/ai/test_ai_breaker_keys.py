"""The cooldown's states on an injected clock, and what makes two requests one cache entry."""

from __future__ import annotations

import pytest

from services.ai.breaker import Cooldown
from services.ai.keys import cache_key, deterministic
from services.common.tenancy import InvalidTenantError


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_cooldown_opens_after_consecutive_failures_and_admits_one_trial() -> None:
    clock = Clock()
    c = Cooldown(failures=3, cooldown=10, clock=clock)
    c.failed()
    c.failed()
    c.succeeded()  # a success resets the streak
    c.failed()
    c.failed()
    assert c.admit()
    c.failed()
    assert c.state == "cooling"
    assert not c.admit()
    clock.now += 10
    assert c.state == "half_open"
    assert c.admit()
    assert not c.admit()  # one trial at a time
    c.failed()  # the trial failed: another full cooldown
    assert c.state == "cooling"
    assert c.retry_in() == 10
    clock.now += 10
    assert c.admit()
    c.succeeded()
    assert c.state == "available"


def test_a_429_cools_down_at_once_for_its_retry_after_capped() -> None:
    clock = Clock()
    c = Cooldown(failures=5, cooldown=30, max_retry_after=60, clock=clock)
    c.failed(rate_limited=True, retry_after=7)
    assert c.state == "cooling"
    assert c.retry_in() == 7
    clock.now += 7
    assert c.admit()
    c.failed(rate_limited=True, retry_after=3600)
    assert c.retry_in() == 60


def body(**kw: object) -> dict[str, object]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0, **kw}


def test_cache_keys_normalise_and_separate_what_matters() -> None:
    base = cache_key("acme", "m", body())
    assert cache_key("acme", "m", body(temperature=0.0, user="u1")) == base
    assert cache_key("acme", "m", body(messages=[{"role": "user", "content": "  hi\n"}])) == base
    assert cache_key("other", "m", body()) != base
    assert cache_key("acme", "m2", body()) != base
    assert cache_key("acme", "m", body(max_tokens=5)) != base
    assert cache_key("acme", "m", body(stream=True)) != base
    assert base.startswith("ai:c:acme:m:")
    assert ":" not in cache_key("acme", "org:model", body()).split(":", 3)[3].rsplit(":", 1)[0]
    with pytest.raises(InvalidTenantError):
        cache_key("acme:m", "x", body())


def test_only_temperature_zero_single_choice_is_deterministic() -> None:
    assert deterministic(body())
    assert not deterministic(body(temperature=0.2))
    assert not deterministic(body(n=2))
    assert not deterministic({"model": "m", "messages": []})

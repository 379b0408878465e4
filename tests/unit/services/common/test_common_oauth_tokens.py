"""TokenReader over a token Secret whose `expires_at` a user edited by hand: an unreadable
value counts as expired (the reader asks the operator for a refresh), it never fails the
request with a 500."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from services.common.oauth_tokens import NotConnectedError, OAuthTokenSettings, TokenReader

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


CONNECTION = {
    "apiVersion": "xynergy.io/v1alpha1",
    "kind": "OAuthConnection",
    "metadata": {"name": "acme-gmail", "namespace": "default", "uid": "u1", "generation": 1},
    "spec": {
        "provider": "gmail",
        "clientSecretRef": {"name": "client"},
        "scopes": ["https://www.googleapis.com/auth/gmail.readonly"],
        "redirectURL": "https://app.example/cb",
        "tenant": "acme",
        "tokenSecretName": "acme-gmail-tokens",
    },
    "status": {"phase": "Connected"},
}


@dataclass
class Kube:
    expires_at: str
    patches: list[dict[str, Any]] = field(default_factory=list)

    async def _items(self) -> AsyncIterator[dict[str, Any]]:
        yield CONNECTION

    def list(self, res: Any, *, namespace: str | None = None) -> Any:
        return self._items()

    async def get(self, res: Any, name: str, *, namespace: str | None = None) -> Any:
        data = {"access_token": "tok", "refresh_token": "r", "expires_at": self.expires_at}
        return {"data": {k: _b64(v) for k, v in data.items()}}

    async def patch(self, res: Any, name: str, obj: Any, **_: Any) -> Any:
        self.patches.append(obj)

    async def _nothing(self) -> AsyncIterator[tuple[str, Any]]:
        return
        yield

    def watch(self, res: Any, **_: Any) -> Any:
        return self._nothing()


@pytest.mark.parametrize("value", ["2000-01-01T00:00:00ZZ", "next tuesday"])
async def test_an_unreadable_expiry_asks_for_a_refresh(value: str) -> None:
    kube = Kube(expires_at=value)
    settings = OAuthTokenSettings(refresh_wait_seconds=0.01)
    reader = TokenReader(kube, settings=settings, clock=lambda: NOW)

    with pytest.raises(NotConnectedError) as err:
        await reader.tokens("acme", "gmail")

    assert err.value.phase == "Expired"  # the operator did not refresh in time
    assert len(kube.patches) == 1
    assert "xynergy.io/refresh-requested" in kube.patches[0]["metadata"]["annotations"]

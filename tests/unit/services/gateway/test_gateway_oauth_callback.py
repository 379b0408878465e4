"""The gateway's OAuth callback over an in-memory apiserver: the code goes only into the
authorization Secret the connection's operator made (its controller ownerReference is that
OAuthConnection); any other Secret of that name is refused with a 500 naming it, its state is
not compared and nothing is written to it. A connection already Connected (authorizing again
for Slack's user token) is answered only once the operator has handled this state."""

from __future__ import annotations

import base64
import datetime as dt
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from lightkube.models.meta_v1 import ObjectMeta, OwnerReference
from lightkube.resources.core_v1 import Secret

from apis.v1alpha1.oauthconnection import encode_state
from services.common.tenancy import Identity
from services.gateway.oauth import oauth_router

NS, NAME, UID = "default", "acme-slack", "uid-1"
STATE = encode_state(NS, NAME, "n0nce-7Hq")
CODE = "code-from-slack-4kT"


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def connection(phase: str = "PendingAuthorization", **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "xynergy.io/v1alpha1",
        "kind": "OAuthConnection",
        "metadata": {"name": NAME, "namespace": NS, "uid": UID, "generation": 1},
        "spec": {
            "provider": "slack",
            "clientSecretRef": {"name": "client"},
            "scopes": ["chat:write"],
            "redirectURL": "https://app.example/cb",
            "tenant": "acme",
            "tokenSecretName": f"{NAME}-tokens",
        },
        "status": {"phase": phase, **status},
    }


@dataclass
class Obj:
    body: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return self.body


@dataclass
class Apiserver:
    """The calls the callback makes of lightkube's AsyncClient: get the connection and its
    authorization Secret, replace the Secret, watch the connection (it answers Connected)."""

    secret: Secret
    replaced: list[Secret] = field(default_factory=list)
    watched: list[dict[str, Any]] = field(default_factory=lambda: [connection("Connected")])

    async def get(self, res: Any, name: str, *, namespace: str) -> Any:
        if res is Secret:
            assert name == f"{NAME}-oauth-authorization"
            return self.secret
        return Obj(connection())

    async def replace(self, obj: Secret) -> Secret:
        self.replaced.append(obj)
        return obj

    async def watch(self, res: Any, **_: Any) -> AsyncIterator[tuple[str, Obj]]:
        for body in self.watched:
            yield "MODIFIED", Obj(body)


def authorization_secret(owners: list[OwnerReference]) -> Secret:
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)).isoformat()
    return Secret(
        metadata=ObjectMeta(
            name=f"{NAME}-oauth-authorization",
            namespace=NS,
            resourceVersion="7",
            ownerReferences=owners,
        ),
        data={"state": _b64(STATE), "code_verifier": _b64("verifier"), "expires_at": _b64(later)},
    )


def ref(**over: Any) -> OwnerReference:
    fields: dict[str, Any] = {
        "apiVersion": "xynergy.io/v1alpha1",
        "kind": "OAuthConnection",
        "name": NAME,
        "uid": UID,
        "controller": True,
    }
    return OwnerReference(**(fields | over))


class Verifier:
    async def verify(self, token: str) -> Identity:
        return Identity(user_id="u", tenant_id="acme")


async def call(api: Apiserver) -> httpx.Response:
    app = FastAPI()
    app.include_router(oauth_router(Verifier(), client=api))  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        return await client.get(
            "/api/v2/oauth/slack/callback",
            params={"code": CODE, "state": STATE},
            headers={"Authorization": "Bearer t"},
        )


async def test_the_code_goes_into_the_operators_authorization_secret() -> None:
    api = Apiserver(authorization_secret([ref()]))

    resp = await call(api)

    assert resp.status_code == 200, resp.text
    assert resp.json()["phase"] == "Connected"
    [written] = api.replaced
    data = written.data or {}
    assert base64.b64decode(data["code"]).decode() == CODE
    assert "state" not in data


@pytest.mark.parametrize(
    "owners",
    [
        [],  # a user's own Secret
        [ref(uid="uid-of-an-older-connection")],  # same name, deleted and re-created
        [ref(name="another")],
        [ref(kind="XynergyService")],
        [ref(apiVersion="example.com/v1alpha1")],
        [ref(controller=False)],
        [ref(controller=None), ref(uid="other", controller=True)],
    ],
    ids=["none", "uid", "name", "kind", "group", "not-controller", "other-controller"],
)
async def test_a_secret_the_connection_does_not_control_gets_no_code(
    owners: list[OwnerReference], caplog: pytest.LogCaptureFixture
) -> None:
    api = Apiserver(authorization_secret(owners))

    with caplog.at_level(logging.INFO, logger="xynergy.gateway.oauth"):
        resp = await call(api)

    assert api.replaced == []  # nothing written to it
    assert resp.status_code == 500
    body = resp.json()
    assert body["error"] == "oauth_secret_not_owned"
    assert f"authorization Secret {NS}/{NAME}-oauth-authorization" in body["message"]
    assert f"not controlled by OAuthConnection {NS}/{NAME}" in body["message"]
    seen = resp.text + caplog.text
    assert CODE not in seen
    assert STATE not in seen
    assert "verifier" not in seen
    assert [r.levelname for r in caplog.records] == ["WARNING"]


def condition(type_: str, reason: str, message: str) -> dict[str, Any]:
    return {
        "type": type_,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-03-01T12:00:00Z",
    }


async def test_a_connected_connection_is_answered_once_its_code_was_handled() -> None:
    """Re-authorizing for the user token: the connection is Connected before and after; the
    answer waits for the operator (the URL no longer carries this state)."""
    pending = f"https://slack.example/authorize?state={STATE}"
    new_url = "https://slack.example/authorize?state=" + encode_state(NS, NAME, "next")
    failed = "the provider refused the authorization code: invalid_code; no user token"
    api = Apiserver(
        authorization_secret([ref()]),
        watched=[
            connection("Connected", authorizationURL=pending),  # not handled yet
            connection(
                "Connected",
                authorizationURL=new_url,
                conditions=[
                    condition("Ready", "Connected", "tokens are current"),
                    condition("Degraded", "UserReauthRequired", failed),
                ],
            ),
        ],
    )

    resp = await call(api)

    assert resp.status_code == 400, resp.text
    assert resp.json()["message"] == f"authorization failed: {failed}"
    assert resp.json()["authorizationURL"] == new_url

    api = Apiserver(
        authorization_secret([ref()]),
        watched=[
            connection("Connected", authorizationURL=pending),
            connection("Connected", account={"teamId": "T1"}),  # exchanged: the URL is gone
        ],
    )

    resp = await call(api)

    assert resp.status_code == 200, resp.text
    assert resp.json()["account"] == {"teamId": "T1"}

"""A client the provider refused stays refused across an operator restart: the restarted
operator reads the refusal from status.refusedClient and does not send the same client id and
secret again until the client Secret changes. Its own module: no other operator may run while
the two run one after the other."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fakes.oauth import FakeOAuth
from gateway.conftest import wait_for
from kube_support import Kube
from test_oauthconnection import (
    _ready,
    apply_connection,
    browser,
    connection,
    create_client_secret,
    oauth_operator,
    until,
)


def refusals(kube: Kube, ns: str, name: str) -> list[dict[str, Any]]:
    """The ClientRefused Events posted on the connection `name`."""
    selector = f"involvedObject.name={name},reason=ClientRefused"
    resp = kube.get(f"/api/v1/namespaces/{ns}/events", fieldSelector=selector)
    assert resp.status_code == 200, resp.text
    items: list[dict[str, Any]] = resp.json()["items"]
    return items


def patch_secret(kube: Kube, ns: str, name: str, string_data: dict[str, str]) -> None:
    resp = kube.http.patch(
        f"/api/v1/namespaces/{ns}/secrets/{name}",
        json={"stringData": string_data},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert resp.status_code == 200, resp.text


async def test_a_refused_client_is_not_sent_again_by_a_restarted_operator(
    kube: Kube, cluster: Path, crds_installed: list[str], namespace: str
) -> None:
    ns, name = namespace, "acme-gmail"
    create_client_secret(kube, ns, name)
    patch_secret(kube, ns, f"{name}-client", {"client_secret": "not-the-one-google-has"})
    apply_connection(kube, ns, name, "gmail", "http://127.0.0.1:9/callback", client=False)

    def refused(s: dict[str, Any]) -> bool:
        return _ready(s)[1] == "ClientRefused"

    with FakeOAuth(expires_in=3600) as fake:
        with oauth_operator(cluster, fake):
            url = (await until(kube, ns, name, "URL", lambda s: s.get("authorizationURL")))[
                "status"
            ]["authorizationURL"]
            code = parse_qs(urlsplit(browser(url)).query)["code"][0]
            # what the gateway's callback does: the code into the authorization Secret
            patch_secret(kube, ns, f"{name}-oauth-authorization", {"code": code})
            status = (await until(kube, ns, name, "ClientRefused", refused))["status"]
            record = status["refusedClient"]
            assert record["secretName"] == f"{name}-client"
            assert "invalid_client" in record["error"]
            assert "not-the-one-google-has" not in str(status)
            sent = fake.google.calls["token"]
            assert sent == 1

        # the restarted operator's first converge of the stalled connection says so again (a
        # Warning Event per stalled converge): only after it, "not sent again" means something
        warned = len(refusals(kube, ns, name))
        assert warned >= 1

        async def warned_again() -> bool:
            return len(refusals(kube, ns, name)) > warned

        with oauth_operator(cluster, fake):
            await wait_for(
                warned_again, within=60, what="the restarted operator's converge", interval=0.2
            )
            status = connection(kube, ns, name)["status"]
            assert refused(status)
            assert fake.google.calls["token"] == sent  # the same client was not sent again
            assert status["refreshFailures"] == 0  # a refused code exchange is no refresh

            patch_secret(kube, ns, f"{name}-client", {"client_secret": "fake-client-secret"})
            status = (
                await until(kube, ns, name, "Connected", lambda s: s["phase"] == "Connected")
            )["status"]
            assert fake.google.calls["exchange"] == 1  # the kept code, exchanged once fixed
            assert "refusedClient" not in status

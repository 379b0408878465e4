"""`kubectl xynergy connect NAME`: print an OAuthConnection's authorization URL and wait until a
person has authorized it (phase Connected).

The URL comes from `status.authorizationURL` (the operator writes it, with PKCE and a signed
state); after the person approves at the provider, the gateway's callback hands the code to the
operator, which exchanges it. This command only reads: it watches the object until Connected,
until the provider refused (AuthorizationFailed) or the connection is broken (Error, Revoked), or
until `--timeout`. With `-o json|yaml` the URL goes to stderr and the result to stdout.
"""

from __future__ import annotations

import threading
from typing import Any

import click

from apis.v1alpha1.oauthconnection import OAuthPhase
from controllers.plugin.kinds import KINDS, client, fetch, names_of, namespace_option
from controllers.plugin.output import emit, output_option

__all__ = ["connect"]

KIND = KINDS["OAuthConnection"]
_BROKEN = {OAuthPhase.ERROR.value, OAuthPhase.REVOKED.value}


def _verdict(obj: dict[str, Any]) -> str | None:
    """'connected', 'failed', or None while a person still has to act (or the operator)."""
    st = obj.get("status") or {}
    observed = st.get("observedGeneration") == (obj.get("metadata") or {}).get("generation")
    if not observed:
        return None
    if st.get("phase") == OAuthPhase.CONNECTED.value:
        return "connected"
    stalled = [c for c in st.get("conditions") or [] if c.get("type") == "Stalled"]
    refused = any(c.get("reason") == "AuthorizationFailed" for c in stalled)
    return "failed" if refused or st.get("phase") in _BROKEN else None


def _result(obj: dict[str, Any]) -> dict[str, Any]:
    st = obj.get("status") or {}
    conditions: list[dict[str, Any]] = st.get("conditions") or []
    ready = next((c for c in conditions if c.get("type") == "Ready"), {})
    return {
        "namespace": obj["metadata"].get("namespace"),
        "name": obj["metadata"]["name"],
        "phase": st.get("phase"),
        "account": st.get("account"),
        "grantedScopes": st.get("grantedScopes"),
        "reason": ready.get("reason"),
        "message": ready.get("message"),
    }


def _watch_until(
    ctx: click.Context, name: str, namespace: str, done: Any, *, timeout: float
) -> dict[str, Any] | None:
    """The first version of the object for which `done(obj)` holds, or None after `timeout`."""
    found: dict[str, Any] = {}
    event = threading.Event()

    def follow() -> None:
        changes: Any = client(ctx).watch(
            KIND.resource, namespace=namespace, fields={"metadata.name": name}
        )
        for _, obj in changes:
            body = obj.to_dict()
            if done(body):
                found.update(body)
                event.set()
                return

    threading.Thread(target=follow, daemon=True).start()
    return found if event.wait(timeout) else None


@click.command()
@click.argument("name", shell_complete=names_of("OAuthConnection"))
@namespace_option
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=600.0,
    show_default=True,
    help="Seconds to wait for Connected.",
)
@click.option("--no-wait", is_flag=True, help="Print the URL and return.")
@output_option
@click.pass_context
def connect(
    ctx: click.Context, name: str, namespace: str, timeout: float, no_wait: bool, output: str
) -> None:
    """Print the authorization URL of OAuthConnection NAME and wait until it is Connected."""
    where = f"oauthconnection {namespace}/{name}"
    obj = fetch(ctx, KIND, name, namespace)
    if _verdict(obj) is None and not _url(obj):  # the operator has not written it yet
        first = _watch_until(
            ctx, name, namespace, lambda o: bool(_url(o) or _verdict(o)), timeout=timeout
        )
        obj = first or obj
    if _verdict(obj) is None:
        if not _url(obj):
            raise click.ClickException(
                f"{where}: no authorization URL after {timeout:g}s (is the operator running?)"
            )
        click.echo(f"Open this URL to authorize {name}:\n{_url(obj)}", err=output != "text")
        if no_wait:
            return
        click.echo("Waiting for the connection...", err=True)
        waited = _watch_until(ctx, name, namespace, _verdict, timeout=timeout)
        if waited is None:
            raise click.ClickException(f"{where}: not connected after {timeout:g}s")
        obj = waited
    result = _result(obj)
    if _verdict(obj) == "failed":
        raise click.ClickException(f"{where}: {result['phase']}: {result['message']}")
    emit(result, output, lambda: f"Connected: {namespace}/{name} account {result['account']}")


def _url(obj: dict[str, Any]) -> str | None:
    url: str | None = (obj.get("status") or {}).get("authorizationURL")
    return url

"""`kubectl xynergy connect NAME`: print an OAuthConnection's authorization URL and wait until a
person has authorized it (phase Connected).

The URL comes from `status.authorizationURL` (the operator writes it, with PKCE and a signed
state); after the person approves at the provider, the gateway's callback hands the code to the
operator, which exchanges it. This command only reads: it watches the object until Connected,
until the provider refused (AuthorizationFailed) or the connection is broken (Error, Revoked), or
until `--timeout`. With `-o json|yaml` the URL goes to stderr and the result to stdout.

A Connected connection can still carry a URL: its tokens work but Slack's user token has to be
got back (Degraded `UserReauthRequired`). Then the Degraded message and the URL are printed and
the command waits until the URL is gone (authorized again); a new URL in its place (that
authorization failed or its state expired) exits 1 with the Degraded message. A Connected
connection Degraded otherwise (the client Secret to fix) is connected, with the message beside.
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


def _reauthorize(obj: dict[str, Any]) -> bool:
    """Connected (the tokens work) with a URL to authorize again at (Slack's user token)."""
    st = obj.get("status") or {}
    return st.get("phase") == OAuthPhase.CONNECTED.value and bool(_url(obj))


def _degraded(obj: dict[str, Any]) -> str | None:
    """'reason: message' of a True Degraded condition (what a Connected connection needs a
    person for while its tokens still work), else None."""
    conditions: list[dict[str, Any]] = (obj.get("status") or {}).get("conditions") or []
    found = next(
        (c for c in conditions if c.get("type") == "Degraded" and c.get("status") == "True"), None
    )
    return None if found is None else f"{found.get('reason')}: {found.get('message', '')}"


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
        "degraded": _degraded(obj),
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
    again = _reauthorize(obj)
    if _verdict(obj) is None or again:
        url = _url(obj)
        if not url:
            raise click.ClickException(
                f"{where}: no authorization URL after {timeout:g}s (is the operator running?)"
            )
        if again:  # the tokens work; a person must authorize again (the Degraded message)
            why = _degraded(obj) or _result(obj)["message"]
            click.echo(f"{where} is connected but degraded: {why}", err=output != "text")
        click.echo(
            f"Open this URL to authorize {name}{' again' if again else ''}:\n{url}",
            err=output != "text",
        )
        if no_wait:
            return
        click.echo("Waiting for the connection...", err=True)

        def done(o: dict[str, Any]) -> str | None:
            """Authorizing again: done when the URL is gone, or another replaced it."""
            if again and _reauthorize(o):
                return "replaced" if _url(o) != url else None
            return _verdict(o)

        waited = _watch_until(ctx, name, namespace, done, timeout=timeout)
        if waited is None:
            raise click.ClickException(f"{where}: not connected after {timeout:g}s")
        obj = waited
        if again and _reauthorize(obj):  # a new URL in place of ours: that one did not work
            raise click.ClickException(
                f"{where}: still degraded, with a new authorization URL (the last one failed or "
                f"expired; run connect again): {_degraded(obj) or _result(obj)['message']}"
            )
    result = _result(obj)
    if _verdict(obj) == "failed":
        raise click.ClickException(f"{where}: {result['phase']}: {result['message']}")
    emit(result, output, lambda: _connected_text(namespace, name, result))


def _connected_text(namespace: str, name: str, result: dict[str, Any]) -> str:
    text = f"Connected: {namespace}/{name} account {result['account']}"
    if result["degraded"]:
        text = f"{text}\nDegraded: {result['degraded']}"
    return text


def _url(obj: dict[str, Any]) -> str | None:
    url: str | None = (obj.get("status") or {}).get("authorizationURL")
    return url

"""kopf registration for OAuthConnection, and nothing else: every trigger is one call into the
core controller (reconciler.py does the work).

Triggers: the object's own events; events of the Secrets it owns (server-side selector on the
`xynergy.io/oauth-connection` label): the gateway's callback putting a code in, a reader
asking for a refresh, a deleted token Secret; changes of the client Secret it uses
(clients.py: the operator's own watch of the Secrets labelled `xynergy.io/oauth-client`, and of
a missing client Secret's name until it is created); the
resync scheduler at the next refresh or state expiry. Deletion with `revokeOnDelete` holds a
finalizer until the tokens are revoked.

The reconciler (authlib, the providers' clients) is imported on the first connection's event.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from apis.v1alpha1.oauthconnection import CONNECTION_LABEL, OAuthConnection
from controllers.core import Kind, KindReconciler, OperatorContext, context_of, register

KIND = Kind.of(OAuthConnection)
log = logging.getLogger(__name__)


def _reconciler(ctx: OperatorContext) -> KindReconciler:
    """The reconciler, or, when the XYNERGY_OAUTH_* settings cannot work, one that only
    reports each connection Stalled `InvalidSettings` (misconfigured.py; logged once at start
    by `check_settings`, not here)."""
    from controllers.oauthconnection.settings import OAuthSettings, SettingsError

    try:
        settings = OAuthSettings.load()
    except SettingsError as exc:
        from controllers.oauthconnection.misconfigured import MisconfiguredReconciler
        from controllers.oauthconnection.secrets import SecretStore

        store = SecretStore(ctx.client, limit=ctx.api_limit)  # read by a deletion only
        return MisconfiguredReconciler(str(exc), holds_tokens=store.holds_tokens)
    from controllers.oauthconnection.clients import client_watch
    from controllers.oauthconnection.reconciler import from_context

    return from_context(ctx, missing_client=client_watch(ctx).await_creation, settings=settings)


register(KIND, _reconciler)


@kopf.on.startup()
def check_settings(**_: Any) -> None:
    """XYNERGY_OAUTH_* settings that cannot work are logged once at start, each named with
    why (no value of a Secret: these settings hold none). The operator starts all the same:
    the other kinds do not depend on them, and every OAuthConnection is reported Stalled
    `InvalidSettings` and left alone (`_reconciler`)."""
    from controllers.oauthconnection.settings import OAuthSettings, SettingsError

    try:
        OAuthSettings.load()
    except SettingsError as exc:
        log.error(
            "%s; OAuthConnections are reported InvalidSettings and not acted on until the "
            "settings are fixed and the operator restarted (other kinds run as usual)",
            exc,
        )


@kopf.on.startup()
def watch_only_our_secrets(settings: kopf.OperatorSettings, **_: Any) -> None:
    """The apiserver streams only the Secrets we made, never the cluster's others."""
    settings.watching.label_selectors["v1", "secrets"] = CONNECTION_LABEL


@kopf.on.startup()
async def watch_client_secrets(memo: kopf.Memo, **_: Any) -> None:
    from controllers.oauthconnection.clients import client_watch

    try:
        ctx = context_of(memo)
    except RuntimeError as exc:  # the runtime's startup handler has not run yet
        raise kopf.TemporaryError(str(exc), delay=1) from exc
    memo.oauth_clients = client_watch(ctx)
    memo.oauth_clients.start()


@kopf.on.cleanup()
async def stop_client_secrets(memo: kopf.Memo, **_: Any) -> None:
    watch = getattr(memo, "oauth_clients", None)
    if watch is not None:
        await watch.stop()


@kopf.on.event(KIND.group, KIND.version, KIND.plural)
async def on_object(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    await context_of(memo).controllers[KIND].on_event(body, type)


@kopf.on.event("v1", "secrets", labels={CONNECTION_LABEL: kopf.PRESENT})
async def on_secret(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    await context_of(memo).controllers[KIND].on_child_event("Secret", body, type)


def _revokes(spec: kopf.Spec, **_: Any) -> bool:
    return spec.get("revokeOnDelete", True) is not False


@kopf.on.delete(KIND.group, KIND.version, KIND.plural, when=_revokes)
async def on_delete(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Revoke, then let go; with settings that cannot work the deletion waits (the status
    and one Event say why) until an operator with valid settings revokes the tokens."""
    await context_of(memo).controllers[KIND].finalize_waiting(body)

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

from typing import Any

import kopf

from apis.v1alpha1.oauthconnection import CONNECTION_LABEL, OAuthConnection
from controllers.core import Kind, KindReconciler, OperatorContext, context_of, register

KIND = Kind.of(OAuthConnection)


def _reconciler(ctx: OperatorContext) -> KindReconciler:
    from controllers.oauthconnection.clients import client_watch
    from controllers.oauthconnection.reconciler import from_context

    return from_context(ctx, missing_client=client_watch(ctx).await_creation)


register(KIND, _reconciler)


@kopf.on.startup()
def check_settings(**_: Any) -> None:
    """XYNERGY_OAUTH_* settings that cannot work stop the operator at start, named (kopf ends
    on a startup handler's permanent error), not at each connection's converge later."""
    from controllers.oauthconnection.settings import OAuthSettings, SettingsError

    try:
        OAuthSettings.load()
    except SettingsError as exc:
        raise kopf.PermanentError(str(exc)) from None


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
    await context_of(memo).controllers[KIND].finalize(body)

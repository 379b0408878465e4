"""The four kinds as the plugin names them (kind, plural, singular, short name, any case), their
lightkube resources, the client factory shared by every command, and NAME completion."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import click
from click.shell_completion import CompletionItem
from lightkube import ApiError, Client
from lightkube.core.resource import NamespacedResourceG
from lightkube.generic_resource import create_namespaced_resource

from apis.v1alpha1 import KINDS as MODELS
from apis.v1alpha1.common import GROUP, VERSION

__all__ = [
    "KINDS",
    "Kind",
    "client",
    "complete_kind",
    "context_namespace",
    "fetch",
    "kind_named",
    "names_of",
    "namespace_option",
]

ClientFactory = Callable[[], Client]


@dataclass(frozen=True)
class Kind:
    name: str
    plural: str
    aliases: frozenset[str]

    @cached_property
    def resource(self) -> type[NamespacedResourceG]:
        return create_namespaced_resource(GROUP, VERSION, self.name, self.plural)


KINDS: dict[str, Kind] = {
    m.crd.kind: Kind(
        m.crd.kind,
        m.crd.plural,
        frozenset({m.crd.kind.lower(), m.crd.plural, m.crd.singular, *m.crd.short_names}),
    )
    for m in MODELS
}


def kind_named(text: str) -> Kind:
    """The kind called `text` (XynergyService, xynergyservices, xs, ...)."""
    for kind in KINDS.values():
        if text.lower() in kind.aliases:
            return kind
    names = ", ".join(sorted(a for k in KINDS.values() for a in k.aliases))
    raise click.BadParameter(f"{text!r} is not a Xynergy kind; expected one of: {names}")


def client(ctx: click.Context) -> Client:
    factory: ClientFactory = (ctx.obj or {}).get("client_factory", Client)
    return factory()


def context_namespace(ctx: click.Context, _: object = None, value: str | None = None) -> str:
    """``-n``'s value, else the current kubeconfig context's namespace (as kubectl), else
    ``default``."""
    if value:
        return value
    try:
        found = getattr(client(ctx), "namespace", None)
    except Exception:  # no kubeconfig: the command's own call says so
        found = None
    return str(found or "default")


namespace_option = click.option(
    "-n",
    "--namespace",
    default=None,
    callback=context_namespace,
    help="Namespace (default: the kubeconfig context's, as kubectl).",
)


def fetch(ctx: click.Context, kind: Kind, name: str, namespace: str) -> dict[str, Any]:
    """The object as a dict, or a one-line error naming it."""
    try:
        obj: Any = client(ctx).get(kind.resource, name, namespace=namespace)
    except ApiError as exc:
        raise click.ClickException(
            f"{kind.name.lower()} {namespace}/{name}: {exc.status.message}"
        ) from exc
    body: dict[str, Any] = obj.to_dict()
    return body


def names_of(kind: str | None = None) -> Callable[..., list[CompletionItem]]:
    """Shell completion of NAME: the names of `kind` (else of the KIND argument) in the
    command's namespace, read from the cluster; nothing when the cluster cannot be read."""

    def complete(ctx: click.Context, _: click.Parameter, incomplete: str) -> list[CompletionItem]:
        try:
            found = kind_named(kind or ctx.params.get("kind") or "")
            namespace = context_namespace(ctx, None, ctx.params.get("namespace"))
            items: Any = client(ctx).list(found.resource, namespace=namespace)
            names = [o.metadata.name for o in items]
        except Exception:  # completion never fails the shell
            return []
        return [CompletionItem(n) for n in names if n.startswith(incomplete)]

    return complete


def complete_kind(_: click.Context, __: click.Parameter, incomplete: str) -> list[CompletionItem]:
    return [CompletionItem(k.plural) for k in KINDS.values() if k.plural.startswith(incomplete)]

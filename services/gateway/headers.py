"""Which headers cross the proxy, and who the client is.

Pure functions, no I/O. A client may not send a header that claims an identity or that a
proxy in front of a service would set (``X-Real-IP``, ``X-Original-User``, ``X-Forwarded-*``,
``Impersonate-User``...): such a header is dropped before the request goes upstream. Names
are compared after lower-casing and turning ``_`` into ``-``, because some servers (CGI-style
frameworks, nginx with ``underscores_in_headers on``) read ``X_Tenant_Id`` as ``X-Tenant-Id``.

The client's address is the TCP peer's, unless the peer is one of the configured trusted
proxies; then ``X-Forwarded-For`` is read from the right, skipping trusted addresses, and the
first untrusted one is the client. A client that is not behind a trusted proxy cannot choose
its own address (nor its rate-limit bucket) with ``X-Forwarded-For``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CLIENT_FORBIDDEN_PREFIXES",
    "HOP_BY_HOP",
    "ForwardedFor",
    "TrustedProxies",
    "client_may_send",
    "normalise_header_name",
    "response_headers",
    "upstream_request_headers",
]

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

# Headers a client could use to claim an identity, or that a proxy (or the gateway itself)
# sets for the service behind it; compared by prefix after normalise_header_name.
CLIENT_FORBIDDEN_PREFIXES = (
    # identities: ours and those of common auth proxies and API gateways
    "x-xynergy-",
    "x-user",
    "x-tenant",
    "x-auth",
    "x-identity",
    "x-roles",
    "x-email",
    "x-remote-",
    "remote-user",
    "x-webauth-",
    "x-proxy-user",
    "x-goog-authenticated",
    "x-goog-iap-",
    "x-endpoint-api-userinfo",
    "x-apigateway-api-userinfo",
    "x-amzn-oidc-",
    "x-ms-client-principal",
    "cf-access-",
    "impersonate-",
    # proxy-set addressing and rewriting: the gateway sets X-Forwarded-* itself
    "x-forwarded-",
    "forwarded",
    "x-original-",
    "x-real-ip",
    "x-client-ip",
    "client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-cluster-client-ip",
    "x-proxyuser-ip",
    "x-envoy-",
    "x-rewrite-url",
    "x-host",
    # client TLS identity as terminated by a proxy
    "x-ssl-",
    "ssl-client-",
    "x-client-cert",
    "x-client-dn",
    "x-client-verify",
    # method overrides would let a GET act as a write behind the cache's back
    "x-http-method",
    "x-method-override",
)


def normalise_header_name(name: str) -> str:
    """``X_Tenant_Id`` -> ``x-tenant-id``: the name as a CGI-style server would read it."""
    return name.replace("_", "-").lower()


def client_may_send(name: str) -> bool:
    """False for a header name a client must not pass to a service (any case, ``_`` or ``-``)."""
    return not normalise_header_name(name).startswith(CLIENT_FORBIDDEN_PREFIXES)


class TrustedProxies:
    """The addresses whose ``X-Forwarded-For`` is believed (IPs or CIDR blocks)."""

    def __init__(self, networks: Iterable[str]) -> None:
        self._networks = tuple(ipaddress.ip_network(n, strict=False) for n in networks)

    def __bool__(self) -> bool:
        return bool(self._networks)

    def trusts(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.strip())
        except ValueError:
            return False
        return any(ip in net for net in self._networks)


@dataclass(frozen=True, slots=True)
class ForwardedFor:
    """The client's address and the ``X-Forwarded-For`` value to send upstream."""

    client: str
    header: str | None
    via_proxy: bool = False
    """The peer is a trusted proxy, so its X-Forwarded-Proto/Host are believed too."""

    @classmethod
    def resolve(
        cls, *, peer: str | None, xff: Sequence[str], trusted: TrustedProxies
    ) -> ForwardedFor:
        """From the TCP peer and the request's ``X-Forwarded-For`` values (in order)."""
        if peer is None:
            return cls(client="unknown", header=None)
        if not trusted or not trusted.trusts(peer):
            return cls(client=peer, header=peer)  # a client's own X-Forwarded-For is ignored
        hops = [h.strip() for value in xff for h in value.split(",") if h.strip()]
        client = peer
        for hop in reversed(hops):
            client = hop
            if not trusted.trusts(hop):
                break
        return cls(client=client, header=", ".join([*hops, peer]), via_proxy=True)

    @classmethod
    def of_scope(cls, scope: Mapping[str, Any], trusted: TrustedProxies) -> ForwardedFor:
        """From an ASGI scope (the socket.io handshake's; the proxy reads its headers once
        for everything and calls :meth:`resolve` itself)."""
        client = scope.get("client")
        xff = [
            v.decode("latin-1") for k, v in scope.get("headers") or () if k == b"x-forwarded-for"
        ]
        return cls.resolve(peer=client[0] if client else None, xff=xff, trusted=trusted)


def _connection_tokens(value: str | None) -> set[str]:
    return {t.strip().lower() for t in (value or "").split(",")} if value else set()


_DROP_REQUEST = HOP_BY_HOP | {
    "host",
    "authorization",
    "cookie",
    "x-request-id",
    "x-serverless-authorization",  # Cloud Run's caller token: the gateway's own, never a client's
}


def upstream_request_headers(
    raw: Iterable[tuple[bytes, bytes]],
    *,
    hdrs: dict[str, str],
    has_body: bool,
    forwarded: ForwardedFor,
    scheme: str,
    request_id: str,
    identity_token: str | None,
) -> list[tuple[str, str]]:
    """The request headers for the upstream: the client's, less hop-by-hop, credentials and
    forbidden names, plus ``X-Forwarded-*``, the request id and the signed identity (none on
    a public route: its upstream never gets an identity, not even one a client claimed)."""
    drop = _DROP_REQUEST | _connection_tokens(hdrs.get("connection"))
    if has_body:
        drop = drop | {"content-length"}
    out: list[tuple[str, str]] = []
    for k, v in raw:
        name = k.decode("latin-1").lower()
        if name not in drop and client_may_send(name):
            out.append((name, v.decode("latin-1")))
    if forwarded.header:
        out.append(("x-forwarded-for", forwarded.header))
    proto, host = scheme, hdrs.get("host")
    if forwarded.via_proxy:
        proto = hdrs.get("x-forwarded-proto", proto)
        host = hdrs.get("x-forwarded-host", host)
    out.append(("x-forwarded-proto", proto))
    if host:
        out.append(("x-forwarded-host", host))
    out.append(("x-request-id", request_id))
    if identity_token is not None:
        out.append(("x-xynergy-identity", identity_token))
    return out


_DROP_RESPONSE = frozenset(n.encode() for n in HOP_BY_HOP | {"x-request-id"})
_CORS_PREFIX = b"access-control-"


def response_headers(
    raw: Iterable[tuple[bytes, bytes]], connection: str | None
) -> list[tuple[bytes, bytes]]:
    """The upstream's response headers, names lower-cased, less hop-by-hop ones, its own
    request id and its CORS headers: the gateway's CORS policy is the only one (Starlette's
    ``CORSMiddleware`` replaces lower-case names only, so an upstream's mixed-case
    ``Access-Control-Allow-Origin`` would otherwise go out next to the echoed origin)."""
    drop = _DROP_RESPONSE
    if connection:
        drop = drop | {t.encode("latin-1") for t in _connection_tokens(connection)}
    out = []
    for k, v in raw:
        name = k.lower()
        if name not in drop and not name.startswith(_CORS_PREFIX):
            out.append((name, v))
    return out

"""CORS origins: an exact allow-list plus wildcard-subdomain patterns, credentials allowed.

The policy gives Starlette's ``CORSMiddleware`` its origins and regex (services.gateway.app)
and checks the socket.io handshake's ``Origin``. (A raw-ASGI CORS of our own measured no
cheaper than Starlette's in bench/gateway.py --compare, so it went.)

``https://*.xynergyos.com`` allows any subdomain (one or more labels) of xynergyos.com over
https, and nothing else: not the bare domain, not another scheme, not ``evilxynergyos.com``.
Credentials are allowed, so nothing that any website can match is: a bare ``*`` (as an origin
or a pattern), a regex such as ``.*``, and a pattern over a whole top-level domain
(``https://*.com``): a pattern's domain has two labels or more, and is not a public suffix
(the Public Suffix List's, ``publicsuffixlist``'s bundled copy: ``*.co.uk``, ``*.github.io``,
``*.a.run.app``, where anyone can put up a website), nor holds one at any depth below it
(``*.amazonaws.com``: ``*.`` matches any number of labels). ``check_origin`` and
``check_pattern`` are the settings' validation (services.gateway.settings), so the gateway
refuses to start with such a value, whatever the admission policies saw (a value from a
ConfigMap, a variable named in lower case); an origin with a path or a pattern of another form
never matches anything a browser sends, so it is refused at start rather than leaving the web
app's calls refused without a word.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache

import publicsuffixlist
from publicsuffixlist import PublicSuffixList

__all__ = ["OriginPolicy", "check_origin", "check_pattern"]

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_LABELS = rf"{_LABEL}(?:\.{_LABEL})*"
_PORT = r"(?::[0-9]{1,5})?"
_ORIGIN = re.compile(rf"https?://(?:{_LABELS}|\[[0-9a-f:.]+\]){_PORT}/?")
# two labels or more after '*.': https://*.com would match every .com website
_PATTERN = re.compile(rf"https?://\*\.{_LABEL}(?:\.{_LABEL})+{_PORT}")


def check_origin(origin: str) -> None:
    """Refuse what is not an origin as a browser sends it: ``scheme://host[:port]``."""
    if not _ORIGIN.fullmatch(origin.strip().lower()):
        raise ValueError(
            "each entry must be an origin, scheme://host[:port] without a path or '*' "
            "(e.g. https://app.xynergyos.com)"
        )


@cache
def _suffixes() -> PublicSuffixList:
    return PublicSuffixList()  # the ICANN and the private sections (github.io, run.app)


@cache
def _rules() -> frozenset[str]:
    """Every suffix the bundled list names (wildcard and exception rules as their domain,
    internationalised ones in punycode, as an origin carries them)."""
    rules: set[str] = set()
    with open(publicsuffixlist.PSLFILE, encoding="utf-8") as listed:
        for line in listed:
            rule = line.strip().split(" ", 1)[0].lstrip("!").removeprefix("*.")
            if not rule or rule.startswith("//"):
                continue
            try:
                rules.add(rule.encode("idna").decode("ascii").lower())
            except UnicodeError:
                rules.add(rule.lower())
    return frozenset(rules)


def _public_below(domain: str) -> str | None:
    """A public suffix at or under `domain` (None: none): `*.` matches one or more labels,
    so https://*.amazonaws.com matches anyone's site under s3-website.<region>.amazonaws.com."""
    if _suffixes().is_public(domain):
        return domain
    tail = "." + domain
    below = sorted(rule for rule in _rules() if rule.endswith(tail))
    return below[0] if below else None


def check_pattern(pattern: str) -> None:
    """Refuse a pattern that is not ``http(s)://*.`` and a domain (an optional port), or whose
    domain is a public suffix."""
    value = pattern.strip().lower()
    if not _PATTERN.fullmatch(value):
        raise ValueError(
            "each entry must look like https://*.example.com: '*.' and a domain of two labels "
            "or more (credentials are allowed, so a pattern any website matches, such as '*', "
            "'.*' or https://*.com, is refused)"
        )
    domain = value.split("*.", 1)[1].split(":", 1)[0]
    public = _public_below(domain)
    if public == domain:
        raise ValueError(
            f"each entry's domain must be one its owner controls: {domain} is a public suffix "
            "(anyone can put up a website under it, and credentials are allowed), e.g. "
            "https://*.example.com"
        )
    if public is not None:
        raise ValueError(
            f"each entry's domain must be one its owner controls: {domain} holds the public "
            f"suffix {public} ('*.' matches any depth, so anyone's website under it, and "
            "credentials are allowed); list the subdomain you own, e.g. https://*.app.example.com"
        )


def _pattern_regex(pattern: str) -> str:
    try:
        check_pattern(pattern)  # the settings checked it already; a policy built otherwise too
    except ValueError as exc:
        raise ValueError(f"CORS pattern: {exc}") from None
    return re.escape(pattern.strip().lower()).replace(r"\*", _LABELS)


class OriginPolicy:
    def __init__(self, *, origins: Iterable[str], patterns: Iterable[str]) -> None:
        self.origins = frozenset(o.strip().lower().rstrip("/") for o in origins)
        if "*" in self.origins or "*" in [p.strip() for p in patterns]:
            raise ValueError("a '*' CORS origin is not allowed (credentials are allowed)")
        parts = [_pattern_regex(p) for p in patterns]
        self.regex = "(?:" + "|".join(parts) + ")" if parts else None
        self._compiled = re.compile(self.regex) if self.regex else None

    def allows(self, origin: str | None) -> bool:
        if not origin:
            return False
        origin = origin.lower()
        if origin in self.origins:
            return True
        return self._compiled is not None and self._compiled.fullmatch(origin) is not None

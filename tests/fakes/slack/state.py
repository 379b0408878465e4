"""What the fake Slack workspace holds and how the Web API methods answer. Pure data, guarded
by one lock in the server.

Answers as Slack does: HTTP 200 with ``{"ok": true, ...}`` or ``{"ok": false, "error": "<code>"}``
(``not_authed``, ``invalid_auth``, ``channel_not_found``, ``users_not_found``, ``no_text``,
``msg_too_long``, ``invalid_cursor``, ``invalid_limit``, ``not_allowed_token_type``,
``missing_scope`` with ``needed``/``provided``; ``internal_error`` for an exception in the fake
itself, its traceback logged), and HTTP 429 ``{"ok": false, "error": "ratelimited"}`` with
``Retry-After``. Cursor pagination: ``limit`` and an opaque base64 ``cursor``,
``response_metadata.next_cursor`` empty on the last page. ``search.messages`` takes user tokens
only (``xoxp-``, rotated ``xoxe.xoxp-``) and pages with ``count``/``page``.
"""

from __future__ import annotations

import base64
import binascii
import collections
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Grant", "Reply", "SlackState"]

Reply = tuple[int, dict[str, Any], dict[str, str]]
"""HTTP status, JSON body, extra headers."""

_SCOPES = {
    "conversations.list": "channels:read",
    "conversations.history": "channels:history",
    "chat.postMessage": "chat:write",
    "users.list": "users:read",
    "users.lookupByEmail": "users:read.email",
    "search.messages": "search:read",
}
_MAX_TEXT = 40_000


@dataclass(frozen=True)
class Grant:
    """What a token may do: its team and scopes."""

    team: str
    scopes: frozenset[str]


def _cursor(offset: int) -> str:
    return base64.b64encode(f"next:{offset}".encode()).decode()


def _offset(cursor: str) -> int | None:
    try:
        kind, _, value = base64.b64decode(cursor, validate=True).decode().partition(":")
        return int(value) if kind == "next" and int(value) >= 0 else None
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


@dataclass
class SlackState:
    team: str = "T0FAKETEAM"
    channels: list[dict[str, Any]] = field(default_factory=list)
    messages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """channel id -> messages, oldest first."""
    users: list[dict[str, Any]] = field(default_factory=list)
    grants: dict[str, Grant] = field(default_factory=dict)
    token_check: Callable[[str], Grant | None] | None = None
    """Consulted for tokens not in ``grants`` (e.g. the fake OAuth server's live tokens)."""
    calls: collections.Counter[str] = field(default_factory=collections.Counter)
    faults: dict[str, list[int]] = field(default_factory=dict)
    posted: list[dict[str, Any]] = field(default_factory=list)
    _ts: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # -- seeding -----------------------------------------------------------------------------

    def add_channel(self, name: str, *, private: bool = False) -> str:
        cid = f"C{len(self.channels) + 1:08d}"
        self.channels.append(
            {
                "id": cid,
                "name": name,
                "is_channel": True,
                "is_private": private,
                "is_archived": False,
                "is_member": True,
                "created": int(time.time()),
                "num_members": 1,
                "topic": {"value": "", "creator": "", "last_set": 0},
                "purpose": {"value": "", "creator": "", "last_set": 0},
            }
        )
        self.messages[cid] = []
        return cid

    def add_user(self, name: str, email: str) -> str:
        uid = f"U{len(self.users) + 1:08d}"
        self.users.append(
            {
                "id": uid,
                "team_id": self.team,
                "name": name,
                "real_name": name.title(),
                "deleted": False,
                "is_bot": False,
                "profile": {"email": email, "real_name": name.title(), "display_name": name},
            }
        )
        return uid

    def add_message(self, channel: str, text: str, *, user: str = "U00000001") -> dict[str, Any]:
        msg = {"type": "message", "user": user, "text": text, "ts": self._next_ts()}
        self.messages[channel].append(msg)
        return msg

    def _next_ts(self) -> str:
        return f"{int(time.time())}.{next(self._ts):06d}"

    # -- dispatch ----------------------------------------------------------------------------

    def handle(self, method: str, args: dict[str, Any], token: str | None) -> Reply:
        self.calls[method] += 1
        queued = self.faults.get(method)
        if queued:
            status = queued.pop(0)
            if status == 429:
                return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "1"}
            return status, {"ok": False, "error": "internal_error"}, {}
        handler = _METHODS.get(method)
        if handler is None:
            return 404, {"ok": False, "error": "unknown_method", "req_method": method}, {}
        if not token:
            return _err("not_authed")
        grant = self.grants.get(token) or (self.token_check(token) if self.token_check else None)
        if grant is None:
            return _err("invalid_auth")
        if method == "search.messages" and not token.startswith(("xoxp-", "xoxe.xoxp-")):
            return _err("not_allowed_token_type")
        needed = _SCOPES[method]
        if needed not in grant.scopes:
            body = {"needed": needed, "provided": ",".join(sorted(grant.scopes))}
            return 200, {"ok": False, "error": "missing_scope", **body}, {}
        return handler(self, args)

    # -- methods -----------------------------------------------------------------------------

    def _page(
        self, items: list[dict[str, Any]], args: dict[str, Any], key: str, default: int = 100
    ) -> Reply:
        try:
            limit = int(args.get("limit") or default)
        except ValueError:
            return _err("invalid_limit")
        if limit < 1 or limit > 1000:
            return _err("invalid_limit")
        start = 0
        if args.get("cursor"):
            found = _offset(str(args["cursor"]))
            if found is None:
                return _err("invalid_cursor")
            start = found
        page = items[start : start + limit]
        more = start + limit < len(items)
        body = {
            key: page,
            "response_metadata": {"next_cursor": _cursor(start + limit) if more else ""},
        }
        return 200, {"ok": True, **body}, {}

    def conversations_list(self, args: dict[str, Any]) -> Reply:
        types = str(args.get("types") or "public_channel").split(",")
        wanted = [
            c
            for c in self.channels
            if ("private_channel" in types if c["is_private"] else "public_channel" in types)
            and not (c["is_archived"] and str(args.get("exclude_archived")) in ("true", "1"))
        ]
        return self._page(wanted, args, "channels")

    def conversations_history(self, args: dict[str, Any]) -> Reply:
        channel = args.get("channel")
        if not channel:
            return _err("invalid_arguments")
        if channel not in self.messages:
            return _err("channel_not_found")
        inclusive = str(args.get("inclusive")) in ("true", "1")
        oldest = float(args.get("oldest") or 0)
        latest = float(args.get("latest") or 1e12)
        msgs = [
            m
            for m in reversed(self.messages[channel])
            if (
                oldest <= float(m["ts"]) <= latest
                if inclusive
                else oldest < float(m["ts"]) < latest
            )
        ]
        status, body, headers = self._page(msgs, args, "messages")
        if body.get("ok"):
            body["has_more"] = bool(body["response_metadata"]["next_cursor"])
            body["pin_count"] = 0
        return status, body, headers

    def chat_post_message(self, args: dict[str, Any]) -> Reply:
        channel = args.get("channel")
        if not channel or channel not in self.messages:
            return _err("channel_not_found")
        text = args.get("text")
        if not text and not args.get("blocks"):
            return _err("no_text")
        if text and len(str(text)) > _MAX_TEXT:
            return _err("msg_too_long")
        msg = {"type": "message", "user": "U0FAKEBOT", "bot_id": "B0FAKEBOT", "text": text or ""}
        msg["ts"] = self._next_ts()
        if args.get("thread_ts"):
            msg["thread_ts"] = str(args["thread_ts"])
        self.messages[channel].append(msg)
        self.posted.append({"channel": channel, **msg})
        return 200, {"ok": True, "channel": channel, "ts": msg["ts"], "message": msg}, {}

    def users_list(self, args: dict[str, Any]) -> Reply:
        status, body, headers = self._page(self.users, args, "members", default=100)
        if body.get("ok"):
            body["cache_ts"] = int(time.time())
        return status, body, headers

    def users_lookup_by_email(self, args: dict[str, Any]) -> Reply:
        email = str(args.get("email") or "").lower()
        if not email:
            return _err("invalid_arguments")
        for user in self.users:
            if user["profile"].get("email", "").lower() == email:
                return 200, {"ok": True, "user": user}, {}
        return _err("users_not_found")

    def search_messages(self, args: dict[str, Any]) -> Reply:
        query = str(args.get("query") or "")
        if not query:
            return _err("no_query")
        try:
            count, page = int(args.get("count") or 20), int(args.get("page") or 1)
        except ValueError:
            return _err("invalid_arguments")
        count = max(1, min(count, 100))
        names = {c["id"]: c["name"] for c in self.channels}
        matches = [
            {
                **m,
                "channel": {"id": cid, "name": names[cid]},
                "permalink": f"https://fake/{cid}/{m['ts']}",
            }
            for cid, msgs in self.messages.items()
            for m in reversed(msgs)
            if query.lower() in str(m.get("text", "")).lower()
        ]
        pages = max(1, -(-len(matches) // count))
        chunk = matches[(page - 1) * count : page * count]
        paging = {"count": count, "total": len(matches), "page": page, "pages": pages}
        body = {"total": len(matches), "paging": paging, "matches": chunk}
        return 200, {"ok": True, "query": query, "messages": body}, {}


def _err(code: str) -> Reply:
    return 200, {"ok": False, "error": code}, {}


_METHODS: dict[str, Callable[[SlackState, dict[str, Any]], Reply]] = {
    "conversations.list": SlackState.conversations_list,
    "conversations.history": SlackState.conversations_history,
    "chat.postMessage": SlackState.chat_post_message,
    "users.list": SlackState.users_list,
    "users.lookupByEmail": SlackState.users_lookup_by_email,
    "search.messages": SlackState.search_messages,
}

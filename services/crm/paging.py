"""Opaque cursors for stable keyset pagination, and the search keys behind prefix search.

A cursor names the query's order and the sort values plus document id of the last item
served; the next page starts strictly after it, so pages neither skip nor repeat items when
others are inserted. Cursors are base64url JSON, not signed: they only position a query
inside the caller's own tenant, so a forged one can reveal nothing. Pure, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "MAX_SEARCH_PREFIX",
    "Cursor",
    "CursorError",
    "normalise_search",
    "search_keys",
]

MAX_SEARCH_PREFIX = 40
_WORD_RE = re.compile(r"[^\w@.+-]+")


class CursorError(ValueError):
    """A cursor that does not decode, or belongs to another ordering."""


@dataclass(frozen=True, slots=True)
class Cursor:
    order: str
    values: tuple[Any, ...]
    id: str

    def encode(self) -> str:
        vals = [
            {"t": v.astimezone(UTC).isoformat()} if isinstance(v, datetime) else v
            for v in self.values
        ]
        raw = json.dumps({"o": self.order, "v": vals, "i": self.id}, separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str, *, order: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            doc = json.loads(raw)
            if not isinstance(doc, dict) or doc.get("o") != order:
                raise CursorError("the cursor belongs to another query order")
            values = tuple(
                datetime.fromisoformat(v["t"]) if isinstance(v, dict) else v for v in doc["v"]
            )
            ident = doc["i"]
        except CursorError:
            raise
        except (binascii.Error, ValueError, KeyError, TypeError, RecursionError) as exc:
            # RecursionError: JSON nested past the decoder's limit (client input)
            raise CursorError("not a cursor returned by this API") from exc
        if not isinstance(ident, str) or not all(
            v is None or isinstance(v, str | int | float | datetime) for v in values
        ):
            raise CursorError("not a cursor returned by this API")
        return cls(order=order, values=values, id=ident)


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def normalise_search(text: str) -> str:
    """How a search query is compared: case- and accent-folded, single spaces."""
    return " ".join(_fold(text).split())[:MAX_SEARCH_PREFIX]


def search_keys(*, name: str, email: str | None) -> list[str]:
    """Every prefix (up to 40 characters) of the name, of each word in it, and of the email.

    Stored as an array, so ``array_contains`` finds a contact by any of those prefixes with
    one index lookup, ordered by name.
    """
    phrases = [normalise_search(name)]
    phrases += [w for w in _WORD_RE.split(phrases[0]) if w]
    if email:
        phrases.append(normalise_search(email))
    keys: dict[str, None] = {}
    for phrase in phrases:
        for end in range(1, min(len(phrase), MAX_SEARCH_PREFIX) + 1):
            keys[phrase[:end]] = None
    return list(keys)

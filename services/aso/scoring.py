"""The ASO engine's own scores: pure functions of the listing and the model's suggestions
(no I/O), so the part of a suggestion's score that is arithmetic is computed, not guessed.

- Where a keyword already stands: a phrase is *in* a field when every one of its words is
  among the field's words (case-folded). The stores index different fields: Apple the title,
  the subtitle and the keyword field; Google Play the title, the short description and the
  full description.
- A keyword's ``score`` is its relevance (the model's, 0-1) times what is still to gain:
  ``1 - weight`` of the strongest indexed field that already holds it (title 1.0, subtitle
  0.6, keyword field 0.5, description 0.3). A keyword already in the title scores 0.
- A title's ``coverage`` is the share of the top keywords' relevance whose words it holds;
  its ``score`` is that coverage, or 0 when it is longer than the store allows.
- Apple's keyword field is packed greedily with the best-scoring keywords whose words are not
  already in the title or subtitle (the store combines those), comma-separated, no spaces,
  words not repeated, within 100 characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.aso.models import STORE_LIMITS, AppListing, SuggestedKeyword

__all__ = [
    "FIELD_WEIGHTS",
    "KeywordScore",
    "TitleScore",
    "audit",
    "pack_keyword_field",
    "placement",
    "score_keywords",
    "score_titles",
    "words",
]

FIELD_WEIGHTS = {"title": 1.0, "subtitle": 0.6, "keywords": 0.5, "description": 0.3}
INDEXED = {
    "apple": ("title", "subtitle", "keywords"),
    "google": ("title", "subtitle", "description"),
}
TOP_KEYWORDS = 5
_WORD = re.compile(r"\w+", re.UNICODE)


def words(text: str) -> set[str]:
    return {w.casefold() for w in _WORD.findall(text)}


def _fields(listing: AppListing) -> dict[str, set[str]]:
    return {
        "title": words(listing.title),
        "subtitle": words(listing.subtitle),
        "keywords": words(" ".join(listing.keywords)),
        "description": words(listing.description),
    }


def placement(keyword: str, listing: AppListing) -> list[str]:
    """The indexed fields of the listing's store that hold every word of ``keyword``."""
    need = words(keyword)
    fields = _fields(listing)
    return [f for f in INDEXED[listing.store] if need and need <= fields[f]]


@dataclass(frozen=True)
class KeywordScore:
    keyword: str
    relevance: float
    in_listing: list[str]
    score: float


def score_keywords(listing: AppListing, found: list[SuggestedKeyword]) -> list[KeywordScore]:
    """Each distinct keyword (case-folded) once, best score first, at most max_keywords."""
    seen: set[str] = set()
    out = []
    for k in found:
        key = " ".join(sorted(words(k.keyword)))
        if not key or key in seen:
            continue
        seen.add(key)
        where = placement(k.keyword, listing)
        held = max((FIELD_WEIGHTS[f] for f in where), default=0.0)
        out.append(KeywordScore(k.keyword, k.relevance, where, round(k.relevance * (1 - held), 4)))
    out.sort(key=lambda s: (-s.score, -s.relevance, s.keyword))
    return out[: listing.max_keywords]


@dataclass(frozen=True)
class TitleScore:
    title: str
    length: int
    limit: int
    within_limit: bool
    keywords: list[str]
    coverage: float
    score: float


def score_titles(
    store: str, titles: list[str], keywords: list[KeywordScore], *, most: int
) -> list[TitleScore]:
    """Candidate titles scored by the top keywords they hold (by relevance), best first."""
    limit = STORE_LIMITS[store]["title"]
    top = sorted(keywords, key=lambda k: -k.relevance)[:TOP_KEYWORDS]
    total = sum(k.relevance for k in top) or 1.0
    out, seen = [], set()
    for title in titles:
        if title.casefold() in seen:
            continue
        seen.add(title.casefold())
        held = [k for k in top if words(k.keyword) <= words(title)]
        coverage = round(sum(k.relevance for k in held) / total, 4)
        fits = len(title) <= limit
        score = coverage if fits else 0.0
        names = [k.keyword for k in held]
        out.append(TitleScore(title, len(title), limit, fits, names, coverage, score))
    out.sort(key=lambda t: (-t.score, t.length, t.title))
    return out[:most]


def pack_keyword_field(listing: AppListing, keywords: list[KeywordScore]) -> str:
    """Apple's keyword field from the best keywords (see the module docstring)."""
    limit = STORE_LIMITS["apple"]["keywords"]
    used = words(listing.title) | words(listing.subtitle)
    parts: list[str] = []
    for k in keywords:
        fresh = [w for w in sorted(words(k.keyword)) if w not in used]
        for word in fresh:
            if len(",".join([*parts, word])) <= limit:
                parts.append(word)
                used.add(word)
    return ",".join(parts)


def audit(listing: AppListing, keywords: list[KeywordScore]) -> dict[str, object]:
    """The listing now against its store's limits, and how many top keywords it holds."""
    limits = STORE_LIMITS[listing.store]
    lengths = {"title": len(listing.title), "subtitle": len(listing.subtitle)}
    if listing.store == "apple":
        lengths["keywords"] = len(",".join(listing.keywords))
    else:
        lengths["description"] = len(listing.description)
    over = sorted(f for f, n in lengths.items() if n > limits[f])
    top = sorted(keywords, key=lambda k: -k.relevance)[:TOP_KEYWORDS]
    held = [k.keyword for k in top if k.in_listing]
    return {
        "lengths": lengths,
        "limits": limits,
        "over_limit": over,
        "top_keywords_in_listing": held,
        "coverage": round(len(held) / len(top), 4) if top else 0.0,
    }

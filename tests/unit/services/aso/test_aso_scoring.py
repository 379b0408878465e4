"""The ASO engine's own arithmetic: where a keyword stands per store, keyword and title
scores, Apple's packed keyword field and the listing audit."""

from __future__ import annotations

from typing import Any

from services.aso import scoring
from services.aso.models import AppListing, SuggestedKeyword


def listing(**overrides: Any) -> AppListing:
    base: dict[str, Any] = {
        "store": "apple",
        "title": "Acme Notes",
        "subtitle": "Offline study planner",
        "description": "Flashcards and notes that sync.",
        "keywords": ["homework", "exam"],
        "category": "Education",
    }
    return AppListing.model_validate({**base, **overrides})


def kw(keyword: str, relevance: float) -> SuggestedKeyword:
    return SuggestedKeyword(keyword=keyword, relevance=relevance)


def test_placement_follows_what_each_store_indexes() -> None:
    apple, google = listing(), listing(store="google")
    assert scoring.placement("Notes", apple) == ["title"]
    assert scoring.placement("study planner", apple) == ["subtitle"]
    assert scoring.placement("homework", apple) == ["keywords"]
    assert scoring.placement("flashcards", apple) == []  # Apple does not index descriptions
    assert scoring.placement("flashcards", google) == ["description"]
    assert scoring.placement("homework", google) == []  # Google has no keyword field
    assert scoring.placement("notes planner", apple) == []  # every word in one field


def test_keyword_score_is_relevance_times_what_is_left_to_gain() -> None:
    found = [kw("notes", 0.9), kw("study planner", 0.5), kw("flashcards", 0.8), kw("Notes", 0.1)]
    scores = scoring.score_keywords(listing(), found)
    assert [(s.keyword, s.score, s.in_listing) for s in scores] == [
        ("flashcards", 0.8, []),
        ("study planner", 0.2, ["subtitle"]),  # 0.5 x (1 - 0.6)
        ("notes", 0.0, ["title"]),
    ]  # "Notes" again is dropped
    assert len(scoring.score_keywords(listing(max_keywords=1), found)) == 1


def test_titles_over_the_store_limit_score_zero() -> None:
    keywords = scoring.score_keywords(listing(), [kw("notes", 1.0), kw("flashcards", 1.0)])
    titles = ["Acme Notes: Flashcards", "Acme Notes and Flashcards for every exam", "Acme"]
    scored = scoring.score_titles("apple", titles, keywords, most=5)
    assert [(t.title, t.score, t.within_limit) for t in scored] == [
        ("Acme Notes: Flashcards", 1.0, True),
        ("Acme", 0.0, True),
        ("Acme Notes and Flashcards for every exam", 0.0, False),
    ]
    assert scored[2].coverage == 1.0
    assert scored[2].length == 40
    assert scored[2].limit == 30


def test_apple_keyword_field_is_packed_within_100_characters_without_title_words() -> None:
    found = [kw("notes app", 1.0)] + [kw(f"word{i:02d}", 0.5) for i in range(30)]
    keywords = scoring.score_keywords(listing(max_keywords=50), found)
    field = scoring.pack_keyword_field(listing(), keywords)
    parts = field.split(",")
    assert len(field) <= 100
    assert " " not in field
    assert "notes" not in parts
    assert parts[0] == "app"
    assert len(set(parts)) == len(parts)
    assert len(",".join([*parts, "word99"])) > 100  # full: another word would not fit


def test_audit_names_fields_over_the_limit() -> None:
    long = listing(store="google", title="A" * 31, subtitle="s" * 81)
    keywords = scoring.score_keywords(long, [kw("flashcards", 1.0), kw("zebra", 0.5)])
    out = scoring.audit(long, keywords)
    assert out["over_limit"] == ["subtitle", "title"]
    assert out["top_keywords_in_listing"] == ["flashcards"]
    assert out["coverage"] == 0.5

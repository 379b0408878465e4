"""The ASO engine's request (an app's store listing), the answer asked of the model, and the
stores' metadata limits."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["STORE_LIMITS", "AppListing", "ModelSuggestions", "Store", "SuggestedKeyword"]

Store = Literal["apple", "google"]

STORE_LIMITS: dict[str, dict[str, int]] = {
    # App Store: app name 30, subtitle 30, keyword field 100 (comma-separated).
    "apple": {"title": 30, "subtitle": 30, "keywords": 100},
    # Google Play: title 30, short description 80, full description 4000.
    "google": {"title": 30, "subtitle": 80, "description": 4000},
}

Keyword = Annotated[str, Field(min_length=1, max_length=100)]


class AppListing(BaseModel):
    """The listing as it is now; ``subtitle`` is Google Play's short description."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    store: Store
    title: str = Field(min_length=1, max_length=200, description="The app's name now.")
    subtitle: str = Field(default="", max_length=200)
    description: str = Field(min_length=1, max_length=10_000)
    keywords: list[Keyword] = Field(
        default_factory=list, max_length=100, description="Apple's keyword field now."
    )
    category: str = Field(min_length=1, max_length=100)
    competitors: list[Keyword] = Field(default_factory=list, max_length=10)
    language: str = Field(default="en", pattern=r"^[a-z]{2}(-[A-Z]{2})?$")
    max_keywords: int = Field(default=15, ge=1, le=50)
    max_titles: int = Field(default=5, ge=1, le=10)


class SuggestedKeyword(BaseModel):
    keyword: Keyword
    relevance: float = Field(ge=0, le=1, description="How well it describes the app (model).")


class ModelSuggestions(BaseModel):
    """What the model answers: keywords with relevance, and candidate titles."""

    keywords: list[SuggestedKeyword] = Field(min_length=1, max_length=100)
    titles: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        min_length=1, max_length=20
    )

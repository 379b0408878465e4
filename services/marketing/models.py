"""The Marketing engine's request, the copy a model must answer, and each channel's limits.

The limits are the channels' own: an email subject that mail clients show whole (60
characters) and a preheader (100); a post that fits X/Twitter (280) with at most 5 hashtags;
Google Ads responsive search ads (headlines of 30 characters, up to 15; descriptions of 90,
up to 4). The answer model enforces them, so copy over a limit is a malformed answer (asked
again once, then a 502 naming the field), never passed on.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

__all__ = [
    "CHANNEL_LIMITS",
    "AdsCopy",
    "CampaignBrief",
    "Channel",
    "EmailCopy",
    "SocialCopy",
    "SocialPost",
    "copy_model",
]

Channel = Literal["email", "social", "ads"]

CHANNEL_LIMITS: dict[str, dict[str, int]] = {
    "email": {"subject": 60, "preheader": 100, "body": 2000},
    "social": {"text": 280, "hashtags": 5, "posts": 5},
    "ads": {"headline": 30, "headlines": 15, "description": 90, "descriptions": 4},
}
_E, _S, _A = CHANNEL_LIMITS["email"], CHANNEL_LIMITS["social"], CHANNEL_LIMITS["ads"]

Line = Annotated[str, Field(min_length=1, max_length=200)]


class CampaignBrief(BaseModel):
    """What the campaign is about; ``channels`` says which copy to write."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    product: str = Field(min_length=1, max_length=200, description="What is marketed.")
    audience: str = Field(min_length=1, max_length=500, description="Whom the copy speaks to.")
    goal: str = Field(min_length=1, max_length=500, description="What the campaign wants.")
    key_points: list[Line] = Field(default_factory=list, max_length=10)
    tone: str = Field(default="friendly", min_length=1, max_length=50)
    call_to_action: str | None = Field(default=None, min_length=1, max_length=100)
    language: str = Field(default="en", pattern=r"^[a-z]{2}(-[A-Z]{2})?$")
    channels: list[Channel] = Field(min_length=1, max_length=3)
    variants: int = Field(default=3, ge=1, le=5, description="Social posts and ad headlines.")

    @field_validator("channels")
    @classmethod
    def _unique(cls, value: list[Channel]) -> list[Channel]:
        if len(set(value)) != len(value):
            raise ValueError("each channel at most once")
        return value


class EmailCopy(BaseModel):
    subject: str = Field(min_length=1, max_length=_E["subject"])
    preheader: str = Field(min_length=1, max_length=_E["preheader"])
    body: str = Field(min_length=1, max_length=_E["body"])


Hashtag = Annotated[str, Field(pattern=r"^#\w{1,50}$")]


class SocialPost(BaseModel):
    text: str = Field(min_length=1, max_length=_S["text"])
    hashtags: list[Hashtag] = Field(default_factory=list, max_length=_S["hashtags"])


class SocialCopy(BaseModel):
    posts: list[SocialPost] = Field(min_length=1, max_length=_S["posts"])


Headline = Annotated[str, Field(min_length=1, max_length=_A["headline"])]
Description = Annotated[str, Field(min_length=1, max_length=_A["description"])]


class AdsCopy(BaseModel):
    headlines: list[Headline] = Field(min_length=1, max_length=_A["headlines"])
    descriptions: list[Description] = Field(min_length=1, max_length=_A["descriptions"])


_COPY: dict[str, type[BaseModel]] = {"email": EmailCopy, "social": SocialCopy, "ads": AdsCopy}


@functools.cache
def copy_model(channels: frozenset[str]) -> type[BaseModel]:
    """The answer asked of the model: exactly the requested channels, each required."""
    fields: dict[str, Any] = {c: (_COPY[c], ...) for c in sorted(channels)}
    return create_model("CampaignCopy", **fields)

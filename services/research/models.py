"""The Research coordinator's request, the answers asked of the model (a plan, a sub-answer,
a cited summary) and what a sub-query became."""

from __future__ import annotations

import functools
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "CITATION",
    "MAX_SUB_QUERIES",
    "Plan",
    "ResearchTask",
    "SubAnswer",
    "SubResult",
    "cited",
    "summary_model",
]

MAX_SUB_QUERIES = 8
CITATION = re.compile(r"\[(q\d+)\]")
Question = Annotated[str, Field(min_length=1, max_length=500)]


class ResearchTask(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    question: str = Field(min_length=1, max_length=2000)
    context: str = Field(default="", max_length=20_000)
    sub_queries: list[Question] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_SUB_QUERIES,
        description="Sub-questions to ask as given (no planning step).",
    )
    max_sub_queries: int = Field(
        default=4, ge=1, le=MAX_SUB_QUERIES, description="Fan-out bound of a planned task."
    )


class Plan(BaseModel):
    sub_queries: list[Question] = Field(min_length=1, max_length=50)


class SubAnswer(BaseModel):
    answer: str = Field(min_length=1, max_length=4000)


class SubResult(BaseModel):
    id: str
    question: str
    status: Literal["answered", "failed", "timed_out"]
    answer: str | None = None
    error: str | None = None


def cited(text: str) -> list[str]:
    """The ids cited in ``text`` as ``[qN]``, each once, in order of first citation."""
    return list(dict.fromkeys(CITATION.findall(text)))


@functools.cache
def summary_model(ids: tuple[str, ...]) -> type[BaseModel]:
    """The summary answer, valid only when it cites at least one of ``ids`` and nothing else."""
    listed = ", ".join(ids)

    class CitedSummary(BaseModel):
        summary: str = Field(
            min_length=1,
            max_length=8000,
            description=f"Cites the sub-answers it rests on as [id]; ids: {listed}.",
        )

        @field_validator("summary")
        @classmethod
        def _citations(cls, value: str) -> str:
            found = cited(value)
            if not found:
                raise ValueError(f"cites no sub-answer (cite them as [id], ids: {listed})")
            unknown = [c for c in found if c not in ids]
            if unknown:
                raise ValueError(
                    f"cites {', '.join(unknown)}: not an answered sub-query ({listed})"
                )
            return value

    return CitedSummary

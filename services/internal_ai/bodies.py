"""The Internal AI service's request and response bodies (OpenAI's shapes, plus the model's
lifecycle and readiness), so its OpenAPI documents what it answers and the fuzz test
(tests/integration/security/test_internal_ai_fuzz.py) can hold it to that. Requests are
strict: a value of another JSON type than documented (``"max_tokens": true``, ``"stream":
"yes"``) is a 422 naming the field, not coerced. Data only."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from services.internal_ai.model import MODEL_ID

__all__ = [
    "AssistantMessage",
    "ChatChoice",
    "ChatCompletion",
    "ChatMessage",
    "ChatRequest",
    "ChatUsage",
    "Embedding",
    "EmbeddingsRequest",
    "EmbeddingsResponse",
    "EmbeddingsUsage",
    "ModelCard",
    "ModelList",
    "ModelState",
    "PositiveInteger",
    "Readiness",
    "Task",
]


def _json_integer(value: object) -> object:
    """JSON Schema's integer: a number without a fraction (``2.0`` too), so the strict check
    after it refuses only what is not one (``true``, ``"2"``, ``2.5``)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


PositiveInteger = Annotated[int, Field(ge=1), BeforeValidator(_json_integer)]


class EmbeddingsRequest(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)  # JSON's types, none coerced

    input: str | list[str] = Field(description="A text or a list of texts.")
    model: str = MODEL_ID
    encoding_format: Literal["float"] = "float"


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)  # JSON's types, none coerced

    role: str
    content: str | None = None


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)  # JSON's types, none coerced

    model: str = MODEL_ID
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: PositiveInteger | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int = Field(ge=0)
    embedding: list[float]


class EmbeddingsUsage(BaseModel):
    prompt_tokens: int = Field(ge=0)
    total_tokens: int = Field(ge=0)


class EmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingsUsage


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = Field(ge=0)
    message: AssistantMessage
    finish_reason: Literal["stop"] = "stop"


class ChatUsage(BaseModel):
    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)
    total_tokens: int = Field(ge=0)


class Task(BaseModel):
    """What the answer is: a classification (with every label's cosine) or a summary."""

    task: Literal["classification", "extractive_summary"]
    scores: dict[str, float]


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    system_fingerprint: str = Field(
        description="minilm-classification or minilm-extractive-summary"
    )
    choices: list[ChatChoice]
    usage: ChatUsage
    xynergy: Task


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ModelState(BaseModel):
    model: str
    loaded: bool
    loads: int = Field(ge=0)
    pending: int = Field(ge=0)
    max_pending: int = Field(ge=1)
    served: int = Field(ge=0)
    refused: int = Field(ge=0)
    idle_unload_seconds: float = Field(ge=0)


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    model: ModelState

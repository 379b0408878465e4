"""AI router settings, read from the environment (prefix ``XYNERGY_AI_``).

Every setting is listed in docs/services/ai.md. The provider chain is ``XYNERGY_AI_PROVIDERS``,
a JSON list of :class:`ProviderSpec` tried in order; API keys are not in it: each provider
names the environment variable that holds its key (``api_key_env``), and a provider whose
variable is unset or empty is left out of the chain (said once in the log at start-up).
"""

from __future__ import annotations

import os
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["AiSettings", "PriceSpec", "ProviderSpec", "default_providers"]


class PriceSpec(BaseModel):
    """USD per million tokens, for one model of one provider."""

    model_config = ConfigDict(extra="forbid")

    prompt: Decimal = Field(ge=0, description="USD per 1M prompt (input) tokens.")
    completion: Decimal = Field(ge=0, description="USD per 1M completion (output) tokens.")


class ProviderSpec(BaseModel):
    """One OpenAI-compatible chat completions endpoint of the chain."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")
    base_url: str = Field(pattern=r"^https?://\S+$", description="Ends before /chat/completions.")
    api_key_env: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Environment variable holding the key; unset or empty leaves it out.",
    )
    api_key: SecretStr | None = Field(default=None, description="The key itself (tests).")
    models: dict[str, str] = Field(
        default_factory=lambda: {"*": ""},
        description="Requested model -> this provider's model ('' = the same name; '*' = any).",
    )
    prices: dict[str, PriceSpec] = Field(
        default_factory=dict, description="This provider's model -> price; unlisted costs 0."
    )
    timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    forward_identity: bool = Field(
        default=False,
        description="Send the caller's signed identity along (only to our own services).",
    )
    max_connections: int = Field(default=100, ge=1, le=10_000)

    def key(self) -> str | None:
        """The API key; None when this provider is not configured. A provider that names
        neither a key nor a variable needs none (the internal service)."""
        if self.api_key is not None:
            return self.api_key.get_secret_value() or None
        if self.api_key_env is not None:
            return os.environ.get(self.api_key_env) or None
        return "unused"

    def upstream_model(self, model: str) -> str | None:
        """What this provider calls ``model``; None when it does not serve it."""
        name = self.models.get(model, self.models.get("*"))
        if name is None:
            return None
        return name or model


def default_providers() -> list[ProviderSpec]:
    """Abacus (RouteLLM, OpenAI-compatible), OpenAI, then the internal model service."""
    return [
        ProviderSpec(
            name="abacus", base_url="https://routellm.abacus.ai/v1", api_key_env="ABACUS_API_KEY"
        ),
        ProviderSpec(
            name="openai", base_url="https://api.openai.com/v1", api_key_env="OPENAI_API_KEY"
        ),
        ProviderSpec(
            name="internal",
            base_url="http://127.0.0.1:8084/v1",
            models={"*": "all-minilm-l6-v2"},
            forward_identity=True,
            timeout_seconds=60,
        ),
    ]


class AiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="XYNERGY_AI_", extra="ignore")

    providers: list[ProviderSpec] = Field(default_factory=default_providers, min_length=1)
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0", description="Cache, cache stats, ledger, warm jobs."
    )
    breaker_failures: int = Field(
        default=3, ge=1, le=100, description="Consecutive failures that cool a provider down."
    )
    breaker_cooldown_seconds: float = Field(
        default=30.0, gt=0, le=3600, description="How long a cooled-down provider is skipped."
    )
    max_retry_after_seconds: float = Field(
        default=300.0, gt=0, description="A 429's Retry-After is honoured up to this."
    )
    cache_enabled: bool = True
    cache_ttl_seconds: int = Field(default=3600, ge=1, le=30 * 86_400)
    cache_route_ttls: dict[str, int] = Field(
        default_factory=dict,
        description="X-AI-Route value (longest prefix wins) -> TTL seconds; 0 = no caching.",
    )
    cache_max_entry_bytes: int = Field(default=1 << 20, ge=1024)
    semantic_cache_enabled: bool = Field(
        default=False, description="Look up near-identical prompts by embedding similarity."
    )
    semantic_threshold: float = Field(default=0.95, gt=0, le=1)
    semantic_embeddings_url: str = Field(
        default="http://127.0.0.1:8084/v1", description="OpenAI-compatible /embeddings."
    )
    semantic_max_entries: int = Field(default=1000, ge=1, le=100_000)
    warm_concurrency: int = Field(default=4, ge=1, le=64)
    warm_max_prompts: int = Field(default=1000, ge=1, le=100_000)
    max_body_bytes: int = Field(default=1 << 20, ge=64 << 10)
    readiness_timeout_seconds: float = Field(default=2.0, gt=0)
    log_level: str = "INFO"

    @field_validator("providers")
    @classmethod
    def _unique_names(cls, value: list[ProviderSpec]) -> list[ProviderSpec]:
        names = [p.name for p in value]
        if len(set(names)) != len(names):
            raise ValueError(f"provider names must be unique, got {names}")
        return value

"""Marketing engine settings, read from the environment (prefix ``XYNERGY_MARKETING_``).

Every setting is listed in docs/services/engines.md (the shared ones are
:class:`services.common.engine.EngineSettings`).
"""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from services.common.engine import EngineSettings

__all__ = ["MarketingSettings"]


class MarketingSettings(EngineSettings):
    model_config = SettingsConfigDict(env_prefix="XYNERGY_MARKETING_", extra="ignore")

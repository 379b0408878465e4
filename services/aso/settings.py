"""ASO engine settings, read from the environment (prefix ``XYNERGY_ASO_``).

Every setting is listed in docs/services/engines.md (the shared ones are
:class:`services.common.engine.EngineSettings`).
"""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from services.common.engine import EngineSettings

__all__ = ["AsoSettings"]


class AsoSettings(EngineSettings):
    model_config = SettingsConfigDict(env_prefix="XYNERGY_ASO_", extra="ignore")

"""Research coordinator settings, read from the environment (prefix ``XYNERGY_RESEARCH_``).

Every setting is listed in docs/services/engines.md (the shared ones are
:class:`services.common.engine.EngineSettings`).
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.engine import EngineSettings

__all__ = ["ResearchSettings"]


class ResearchSettings(EngineSettings):
    model_config = SettingsConfigDict(env_prefix="XYNERGY_RESEARCH_", extra="ignore")

    concurrency: int = Field(
        default=3, ge=1, le=16, description="Sub-queries asked of the router at once."
    )
    sub_query_timeout_seconds: float = Field(
        default=30.0, gt=0, le=600, description="A sub-query not answered by then is dropped."
    )

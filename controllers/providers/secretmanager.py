"""Secret Manager provider: which concrete version a secret reference names, through the
Secret Manager API v1 (`secretmanager_v1`, REST transport, calls in a thread under the same
retry as Cloud Run's).

It reads version metadata only (`GetSecretVersion`, the `secretmanager.versions.get`
permission, e.g. roles/secretmanager.viewer), never a payload: Cloud Run reads the value when an
instance starts, as the revision's service account. Resolving `latest` to a number is what
makes a rotation (a new version) a new template, so a new revision rolls it out; a pinned
`latest` would let instances of one revision start with different values.

Errors: a missing secret or version, or one that is not ENABLED, is `StalledError` naming it;
403 is `StalledError` PermissionDenied; what fails after the retries is `TransientError`.
"""

from __future__ import annotations

import asyncio

from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth.credentials import Credentials
from google.cloud import secretmanager_v1

from controllers.core.errors import StalledError
from controllers.core.retry import RetryPolicy
from controllers.providers.cloudrun import call_google, classify_error, google_credentials

__all__ = ["SecretManagerProvider"]


class SecretManagerProvider:
    """Secret versions through the Secret Manager API v1 (default endpoint: Google's)."""

    def __init__(
        self,
        *,
        credentials: Credentials | None = None,
        api_endpoint: str | None = None,
        retry: RetryPolicy | None = None,
        request_timeout: float = 30.0,
    ) -> None:
        self._credentials = credentials
        self._endpoint = api_endpoint
        self.retry = retry or RetryPolicy()
        self.request_timeout = request_timeout
        self._client: secretmanager_v1.SecretManagerServiceClient | None = None
        self._lock = asyncio.Lock()

    def _make_client(self) -> secretmanager_v1.SecretManagerServiceClient:
        options = ClientOptions(api_endpoint=self._endpoint) if self._endpoint else None
        return secretmanager_v1.SecretManagerServiceClient(
            credentials=google_credentials(self._credentials, self._endpoint),
            transport="rest",
            client_options=options,
        )

    async def _ensure_client(self) -> secretmanager_v1.SecretManagerServiceClient:
        async with self._lock:
            if self._client is None:
                self._client = await asyncio.to_thread(self._make_client)
            return self._client

    async def resolve(self, project: str, secret: str, version: str) -> str:
        """The version id (a number) that `version` ("latest" or a number) of `secret` in
        `project` names; StalledError unless it exists and is ENABLED."""
        client = await self._ensure_client()
        name = f"projects/{project}/secrets/{secret}/versions/{version}"
        what = f"Secret Manager secret {secret} version {version}"
        try:
            found = await call_google(
                what,
                lambda: client.get_secret_version(
                    name=name, retry=None, timeout=self.request_timeout
                ),
                retry=self.retry,
            )
        except gexc.GoogleAPICallError as exc:
            error = classify_error(exc, what=what)
            if isinstance(error, StalledError) and error.reason == "NotFound":
                raise StalledError(error.message, reason="SecretVersionNotFound") from exc
            raise error from exc
        state = secretmanager_v1.SecretVersion.State(found.state)
        if state != secretmanager_v1.SecretVersion.State.ENABLED:
            resolved = found.name.rpartition("/")[2]
            raise StalledError(
                f"{what} (version {resolved}) is {state.name}, not ENABLED",
                reason="SecretVersionNotEnabled",
            )
        return found.name.rpartition("/")[2]

"""The OAuth 2.0 parts both providers share, on authlib's `AsyncOAuth2Client` (httpx).

A provider module subclasses `OAuth2Provider` with its endpoints' quirks: extra authorize
parameters, how its token response says who the account is, how it reports errors (Slack
answers `ok: false` with HTTP 200), which error codes mean "authorize again".
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, TypeVar

from authlib.common.errors import AuthlibBaseError
from authlib.integrations.httpx_client import AsyncOAuth2Client

# authlib runs on httpx2 when installed, else on httpx: its responses and errors are that
# module's, so we name them through the same choice.
from authlib.integrations.httpx_client._compat import httpx2 as httpx
from pydantic import SecretStr

from controllers.providers.oauth import (
    Account,
    ClientCredentials,
    ClientRefusedError,
    Endpoints,
    GrantRefusedError,
    OAuthError,
    ProviderUnreachableError,
    TokenSet,
    UserToken,
)

__all__ = ["OAuth2Provider", "httpx"]

T = TypeVar("T")


class OAuth2Provider:
    """Authorization URL, code exchange, refresh and revoke for one provider."""

    name: ClassVar[str] = "oauth2"
    grant_errors: ClassVar[frozenset[str]] = frozenset({"invalid_grant"})
    """Error codes meaning the code or refresh token is no good (authorize again)."""
    transient_errors: ClassVar[frozenset[str]] = frozenset(
        {"temporarily_unavailable", "server_error", "rate_limit_exceeded"}
    )
    """Error codes meaning "try again later" (besides any HTTP 429 or 5xx answer)."""
    scope_separator: ClassVar[str] = " "

    def __init__(
        self,
        endpoints: Endpoints,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.endpoints = endpoints
        self._timeout = timeout
        self._transport = transport
        self._clock = clock

    # -- what subclasses adapt -------------------------------------------------------------

    def authorize_params(self) -> dict[str, str]:
        """Extra query parameters of the authorization URL."""
        return {}

    def user_scope_params(self, user_scopes: list[str]) -> dict[str, str]:
        """Query parameters asking for user scopes (Slack's `user_scope`); none elsewhere."""
        return {}

    def normalise(self, response: httpx.Response) -> httpx.Response:
        """The token response as RFC 6749 spells it (authlib's compliance hook)."""
        return response

    def account(self, token: dict[str, Any]) -> Account:
        """Who the token response says the account is."""
        return Account()

    def revoke_ok(self, response: httpx.Response) -> None:
        """Raise when the revoke response says it failed (RFC 7009: 200 is success)."""
        if response.status_code == 200:
            return
        self._raise_status(response, "revoke")

    # -- the protocol ----------------------------------------------------------------------

    def client(self, creds: ClientCredentials, **kwargs: Any) -> AsyncOAuth2Client:
        client = AsyncOAuth2Client(
            client_id=creds.client_id,
            client_secret=creds.client_secret.get_secret_value(),
            token_endpoint_auth_method="client_secret_post",
            revocation_endpoint_auth_method="client_secret_post",
            code_challenge_method="S256",
            timeout=self._timeout,
            transport=self._transport,
            trust_env=False,
            **kwargs,
        )
        client.register_compliance_hook("access_token_response", self._token_response)
        client.register_compliance_hook("refresh_token_response", self._token_response)
        return client

    def _token_response(self, response: httpx.Response) -> httpx.Response:
        """authlib reads the error code of a JSON error body and drops the HTTP status: a
        429 or 5xx is transient whatever its body says (Google answers a rate limit with 429
        `rate_limit_exceeded`), so it leaves here with its status (`_call` classifies it)."""
        if response.status_code == 429 or response.status_code >= 500:
            raise _TransientStatusError(response)
        return self.normalise(response)

    def authorization_url(
        self,
        client: ClientCredentials,
        *,
        redirect_uri: str,
        scopes: list[str],
        state: str,
        code_verifier: str,
        user_scopes: list[str] | None = None,
    ) -> str:
        oauth = self.client(client, redirect_uri=redirect_uri)
        extra = self.authorize_params()
        if user_scopes:
            extra |= self.user_scope_params(user_scopes)
        uri, _ = oauth.create_authorization_url(
            self.endpoints.authorize,
            state=state,
            code_verifier=code_verifier,
            scope=self.scope_separator.join(scopes),
            **extra,
        )
        return str(uri)

    async def exchange(
        self, client: ClientCredentials, *, code: str, code_verifier: str, redirect_uri: str
    ) -> TokenSet:
        async with self.client(client, redirect_uri=redirect_uri) as oauth:
            token = await self._call(
                "code exchange",
                lambda: oauth.fetch_token(
                    self.endpoints.token,
                    grant_type="authorization_code",
                    code=code,
                    code_verifier=code_verifier,
                    redirect_uri=redirect_uri,
                ),
            )
        return self.token_set(token)

    async def refresh(self, client: ClientCredentials, *, refresh_token: str) -> TokenSet:
        async with self.client(client) as oauth:
            token = await self._call(
                "refresh",
                lambda: oauth.refresh_token(self.endpoints.token, refresh_token=refresh_token),
            )
        return self.token_set(token, previous_refresh=refresh_token)

    async def revoke(self, client: ClientCredentials, *, tokens: TokenSet) -> None:
        token = tokens.refresh_token or tokens.access_token
        async with self.client(client) as oauth:
            response = await self._call(
                "revoke",
                lambda: oauth.revoke_token(self.endpoints.revoke, token=token.get_secret_value()),
            )
        self.revoke_ok(response)

    def token_set(self, token: dict[str, Any], *, previous_refresh: str | None = None) -> TokenSet:
        """authlib's token (a dict) as a `TokenSet`."""
        expires_at = token.get("expires_at")
        refresh = token.get("refresh_token") or previous_refresh
        scope = str(token.get("scope") or "").replace(",", " ")
        return TokenSet(
            access_token=SecretStr(str(token["access_token"])),
            refresh_token=SecretStr(str(refresh)) if refresh else None,
            expires_at=dt.datetime.fromtimestamp(int(expires_at), dt.UTC) if expires_at else None,
            token_type=str(token.get("token_type") or "bearer"),
            scopes=tuple(scope.split()),
            account=self.account(token),
            user=self.user_token(token),
        )

    def user_token(self, token: dict[str, Any]) -> UserToken | None:
        """The user token a token response carries beside the main one (Slack); None."""
        return None

    # -- errors ----------------------------------------------------------------------------

    async def _call(self, step: str, call: Callable[[], Awaitable[T]]) -> T:
        """One provider request, within `timeout` seconds in all: httpx's own timeout bounds
        each phase (connecting, sending, each read), so an answer that trickles in held a
        request for several of them, and a refresh longer than its claim (settings.py)."""
        try:
            async with asyncio.timeout(self._timeout):
                return await call()
        except TimeoutError:
            raise ProviderUnreachableError(
                self.name,
                step,
                "TimeoutError",
                f"{self._host()} did not answer within {self._timeout:g} s",
            ) from None
        except _TransientStatusError as exc:
            self._raise_status(exc.response, step)
            raise  # unreachable: _raise_status always raises
        except AuthlibBaseError as exc:
            raise self._classify(step, str(exc.error), str(exc.description or "")) from None
        except httpx.HTTPStatusError as exc:
            self._raise_status(exc.response, step)
            raise  # unreachable: _raise_status always raises
        except (httpx.TransportError, ValueError) as exc:
            raise ProviderUnreachableError(
                self.name, step, type(exc).__name__, f"{self._host()} did not answer usably"
            ) from None

    def _classify(self, step: str, code: str, description: str) -> OAuthError:
        if code in self.grant_errors:
            return GrantRefusedError(self.name, step, code, description)
        if code in self.transient_errors:
            return ProviderUnreachableError(self.name, step, code, description)
        return ClientRefusedError(self.name, step, code, description)

    def _raise_status(self, response: httpx.Response, step: str) -> None:
        code = f"HTTP {response.status_code}"
        try:
            body = response.json()
            code = str(body.get("error") or code)
            description = str(body.get("error_description") or "")
        except ValueError:
            description = ""
        if response.status_code >= 500 or response.status_code == 429:
            raise ProviderUnreachableError(self.name, step, code, description)
        raise self._classify(step, code, description)

    def _host(self) -> str:
        return str(httpx.URL(self.endpoints.token).host)


class _TransientStatusError(Exception):
    """A token endpoint's 429/5xx answer, carried out of authlib's response hook."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response

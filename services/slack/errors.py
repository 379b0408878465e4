"""Slack's ``ok: false`` answers as the service's errors (:func:`from_slack`):
``ratelimited`` is 429 with Slack's ``Retry-After``, unknown ids 404, refused arguments 422, a
missing scope 403 naming it, a refused token 409. Messages carry Slack's error code and our
own words, never the response body or a token.
"""

from __future__ import annotations

from slack_sdk.errors import SlackApiError

from services.common.errors import ApiError

__all__ = ["ApiError", "from_slack"]

_NOT_FOUND = {"channel_not_found", "users_not_found", "user_not_found", "thread_not_found"}
_INVALID = {
    "invalid_arguments",
    "invalid_cursor",
    "invalid_limit",
    "no_text",
    "msg_too_long",
    "no_query",
    "invalid_blocks",
}
_TOKEN_REFUSED = {
    "invalid_auth",
    "not_authed",
    "token_revoked",
    "token_expired",
    "account_inactive",
}


def from_slack(exc: SlackApiError, *, connection: str) -> ApiError:
    """Slack's answer as our error: its code in the message, never the response body."""
    data = exc.response.data if isinstance(exc.response.data, dict) else {}
    code = str(data.get("error") or "unknown_error")
    status = exc.response.status_code
    if status == 429 or code == "ratelimited":
        retry = str(exc.response.headers.get("retry-after") or "1")
        return ApiError(
            429, "Slack rate-limited this call; retry later", headers={"Retry-After": retry}
        )
    if code in _NOT_FOUND:
        return ApiError(404, f"Slack: {code}", error=code)
    if code in _INVALID:
        return ApiError(422, f"Slack refused the arguments: {code}", error=code)
    if code == "missing_scope":
        needed = data.get("needed") or "?"
        msg = f"OAuthConnection {connection} lacks the Slack scope {needed}; re-authorize with it"
        return ApiError(403, msg, error="missing_scope")
    if code == "not_allowed_token_type":
        msg = f"Slack does not allow this call with the bot token of OAuthConnection {connection}"
        return ApiError(403, msg, error=code)
    if code in _TOKEN_REFUSED:
        msg = f"Slack refused the token of OAuthConnection {connection} ({code}); re-authorize"
        return ApiError(409, msg, error="oauth_token_refused")
    return ApiError(502, f"Slack answered {code}", error="upstream_error")

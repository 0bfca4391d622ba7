"""OpenAPI descriptions of the error responses the auth routes return."""

from __future__ import annotations

from typing import Any

from fastapi import Security
from fastapi.security import HTTPBearer

from auth_service.schemas import ErrorEnvelope

_DESCRIPTIONS = {
    400: "Invalid body: `validation_error`, with `details.fields`",
    401: "Missing, invalid, expired or revoked credentials: `authentication_error`",
    409: "The email belongs to another account: `conflict`",
    413: "Body over nginx's 256 KiB cap: `payload_too_large`",
    429: "Too many attempts: `rate_limit_exceeded`, with Retry-After",
    503: "Redis or Postgres is unreachable: `service_unavailable`",
}

# Declares the bearer scheme in the OpenAPI document. The token itself is
# checked by `router_common.user_auth.UserToken`, which also rejects API keys.
bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="userToken",
    description="A user JWT from login. API keys are rejected on these routes.",
)
REQUIRES_USER_TOKEN = [Security(bearer_scheme)]


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Document `statuses`, plus 413 and 503 that any route may return."""
    codes = sorted({*statuses, 413, 503})
    return {
        code: {"model": ErrorEnvelope, "description": _DESCRIPTIONS[code]}
        for code in codes
    }

"""Limits that a key may carry, by its owner's role."""

from __future__ import annotations

from dataclasses import dataclass

from keys_service.settings import Settings
from router_common.errors import ValidationError
from router_common.user_auth import ADMIN_ROLE


@dataclass(frozen=True, slots=True)
class RoleLimits:
    rate_limit: int
    daily_image_limit: int


def limits_for_role(settings: Settings, role: str) -> RoleLimits:
    if role == ADMIN_ROLE:
        return RoleLimits(
            rate_limit=settings.admin_max_key_rate_limit,
            daily_image_limit=settings.admin_max_key_daily_image_limit,
        )
    return RoleLimits(
        rate_limit=settings.user_max_key_rate_limit,
        daily_image_limit=settings.user_max_key_daily_image_limit,
    )


def check_limits(
    limits: RoleLimits, *, rate_limit: int | None, daily_image_limit: int | None
) -> None:
    """Raise a 400 naming every value above what the owner's role allows."""
    fields = []
    if rate_limit is not None and rate_limit > limits.rate_limit:
        fields.append(
            {
                "field": "rateLimit",
                "message": f"Must be at most {limits.rate_limit} requests per "
                "minute for this account",
            }
        )
    if daily_image_limit is not None and daily_image_limit > limits.daily_image_limit:
        fields.append(
            {
                "field": "dailyImageLimit",
                "message": f"Must be at most {limits.daily_image_limit} images "
                "per day for this account",
            }
        )
    if fields:
        raise invalid_fields(fields)


def invalid_fields(fields: list[dict[str, str]]) -> ValidationError:
    """Build a 400 in the same shape as the framework's validation errors."""
    summary = "; ".join(f"{item['field']}: {item['message']}" for item in fields)
    return ValidationError(
        f"Invalid request: {summary}",
        details={"fields": fields},
        code="invalid_request",
        param=fields[0]["field"],
    )

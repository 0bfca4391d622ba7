"""Settings of the keys service, read from the environment."""

from functools import lru_cache

from pydantic import Field, model_validator

from router_common.settings import Environment, ServiceSettings


class Settings(ServiceSettings):
    http_port: int = 8102
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 8112

    # Server-side secret mixed into every key hash (HMAC-SHA256), so that a
    # leaked table cannot be checked against guessed keys without it.
    api_key_pepper: str = "dev-pepper"
    max_keys_per_user: int = Field(default=50, ge=1)

    # Maximum `rateLimit` (requests per minute) and `dailyImageLimit` (images
    # per day) that a key may carry, by its owner's role. A key created without
    # them gets its owner's maximum. The defaults are starting points, not
    # measured capacities.
    user_max_key_rate_limit: int = Field(default=60, ge=1)
    user_max_key_daily_image_limit: int = Field(default=500, ge=1)
    admin_max_key_rate_limit: int = Field(default=600, ge=1)
    admin_max_key_daily_image_limit: int = Field(default=10_000, ge=1)

    # Seconds between two batched writes of the last-use times that key
    # verifications collect in Redis.
    last_used_flush_seconds: float = Field(default=30.0, gt=0)
    # Seconds that the raised version of a deleted key stays in Redis. Once the
    # entry is gone, every cache verifies the key again and gets NOT_FOUND.
    deleted_key_version_ttl_seconds: int = Field(default=86_400, ge=1)

    @model_validator(mode="after")
    def _check_pepper(self) -> "Settings":
        if self.environment is Environment.PRODUCTION and len(self.api_key_pepper) < 32:
            raise ValueError(
                "API_KEY_PEPPER must be at least 32 characters in production"
            )
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()

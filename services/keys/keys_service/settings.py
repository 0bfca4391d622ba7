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

"""Settings of the providers service, read from the environment."""

from functools import lru_cache

from pydantic import Field, model_validator

from router_common.settings import Environment, ServiceSettings


class Settings(ServiceSettings):
    http_port: int = 8104
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 8114

    # Comma-separated Fernet keys; the first encrypts, all decrypt, so a key
    # can be rotated by putting the new one first.
    provider_secret_keys: str = ""
    # Comma-separated `host` or `host:port` entries that a provider's base URL
    # may point at although they are internal addresses.
    provider_url_allowlist: str = ""
    # Default routing strategy: priority, latency, cost or round_robin.
    routing_strategy: str = "priority"
    max_providers: int = Field(default=200, ge=1)

    @model_validator(mode="after")
    def _check_secret_keys(self) -> "Settings":
        if self.environment is Environment.PRODUCTION and not self.provider_secret_keys:
            raise ValueError(
                "PROVIDER_SECRET_KEYS is required in production: provider API keys "
                "are encrypted with it"
            )
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()

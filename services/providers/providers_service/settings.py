"""Settings of the providers service, read from the environment."""

from functools import lru_cache
from typing import Literal

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
    # Default routing strategy; a generation request may override it.
    routing_strategy: Literal["priority", "latency", "cost", "round_robin"] = "priority"
    max_providers: int = Field(default=200, ge=1)

    # Circuit breaker: consecutive failures (errors, time-outs) that open it,
    # seconds before an open circuit lets one trial call through, and seconds
    # that trial call keeps its claim before another caller may try.
    circuit_failure_threshold: int = Field(default=5, ge=1)
    circuit_cooldown_seconds: float = Field(default=30.0, gt=0)
    circuit_trial_seconds: float = Field(default=120.0, gt=0)
    # Pause after a provider's 429 that names no Retry-After, in seconds.
    rate_limited_pause_seconds: int = Field(default=10, ge=1)
    # Attempts per provider kept for the success rate and latency percentiles.
    health_window_attempts: int = Field(default=100, ge=1, le=10_000)

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

"""Settings common to every service, read from the environment."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Values that must never reach production as a secret.
PLACEHOLDER_SECRETS = frozenset(
    {"", "change-me", "changeme", "secret", "dev-secret", "development-secret"}
)
MIN_PRODUCTION_SECRET_BYTES = 32


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class ServiceSettings(BaseSettings):
    """Settings shared by every service; each service subclasses it."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    environment: Environment = Environment.DEVELOPMENT
    log_level: str = "INFO"
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/image_router"
    redis_url: str = "redis://127.0.0.1:6379/0"
    migrate_on_start: bool = True

    jwt_secret: str = "dev-secret"
    jwt_algorithm: str = "HS256"
    # Token for calls between services over gRPC.
    internal_service_token: str = "dev-internal-token"

    http_host: str = "127.0.0.1"
    http_port: int = 8000
    # Seconds to finish in-flight requests after SIGTERM.
    shutdown_grace_seconds: float = Field(default=10.0, ge=0)
    # OTLP/HTTP collector address, such as http://collector:4318; empty turns
    # tracing off.
    otel_exporter_otlp_endpoint: str = ""

    @model_validator(mode="after")
    def _check_production_secrets(self) -> ServiceSettings:
        if self.environment is not Environment.PRODUCTION:
            return self
        for name in ("jwt_secret", "internal_service_token"):
            value = getattr(self, name)
            if value.lower() in PLACEHOLDER_SECRETS:
                raise ValueError(
                    f"{name.upper()} is a placeholder that anyone can look up; set "
                    f"a random secret of at least {MIN_PRODUCTION_SECRET_BYTES} "
                    "bytes in production"
                )
            if len(value.encode()) < MIN_PRODUCTION_SECRET_BYTES:
                raise ValueError(
                    f"{name.upper()} is {len(value.encode())} bytes; production "
                    f"needs at least {MIN_PRODUCTION_SECRET_BYTES} random bytes, "
                    "so that the secret cannot be guessed by brute force"
                )
        return self

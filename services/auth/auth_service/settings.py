"""Settings of the auth service, read from the environment."""

from functools import lru_cache

from pydantic import Field

from router_common.settings import ServiceSettings


class Settings(ServiceSettings):
    http_port: int = 8101

    # Lifetime of issued tokens.
    jwt_ttl_seconds: int = Field(default=3600, ge=60, le=30 * 24 * 3600)

    # When both are set, an admin account with them exists after start.
    admin_email: str | None = None
    admin_password: str | None = None

    # argon2id parameters: strong by default, lightened by the test suite.
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_cost_kib: int = Field(default=65536, ge=8)
    argon2_parallelism: int = Field(default=4, ge=1)


@lru_cache
def get_settings() -> Settings:
    return Settings()

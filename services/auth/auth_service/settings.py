"""Settings of the auth service, read from the environment."""

import ipaddress
from functools import lru_cache

from pydantic import Field, field_validator

from router_common.settings import ServiceSettings

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


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

    # Failed logins (and wrong current passwords) allowed per account within the
    # window before every attempt on that account gets 429 until the window ends.
    login_account_failure_limit: int = Field(default=5, ge=1)
    login_account_window_seconds: int = Field(default=900, ge=1)
    # Failed logins allowed per client address within its window. Higher than
    # the per-account limit because many users may share one address (NAT).
    login_address_failure_limit: int = Field(default=20, ge=1)
    login_address_window_seconds: int = Field(default=900, ge=1)
    # Registrations allowed per client address within the window.
    registration_address_limit: int = Field(default=10, ge=1)
    registration_window_seconds: int = Field(default=3600, ge=1)

    # Comma-separated addresses or CIDR networks of the reverse proxies (nginx)
    # whose X-Real-IP header names the client. From any other peer the header
    # is ignored and the TCP peer address is the client address.
    trusted_proxies: str = "127.0.0.1,::1"

    @field_validator("trusted_proxies")
    @classmethod
    def _check_trusted_proxies(cls, value: str) -> str:
        parse_networks(value)
        return value

    @property
    def trusted_proxy_networks(self) -> tuple[IPNetwork, ...]:
        return parse_networks(self.trusted_proxies)


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """Parse comma-separated addresses and CIDR networks (ValueError if invalid)."""
    networks = []
    for entry in text.split(","):
        entry = entry.strip()
        if entry:
            networks.append(ipaddress.ip_network(entry, strict=False))
    return tuple(networks)


@lru_cache
def get_settings() -> Settings:
    return Settings()

"""Dependencies of the auth routes, as `Annotated` aliases."""

from __future__ import annotations

import ipaddress
from typing import Annotated

from fastapi import Depends, Request

from auth_service.passwords import Passwords
from auth_service.settings import Settings
from router_common.deps import RedisDep, SessionDep


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _passwords(request: Request) -> Passwords:
    return request.app.state.passwords


def client_address(request: Request) -> str:
    """Return the address of the client, for per-address limits.

    nginx overwrites X-Real-IP with the address of its own peer, so the header
    is trusted only when the TCP peer is one of TRUSTED_PROXIES. From any other
    peer, a client could set the header itself, so the peer address is used.
    This holds only while uvicorn runs with proxy headers off (see
    `__main__.py`), because otherwise it rewrites the peer from X-Forwarded-For.
    """
    peer = request.client.host if request.client else ""
    try:
        peer_address = ipaddress.ip_address(peer)
    except ValueError:
        return peer or "unknown"

    settings: Settings = request.app.state.settings
    if not any(peer_address in network for network in settings.trusted_proxy_networks):
        return str(peer_address)
    forwarded = request.headers.get("x-real-ip", "").strip()
    try:
        return str(ipaddress.ip_address(forwarded))
    except ValueError:
        return str(peer_address)


SettingsDep = Annotated[Settings, Depends(_settings)]
PasswordsDep = Annotated[Passwords, Depends(_passwords)]
ClientAddressDep = Annotated[str, Depends(client_address)]

__all__ = [
    "ClientAddressDep",
    "PasswordsDep",
    "RedisDep",
    "SessionDep",
    "SettingsDep",
]

"""Dependencies of the auth routes, as `Annotated` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from auth_service.passwords import Passwords
from auth_service.settings import Settings
from router_common.deps import RedisDep, SessionDep


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _passwords(request: Request) -> Passwords:
    return request.app.state.passwords


SettingsDep = Annotated[Settings, Depends(_settings)]
PasswordsDep = Annotated[Passwords, Depends(_passwords)]

__all__ = ["PasswordsDep", "RedisDep", "SessionDep", "SettingsDep"]

"""One spelling per path, so that every spelling meets the same route and checks.

nginx matches its locations on the normalised path but forwards the path as the
client sent it. This middleware gives the app the same normalised path: doubled
slashes collapsed, `.` and `..` segments resolved and a trailing slash dropped.
Percent-escapes are already decoded by the server (uvicorn). Paths stay case
sensitive, as nginx's locations are.
"""

from __future__ import annotations

import posixpath
import re
from urllib.parse import quote

from starlette.types import ASGIApp, Receive, Scope, Send

_SLASH_RUNS = re.compile(r"/{2,}")


def normalize_path(path: str) -> str:
    collapsed = _SLASH_RUNS.sub("/", path)
    normal = posixpath.normpath(collapsed) if collapsed else "/"
    return normal if normal.startswith("/") else "/" + normal


class NormalizePathMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            normal = normalize_path(path)
            if normal != path:
                scope = {**scope, "path": normal, "raw_path": quote(normal).encode()}
        await self.app(scope, receive, send)

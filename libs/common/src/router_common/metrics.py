"""Prometheus metrics shared by every service.

Each service serves `/metrics` on its own HTTP port; nginx never routes it, so
metrics are reachable only from inside the network. HTTP metrics are labelled
by route template (`/api/v1/keys/{key_id}`), never by raw path, so that ids do
not explode the number of series.

Values that live in Postgres or Redis (queue depth, circuit states) are read at
scrape time by refreshers: async functions registered on the app that update
their gauges before the registry is rendered. Each refresher gets
`REFRESH_TIMEOUT_SECONDS`. A refresher that fails or times out is logged and
leaves its gauges at their previous values, so a slow dependency never blocks
a scrape.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

import structlog
from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger(__name__)

MetricsRefresher = Callable[[], Awaitable[None]]
REFRESH_TIMEOUT_SECONDS = 1.0
METRICS_PATH = "/metrics"

HTTP_REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests answered, by route template and status.",
    ["service", "method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time to answer an HTTP request, by route template.",
    ["service", "method", "route"],
    buckets=(
        0.001,
        0.0025,
        0.005,
        0.01,
        0.025,
        0.05,
        0.1,
        0.25,
        0.5,
        1,
        2.5,
        5,
        10,
        30,
        60,
    ),
)
RATE_LIMIT_REJECTIONS = Counter(
    "rate_limit_rejections_total",
    "Requests rejected with 429 by the service's own limits, by limit name.",
    ["service", "limit"],
)
UNMATCHED_ROUTE = "unmatched"


class MetricsMiddleware:
    """Count and time every HTTP request (a pure ASGI middleware)."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") == METRICS_PATH:
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()
        status_code = 500

        async def record_status(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED_ROUTE
            method = scope.get("method", "")
            HTTP_REQUESTS.labels(self.service, method, template, str(status_code)).inc()
            HTTP_LATENCY.labels(self.service, method, template).observe(
                time.perf_counter() - started
            )


async def render_metrics(refreshers: Sequence[MetricsRefresher]) -> Response:
    """Run the refreshers, each within its time-out, then render the registry."""
    for refresher in refreshers:
        try:
            await asyncio.wait_for(refresher(), REFRESH_TIMEOUT_SECONDS)
        except Exception as error:  # noqa: BLE001 - a stale gauge beats a failed scrape
            log.warning(
                "metrics_refresh_failed",
                refresher=getattr(refresher, "__qualname__", repr(refresher)),
                error=type(error).__name__,
            )
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def install_metrics(app: FastAPI, service: str) -> None:
    """Count every request of `app` and serve the registry at `/metrics`.

    Services add scrape-time refreshers to `app.state.metrics_refreshers`.
    """
    app.state.metrics_refreshers = []
    app.add_middleware(MetricsMiddleware, service=service)

    @app.get(METRICS_PATH, include_in_schema=False)
    async def metrics(request: Request) -> Response:
        return await render_metrics(request.app.state.metrics_refreshers)


def create_metrics_app(
    refreshers: Sequence[MetricsRefresher], is_alive: Callable[[], bool]
) -> Starlette:
    """Build the small app of a process without an API: `/metrics` and `/healthz`.

    `/healthz` returns 503 once `is_alive` returns False because the process is
    stopping, so that an orchestrator stops sending it traffic.
    """

    async def metrics(_request: Request) -> Response:
        return await render_metrics(refreshers)

    async def healthz(_request: Request) -> Response:
        if is_alive():
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "stopping"}, status_code=503)

    return Starlette(routes=[Route(METRICS_PATH, metrics), Route("/healthz", healthz)])

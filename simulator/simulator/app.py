"""Starlette application: provider routes, with and without the `/s/<options>`
prefix, plus health, call statistics and served image files."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from . import midjourney, openai_images, stability
from .calls import Handler, ProviderFormat, handle_call
from .state import SimulatorState, state_of

OPENAI = openai_images.OpenAIFormat()
STABILITY = stability.StabilityFormat()
MIDJOURNEY = midjourney.MidjourneyFormat()


def create_app() -> Starlette:
    """Build the simulator application with empty statistics and stores."""
    provider_routes = _provider_routes()
    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/__sim/calls", calls_endpoint, methods=["GET", "DELETE"]),
        Route("/files/{name}", serve_file, methods=["GET"]),
        Mount("/s/{options}", routes=provider_routes),
        *provider_routes,
    ]
    app = Starlette(routes=routes)
    app.state.simulator = SimulatorState()
    return app


def _provider_routes() -> list[BaseRoute]:
    return [
        _route("/v1/images/generations", "POST", OPENAI, openai_images.create_image),
        _route("/v1/models", "GET", OPENAI, openai_images.list_models),
        _route(
            "/v2beta/stable-image/generate/{endpoint}",
            "POST",
            STABILITY,
            stability.generate,
        ),
        _route("/mj/submit/imagine", "POST", MIDJOURNEY, midjourney.submit_imagine),
        _route("/mj/task/{task_id}/fetch", "GET", MIDJOURNEY, midjourney.fetch_task),
        _route(
            "/mj/task/list-by-condition",
            "POST",
            MIDJOURNEY,
            midjourney.list_by_condition,
        ),
    ]


def _route(path: str, method: str, provider: ProviderFormat, handler: Handler) -> Route:
    return Route(path, _endpoint(provider, handler), methods=[method])


def _endpoint(
    provider: ProviderFormat, handler: Handler
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        return await handle_call(request, provider, handler)

    endpoint.__name__ = handler.__name__
    return endpoint


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def calls_endpoint(request: Request) -> Response:
    """Return (GET) or reset (DELETE) the calls of `?tag=`, or of all tags."""
    stats = state_of(request).stats
    tag = request.query_params.get("tag")
    if request.method == "DELETE":
        stats.reset(tag)
    if tag is None:
        return JSONResponse({"tags": stats.counts()})
    tag_stats = stats.tag(tag)
    records = [record.to_json() for record in tag_stats.records]
    return JSONResponse({"tag": tag, "count": tag_stats.count, "requests": records})


async def serve_file(request: Request) -> Response:
    """Serve an image referenced by a response URL until its time-to-live ends."""
    name = request.path_params["name"]
    stored = state_of(request).files.get(name)
    if stored is None:
        return PlainTextResponse(f"File {name} not found or expired.", status_code=404)
    return Response(stored.data, media_type=stored.media_type)

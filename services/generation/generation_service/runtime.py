"""The clients and stores that the API process and the worker both use."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from httpx_aiohttp import HttpxAiohttpClient
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from generation_service.jobs import JobStore
from generation_service.limits import Limiter
from generation_service.peers import Peers
from generation_service.reporting import OutcomeReporter
from generation_service.runner import GenerationRunner
from generation_service.settings import Settings
from generation_service.storage import ImageStore, create_image_store
from router_common.app import create_redis
from router_common.db import create_engine, create_session_factory
from router_common.logging import REQUEST_ID_HEADER, current_request_id

PROVIDER_KEEPALIVE_SECONDS = 4.0


@dataclass
class Runtime:
    engine: AsyncEngine
    session_factory: async_sessionmaker
    redis: Redis
    peers: Peers
    store: ImageStore
    jobs: JobStore
    runner: GenerationRunner
    limiter: Limiter


async def forward_request_id(request: httpx.Request) -> None:
    """Send the current request id on every provider call and image download."""
    request_id = current_request_id()
    if request_id and REQUEST_ID_HEADER not in request.headers:
        request.headers[REQUEST_ID_HEADER] = request_id


def create_provider_client() -> httpx.AsyncClient:
    """Build the HTTP client for provider calls and image downloads.

    Redirects are never followed, because a provider could point one inside the
    network. The transport is aiohttp's (httpx-aiohttp), because httpx's own
    connection pool took several times longer per call in the benchmark.

    Idle connections are dropped after 4 s, before servers that close them
    after 5 s (uvicorn's and Node's defaults) do. At an equal timeout, a call
    could take a connection the server was closing at that moment, and fail
    with ServerDisconnectedError; 1 in 100 slow calls did in the benchmark.
    """
    return HttpxAiohttpClient(
        follow_redirects=False,
        limits=httpx.Limits(
            max_connections=1000,
            max_keepalive_connections=100,
            keepalive_expiry=PROVIDER_KEEPALIVE_SECONDS,
        ),
        event_hooks={"request": [forward_request_id]},
    )


@asynccontextmanager
async def open_runtime(
    settings: Settings, *, api: bool = True
) -> AsyncIterator[Runtime]:
    """Open the stores and clients; `api` is false for the worker.

    The worker keeps the default pool, whose overflow connections close when
    they are returned, so an idle worker keeps at most 10 connections open.
    """
    engine = (
        create_engine(
            settings.database_url,
            pool_size=settings.database_pool_size,
            max_overflow=0,
        )
        if api
        else create_engine(settings.database_url)
    )
    session_factory = create_session_factory(engine)
    redis = create_redis(settings.redis_url)
    peers = Peers(
        keys_addr=settings.keys_grpc_addr,
        providers_addr=settings.providers_grpc_addr,
        token=settings.internal_service_token,
        timeout=settings.grpc_timeout_seconds,
    )
    store = create_image_store(settings)
    jobs = JobStore(session_factory, settings, f"{socket.gethostname()}:{os.getpid()}")
    client = create_provider_client()
    reporter = OutcomeReporter(peers)
    reporter.start()
    runner = GenerationRunner(
        settings=settings,
        peers=peers,
        store=store,
        client=client,
        jobs=jobs,
        reporter=reporter,
    )
    try:
        yield Runtime(
            engine,
            session_factory,
            redis,
            peers,
            store,
            jobs,
            runner,
            Limiter(redis, settings),
        )
    finally:
        await reporter.close()
        await client.aclose()
        await peers.close()
        await redis.aclose()
        await engine.dispose()

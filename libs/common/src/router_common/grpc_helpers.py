"""gRPC plumbing shared by servers and clients.

Servers require the internal service token in the `x-internal-token` metadata,
bind the caller's `x-request-id` to their log context and log one `rpc` line
per call (method, status code, latency). Clients send both metadata entries.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from router_common.logging import accept_request_id, current_request_id

TOKEN_METADATA_KEY = "x-internal-token"
REQUEST_ID_METADATA_KEY = "x-request-id"
# Standard health-check method, reachable without the internal token so that
# probes need no secret.
_HEALTH_METHOD_PREFIX = "/grpc.health.v1.Health/"

log = structlog.get_logger(__name__)


class InternalTokenInterceptor(grpc.aio.ServerInterceptor):
    """Reject calls without the internal token; bind the request id for logs."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

        async def deny(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED, "missing or invalid internal token"
            )

        self._deny_handler = grpc.unary_unary_rpc_method_handler(deny)
        # The logging wrapper of each method's handler, built on its first call.
        self._logged: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        if handler_call_details.method.startswith(_HEALTH_METHOD_PREFIX):
            return await continuation(handler_call_details)

        metadata = dict(handler_call_details.invocation_metadata or ())
        presented = str(metadata.get(TOKEN_METADATA_KEY, "")).encode()
        if not hmac.compare_digest(presented, self._token):
            return self._deny_handler

        request_id = accept_request_id(metadata.get(REQUEST_ID_METADATA_KEY))
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        method = handler_call_details.method
        logged = self._logged.get(method)
        if logged is not None:
            return logged
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        logged = self._logged[method] = _logged_unary(handler, method)
        return logged


def _logged_unary(handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
    """Wrap a unary-unary handler so that each call logs one `rpc` line."""
    behavior = handler.unary_unary

    async def logged(request: Any, context: grpc.aio.ServicerContext) -> Any:
        started = time.perf_counter()
        try:
            return await behavior(request, context)
        finally:
            code = context.code()
            log.info(
                "rpc",
                method=method,
                status=getattr(code, "name", None) or "OK",
                latency_ms=round((time.perf_counter() - started) * 1000, 2),
            )

    return grpc.unary_unary_rpc_method_handler(
        logged,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def call_metadata(token: str) -> tuple[tuple[str, str], ...]:
    """Metadata for an outgoing internal call: the token and the request id."""
    request_id = current_request_id()
    if request_id:
        return ((TOKEN_METADATA_KEY, token), (REQUEST_ID_METADATA_KEY, request_id))
    return ((TOKEN_METADATA_KEY, token),)


def create_server(token: str) -> tuple[grpc.aio.Server, health.aio.HealthServicer]:
    """Create a grpc.aio server with the token check and the health service."""
    server = grpc.aio.server(interceptors=[InternalTokenInterceptor(token)])
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    return server, health_servicer


async def mark_serving(
    health_servicer: health.aio.HealthServicer, service_names: list[str]
) -> None:
    for name in ["", *service_names]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)


async def mark_not_serving(
    health_servicer: health.aio.HealthServicer, service_names: list[str]
) -> None:
    for name in ["", *service_names]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)


async def check_peer_health(channel: grpc.aio.Channel, timeout: float = 2.0) -> bool:
    """Ask a peer's standard health service whether it is serving."""
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=timeout)
    except grpc.aio.AioRpcError:
        return False
    return response.status == health_pb2.HealthCheckResponse.SERVING

"""The gRPC ProviderRegistry: provider selection and outcome reports."""

from __future__ import annotations

import time
import uuid

import grpc
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import select as sql_select
from sqlalchemy.ext.asyncio import async_sessionmaker

from imagerouter.v1 import providers_pb2, providers_pb2_grpc
from providers_service import routing
from providers_service.models import Provider
from providers_service.secrets import SecretBox

log = structlog.get_logger(__name__)
OUTCOMES = frozenset(
    {"success", "error", "timeout", "rate_limited", "content_policy", "invalid_request"}
)


def stats_key(provider_id: str) -> str:
    return f"providers:stats:{provider_id}"


class ProviderRegistry(providers_pb2_grpc.ProviderRegistryServicer):
    def __init__(
        self, session_factory: async_sessionmaker, secret_box: SecretBox, redis: Redis
    ) -> None:
        self._session_factory = session_factory
        self._secret_box = secret_box
        self._redis = redis

    async def SelectProviders(  # noqa: N802 - name fixed by the proto
        self,
        request: providers_pb2.SelectProvidersRequest,
        context: grpc.aio.ServicerContext,
    ) -> providers_pb2.SelectProvidersResponse:
        if request.routing and request.routing not in routing.ROUTING_STRATEGIES:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"unknown routing strategy {request.routing!r}",
            )
        async with self._session_factory() as session:
            providers = list(await session.scalars(sql_select(Provider)))
        selection = routing.select(
            providers,
            size=request.size,
            model=request.model,
            name=request.provider_name,
        )
        return providers_pb2.SelectProvidersResponse(
            providers=[self._to_message(p) for p in selection.candidates],
            available_sizes=selection.available_sizes,
            unavailable_count=selection.unavailable_count,
        )

    async def ReportOutcome(  # noqa: N802 - name fixed by the proto
        self,
        request: providers_pb2.ReportOutcomeRequest,
        context: grpc.aio.ServicerContext,
    ) -> providers_pb2.ReportOutcomeResponse:
        if request.outcome not in OUTCOMES:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"unknown outcome {request.outcome!r}"
            )
        try:
            uuid.UUID(request.provider_id)
        except ValueError:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "provider_id is not a UUID"
            )

        key = stats_key(request.provider_id)
        fields: dict[str, str | int] = {}
        if request.outcome != "success":
            fields = {
                "last_error_type": request.error_type or request.outcome,
                "last_error_message": request.error_message[:500],
                "last_error_at": int(time.time()),
            }
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hincrby(key, f"outcome:{request.outcome}", 1)
                if fields:
                    pipe.hset(key, mapping=fields)
                await pipe.execute()
        except RedisError as error:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, f"statistics store: {error}"
            )
        log.info(
            "provider_outcome",
            provider_id=request.provider_id,
            outcome=request.outcome,
            latency_ms=request.latency_ms,
        )
        return providers_pb2.ReportOutcomeResponse()

    def _to_message(self, provider: Provider) -> providers_pb2.Provider:
        return providers_pb2.Provider(
            id=str(provider.id),
            name=provider.name,
            type=provider.type,
            base_url=provider.base_url,
            api_key=self._secret_box.decrypt(provider.api_key_encrypted),
            priority=provider.priority,
            cost_per_image=format(provider.cost_per_image.normalize(), "f"),
            max_images_per_request=provider.max_images_per_request,
            timeout_ms=provider.timeout_ms,
            models=list(provider.models),
            supported_sizes=list(provider.supported_sizes),
        )

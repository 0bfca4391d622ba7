"""The gRPC ProviderRegistry: selection, outcome reports, call slots, catalogue.

Every RPC reads the providers table afresh, so an edit or a status change made
through any replica applies to the next call. Status codes: INVALID_ARGUMENT
for a malformed request, NOT_FOUND for an unknown provider id, UNAVAILABLE
when Postgres or Redis cannot be reached.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import NoReturn

import grpc
import structlog
from redis.exceptions import RedisError
from sqlalchemy import select as sql_select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import async_sessionmaker

from imagerouter.v1 import providers_pb2, providers_pb2_grpc
from providers_service import catalogue, metrics, routing
from providers_service.health import HALF_OPEN, OPEN, HealthStore, ProviderState
from providers_service.models import Provider
from providers_service.secrets import SecretBox

log = structlog.get_logger(__name__)
OUTCOMES = frozenset(
    {"success", "error", "timeout", "rate_limited", "content_policy", "invalid_request"}
)
MAX_ERROR_MESSAGE_CHARS = 500


class ProviderRegistry(providers_pb2_grpc.ProviderRegistryServicer):
    def __init__(
        self,
        session_factory: async_sessionmaker,
        secret_box: SecretBox,
        health: HealthStore,
        *,
        default_strategy: str,
        rate_limited_pause_seconds: int,
    ) -> None:
        self._session_factory = session_factory
        self._secret_box = secret_box
        self._health = health
        self._default_strategy = default_strategy
        self._rate_limited_pause_seconds = rate_limited_pause_seconds

    async def SelectProviders(  # noqa: N802 - name fixed by the proto
        self,
        request: providers_pb2.SelectProvidersRequest,
        context: grpc.aio.ServicerContext,
    ) -> providers_pb2.SelectProvidersResponse:
        strategy = request.routing or self._default_strategy
        if strategy not in routing.ROUTING_STRATEGIES:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"unknown routing strategy {request.routing!r}; expected one of "
                + ", ".join(routing.ROUTING_STRATEGIES),
            )
        try:
            providers, states = await self._load_with_states(context)
            rotation = 0
            if strategy == "round_robin":
                rotation = await self._health.next_rotation()
        except RedisError as error:
            await _abort_unavailable(context, "health store", error)

        selection = routing.select(
            providers,
            states,
            size=request.size,
            model=request.model,
            name=request.provider_name,
            strategy=strategy,
            rotation=rotation,
        )
        messages = self._messages(selection.candidates)
        # A candidate whose secret cannot be read is unavailable, not unable.
        unreadable = len(selection.candidates) - len(messages)
        return providers_pb2.SelectProvidersResponse(
            providers=messages,
            available_sizes=selection.available_sizes,
            unavailable_count=selection.unavailable_count + unreadable,
        )

    async def ReportOutcome(  # noqa: N802 - name fixed by the proto
        self,
        request: providers_pb2.ReportOutcomeRequest,
        context: grpc.aio.ServicerContext,
    ) -> providers_pb2.ReportOutcomeResponse:
        if request.outcome not in OUTCOMES:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"unknown outcome {request.outcome!r}; expected one of "
                + ", ".join(sorted(OUTCOMES)),
            )
        await _require_uuid(request.provider_id, context)

        pause_seconds = request.retry_after_seconds
        if pause_seconds <= 0:
            pause_seconds = self._rate_limited_pause_seconds
        try:
            circuit_before, circuit = await self._health.record_outcome(
                request.provider_id,
                outcome=request.outcome,
                latency_ms=request.latency_ms,
                error_type=request.error_type or request.outcome,
                error_message=request.error_message[:MAX_ERROR_MESSAGE_CHARS],
                pause_seconds=pause_seconds,
            )
        except RedisError as error:
            await _abort_unavailable(context, "health store", error)
        log.info(
            "provider_outcome",
            provider_id=request.provider_id,
            outcome=request.outcome,
            latency_ms=request.latency_ms,
            circuit=circuit,
        )
        if circuit != circuit_before:
            metrics.CIRCUIT_TRANSITIONS.labels(circuit).inc()
            log.warning(
                "circuit_changed",
                provider_id=request.provider_id,
                outcome=request.outcome,
                previous=circuit_before,
                circuit=circuit,
            )
        return providers_pb2.ReportOutcomeResponse()

    async def AcquireSlot(  # noqa: N802 - name fixed by the proto
        self,
        request: providers_pb2.AcquireSlotRequest,
        context: grpc.aio.ServicerContext,
    ) -> providers_pb2.AcquireSlotResponse:
        provider_id = await _require_uuid(request.provider_id, context)
        try:
            async with self._session_factory() as session:
                provider = await session.get(Provider, provider_id)
        except DBAPIError as error:
            await _abort_unavailable(context, "database", error)
        if provider is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"no provider with id {provider_id}"
            )
        if provider.status != "active":
            return providers_pb2.AcquireSlotResponse(granted=False, reason="inactive")

        try:
            decision = await self._health.acquire_slot(
                str(provider.id), provider.rate_limit
            )
        except RedisError as error:
            await _abort_unavailable(context, "health store", error)
        if decision.reason == "trial":
            metrics.CIRCUIT_TRANSITIONS.labels(HALF_OPEN).inc()
            log.warning(
                "circuit_changed",
                provider_id=str(provider.id),
                provider=provider.name,
                previous=OPEN,
                circuit=HALF_OPEN,
            )
        if not decision.granted:
            log.info(
                "provider_slot_refused",
                provider_id=str(provider.id),
                reason=decision.reason,
                retry_after_ms=decision.retry_after_ms,
            )
        return providers_pb2.AcquireSlotResponse(
            granted=decision.granted,
            reason=decision.reason,
            retry_after_ms=decision.retry_after_ms,
        )

    async def ListCatalogue(  # noqa: N802 - name fixed by the proto
        self,
        request: providers_pb2.ListCatalogueRequest,
        context: grpc.aio.ServicerContext,
    ) -> providers_pb2.ListCatalogueResponse:
        try:
            providers, states = await self._load_with_states(context)
        except RedisError as error:
            await _abort_unavailable(context, "health store", error)
        available = [p for p in providers if routing.is_available(p, states[str(p.id)])]
        listing = catalogue.build(available)
        return providers_pb2.ListCatalogueResponse(
            models=[
                providers_pb2.CatalogueModel(
                    id=model.id, sizes=model.sizes, created=model.created
                )
                for model in listing.models
            ],
            sizes=listing.sizes,
        )

    async def _load_with_states(
        self, context: grpc.aio.ServicerContext
    ) -> tuple[list[Provider], dict[str, ProviderState]]:
        try:
            async with self._session_factory() as session:
                providers = list(await session.scalars(sql_select(Provider)))
        except DBAPIError as error:
            await _abort_unavailable(context, "database", error)
        states = await self._health.read_states([str(p.id) for p in providers])
        return providers, states

    def _messages(self, providers: Sequence[Provider]) -> list[providers_pb2.Provider]:
        messages = []
        for provider in providers:
            try:
                api_key = self._secret_box.decrypt(provider.api_key_encrypted)
            except ValueError as error:
                # Skipped rather than failing the whole selection.
                log.error(
                    "provider_secret_unreadable",
                    provider_id=str(provider.id),
                    error=str(error),
                )
                continue
            messages.append(_to_message(provider, api_key))
        return messages


def _to_message(provider: Provider, api_key: str) -> providers_pb2.Provider:
    return providers_pb2.Provider(
        id=str(provider.id),
        name=provider.name,
        type=provider.type,
        base_url=provider.base_url,
        api_key=api_key,
        priority=provider.priority,
        cost_per_image=format(provider.cost_per_image.normalize(), "f"),
        max_images_per_request=provider.max_images_per_request,
        timeout_ms=provider.timeout_ms,
        models=list(provider.models),
        supported_sizes=list(provider.supported_sizes),
    )


async def _require_uuid(value: str, context: grpc.aio.ServicerContext) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"provider_id {value[:64]!r} is not a UUID",
        )
        raise AssertionError("context.abort returned") from None


async def _abort_unavailable(
    context: grpc.aio.ServicerContext, store: str, error: Exception
) -> NoReturn:
    log.warning("registry_store_unavailable", store=store, error=type(error).__name__)
    await context.abort(
        grpc.StatusCode.UNAVAILABLE, f"{store} unavailable; retry shortly"
    )
    raise AssertionError("context.abort returned")

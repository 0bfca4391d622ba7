"""The gRPC ProviderRegistry: selection, outcome reports, call slots, catalogue.

Every RPC checks the providers' rows version in Redis and reloads its in-memory
copy of the table when it changed (see `row_cache`), so an edit or a status
change made through any replica applies to the next call. Status codes:
INVALID_ARGUMENT for a malformed request, NOT_FOUND for an unknown provider id,
UNAVAILABLE when Postgres or Redis cannot be reached.
"""

from __future__ import annotations

import uuid
from typing import NoReturn

import grpc
import structlog
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError

from imagerouter.v1 import providers_pb2, providers_pb2_grpc
from providers_service import catalogue, metrics, routing
from providers_service.health import HALF_OPEN, OPEN, HealthStore, ProviderState
from providers_service.models import Provider
from providers_service.row_cache import ProviderRowCache, RegistryView
from router_common.logging import accept_request_id

log = structlog.get_logger(__name__)
OUTCOMES = frozenset(
    {"success", "error", "timeout", "rate_limited", "content_policy", "invalid_request"}
)
MAX_ERROR_MESSAGE_CHARS = 500
# Bounds one ReportOutcomes call; the generation service sends at most 100.
MAX_REPORTS_PER_BATCH = 500
MAX_REPORT_ID_CHARS = 64


class ProviderRegistry(providers_pb2_grpc.ProviderRegistryServicer):
    def __init__(
        self,
        rows: ProviderRowCache,
        health: HealthStore,
        *,
        default_strategy: str,
        rate_limited_pause_seconds: int,
    ) -> None:
        self._rows = rows
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
        view, states = await self._load_with_states(
            context,
            rotate=strategy == "round_robin",
            with_recent=strategy == "latency",
        )
        selection = routing.select(
            view.rows.providers,
            states,
            size=request.size,
            model=request.model,
            name=request.provider_name,
            strategy=strategy,
            rotation=view.rotation,
        )
        messages = [
            view.rows.messages[str(provider.id)]
            for provider in selection.candidates
            if str(provider.id) in view.rows.messages
        ]
        # A candidate whose secret cannot be read is unavailable, not unable.
        unreadable = len(selection.candidates) - len(messages)
        response = providers_pb2.SelectProvidersResponse(
            providers=messages,
            available_sizes=selection.available_sizes,
            unavailable_count=selection.unavailable_count + unreadable,
        )
        if request.take_first_slot and messages:
            first = view.rows.by_id[messages[0].id]
            response.first_slot.CopyFrom(await self._take_slot(first, context))
        return response

    async def ReportOutcome(  # noqa: N802 - name fixed by the proto
        self,
        request: providers_pb2.ReportOutcomeRequest,
        context: grpc.aio.ServicerContext,
    ) -> providers_pb2.ReportOutcomeResponse:
        await _check_report(request, context)
        await self._record(request, context)
        return providers_pb2.ReportOutcomeResponse()

    async def ReportOutcomes(  # noqa: N802 - name fixed by the proto
        self,
        request: providers_pb2.ReportOutcomesRequest,
        context: grpc.aio.ServicerContext,
    ) -> providers_pb2.ReportOutcomeResponse:
        """Record a batch in order; a malformed entry rejects the whole batch
        before anything is recorded."""
        if len(request.outcomes) > MAX_REPORTS_PER_BATCH:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"at most {MAX_REPORTS_PER_BATCH} outcomes per call, "
                f"got {len(request.outcomes)}",
            )
        for report in request.outcomes:
            await _check_report(report, context)
        for report in request.outcomes:
            await self._record(report, context)
        return providers_pb2.ReportOutcomeResponse()

    async def _record(
        self,
        request: providers_pb2.ReportOutcomeRequest,
        context: grpc.aio.ServicerContext,
    ) -> None:
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
                report_id=request.report_id,
            )
        except RedisError as error:
            await _abort_unavailable(context, "health store", error)
        # A batch's entries each name their own request; the call's id is the
        # batch's.
        own_id = {}
        if request.request_id and accept_request_id(request.request_id) == (
            request.request_id
        ):
            own_id["request_id"] = request.request_id
        log.info(
            "provider_outcome",
            **own_id,
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

    async def AcquireSlot(  # noqa: N802 - name fixed by the proto
        self,
        request: providers_pb2.AcquireSlotRequest,
        context: grpc.aio.ServicerContext,
    ) -> providers_pb2.AcquireSlotResponse:
        provider_id = await _require_uuid(request.provider_id, context)
        view = await self._read_rows(context)
        provider = view.rows.by_id.get(str(provider_id))
        if provider is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"no provider with id {provider_id}"
            )
        return await self._take_slot(provider, context)

    async def _take_slot(
        self, provider: Provider, context: grpc.aio.ServicerContext
    ) -> providers_pb2.AcquireSlotResponse:
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
        view, states = await self._load_with_states(context, with_recent=False)
        available = [
            p for p in view.rows.providers if routing.is_available(p, states[str(p.id)])
        ]
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

    async def _read_rows(
        self, context: grpc.aio.ServicerContext, *, rotate: bool = False
    ) -> RegistryView:
        try:
            return await self._rows.read(rotate=rotate)
        except RedisError as error:
            await _abort_unavailable(context, "health store", error)
        except DBAPIError as error:
            await _abort_unavailable(context, "database", error)

    async def _load_with_states(
        self,
        context: grpc.aio.ServicerContext,
        *,
        rotate: bool = False,
        with_recent: bool,
    ) -> tuple[RegistryView, dict[str, ProviderState]]:
        view = await self._read_rows(context, rotate=rotate)
        ids = [str(provider.id) for provider in view.rows.providers]
        try:
            states = await self._health.read_states(
                ids, now_ms=view.now_ms, with_recent=with_recent
            )
        except RedisError as error:
            await _abort_unavailable(context, "health store", error)
        return view, states


async def _check_report(
    request: providers_pb2.ReportOutcomeRequest, context: grpc.aio.ServicerContext
) -> None:
    if request.outcome not in OUTCOMES:
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"unknown outcome {request.outcome!r}; expected one of "
            + ", ".join(sorted(OUTCOMES)),
        )
    await _require_uuid(request.provider_id, context)
    if len(request.report_id) > MAX_REPORT_ID_CHARS:
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"report_id is longer than {MAX_REPORT_ID_CHARS} characters",
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

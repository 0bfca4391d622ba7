"""Clients of the keys service and the provider registry over gRPC.

One long-lived channel per peer and process; every call carries the internal
token and the request id.
"""

from __future__ import annotations

from decimal import Decimal

import grpc

from generation_service.adapters.base import ProviderTarget
from imagerouter.v1 import keys_pb2, keys_pb2_grpc, providers_pb2, providers_pb2_grpc
from router_common.grpc_helpers import call_metadata, check_peer_health


class Peers:
    def __init__(
        self, *, keys_addr: str, providers_addr: str, token: str, timeout: float
    ) -> None:
        self._token = token
        self._timeout = timeout
        self.keys_channel = grpc.aio.insecure_channel(keys_addr)
        self.providers_channel = grpc.aio.insecure_channel(providers_addr)
        self._keys = keys_pb2_grpc.KeyServiceStub(self.keys_channel)
        self._registry = providers_pb2_grpc.ProviderRegistryStub(self.providers_channel)

    async def close(self) -> None:
        await self.keys_channel.close()
        await self.providers_channel.close()

    async def verify_key(self, key: str) -> keys_pb2.VerifyKeyResponse:
        return await self._keys.VerifyKey(
            keys_pb2.VerifyKeyRequest(key=key),
            metadata=call_metadata(self._token),
            timeout=self._timeout,
        )

    async def select_providers(
        self,
        *,
        size: str,
        model: str | None,
        n: int,
        provider: str | None,
        routing: str | None,
        take_first_slot: bool = False,
    ) -> providers_pb2.SelectProvidersResponse:
        request = providers_pb2.SelectProvidersRequest(
            size=size,
            model=model or "",
            n=n,
            provider_name=provider or "",
            routing=routing or "",
            take_first_slot=take_first_slot,
        )
        return await self._registry.SelectProviders(
            request, metadata=call_metadata(self._token), timeout=self._timeout
        )

    async def report_outcome(self, report: providers_pb2.ReportOutcomeRequest) -> None:
        await self._registry.ReportOutcome(
            report, metadata=call_metadata(self._token), timeout=self._timeout
        )

    async def report_outcomes(
        self, outcomes: list[providers_pb2.ReportOutcomeRequest]
    ) -> None:
        await self._registry.ReportOutcomes(
            providers_pb2.ReportOutcomesRequest(outcomes=outcomes),
            metadata=call_metadata(self._token),
            timeout=self._timeout,
        )

    async def keys_ready(self) -> bool:
        return await check_peer_health(self.keys_channel)

    async def providers_ready(self) -> bool:
        return await check_peer_health(self.providers_channel)

    async def acquire_slot(self, provider_id: str) -> providers_pb2.AcquireSlotResponse:
        """Ask the registry for one call slot of a provider, right before the call."""
        return await self._registry.AcquireSlot(
            providers_pb2.AcquireSlotRequest(provider_id=provider_id),
            metadata=call_metadata(self._token),
            timeout=self._timeout,
        )

    async def list_catalogue(self) -> providers_pb2.ListCatalogueResponse:
        return await self._registry.ListCatalogue(
            providers_pb2.ListCatalogueRequest(),
            metadata=call_metadata(self._token),
            timeout=self._timeout,
        )


def target_from_message(message: providers_pb2.Provider) -> ProviderTarget:
    return ProviderTarget(
        id=message.id,
        name=message.name,
        type=message.type,
        base_url=message.base_url,
        api_key=message.api_key,
        cost_per_image=Decimal(message.cost_per_image or "0"),
        max_images_per_request=max(1, message.max_images_per_request),
        timeout_ms=message.timeout_ms,
        models=tuple(message.models),
        supported_sizes=tuple(message.supported_sizes),
    )

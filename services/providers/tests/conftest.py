"""Helpers for the providers service's tests: raw HTTP and the gRPC registry."""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from imagerouter.v1 import providers_pb2, providers_pb2_grpc
from stack import PROVIDERS_GRPC, Stack


@dataclass(frozen=True)
class RawResponse:
    status: int
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


@pytest.fixture
def raw_request(stack: Stack) -> Callable[..., RawResponse]:
    """Send a request with its path exactly as given (httpx would normalise it)."""

    def send(
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> RawResponse:
        connection = http.client.HTTPConnection(
            "127.0.0.1", stack.profile.nginx_port, timeout=30
        )
        try:
            sent = {"Content-Type": "application/json", **(headers or {})}
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            return RawResponse(response.status, response.read().decode())
        finally:
            connection.close()

    return send


@dataclass(frozen=True)
class Registry:
    stub: providers_pb2_grpc.ProviderRegistryStub
    metadata: tuple[tuple[str, str], ...]

    def select(self, size: str = "512x512", **fields: Any) -> list[str]:
        """Return the names of the candidates, in order."""
        response = self.stub.SelectProviders(
            providers_pb2.SelectProvidersRequest(size=size, n=1, **fields),
            metadata=self.metadata,
            timeout=10,
        )
        return [provider.name for provider in response.providers]

    def report(self, provider_id: str, outcome: str, latency_ms: int = 100) -> None:
        self.stub.ReportOutcome(
            providers_pb2.ReportOutcomeRequest(
                provider_id=provider_id, outcome=outcome, latency_ms=latency_ms
            ),
            metadata=self.metadata,
            timeout=10,
        )

    def acquire(self, provider_id: str) -> providers_pb2.AcquireSlotResponse:
        return self.stub.AcquireSlot(
            providers_pb2.AcquireSlotRequest(provider_id=provider_id),
            metadata=self.metadata,
            timeout=10,
        )


def registry_at(address: str, token: str) -> Iterator[Registry]:
    with grpc.insecure_channel(address) as channel:
        stub = providers_pb2_grpc.ProviderRegistryStub(channel)
        yield Registry(stub, (("x-internal-token", token),))


@pytest.fixture
def registry(stack: Stack) -> Iterator[Registry]:
    """The stack's registry over gRPC, called with the internal token."""
    address = f"127.0.0.1:{stack.profile.port(PROVIDERS_GRPC)}"
    yield from registry_at(address, stack.common_env()["INTERNAL_SERVICE_TOKEN"])

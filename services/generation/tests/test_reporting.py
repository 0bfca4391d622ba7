"""Outcome reports sent in batches to the stack's registry, and the bounded
queue while the registry cannot be reached."""

from __future__ import annotations

import asyncio
import socket
import time

from generation_service import metrics
from generation_service.peers import Peers
from generation_service.reporting import OutcomeReporter
from imagerouter.v1 import providers_pb2
from stack import PROVIDERS_GRPC, Stack


def peers_at(stack: Stack, providers_addr: str) -> Peers:
    return Peers(
        keys_addr=providers_addr,
        providers_addr=providers_addr,
        token=stack.common_env()["INTERNAL_SERVICE_TOKEN"],
        timeout=5,
    )


def outcome(provider_id: str, name: str) -> providers_pb2.ReportOutcomeRequest:
    return providers_pb2.ReportOutcomeRequest(
        provider_id=provider_id, outcome=name, latency_ms=40
    )


def circuit_state(client, admin, provider_id: str) -> str:
    response = client.get(f"/api/v1/providers/{provider_id}", headers=admin.headers)
    assert response.status_code == 200, response.text
    return response.json()["data"]["health"]["circuitState"]


def test_reports_reach_registry_in_order(
    stack, client, admin, new_provider, simulator_base
):
    provider = new_provider(simulator_base(tag="reporting"))
    address = f"127.0.0.1:{stack.profile.port(PROVIDERS_GRPC)}"

    async def main() -> int:
        peers = peers_at(stack, address)
        reporter = OutcomeReporter(peers)
        reporter.start()
        # Queued at once, before the sender runs: they leave as one batch.
        for name in ("error", "timeout", "error", "error", "error"):
            reporter.report(outcome(provider["id"], name))
        queued = reporter.queued
        deadline = time.monotonic() + 10
        while reporter.queued and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await reporter.close()
        await peers.close()
        return queued

    assert asyncio.run(main()) == 5
    # Five failures in a row reached the threshold of 5.
    assert circuit_state(client, admin, provider["id"]) == "open"
    stats = client.get(f"/api/v1/providers/{provider['id']}", headers=admin.headers)
    health = stats.json()["data"]["health"]
    assert health["recentAttempts"] == 5
    assert health["consecutiveFailures"] == 5


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_full_queue_drops_reports(stack):
    # Nothing listens on this port, so every batch fails and stays queued.
    address = f"127.0.0.1:{free_port()}"

    async def main() -> tuple[int, float]:
        peers = peers_at(stack, address)
        reporter = OutcomeReporter(peers, capacity=3)
        reporter.start()
        before = metrics.OUTCOME_REPORTS_DROPPED._value.get()
        for _ in range(5):
            reporter.report(outcome("00000000-0000-0000-0000-000000000001", "error"))
        await asyncio.sleep(0.3)
        queued = reporter.queued
        dropped = metrics.OUTCOME_REPORTS_DROPPED._value.get() - before
        started = time.monotonic()
        await reporter.close()
        await peers.close()
        assert queued == 3
        return int(dropped), time.monotonic() - started

    dropped, closing_seconds = asyncio.run(main())
    assert dropped == 2
    # Closing tries the queue once more and gives up when the call fails.
    assert closing_seconds < 6

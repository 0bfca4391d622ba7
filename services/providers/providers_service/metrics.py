"""Prometheus metrics of the provider registry: circuit states and changes.

The circuit state lives in Redis, shared by every replica, so the gauge is
read from Redis when `/metrics` is scraped rather than kept per process.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from providers_service.health import CLOSED, HALF_OPEN, OPEN, HealthStore
from providers_service.models import Provider
from router_common.metrics import MetricsRefresher

CIRCUIT_STATES = (CLOSED, HALF_OPEN, OPEN)

CIRCUIT_STATE = Gauge(
    "provider_circuit_state",
    "1 for the current circuit-breaker state of each provider, 0 for the "
    "others; read from Redis at scrape time.",
    ["provider", "state"],
)
CIRCUIT_TRANSITIONS = Counter(
    "provider_circuit_transitions_total",
    "Circuit-breaker state changes made by this replica, by the new state.",
    ["state"],
)


def circuit_refresher(
    session_factory: async_sessionmaker, health: HealthStore
) -> MetricsRefresher:
    """Build the refresher that sets `provider_circuit_state` for every provider."""

    async def refresh_circuits() -> None:
        async with session_factory() as session:
            providers = list(await session.execute(select(Provider.id, Provider.name)))
        states = await health.read_states([str(row.id) for row in providers])
        # Deleted providers must not keep a series, so the gauge is rebuilt.
        CIRCUIT_STATE.clear()
        for row in providers:
            current = states[str(row.id)].circuit
            for state in CIRCUIT_STATES:
                CIRCUIT_STATE.labels(row.name, state).set(int(state == current))

    return refresh_circuits

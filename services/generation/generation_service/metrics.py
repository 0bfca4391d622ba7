"""Prometheus metrics of generations: provider attempts, fallbacks, images, cost
and the job queue.

Provider series are labelled by provider name, which admins choose, so their
number grows with the provider table and not with traffic. The queue gauges
are read from Postgres when `/metrics` is scraped (see `queue_refresher`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from generation_service.models import Generation
from router_common.metrics import MetricsRefresher

PROVIDER_ATTEMPTS = Counter(
    "provider_attempts_total",
    "Calls to image providers, by provider and outcome (success, error, "
    "timeout, rate_limited, content_policy, invalid_request).",
    ["provider", "outcome"],
)
PROVIDER_LATENCY = Histogram(
    "provider_attempt_duration_seconds",
    "Time of one call to an image provider, images stored included.",
    ["provider", "outcome"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120),
)
PROVIDER_FALLBACKS = Counter(
    "provider_fallbacks_total",
    "Times a generation moved on from this provider to the next candidate.",
    ["provider"],
)
OUTCOME_REPORTS_DROPPED = Counter(
    "outcome_reports_dropped_total",
    "Provider outcome reports dropped because the queue to the registry was full "
    "or the registry refused them as malformed.",
)
IMAGES_GENERATED = Counter(
    "images_generated_total",
    "Images delivered by successful generations, by the provider that made them.",
    ["provider"],
)
GENERATION_COST = Counter(
    "generation_cost_total",
    "Cost of delivered images, in the currency of the providers' costPerImage.",
    ["provider"],
)
GENERATIONS_FINISHED = Counter(
    "generations_finished_total",
    "Generation runs recorded, by final status (succeeded or failed).",
    ["status"],
)
JOBS_QUEUED = Gauge(
    "generation_jobs_queued",
    "Generation jobs waiting for a worker (status queued), read at scrape time.",
)
OLDEST_QUEUED_AGE = Gauge(
    "generation_oldest_queued_job_age_seconds",
    "Age of the oldest queued generation job; 0 when none is queued.",
)


def record_attempt(provider: str, outcome: str, latency_ms: int) -> None:
    PROVIDER_ATTEMPTS.labels(provider, outcome).inc()
    PROVIDER_LATENCY.labels(provider, outcome).observe(latency_ms / 1000)


def record_images(provider: str, count: int, cost: Decimal) -> None:
    IMAGES_GENERATED.labels(provider).inc(count)
    GENERATION_COST.labels(provider).inc(float(cost))


def queue_refresher(session_factory: async_sessionmaker) -> MetricsRefresher:
    """Build the refresher that reads the queue depth and oldest job's age."""

    async def refresh_queue() -> None:
        async with session_factory() as session:
            count, oldest = (
                await session.execute(
                    select(func.count(), func.min(Generation.created_at)).where(
                        Generation.status == "queued"
                    )
                )
            ).one()
        JOBS_QUEUED.set(count)
        age = (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0
        OLDEST_QUEUED_AGE.set(max(age, 0.0))

    return refresh_queue

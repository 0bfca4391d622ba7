"""SIGTERM: an API process finishes its in-flight generation before it exits,
and a worker gives back the job it cannot finish so another resumes it."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx

from stack import Stack
from tests.fixtures import User
from tests.ops.helpers import (
    SIGTERM_GENERATION,
    SIGTERM_WORKER_METRICS,
    derived_spec,
    records_with,
    running,
    start_healthy,
    wait_exit,
)


def test_generation_sigterm_finishes_request(
    stack: Stack,
    new_user: Callable[[], User],
    new_provider: Callable[..., dict[str, Any]],
    simulator_base: Callable[..., str],
    simulator_calls: Callable[[str], dict[str, Any]],
) -> None:
    tag = f"sigterm-{uuid.uuid4().hex[:8]}"
    new_provider(simulator_base("delay=1500", tag=tag))
    user = new_user()
    port = stack.profile.port(SIGTERM_GENERATION)
    spec = derived_spec(stack, "generation", "ops-generation-sigterm", port)
    responses: list[httpx.Response] = []

    def generate() -> None:
        responses.append(
            httpx.post(
                f"http://127.0.0.1:{port}/api/v1/images/generations",
                json={"prompt": "a slow sunrise", "size": "256x256"},
                headers=user.headers,
                timeout=60,
            )
        )

    with running(stack, spec) as pid:
        request = threading.Thread(target=generate)
        request.start()
        _wait_until(lambda: simulator_calls(tag)["count"] == 1)
        os.kill(pid, signal.SIGTERM)
        request.join(timeout=30)
        exit_code = wait_exit(stack, spec.name)

    assert [response.status_code for response in responses] == [200]
    assert responses[0].json()["data"]["status"] == "succeeded"
    assert exit_code in (0, -signal.SIGTERM)
    events = [r["event"] for r in records_with(stack, "ops-generation-sigterm.log")]
    assert events.index("shutdown_requested") < events.index("provider_attempt")
    assert events[-1] != "unhandled_error"
    assert "service_stopped" in events


def _job_row(stack: Stack, generation_id: str) -> asyncpg.Record:
    async def run() -> asyncpg.Record:
        connection = await asyncpg.connect(
            stack.profile.database_url.replace("postgresql+asyncpg://", "postgresql://")
        )
        try:
            return await connection.fetchrow(
                "SELECT status, lease_owner, lease_expires_at, run_count "
                "FROM generation.generations WHERE id = $1",
                uuid.UUID(generation_id),
            )
        finally:
            await connection.close()

    return asyncio.run(run())


def test_worker_sigterm_releases_job(
    stack: Stack,
    client: httpx.Client,
    new_user: Callable[[], User],
    new_provider: Callable[..., dict[str, Any]],
    simulator_base: Callable[..., str],
    simulator_calls: Callable[[str], dict[str, Any]],
) -> None:
    tag = f"release-{uuid.uuid4().hex[:8]}"
    new_provider(simulator_base("delay=4000", tag=tag))
    user = new_user()
    metrics_port = stack.profile.port(SIGTERM_WORKER_METRICS)
    stack_worker = next(spec for spec in stack.service_specs() if spec.name == "worker")
    spec = derived_spec(
        stack,
        "worker",
        "ops-worker-sigterm",
        metrics_port,
        WORKER_METRICS_PORT=str(metrics_port),
        # Shorter than the provider's delay, so the job cannot finish in time.
        SHUTDOWN_GRACE_SECONDS="0.5",
    )
    spec.ready_url = None
    # Only the dedicated worker may claim the job.
    stack.stop("worker")
    try:
        with running(stack, spec) as pid:
            response = client.post(
                "/api/v1/images/generations",
                json={"prompt": "a long night", "size": "256x256", "async": True},
                headers=user.headers,
            )
            assert response.status_code == 202, response.text
            generation_id = response.json()["data"]["id"]
            _wait_until(lambda: simulator_calls(tag)["count"] == 1)
            os.kill(pid, signal.SIGTERM)
            assert wait_exit(stack, spec.name) == 0

        released = _job_row(stack, generation_id)
        assert released["status"] == "queued"
        assert released["lease_owner"] is None
        assert released["lease_expires_at"] is None
        logged = records_with(
            stack, "ops-worker-sigterm.log", generation_id=generation_id
        )
        assert "job_released" in [record["event"] for record in logged]
    finally:
        start_healthy(stack, stack_worker)

    # The stack's worker takes the released job at once and finishes it.
    _wait_until(lambda: _job_row(stack, generation_id)["status"] == "succeeded", 30)
    finished = _job_row(stack, generation_id)
    assert finished["run_count"] == 2
    assert simulator_calls(tag)["count"] == 2


def _wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.05)

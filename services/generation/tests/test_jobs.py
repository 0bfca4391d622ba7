"""Asynchronous jobs, the worker, idempotent retries and the sync deadline."""

from __future__ import annotations

import os
import signal
import time
import uuid

import httpx
import pytest

from stack import GENERATION_HTTP, ServiceSpec, ensure_database
from tests.fixtures import run_sql

POLL_SECONDS = 0.2


def wait_for_status(client, generation_id, headers, statuses, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(
            f"/api/v1/images/generations/{generation_id}", headers=headers
        )
        assert response.status_code == 200, response.text
        generation = response.json()["data"]
        if generation["status"] in statuses or time.monotonic() > deadline:
            return generation
        time.sleep(POLL_SECONDS)


@pytest.fixture
def tagged_provider(new_provider, simulator_base):
    """A healthy provider with its own simulator tag; options change its behaviour."""

    def create(*options: str, **fields):
        tag = f"jobs-{uuid.uuid4().hex[:10]}"
        provider = new_provider(simulator_base(*options, tag=tag), **fields)
        return provider, tag

    return create


def test_async_body_flag_returns_202_and_completes(client, new_user, tagged_provider):
    tagged_provider()
    user = new_user()
    response = client.post(
        "/api/v1/images/generations",
        headers=user.headers,
        json={"prompt": "an owl", "n": 2, "size": "256x256", "async": True},
    )
    assert response.status_code == 202, response.text
    generation = response.json()["data"]
    assert generation["status"] == "queued"
    assert (
        response.headers["location"] == f"/api/v1/images/generations/{generation['id']}"
    )

    finished = wait_for_status(
        client, generation["id"], user.headers, {"succeeded", "failed"}
    )
    assert finished["status"] == "succeeded"
    assert len(finished["images"]) == 2
    assert finished["progress"] == 100


def test_prefer_respond_async_returns_202(client, new_user, tagged_provider):
    tagged_provider()
    user = new_user()
    response = client.post(
        "/api/v1/images/generations",
        headers={**user.headers, "Prefer": "respond-async"},
        json={"prompt": "a heron", "size": "256x256"},
    )
    assert response.status_code == 202
    finished = wait_for_status(
        client, response.json()["data"]["id"], user.headers, {"succeeded", "failed"}
    )
    assert finished["status"] == "succeeded"


def test_async_unknown_size_refused_at_once(client, new_user, tagged_provider):
    tagged_provider()
    user = new_user()
    response = client.post(
        "/api/v1/images/generations",
        headers=user.headers,
        json={"prompt": "a heron", "size": "640x480", "async": True},
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "validation_error"


def test_idempotent_retry_returns_same_generation(
    client, new_user, tagged_provider, simulator_calls
):
    _, tag = tagged_provider()
    user = new_user()
    headers = {**user.headers, "Idempotency-Key": f"retry-{uuid.uuid4().hex}"}
    body = {"prompt": "a lantern", "size": "256x256", "response_format": "b64_json"}

    first = client.post("/api/v1/images/generations", headers=headers, json=body)
    second = client.post("/api/v1/images/generations", headers=headers, json=body)
    assert first.status_code == 200, first.text
    assert second.status_code == 200, second.text
    assert second.json()["data"]["id"] == first.json()["data"]["id"]
    assert second.json()["data"]["images"] == first.json()["data"]["images"]
    assert simulator_calls(tag)["count"] == 1


def test_idempotency_key_with_other_body_is_conflict(client, new_user, tagged_provider):
    tagged_provider()
    user = new_user()
    headers = {**user.headers, "Idempotency-Key": f"retry-{uuid.uuid4().hex}"}
    first = client.post(
        "/api/v1/images/generations",
        headers=headers,
        json={"prompt": "a lantern", "size": "256x256"},
    )
    assert first.status_code == 200
    second = client.post(
        "/api/v1/images/generations",
        headers=headers,
        json={"prompt": "a candle", "size": "256x256"},
    )
    assert second.status_code == 409
    assert second.json()["error"]["type"] == "conflict"


def test_idempotency_key_is_per_user(client, new_user, tagged_provider):
    tagged_provider()
    key = f"shared-{uuid.uuid4().hex}"
    body = {"prompt": "a lantern", "size": "256x256"}
    first_user, second_user = new_user(), new_user()
    first = client.post(
        "/api/v1/images/generations",
        headers={**first_user.headers, "Idempotency-Key": key},
        json=body,
    )
    second = client.post(
        "/api/v1/images/generations",
        headers={**second_user.headers, "Idempotency-Key": key},
        json=body,
    )
    assert first.status_code == second.status_code == 200
    assert first.json()["data"]["id"] != second.json()["data"]["id"]


def test_openai_surface_idempotency_conflict_not_retried(
    gateway_url, new_user, new_api_key, tagged_provider
):
    tagged_provider()
    user = new_user()
    key = new_api_key(user)
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": uuid.uuid4().hex}
    with httpx.Client(base_url=gateway_url, timeout=30) as client:
        first = client.post(
            "/v1/images/generations",
            headers=headers,
            json={"prompt": "a", "size": "256x256"},
        )
        second = client.post(
            "/v1/images/generations",
            headers=headers,
            json={"prompt": "b", "size": "256x256"},
        )
    assert first.status_code == 200
    assert second.status_code == 409
    assert second.headers["x-should-retry"] == "false"
    assert second.json()["error"]["type"] == "conflict"


def test_worker_killed_mid_job_completes_once(
    stack, client, new_user, tagged_provider, simulator_calls
):
    _, tag = tagged_provider("delay=2500")
    user = new_user()
    response = client.post(
        "/api/v1/images/generations",
        headers=user.headers,
        json={"prompt": "a slow comet", "n": 2, "size": "256x256", "async": True},
    )
    assert response.status_code == 202
    generation_id = response.json()["data"]["id"]

    running = wait_for_status(
        client, generation_id, user.headers, {"running"}, timeout=10
    )
    assert running["status"] == "running"
    # Kill the worker while its provider call is in flight (the provider
    # responds after 2.5 s), not before the call has started.
    deadline = time.monotonic() + 10
    while simulator_calls(tag)["count"] < 1:
        assert time.monotonic() < deadline, "the worker never called the provider"
        time.sleep(POLL_SECONDS)
    worker_pid = stack.running_pid("worker")
    assert worker_pid is not None
    os.kill(worker_pid, signal.SIGKILL)
    stack.stop("worker")

    worker_spec = next(s for s in stack.service_specs() if s.name == "worker")
    stack.start(worker_spec)
    finished = wait_for_status(
        client, generation_id, user.headers, {"succeeded", "failed"}, timeout=30
    )
    assert finished["status"] == "succeeded"
    assert len(finished["images"]) == 2
    assert [a["outcome"] for a in finished["attempts"]] == ["success"]
    # The killed run called the provider too; only the resumed run was recorded.
    assert simulator_calls(tag)["count"] == 2


def test_sync_deadline_answers_504_and_job_goes_on(stack, new_user, tagged_provider):
    tagged_provider("delay=2500")
    user = new_user()
    generation = next(s for s in stack.service_specs() if s.name == "generation")
    port = stack.profile.port(GENERATION_HTTP) + 40
    hurried = ServiceSpec(
        name="generation-hurried",
        command=generation.command,
        cwd=generation.cwd,
        env={
            **generation.env,
            "HTTP_PORT": str(port),
            "GENERATION_DEADLINE_SECONDS": "1",
        },
        health_url=f"http://127.0.0.1:{port}/healthz",
        ready_url=f"http://127.0.0.1:{port}/readyz",
    )
    stack.start(hurried)
    try:
        stack.wait_healthy(hurried)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as direct:
            response = direct.post(
                "/api/v1/images/generations",
                headers=user.headers,
                json={"prompt": "a slow tide", "size": "256x256"},
            )
            assert response.status_code == 504, response.text
            error = response.json()["error"]
            assert error["type"] == "timeout"
            generation_id = error["details"]["generationId"]
            finished = wait_for_status(
                direct, generation_id, user.headers, {"succeeded", "failed"}, timeout=15
            )
        assert finished["status"] == "succeeded"
    finally:
        stack.stop("generation-hurried")


def test_job_given_up_after_max_runs(stack, client, new_user, tagged_provider):
    _, tag = tagged_provider()
    user = new_user()
    max_runs = int(stack.common_env().get("JOB_MAX_RUNS", "3"))
    generation_id = uuid.uuid4()
    # A job whose process died mid-run as often as it may: its lease expired.
    run_sql(
        stack.profile.database_url,
        "INSERT INTO generation.generations (id, user_id, status, prompt, n, size, "
        "response_format, lease_owner, lease_expires_at, run_count, started_at) "
        f"VALUES ('{generation_id}', '{user.id}', 'running', 'a ghost', 1, "
        f"'256x256', 'url', 'gone:1', now() - interval '1 minute', {max_runs}, now())",
    )

    finished = wait_for_status(
        client, str(generation_id), user.headers, {"succeeded", "failed"}, timeout=15
    )
    assert finished["status"] == "failed"
    assert finished["error"]["type"] == "internal_error"
    assert f"after {max_runs} runs" in finished["error"]["message"]
    assert finished["images"] == []


def test_worker_waits_quietly_for_migrations(stack):
    # A brand-new database: the API process, not the worker, creates the tables.
    database_url = stack.profile.database_url.rsplit("/", 1)[0] + (
        f"/ir_worker_{uuid.uuid4().hex[:8]}"
    )
    ensure_database(database_url, recreate=True)
    worker = next(s for s in stack.service_specs() if s.name == "worker")
    spec = ServiceSpec(
        name="worker-new-database",
        command=worker.command,
        cwd=worker.cwd,
        env={
            **worker.env,
            "DATABASE_URL": database_url,
            "WORKER_POLL_SECONDS": "0.2",
            "WORKER_METRICS_PORT": "0",
        },
        health_url=None,
    )
    stack.start(spec)
    log_path = stack.log_dir / f"{spec.name}.log"
    try:
        deadline = time.monotonic() + 20
        while "jobs_table_missing" not in log_path.read_text():
            assert time.monotonic() < deadline, log_path.read_text()[-2000:]
            time.sleep(POLL_SECONDS)
        # Several polls later, still no error line.
        time.sleep(1)
        lines = log_path.read_text().splitlines()
    finally:
        stack.stop(spec.name)
        drop_database(database_url)
    assert not [line for line in lines if '"level": "error"' in line]
    assert not [line for line in lines if "job_claim_failed" in line]


def drop_database(database_url: str) -> None:
    admin_url = database_url.rsplit("/", 1)[0] + "/postgres"
    name = database_url.rsplit("/", 1)[1]
    run_sql(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

"""Rate limits and image quotas, exact under concurrency across two generation
replicas behind nginx, and the behaviour while Redis is down."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid

import httpx
import pytest

from stack import GENERATION_HTTP, ServiceSpec

RATE_LIMIT_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


@pytest.fixture
def provider_tag(new_provider, simulator_base):
    tag = f"limits-{uuid.uuid4().hex[:10]}"
    new_provider(simulator_base(tag=tag))
    return tag


def post_generation(client, key, **fields):
    body = {"prompt": "a gate", "size": "256x256", **fields}
    return client.post(
        "/api/v1/images/generations", headers={"X-API-Key": key}, json=body
    )


async def burst(gateway_url: str, key: str, count: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(
        base_url=gateway_url, timeout=60, limits=limits
    ) as client:
        return await asyncio.gather(
            *(
                client.post(
                    "/api/v1/images/generations",
                    headers={"X-API-Key": key},
                    json={"prompt": "a crowd", "size": "256x256"},
                )
                for _ in range(count)
            )
        )


def test_key_rate_limit_is_exact_under_concurrency(
    stack, gateway_url, new_user, new_api_key, provider_tag, simulator_calls
):
    assert stack.profile.generation_replicas >= 2
    key = new_api_key(new_user(), rateLimit=20)
    responses = asyncio.run(burst(gateway_url, key, 200))

    statuses = [response.status_code for response in responses]
    assert statuses.count(200) == 20
    assert statuses.count(429) == 180
    assert simulator_calls(provider_tag)["count"] == 20
    upstreams = {
        line
        for line in (stack.log_dir / "nginx-access.log").read_text().splitlines()
        if '"upstream_addr":"127.0.0.1:' in line
    }
    served_by = {line.split('"upstream_addr":"')[1].split('"')[0] for line in upstreams}
    assert (
        len(served_by & {f"127.0.0.1:{p}" for p in stack.generation_replica_ports()})
        >= 2
    )


def test_refusal_names_limit_and_window(client, new_user, new_api_key, provider_tag):
    key = new_api_key(new_user(), rateLimit=1)
    assert post_generation(client, key).status_code == 200
    refused = post_generation(client, key)

    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["type"] == "rate_limit_exceeded"
    assert error["details"]["limit"] == "api_key_requests"
    assert error["details"]["max"] == 1
    assert error["details"]["windowSeconds"] > 0
    assert "1 requests per" in error["message"]
    assert key not in refused.text
    assert int(refused.headers["retry-after"]) >= 1
    for header in RATE_LIMIT_HEADERS:
        assert header in refused.headers
    assert refused.headers["x-ratelimit-remaining"] == "0"


def test_success_carries_rate_limit_headers(
    client, new_user, new_api_key, provider_tag
):
    key = new_api_key(new_user(), rateLimit=5)
    response = post_generation(client, key)
    assert response.status_code == 200
    assert response.headers["x-ratelimit-limit"] == "5"
    assert response.headers["x-ratelimit-remaining"] == "4"
    assert int(response.headers["x-ratelimit-reset"]) >= 1


def test_daily_image_quota_counts_images(
    client, new_user, new_api_key, provider_tag, simulator_calls
):
    key = new_api_key(new_user(), dailyImageLimit=10)
    first = post_generation(client, key, n=4)
    second = post_generation(client, key, n=4)
    third = post_generation(client, key, n=4)

    assert first.status_code == 200
    assert second.status_code == 200
    assert third.status_code == 429
    assert third.json()["error"]["details"]["limit"] == "api_key_images"
    assert simulator_calls(provider_tag)["count"] == 2
    # Two images are left: a smaller request still fits.
    assert post_generation(client, key, n=2).status_code == 200


def test_failed_generation_gives_images_back(
    client, new_user, new_api_key, new_provider, simulator_base
):
    new_provider(simulator_base("fail=500", tag=f"down-{uuid.uuid4().hex[:8]}"))
    key = new_api_key(new_user(), dailyImageLimit=4)
    for _ in range(3):
        response = post_generation(client, key, n=4)
        assert response.status_code == 502, response.text


def test_unservable_request_not_counted(
    client, new_user, new_api_key, provider_tag, simulator_calls
):
    # The limits are checked before selection; a request that selection
    # refuses is taken out of them again.
    key = new_api_key(new_user(), rateLimit=2, dailyImageLimit=4)
    for _ in range(3):
        refused = post_generation(client, key, size="1792x1024", n=4)
        assert refused.status_code == 400, refused.text
        assert "is not supported" in refused.json()["error"]["message"]
    assert simulator_calls(provider_tag)["count"] == 0

    assert post_generation(client, key, n=2).status_code == 200
    assert post_generation(client, key, n=2).status_code == 200
    third = post_generation(client, key)
    assert third.status_code == 429
    assert third.json()["error"]["details"]["limit"] in (
        "api_key_requests",
        "api_key_images",
    )


def test_idempotency_race_losers_not_counted(
    gateway_url, new_user, new_api_key, new_provider, simulator_base
):
    # A slow provider keeps the first request running while the others with
    # the same key arrive. The ones that lose the race to create the job
    # replay it, so they must count against no limit.
    new_provider(simulator_base("delay=300", tag=f"race-{uuid.uuid4().hex[:8]}"))
    key = new_api_key(new_user(), rateLimit=20)
    headers = {"X-API-Key": key, "Idempotency-Key": uuid.uuid4().hex}
    body = {"prompt": "a relay", "n": 2, "size": "256x256"}

    async def race() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=gateway_url, timeout=60) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        "/api/v1/images/generations", headers=headers, json=body
                    )
                    for _ in range(10)
                )
            )

    responses = asyncio.run(race())
    assert {response.status_code for response in responses} == {200}
    assert len({response.json()["data"]["id"] for response in responses}) == 1
    with httpx.Client(base_url=gateway_url, timeout=60) as client:
        fresh = post_generation(client, key)
    assert fresh.status_code == 200
    # The race counted once, the fresh request once.
    assert fresh.headers["x-ratelimit-remaining"] == "18"


def test_request_window_resets(stack, client, new_user, new_api_key, provider_tag):
    window = float(stack.common_env()["RATE_LIMIT_WINDOW_SECONDS"])
    key = new_api_key(new_user(), rateLimit=1)
    assert post_generation(client, key).status_code == 200
    assert post_generation(client, key).status_code == 429
    time.sleep(window + 0.5)
    assert post_generation(client, key).status_code == 200


def test_user_token_has_user_limit(stack, client, new_user, provider_tag):
    limit = int(stack.common_env()["USER_REQUESTS_PER_MINUTE"])
    user = new_user()
    response = client.post(
        "/api/v1/images/generations",
        headers=user.headers,
        json={"prompt": "a gate", "size": "256x256"},
    )
    assert response.status_code == 200
    assert response.headers["x-ratelimit-limit"] == str(limit)


@pytest.fixture
def throwaway_redis(stack):
    """A Redis of this test's own on a spare port, stopped and started by PID."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed"
    port = stack.profile.port(GENERATION_HTTP) + 47
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--appendonly", "no"]

    class Server:
        process: subprocess.Popen[bytes] | None = None
        url = f"redis://127.0.0.1:{port}/0"

        def start(self) -> None:
            self.process = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            deadline = time.monotonic() + 10
            while (
                subprocess.run(
                    ["redis-cli", "-p", str(port), "ping"], capture_output=True
                ).stdout.strip()
                != b"PONG"
            ):
                assert time.monotonic() < deadline, "throwaway Redis did not start"
                time.sleep(0.1)

        def stop(self) -> None:
            if self.process is not None:
                self.process.terminate()
                self.process.wait(timeout=10)
                self.process = None

    server = Server()
    server.start()
    yield server
    server.stop()


def test_redis_outage_answers_503_and_recovers(
    stack, new_user, new_api_key, provider_tag, throwaway_redis
):
    generation = next(s for s in stack.service_specs() if s.name == "generation")
    port = stack.profile.port(GENERATION_HTTP) + 45
    replica = ServiceSpec(
        name="generation-own-redis",
        command=generation.command,
        cwd=generation.cwd,
        env={
            **generation.env,
            "HTTP_PORT": str(port),
            "REDIS_URL": throwaway_redis.url,
        },
        health_url=f"http://127.0.0.1:{port}/healthz",
        ready_url=f"http://127.0.0.1:{port}/readyz",
    )
    key = new_api_key(new_user(), rateLimit=50)
    stack.start(replica)
    try:
        stack.wait_healthy(replica)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as direct:
            assert post_generation(direct, key).status_code == 200

            throwaway_redis.stop()
            down = post_generation(direct, key)
            assert down.status_code == 503
            assert down.json()["error"]["type"] == "service_unavailable"
            assert int(down.headers["retry-after"]) >= 1
            readiness = direct.get("/readyz")
            assert readiness.status_code == 503
            assert readiness.json()["checks"]["redis"] is False

            throwaway_redis.start()
            deadline = time.monotonic() + 15
            while (response := post_generation(direct, key)).status_code != 200:
                assert time.monotonic() < deadline, response.text
                time.sleep(0.5)
            assert direct.get("/readyz").status_code == 200
    finally:
        stack.stop("generation-own-redis")

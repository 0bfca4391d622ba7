"""Routing through nginx against the simulator: a request split into calls of a
provider's maximum size, capability-aware fallback on the size, and stored URLs
that keep serving after the provider's own URL has expired."""

from __future__ import annotations

import io
import re
import time
import uuid

import httpx
from PIL import Image

FILES_URL_PART = "/api/v1/images/files/"
MIDJOURNEY_FETCH_PATH = re.compile(r"/mj/task/([^/]+)/fetch$")


def png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        return image.size


def new_tag(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_n4_on_single_image_provider_makes_four_calls(
    client, new_user, new_provider, simulator_base, simulator_calls
):
    tag = new_tag("split")
    new_provider(simulator_base(tag=tag), maxImagesPerRequest=1)
    user = new_user()

    response = client.post(
        "/api/v1/images/generations",
        headers=user.headers,
        json={"prompt": "four paper boats", "n": 4, "size": "256x256"},
    )

    assert response.status_code == 200, response.text
    generation = response.json()["data"]
    assert generation["status"] == "succeeded"
    assert len(generation["images"]) == 4
    urls = [image["url"] for image in generation["images"]]
    assert len(set(urls)) == 4
    for url in urls:
        served = httpx.get(url, timeout=10)
        assert served.status_code == 200
        assert png_size(served.content) == (256, 256)
    assert generation["cost"] == "0.08"

    calls = simulator_calls(tag)
    assert calls["count"] == 4
    assert [request["body"]["n"] for request in calls["requests"]] == [1, 1, 1, 1]
    stored = client.get(
        f"/api/v1/images/generations/{generation['id']}", headers=user.headers
    ).json()["data"]
    assert [attempt["outcome"] for attempt in stored["attempts"]] == ["success"] * 4


def test_size_only_second_provider_supports_skips_first(
    client, new_user, new_provider, simulator_base, simulator_calls
):
    small_tag, large_tag = new_tag("small"), new_tag("large")
    small = new_provider(
        simulator_base(tag=small_tag), priority=1, supportedSizes=["256x256"]
    )
    large = new_provider(
        simulator_base(tag=large_tag),
        priority=2,
        supportedSizes=["256x256", "512x512"],
    )
    user = new_user()

    response = client.post(
        "/api/v1/images/generations",
        headers=user.headers,
        json={"prompt": "a wide meadow", "size": "512x512"},
    )

    assert response.status_code == 200, response.text
    generation = response.json()["data"]
    assert generation["provider"]["name"] == large["name"]
    assert [attempt["provider"] for attempt in generation["attempts"]] == [
        large["name"]
    ]
    assert png_size(httpx.get(generation["images"][0]["url"], timeout=10).content) == (
        512,
        512,
    )
    assert simulator_calls(small_tag)["count"] == 0
    assert simulator_calls(large_tag)["count"] == 1

    # The first provider is healthy and preferred for the size it supports,
    # so only the size kept it out above.
    response = client.post(
        "/api/v1/images/generations",
        headers=user.headers,
        json={"prompt": "a small meadow", "size": "256x256"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"]["provider"]["name"] == small["name"]
    assert simulator_calls(small_tag)["count"] == 1


def test_stored_url_outlives_provider_url(
    stack, client, new_user, new_provider, simulator_base, simulator_calls
):
    tag = new_tag("mj-ttl")
    url_ttl_seconds = 2
    api_key = f"mj-{uuid.uuid4().hex}"
    base_url = simulator_base(
        "mj_steps=1", f"url_ttl={url_ttl_seconds}", tag=tag, api=""
    )
    new_provider(
        base_url,
        type="midjourney",
        apiKey=api_key,
        supportedSizes=["1024x1024"],
        maxImagesPerRequest=4,
    )
    user = new_user()

    response = client.post(
        "/api/v1/images/generations",
        headers=user.headers,
        json={"prompt": "a lantern in fog", "n": 1, "size": "1024x1024"},
    )
    finished_at = time.monotonic()

    assert response.status_code == 200, response.text
    stored_url = response.json()["data"]["images"][0]["url"]
    assert stored_url.startswith(f"{stack.public_base_url}{FILES_URL_PART}")

    # The router polled the task; read the provider's grid URL from the task.
    paths = [request["path"] for request in simulator_calls(tag)["requests"]]
    task_ids = {
        m.group(1) for path in paths if (m := MIDJOURNEY_FETCH_PATH.search(path))
    }
    assert len(task_ids) == 1
    task = httpx.get(
        f"{base_url}/mj/task/{task_ids.pop()}/fetch",
        headers={"mj-api-secret": api_key},
        timeout=10,
    ).json()
    assert task["status"] == "SUCCESS"
    provider_url = task["imageUrl"]
    assert provider_url.startswith(stack.simulator_url)
    assert provider_url != stored_url

    time.sleep(max(0.0, finished_at + url_ttl_seconds + 0.5 - time.monotonic()))

    assert httpx.get(provider_url, timeout=10).status_code == 404
    served = httpx.get(stored_url, timeout=10)
    assert served.status_code == 200
    assert served.headers["content-type"] == "image/png"
    # One tile of the simulator's 1024x1024 grid.
    assert png_size(served.content) == (512, 512)


def test_split_during_trial_leaves_provider_unpaused(
    client, admin, new_user, new_provider, simulator_base
):
    # The first 5 calls fail, which opens the circuit (threshold 5).
    flaky = new_provider(
        simulator_base("fail_first=5", tag=new_tag("trial")),
        priority=1,
        maxImagesPerRequest=1,
    )
    new_provider(simulator_base(tag=new_tag("steady")), priority=2)
    user = new_user()

    def generate(n: int) -> dict:
        response = client.post(
            "/api/v1/images/generations",
            headers=user.headers,
            json={"prompt": "a trial run", "n": n, "size": "256x256"},
        )
        assert response.status_code == 200, response.text
        return response.json()["data"]

    def health() -> dict:
        response = client.get(f"/api/v1/providers/{flaky['id']}", headers=admin.headers)
        return response.json()["data"]["health"]

    for _ in range(5):
        generate(1)
    deadline = time.monotonic() + 5
    while health()["circuitState"] != "open":
        assert time.monotonic() < deadline, health()
        time.sleep(0.1)

    # After the cool-down (2 s in the test stack) one part of a split request
    # takes the trial slot; the registry refuses the other parts.
    time.sleep(2.2)
    split = generate(3)
    outcomes = [(a["provider"], a["outcome"]) for a in split["attempts"]]
    assert (flaky["name"], "success") in outcomes
    assert outcomes.count((flaky["name"], "rate_limited")) == 2

    deadline = time.monotonic() + 5
    while health()["circuitState"] != "closed":
        assert time.monotonic() < deadline, health()
        time.sleep(0.1)
    # The refused parts did not pause the provider that just recovered.
    assert health()["pausedUntil"] is None
    assert generate(1)["provider"]["name"] == flaky["name"]

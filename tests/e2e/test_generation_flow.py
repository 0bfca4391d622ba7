"""The end-to-end path: register, key, providers, a generation with fallback,
stored images served by nginx, through the router's API and the OpenAI SDK."""

from __future__ import annotations

import base64
import io
import uuid

import httpx
import openai
import pytest
from PIL import Image


def png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        return image.size


@pytest.fixture
def fallback_setup(new_user, new_api_key, new_provider, simulator_base):
    run = uuid.uuid4().hex[:10]
    failing_tag, healthy_tag = f"fail-{run}", f"ok-{run}"
    failing = new_provider(simulator_base("fail=500", tag=failing_tag), priority=1)
    healthy = new_provider(simulator_base(tag=healthy_tag), priority=2)
    user = new_user()
    key = new_api_key(user)
    return {
        "user": user,
        "key": key,
        "failing": failing,
        "healthy": healthy,
        "failing_tag": failing_tag,
        "healthy_tag": healthy_tag,
    }


def test_generation_falls_back_and_stores_images(
    client, fallback_setup, simulator_calls
):
    setup = fallback_setup
    response = client.post(
        "/api/v1/images/generations",
        headers={"X-API-Key": setup["key"]},
        json={
            "prompt": "a lighthouse at dusk",
            "n": 2,
            "size": "512x512",
            "response_format": "url",
        },
    )
    assert response.status_code == 200, response.text
    generation = response.json()["data"]
    assert generation["status"] == "succeeded"
    assert len(generation["images"]) == 2
    assert generation["provider"]["name"] == setup["healthy"]["name"]
    assert generation["cost"] == "0.04"

    for image in generation["images"]:
        served = httpx.get(image["url"], timeout=10)
        assert served.status_code == 200
        assert served.headers["content-type"] == "image/png"
        assert png_size(served.content) == (512, 512)

    stored = client.get(
        f"/api/v1/images/generations/{generation['id']}", headers=setup["user"].headers
    )
    assert stored.status_code == 200
    attempts = stored.json()["data"]["attempts"]
    assert [(a["provider"], a["outcome"]) for a in attempts] == [
        (setup["failing"]["name"], "error"),
        (setup["healthy"]["name"], "success"),
    ]
    assert attempts[0]["errorType"] == "provider_error"
    assert simulator_calls(setup["failing_tag"])["count"] == 1
    assert simulator_calls(setup["healthy_tag"])["count"] == 1


def test_generation_returns_base64_when_asked(client, fallback_setup):
    setup = fallback_setup
    response = client.post(
        "/api/v1/images/generations",
        headers={"Authorization": f"Bearer {setup['key']}"},
        json={
            "prompt": "a red bicycle",
            "size": "256x256",
            "response_format": "b64_json",
        },
    )
    assert response.status_code == 200, response.text
    images = response.json()["data"]["images"]
    assert len(images) == 1
    assert png_size(base64.b64decode(images[0]["b64Json"])) == (256, 256)


def test_openai_sdk_generates_base64_images(gateway_url, fallback_setup):
    setup = fallback_setup
    sdk = openai.OpenAI(
        base_url=f"{gateway_url}/v1", api_key=setup["key"], max_retries=0
    )
    result = sdk.images.generate(
        prompt="a quiet harbour",
        n=2,
        size="512x512",
        response_format="b64_json",
    )
    assert len(result.data) == 2
    for item in result.data:
        assert item.b64_json is not None
        assert png_size(base64.b64decode(item.b64_json)) == (512, 512)


def test_openai_sdk_returns_stored_urls(gateway_url, fallback_setup):
    setup = fallback_setup
    sdk = openai.OpenAI(
        base_url=f"{gateway_url}/v1", api_key=setup["key"], max_retries=0
    )
    result = sdk.images.generate(prompt="a kite", size="256x256")
    assert len(result.data) == 1
    assert result.data[0].url is not None
    assert result.data[0].url.startswith(f"{gateway_url}/api/v1/images/files/")
    assert png_size(httpx.get(result.data[0].url, timeout=10).content) == (256, 256)


def test_openai_sdk_error_has_openai_shape(gateway_url, fallback_setup):
    setup = fallback_setup
    sdk = openai.OpenAI(
        base_url=f"{gateway_url}/v1", api_key=setup["key"], max_retries=0
    )
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.images.generate(prompt="x", size="999x999")
    error = raised.value.body
    assert isinstance(error, dict)
    assert error["type"] == "validation_error"
    assert error["param"] == "size"


def test_generation_of_another_user_is_not_found(client, fallback_setup, new_user):
    setup = fallback_setup
    response = client.post(
        "/api/v1/images/generations",
        headers={"X-API-Key": setup["key"]},
        json={"prompt": "a fox", "size": "256x256"},
    )
    assert response.status_code == 200, response.text
    generation_id = response.json()["data"]["id"]

    stranger = new_user()
    response = client.get(
        f"/api/v1/images/generations/{generation_id}", headers=stranger.headers
    )
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found"


def test_generation_by_user_token(client, fallback_setup):
    setup = fallback_setup
    response = client.post(
        "/api/v1/images/generations",
        headers=setup["user"].headers,
        json={"prompt": "a tree", "size": "256x256"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"]["status"] == "succeeded"


def test_openai_surface_provider_error_not_retried(
    gateway_url, new_user, new_api_key, new_provider, simulator_base, simulator_calls
):
    tag = f"down-{uuid.uuid4().hex[:8]}"
    new_provider(simulator_base("fail=500", tag=tag))
    key = new_api_key(new_user())
    # The SDK retries 5xx by itself; the router tells it not to, because a
    # retry would only call the failing providers again.
    sdk = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key=key, max_retries=2)
    with pytest.raises(openai.InternalServerError) as raised:
        sdk.images.generate(prompt="a storm", size="256x256")
    assert raised.value.status_code == 502
    assert raised.value.response.headers["x-should-retry"] == "false"
    assert raised.value.body["type"] == "provider_error"
    assert simulator_calls(tag)["count"] == 1

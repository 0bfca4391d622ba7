"""OpenAI Images format: success paths, per-model rules, errors and the official SDK."""

from __future__ import annotations

import base64
import io
import json
import time
from typing import Any

import httpx
import pytest
from PIL import Image

AUTH = {"Authorization": "Bearer sk-test-openai"}


def generate(
    client: httpx.Client,
    body: Any,
    options: str = "",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    prefix = f"/s/{options}" if options else ""
    return client.post(
        f"{prefix}/v1/images/generations",
        json=body,
        headers=AUTH if headers is None else headers,
    )


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def decode_b64(text: str) -> Image.Image:
    return decode(base64.b64decode(text))


def test_dalle2_default_returns_url(client: httpx.Client, tag: str) -> None:
    response = generate(client, {"prompt": "a red fox in snow"}, f"tag={tag}")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"created", "data"}
    assert isinstance(body["created"], int)
    assert len(body["data"]) == 1
    item = body["data"][0]
    assert set(item) == {"url"}
    image_response = httpx.get(item["url"])
    assert image_response.status_code == 200
    assert image_response.headers["content-type"] == "image/png"
    image = decode(image_response.content)
    assert image.format == "PNG"
    assert image.size == (1024, 1024)


def test_dalle2_b64_several_images(client: httpx.Client) -> None:
    body = {
        "prompt": "three cats",
        "n": 3,
        "size": "256x256",
        "response_format": "b64_json",
    }
    response = generate(client, body)
    assert response.status_code == 200
    data = response.json()["data"]
    assert len(data) == 3
    for item in data:
        assert set(item) == {"b64_json"}
        assert decode_b64(item["b64_json"]).size == (256, 256)
    assert len({item["b64_json"] for item in data}) == 3


@pytest.mark.parametrize("size", ["256x256", "512x512", "1024x1024"])
def test_dalle2_sizes(client: httpx.Client, size: str) -> None:
    body = {"prompt": "a boat", "size": size, "response_format": "b64_json"}
    response = generate(client, body)
    assert response.status_code == 200
    width, height = (int(side) for side in size.split("x"))
    assert decode_b64(response.json()["data"][0]["b64_json"]).size == (width, height)


def test_dalle3_revised_prompt_and_size(client: httpx.Client) -> None:
    body = {"model": "dall-e-3", "prompt": "a lighthouse", "size": "1792x1024"}
    response = generate(client, body)
    assert response.status_code == 200
    item = response.json()["data"][0]
    assert set(item) == {"url", "revised_prompt"}
    assert item["revised_prompt"].startswith("a lighthouse")
    assert decode(httpx.get(item["url"]).content).size == (1792, 1024)


def test_gpt_image_returns_b64_and_usage(client: httpx.Client) -> None:
    body = {"model": "gpt-image-1", "prompt": "a tiny robot", "n": 2}
    response = generate(client, body)
    assert response.status_code == 200
    payload = response.json()
    assert len(payload["data"]) == 2
    assert all(set(item) == {"b64_json"} for item in payload["data"])
    assert decode_b64(payload["data"][0]["b64_json"]).size == (1024, 1024)
    assert payload["size"] == "1024x1024"
    assert payload["quality"] == "high"
    assert payload["output_format"] == "png"
    assert payload["background"] == "opaque"
    usage = payload["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["input_tokens_details"]["text_tokens"] == usage["input_tokens"]
    assert usage["output_tokens"] > 0


def test_gpt_parameter_selects_gpt_model(client: httpx.Client) -> None:
    response = generate(client, {"prompt": "a kite", "output_format": "png"})
    assert response.status_code == 200
    payload = response.json()
    assert "usage" in payload
    assert "b64_json" in payload["data"][0]


@pytest.mark.parametrize(
    ("output_format", "pillow_format"),
    [("png", "PNG"), ("jpeg", "JPEG"), ("webp", "WEBP")],
)
def test_gpt_output_formats(
    client: httpx.Client, output_format: str, pillow_format: str
) -> None:
    body = {
        "model": "gpt-image-1-mini",
        "prompt": "a mug",
        "size": "1536x1024",
        "quality": "low",
        "output_format": output_format,
    }
    response = generate(client, body)
    assert response.status_code == 200
    image = decode_b64(response.json()["data"][0]["b64_json"])
    assert image.format == pillow_format
    assert image.size == (1536, 1024)


def test_gpt_transparent_background(client: httpx.Client) -> None:
    body = {"model": "gpt-image-1.5", "prompt": "a logo", "background": "transparent"}
    response = generate(client, body)
    assert response.status_code == 200
    assert response.json()["background"] == "transparent"
    image = decode_b64(response.json()["data"][0]["b64_json"])
    assert image.mode == "RGBA"
    assert image.getpixel((0, 0))[3] == 0


def test_gpt_image_2_custom_size(client: httpx.Client) -> None:
    body = {"model": "gpt-image-2", "prompt": "a valley", "size": "1536x864"}
    response = generate(client, body)
    assert response.status_code == 200
    assert response.json()["size"] == "1536x864"
    assert decode_b64(response.json()["data"][0]["b64_json"]).size == (1536, 864)


LONG = "x" * 1001
RULE_CASES = [
    # (body, status, param, code)
    ({}, 400, "prompt", "missing_required_parameter"),
    ({"prompt": 5}, 400, "prompt", "invalid_type"),
    ({"prompt": ""}, 400, "prompt", "empty_string"),
    ({"prompt": LONG}, 400, "prompt", "string_above_max_length"),
    (
        {"prompt": "y" * 4001, "model": "dall-e-3"},
        400,
        "prompt",
        "string_above_max_length",
    ),
    (
        {"prompt": "z" * 32001, "model": "gpt-image-1"},
        400,
        "prompt",
        "string_above_max_length",
    ),
    ({"prompt": "a", "n": 0}, 400, "n", "integer_below_min_value"),
    ({"prompt": "a", "n": 11}, 400, "n", "integer_above_max_value"),
    ({"prompt": "a", "n": "2"}, 400, "n", "invalid_type"),
    ({"prompt": "a", "n": 2, "model": "dall-e-3"}, 400, "n", "invalid_value"),
    ({"prompt": "a", "size": "1792x1024"}, 400, None, "invalid_size"),
    (
        {"prompt": "a", "size": "256x256", "model": "dall-e-3"},
        400,
        None,
        "invalid_size",
    ),
    (
        {"prompt": "a", "size": "512x512", "model": "gpt-image-1"},
        400,
        None,
        "invalid_size",
    ),
    (
        {"prompt": "a", "size": "1000x1000", "model": "gpt-image-2"},
        400,
        None,
        "invalid_size",
    ),
    (
        {"prompt": "a", "size": "3200x1008", "model": "gpt-image-2"},
        400,
        None,
        "invalid_size",
    ),
    (
        {"prompt": "a", "size": "4096x2304", "model": "gpt-image-2"},
        400,
        None,
        "invalid_size",
    ),
    (
        {"prompt": "a", "size": "1536x864", "model": "gpt-image-1"},
        400,
        None,
        "invalid_size",
    ),
    ({"prompt": "a", "quality": "hd"}, 400, "quality", "invalid_value"),
    (
        {"prompt": "a", "quality": "high", "model": "dall-e-3"},
        400,
        "quality",
        "invalid_value",
    ),
    (
        {"prompt": "a", "quality": "hd", "model": "gpt-image-1"},
        400,
        "quality",
        "invalid_value",
    ),
    ({"prompt": "a", "style": "vivid"}, 400, "style", "unknown_parameter"),
    (
        {"prompt": "a", "style": "weird", "model": "dall-e-3"},
        400,
        "style",
        "invalid_value",
    ),
    (
        {"prompt": "a", "response_format": "url", "model": "gpt-image-1"},
        400,
        "response_format",
        "unknown_parameter",
    ),
    (
        {"prompt": "a", "response_format": "b64_json", "model": "gpt-image-2"},
        400,
        "response_format",
        "unknown_parameter",
    ),
    (
        {"prompt": "a", "response_format": "png"},
        400,
        "response_format",
        "invalid_value",
    ),
    (
        {"prompt": "a", "model": "dall-e-2", "output_format": "png"},
        400,
        "output_format",
        "unknown_parameter",
    ),
    ({"prompt": "a", "output_format": "gif"}, 400, "output_format", "invalid_value"),
    (
        {"prompt": "a", "output_compression": 101},
        400,
        "output_compression",
        "integer_above_max_value",
    ),
    (
        {"prompt": "a", "background": "transparent", "output_format": "jpeg"},
        400,
        "background",
        "invalid_value",
    ),
    (
        {"prompt": "a", "partial_images": 4},
        400,
        "partial_images",
        "integer_above_max_value",
    ),
    ({"prompt": "a", "moderation": "none"}, 400, "moderation", "invalid_value"),
    ({"prompt": "a", "stream": "yes"}, 400, "stream", "invalid_type"),
    ({"prompt": "a", "colour": "red"}, 400, "colour", "unknown_parameter"),
    ({"prompt": "a", "model": "dall-e-9"}, 404, "model", "model_not_found"),
    ([1, 2], 400, None, "invalid_type"),
]


@pytest.mark.parametrize(("body", "status", "param", "code"), RULE_CASES)
def test_per_model_rules(
    client: httpx.Client, body: Any, status: int, param: str | None, code: str
) -> None:
    response = generate(client, body)
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["code"] == code
    assert error["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"prompt": "a" * 1000},
        {"prompt": "a", "model": "dall-e-3", "quality": "hd", "style": "natural"},
        {"prompt": "a", "model": "gpt-image-1", "quality": "auto", "moderation": "low"},
        {"prompt": "a", "size": None, "n": None, "quality": None},
    ],
)
def test_valid_bodies_accepted(client: httpx.Client, body: dict[str, Any]) -> None:
    response = generate(client, body)
    assert response.status_code == 200, response.text


def test_invalid_json_rejected(client: httpx.Client) -> None:
    response = client.post(
        "/v1/images/generations",
        content=b"{not json",
        headers={**AUTH, "content-type": "application/json"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] is None


def test_missing_credential_is_401(client: httpx.Client) -> None:
    response = generate(client, {"prompt": "a"}, headers={})
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] is None


def test_basic_auth_is_not_a_credential(client: httpx.Client) -> None:
    response = generate(client, {"prompt": "a"}, headers={"Authorization": "Basic abc"})
    assert response.status_code == 401


def test_expected_key_enforced(client: httpx.Client, tag: str) -> None:
    options = f"key=sk-right,tag={tag}"
    wrong = generate(client, {"prompt": "a"}, options, {"Authorization": "Bearer sk-x"})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_api_key"
    assert "sk-x" not in wrong.text
    right = generate(
        client, {"prompt": "a"}, options, {"Authorization": "Bearer sk-right"}
    )
    assert right.status_code == 200
    calls = client.get("/__sim/calls", params={"tag": tag}).json()
    matched = [record["credentialMatched"] for record in calls["requests"]]
    assert matched == [False, True]


def test_rate_limit_headers_on_success(client: httpx.Client, tag: str) -> None:
    first = generate(client, {"prompt": "a"}, f"tag={tag}")
    second = generate(client, {"prompt": "a"}, f"tag={tag}")
    assert first.status_code == 200
    limit = int(second.headers["x-ratelimit-limit-requests"])
    remaining_first = int(first.headers["x-ratelimit-remaining-requests"])
    remaining_second = int(second.headers["x-ratelimit-remaining-requests"])
    assert remaining_first == limit - 1
    assert remaining_second == limit - 2
    assert second.headers["x-ratelimit-reset-requests"].endswith("s")
    assert second.headers["x-request-id"].startswith("req_")


def test_content_policy_dalle(client: httpx.Client) -> None:
    response = generate(client, {"prompt": "a"}, "content_policy")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "content_policy_violation"
    assert error["type"] == "invalid_request_error"
    assert error["param"] is None
    assert error["message"].startswith("Your request was rejected")


def test_content_policy_gpt_image(client: httpx.Client) -> None:
    body = {"prompt": "a", "model": "gpt-image-1"}
    response = generate(client, body, "content_policy")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "moderation_blocked"
    assert error["type"] == "image_generation_user_error"


def test_missing_images_returns_fewer(client: httpx.Client) -> None:
    body = {"prompt": "a", "n": 3, "response_format": "b64_json", "size": "256x256"}
    response = generate(client, body, "missing_images")
    assert response.status_code == 200
    assert len(response.json()["data"]) == 2


def test_streaming_events(client: httpx.Client) -> None:
    body = {
        "model": "gpt-image-1",
        "prompt": "a river",
        "stream": True,
        "partial_images": 2,
        "size": "1024x1536",
    }
    response = generate(client, body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = []
    for block in response.text.strip().split("\n\n"):
        event_line, data_line = block.split("\n")
        events.append((event_line.removeprefix("event: "), json.loads(data_line[6:])))
    names = [name for name, _ in events]
    assert names == [
        "image_generation.partial_image",
        "image_generation.partial_image",
        "image_generation.completed",
    ]
    assert [data["partial_image_index"] for _, data in events[:2]] == [0, 1]
    completed = events[-1][1]
    assert completed["type"] == "image_generation.completed"
    assert completed["size"] == "1024x1536"
    assert "usage" in completed
    assert decode_b64(completed["b64_json"]).size == (1024, 1536)


def test_models_endpoint(client: httpx.Client) -> None:
    response = client.get("/v1/models", headers=AUTH)
    assert response.status_code == 200
    ids = [model["id"] for model in response.json()["data"]]
    assert "dall-e-2" in ids
    assert "gpt-image-1" in ids
    assert client.get("/v1/models").status_code == 401


def test_url_expires_after_ttl(client: httpx.Client) -> None:
    response = generate(client, {"prompt": "short lived"}, "url_ttl=0.5")
    assert response.status_code == 200
    url = response.json()["data"][0]["url"]
    assert httpx.get(url).status_code == 200
    # The TTL runs on the server's clock, so the test has to wait it out.
    time.sleep(0.7)
    assert httpx.get(url).status_code == 404


def test_official_sdk_round_trip(simulator_url: str, tag: str) -> None:
    openai = pytest.importorskip("openai")
    sdk = openai.OpenAI(
        api_key="sk-sdk", base_url=f"{simulator_url}/s/tag={tag}/v1", max_retries=0
    )
    with sdk:
        result = sdk.images.generate(
            model="dall-e-2",
            prompt="an owl",
            size="256x256",
            response_format="b64_json",
        )
    assert result.data is not None
    assert decode_b64(result.data[0].b64_json or "").size == (256, 256)


def test_official_sdk_error_classes(simulator_url: str) -> None:
    openai = pytest.importorskip("openai")
    cases = [
        ("content_policy", openai.BadRequestError),
        ("rate_limit=1", openai.RateLimitError),
        ("fail=503", openai.InternalServerError),
        ("key=other", openai.AuthenticationError),
    ]
    for options, error_class in cases:
        sdk = openai.OpenAI(
            api_key="sk-sdk", base_url=f"{simulator_url}/s/{options}/v1", max_retries=0
        )
        with sdk, pytest.raises(error_class):
            sdk.images.generate(model="dall-e-2", prompt="an owl", size="256x256")


def test_official_sdk_retries_fail_first(simulator_url: str, tag: str) -> None:
    openai = pytest.importorskip("openai")
    sdk = openai.OpenAI(
        api_key="sk-sdk",
        base_url=f"{simulator_url}/s/fail_first=1,tag={tag}/v1",
        max_retries=1,
    )
    with sdk:
        result = sdk.images.generate(model="dall-e-2", prompt="an owl", size="256x256")
    assert result.data is not None
    assert result.data[0].url is not None
    calls = httpx.get(f"{simulator_url}/__sim/calls", params={"tag": tag}).json()
    assert calls["count"] == 2
    assert [record["status"] for record in calls["requests"]] == [500, 200]

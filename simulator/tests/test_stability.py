"""Stability v2beta format: multipart generate endpoints, accept modes and errors."""

from __future__ import annotations

import base64
import io
import re
from typing import Any

import httpx
import pytest
from PIL import Image

AUTH = {"authorization": "Bearer sk-test-stability"}
ASPECT_RATIO_SIZES = {
    "21:9": (1536, 640),
    "16:9": (1344, 768),
    "3:2": (1216, 832),
    "5:4": (1152, 896),
    "1:1": (1024, 1024),
    "4:5": (896, 1152),
    "2:3": (832, 1216),
    "9:16": (768, 1344),
    "9:21": (640, 1536),
}


def generate(
    client: httpx.Client,
    fields: dict[str, str],
    endpoint: str = "core",
    options: str = "",
    accept: str | None = "image/*",
    headers: dict[str, str] | None = None,
    files: dict[str, Any] | None = None,
) -> httpx.Response:
    prefix = f"/s/{options}" if options else ""
    request_headers = dict(AUTH if headers is None else headers)
    if accept is not None:
        request_headers["accept"] = accept
    # Stability's own sample forces multipart with a dummy file part.
    return client.post(
        f"{prefix}/v2beta/stable-image/generate/{endpoint}",
        data=fields,
        files=files or {"none": ("", b"")},
        headers=request_headers,
    )


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def png_bytes(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def assert_error(response: httpx.Response, status: int, name: str) -> list[str]:
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"id", "name", "errors"}
    assert re.fullmatch(r"[0-9a-f]{32}", body["id"])
    assert body["name"] == name
    assert body["errors"]
    return body["errors"]


@pytest.mark.parametrize("endpoint", ["ultra", "core", "sd3"])
def test_image_bytes_with_headers(client: httpx.Client, endpoint: str) -> None:
    response = generate(client, {"prompt": "a castle", "seed": "42"}, endpoint)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.headers["finish-reason"] == "SUCCESS"
    assert response.headers["seed"] == "42"
    assert response.headers["x-request-id"]
    image = decode(response.content)
    assert image.format == "PNG"
    assert image.size == (1024, 1024)


def test_json_mode(client: httpx.Client) -> None:
    response = generate(
        client,
        {"prompt": "a castle", "output_format": "jpeg"},
        accept="application/json",
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; type=image/jpeg"
    assert "finish-reason" not in response.headers
    assert "seed" not in response.headers
    body = response.json()
    assert set(body) == {"image", "finish_reason", "seed"}
    assert body["finish_reason"] == "SUCCESS"
    assert isinstance(body["seed"], int)
    assert 1 <= body["seed"] <= 4_294_967_294
    image = decode(base64.b64decode(body["image"]))
    assert image.format == "JPEG"


def test_accept_any_rejected(client: httpx.Client) -> None:
    # httpx sends `accept: */*` by default, but the spec allows only two values.
    response = generate(client, {"prompt": "a castle"}, accept=None)
    assert response.request.headers["accept"] == "*/*"
    errors = assert_error(response, 400, "bad_request")
    assert errors == ["accept: must be image/* or application/json"]


def test_missing_accept_means_image(client: httpx.Client) -> None:
    request = client.build_request(
        "POST",
        "/v2beta/stable-image/generate/core",
        data={"prompt": "a castle"},
        files={"none": ("", b"")},
        headers=AUTH,
    )
    del request.headers["accept"]
    response = client.send(request)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"


@pytest.mark.parametrize(("ratio", "size"), sorted(ASPECT_RATIO_SIZES.items()))
def test_aspect_ratio_sizes(
    client: httpx.Client, ratio: str, size: tuple[int, int]
) -> None:
    response = generate(client, {"prompt": "a field", "aspect_ratio": ratio}, "ultra")
    assert response.status_code == 200
    assert decode(response.content).size == size


@pytest.mark.parametrize(
    ("endpoint", "output_format", "media_type"),
    [
        ("ultra", "webp", "image/webp"),
        ("ultra", "jpeg", "image/jpeg"),
        ("core", "webp", "image/webp"),
        ("sd3", "jpeg", "image/jpeg"),
    ],
)
def test_output_formats(
    client: httpx.Client, endpoint: str, output_format: str, media_type: str
) -> None:
    fields = {"prompt": "a cat", "output_format": output_format}
    response = generate(client, fields, endpoint)
    assert response.status_code == 200
    assert response.headers["content-type"] == media_type
    assert decode(response.content).format == output_format.upper()


def test_sd3_rejects_webp(client: httpx.Client) -> None:
    response = generate(client, {"prompt": "a", "output_format": "webp"}, "sd3")
    errors = assert_error(response, 400, "bad_request")
    assert errors == ["output_format: must be one of png, jpeg"]


def test_json_body_rejected(client: httpx.Client) -> None:
    response = client.post(
        "/v2beta/stable-image/generate/core",
        json={"prompt": "a cat"},
        headers={**AUTH, "accept": "image/*"},
    )
    errors = assert_error(response, 400, "bad_request")
    assert errors == ["content-type: must be multipart/form-data"]


def test_missing_prompt(client: httpx.Client) -> None:
    response = generate(client, {"aspect_ratio": "1:1"})
    assert assert_error(response, 400, "bad_request") == ["prompt: is required"]


@pytest.mark.parametrize(
    ("endpoint", "fields", "expected"),
    [
        ("core", {"prompt": "a", "aspect_ratio": "7:3"}, "aspect_ratio: must be one"),
        ("core", {"prompt": "a", "seed": "-1"}, "seed: must be a number"),
        ("core", {"prompt": "a", "seed": "4294967295"}, "seed: must be a number"),
        ("core", {"prompt": "a", "seed": "1.5"}, "seed: must be an integer"),
        ("core", {"prompt": "a", "style_preset": "oil"}, "style_preset: must be one"),
        ("core", {"prompt": "p" * 10001}, "prompt: must be at most 10000"),
        ("core", {"prompt": "a", "negative_prompt": "n" * 10001}, "negative_prompt:"),
        ("ultra", {"prompt": "a", "output_format": "gif"}, "output_format: must be"),
        ("sd3", {"prompt": "a", "model": "sd4"}, "model: must be one"),
        ("sd3", {"prompt": "a", "cfg_scale": "11"}, "cfg_scale: must be a number"),
        ("sd3", {"prompt": "a", "mode": "image-to-image"}, "image: is required"),
        ("sd3", {"prompt": "a", "mode": "sketch"}, "mode: must be one"),
    ],
)
def test_field_rules(
    client: httpx.Client, endpoint: str, fields: dict[str, str], expected: str
) -> None:
    response = generate(client, fields, endpoint)
    errors = assert_error(response, 400, "bad_request")
    assert any(error.startswith(expected) for error in errors), errors


def test_several_errors_reported(client: httpx.Client) -> None:
    response = generate(client, {"aspect_ratio": "7:3", "output_format": "gif"})
    errors = assert_error(response, 400, "bad_request")
    assert len(errors) == 3


def test_accept_value_rejected(client: httpx.Client) -> None:
    response = generate(client, {"prompt": "a"}, accept="image/png")
    errors = assert_error(response, 400, "bad_request")
    assert errors == ["accept: must be image/* or application/json"]


def test_unknown_endpoint_is_404(client: httpx.Client) -> None:
    response = generate(client, {"prompt": "a"}, "mega")
    assert_error(response, 404, "not_found")


def test_image_to_image_sizes_output(client: httpx.Client) -> None:
    files = {"image": ("in.png", png_bytes(300, 150), "image/png")}
    fields = {"prompt": "a", "mode": "image-to-image", "strength": "0.5"}
    response = generate(client, fields, "sd3", files=files)
    assert response.status_code == 200, response.text
    # 300x150 scaled to about one megapixel in steps of 64 pixels.
    assert decode(response.content).size == (1472, 704)


def test_ultra_image_requires_strength(client: httpx.Client) -> None:
    files = {"image": ("in.png", png_bytes(128, 128), "image/png")}
    response = generate(client, {"prompt": "a"}, "ultra", files=files)
    errors = assert_error(response, 400, "bad_request")
    assert errors == ["strength: is required when an image is provided"]


def test_image_too_small_rejected(client: httpx.Client) -> None:
    files = {"image": ("in.png", png_bytes(32, 128), "image/png")}
    fields = {"prompt": "a", "strength": "0.3"}
    response = generate(client, fields, "ultra", files=files)
    errors = assert_error(response, 400, "bad_request")
    assert errors[0].startswith("image: width and height must be between 64")


def test_invalid_image_rejected(client: httpx.Client) -> None:
    files = {"image": ("in.png", b"not an image", "image/png")}
    fields = {"prompt": "a", "strength": "0.3"}
    response = generate(client, fields, "ultra", files=files)
    assert assert_error(response, 400, "bad_request") == ["image: is not a valid image"]


def test_body_over_10_mib_is_413(client: httpx.Client) -> None:
    files = {"image": ("big.bin", b"\0" * (10 * 1024 * 1024 + 1), "image/png")}
    response = generate(client, {"prompt": "a"}, "ultra", files=files)
    assert_error(response, 413, "payload_too_large")


def test_missing_credential_is_401(client: httpx.Client) -> None:
    response = generate(client, {"prompt": "a"}, headers={})
    assert_error(response, 401, "unauthorized")


def test_expected_key_enforced(client: httpx.Client) -> None:
    options = "key=sk-stab"
    wrong = generate(client, {"prompt": "a"}, options=options)
    assert_error(wrong, 401, "unauthorized")
    right = generate(
        client,
        {"prompt": "a"},
        options=options,
        headers={"authorization": "Bearer sk-stab"},
    )
    assert right.status_code == 200


def test_content_policy_is_403(client: httpx.Client) -> None:
    response = generate(client, {"prompt": "a"}, options="content_policy")
    assert_error(response, 403, "content_moderation")


def test_filtered_image_mode(client: httpx.Client) -> None:
    response = generate(client, {"prompt": "a"}, options="filtered")
    assert response.status_code == 200
    assert response.headers["finish-reason"] == "CONTENT_FILTERED"
    assert decode(response.content).size == (1024, 1024)


def test_filtered_json_mode(client: httpx.Client) -> None:
    response = generate(
        client, {"prompt": "a"}, options="filtered", accept="application/json"
    )
    assert response.status_code == 200
    assert response.json()["finish_reason"] == "CONTENT_FILTERED"
    assert "image" in response.json()


def test_missing_images(client: httpx.Client) -> None:
    json_mode = generate(
        client, {"prompt": "a"}, options="missing_images", accept="application/json"
    )
    assert json_mode.status_code == 200
    assert "image" not in json_mode.json()
    assert json_mode.json()["finish_reason"] == "SUCCESS"
    image_mode = generate(client, {"prompt": "a"}, options="missing_images")
    assert image_mode.status_code == 200
    assert image_mode.headers["content-type"] == "image/png"
    assert image_mode.content == b""


def test_rate_limit(client: httpx.Client) -> None:
    response = generate(client, {"prompt": "a"}, options="rate_limit=60")
    assert_error(response, 429, "rate_limit_exceeded")
    assert response.headers["retry-after"] == "60"


@pytest.mark.parametrize(
    ("status", "name"),
    [(400, "bad_request"), (500, "internal_error"), (503, "service_unavailable")],
)
def test_fail_status_bodies(client: httpx.Client, status: int, name: str) -> None:
    response = generate(client, {"prompt": "a"}, options=f"fail={status}")
    assert_error(response, status, name)

"""The Stability adapter against the simulator: multipart bodies, both response
forms, aspect-ratio mapping and resizing, every fault, and a generation through
the running router."""

from __future__ import annotations

import io
import uuid
from decimal import Decimal

import httpx
import pytest
from PIL import Image

from generation_service.adapters import max_images_per_call
from generation_service.adapters.base import ProviderCall, ProviderFailure
from generation_service.adapters.stability import (
    ACCEPT_JSON,
    StabilityAdapter,
    failure_from_response,
    nearest_aspect_ratio,
)

IMAGE_FORM = StabilityAdapter()
JSON_FORM = StabilityAdapter(accept=ACCEPT_JSON)


def new_tag(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def image_size(data: bytes | None) -> tuple[int, int]:
    assert data is not None
    with Image.open(io.BytesIO(data)) as image:
        return image.size


@pytest.mark.parametrize(
    ("size", "ratio"),
    [
        ("1024x1024", "1:1"),
        ("256x256", "1:1"),
        ("1792x1024", "16:9"),
        ("1024x1792", "9:16"),
        ("1536x1024", "3:2"),
        ("1024x1536", "2:3"),
        ("1280x1024", "5:4"),
        ("1024x1280", "4:5"),
        ("2560x1080", "21:9"),
        ("640x1536", "9:21"),
        ("4000x1000", "21:9"),
        ("1100x1000", "1:1"),
        ("1200x1000", "5:4"),
    ],
)
def test_nearest_aspect_ratio(size, ratio):
    width, height = map(int, size.split("x"))
    assert nearest_aspect_ratio(width, height) == ratio


def test_max_images_per_call_is_one(sim_target):
    target = sim_target("stability", tag=new_tag("st-max"), max_images=10)
    assert max_images_per_call(target, None) == 1


# -- wire format -----------------------------------------------------------------------


def test_image_form_success(sim_target, call_adapter, sim_requests):
    tag = new_tag("st-image")
    target = sim_target("stability", tag=tag)
    result, _ = call_adapter(
        IMAGE_FORM, target, ProviderCall(prompt="a fox", n=1, size="1024x1024")
    )

    assert len(result.images) == 1
    assert image_size(result.images[0].data) == (1024, 1024)
    assert result.notes == {"aspectRatio": "1:1", "endpoint": "core"}
    request = sim_requests(tag)[-1]
    assert request["path"].endswith("/v2beta/stable-image/generate/core")
    assert request["headers"]["accept"] == "image/*"
    assert request["headers"]["content-type"].startswith("multipart/form-data")
    assert request["body"]["prompt"] == "a fox"
    assert request["body"]["aspect_ratio"] == "1:1"
    assert request["body"]["output_format"] == "png"
    assert request["status"] == 200


@pytest.mark.parametrize(
    ("size", "ratio", "provider_size"),
    [
        ("1792x1024", "16:9", "1344x768"),
        ("1280x1024", "5:4", "1152x896"),
        ("256x256", "1:1", "1024x1024"),
        ("832x1216", "2:3", None),
    ],
)
def test_output_resized_to_requested_size(
    sim_target, call_adapter, size, ratio, provider_size
):
    target = sim_target("stability", tag=new_tag("st-resize"))
    result, _ = call_adapter(
        IMAGE_FORM, target, ProviderCall(prompt="a fox", n=1, size=size)
    )
    width, height = map(int, size.split("x"))
    assert image_size(result.images[0].data) == (width, height)
    assert result.notes["aspectRatio"] == ratio
    assert result.notes.get("resizedFrom") == provider_size


def test_json_form_success(sim_target, call_adapter, sim_requests):
    tag = new_tag("st-json")
    target = sim_target("stability", tag=tag)
    result, _ = call_adapter(
        JSON_FORM, target, ProviderCall(prompt="a fox", n=1, size="512x512")
    )
    assert image_size(result.images[0].data) == (512, 512)
    assert result.notes["resizedFrom"] == "1024x1024"
    assert sim_requests(tag)[-1]["headers"]["accept"] == "application/json"


@pytest.mark.parametrize(
    ("request_model", "provider_models", "path", "model_field"),
    [
        (None, (), "core", None),
        (None, ("ultra",), "ultra", None),
        ("ultra", ("core", "ultra"), "ultra", None),
        ("stable-image-core", (), "core", None),
        ("sd3", (), "sd3", None),
        ("sd3.5-large", (), "sd3", "sd3.5-large"),
        (None, ("sd3.5-medium",), "sd3", "sd3.5-medium"),
    ],
)
def test_models_choose_endpoint(
    sim_target,
    call_adapter,
    sim_requests,
    request_model,
    provider_models,
    path,
    model_field,
):
    tag = new_tag("st-endpoint")
    target = sim_target("stability", tag=tag, models=provider_models)
    call = ProviderCall(prompt="a fox", n=1, size="1024x1024", model=request_model)
    result, _ = call_adapter(IMAGE_FORM, target, call)
    assert result.notes["endpoint"] == path
    request = sim_requests(tag)[-1]
    assert request["path"].endswith(f"/generate/{path}")
    assert request["body"].get("model") == model_field


def test_unknown_model_moves_on(sim_target, call_adapter, simulator_calls):
    tag = new_tag("st-model")
    target = sim_target("stability", tag=tag)
    call = ProviderCall(prompt="a fox", n=1, size="1024x1024", model="dall-e-3")
    with pytest.raises(ProviderFailure) as raised:
        call_adapter(IMAGE_FORM, target, call)
    assert raised.value.outcome == "error"
    assert simulator_calls(tag)["count"] == 0


def test_non_multipart_body_rejected(sim_target):
    # The simulator, like Stability, rejects a JSON body; the adapter maps that
    # rejection to a provider error, since it is the router's fault.
    target = sim_target("stability", tag=new_tag("st-json-body"))
    response = httpx.post(
        f"{target.base_url}/v2beta/stable-image/generate/core",
        json={"prompt": "a fox"},
        headers={"Authorization": "Bearer sk-test", "Accept": "image/*"},
    )
    assert response.status_code == 400
    assert response.json()["errors"] == ["content-type: must be multipart/form-data"]
    failure = failure_from_response(response)
    assert failure.outcome == "error"
    assert failure.status_code == 400


def test_default_accept_rejected(sim_target):
    target = sim_target("stability", tag=new_tag("st-accept"))
    response = httpx.post(
        f"{target.base_url}/v2beta/stable-image/generate/core",
        files={"prompt": (None, "a fox")},
        headers={"Authorization": "Bearer sk-test"},
    )
    assert response.status_code == 400
    assert failure_from_response(response).outcome == "error"


def test_expected_key_is_sent(sim_target, call_adapter, sim_requests):
    tag = new_tag("st-key")
    target = sim_target("stability", "key=sk-right", tag=tag, api_key="sk-right")
    call_adapter(IMAGE_FORM, target, ProviderCall(prompt="a", n=1, size="1024x1024"))
    assert sim_requests(tag)[-1]["credentialMatched"] is True


# -- faults ---------------------------------------------------------------------------

FAULTS = [
    # (simulator options, outcome, HTTP status of the provider's response)
    (("fail=500",), "error", 500),
    (("fail=503",), "error", 503),
    (("fail=404",), "error", 404),
    (("key=sk-other",), "error", 401),
    (("malformed",), "error", 200),
    (("empty",), "error", 200),
    (("html",), "error", 200),
    (("missing_images",), "error", 200),
    (("fail=400",), "invalid_request", 400),
    (("fail=413",), "invalid_request", 413),
    (("fail=422",), "invalid_request", 422),
    (("content_policy",), "content_policy", 403),
    (("fail=403",), "content_policy", 403),
    (("filtered",), "content_policy", 200),
]


@pytest.mark.parametrize("adapter", [IMAGE_FORM, JSON_FORM], ids=["image", "json"])
@pytest.mark.parametrize(("options", "outcome", "status"), FAULTS)
def test_fault_maps_to_outcome(
    sim_target, call_adapter, adapter, options, outcome, status
):
    target = sim_target("stability", *options, tag=new_tag("st-fault"))
    call = ProviderCall(prompt="a fox", n=1, size="1024x1024")
    with pytest.raises(ProviderFailure) as raised:
        call_adapter(adapter, target, call)
    assert raised.value.outcome == outcome
    assert raised.value.status_code == status


def test_rate_limit_carries_retry_after(sim_target, call_adapter):
    target = sim_target("stability", "rate_limit=9", tag=new_tag("st-429"))
    call = ProviderCall(prompt="a fox", n=1, size="1024x1024")
    with pytest.raises(ProviderFailure) as raised:
        call_adapter(IMAGE_FORM, target, call)
    assert raised.value.outcome == "rate_limited"
    assert raised.value.retry_after_seconds == 9


def test_fail_first_then_success(sim_target, call_adapter, simulator_calls):
    tag = new_tag("st-first")
    target = sim_target("stability", "fail_first=1", tag=tag)
    call = ProviderCall(prompt="a fox", n=1, size="1024x1024")
    with pytest.raises(ProviderFailure) as raised:
        call_adapter(IMAGE_FORM, target, call)
    assert raised.value.outcome == "error"
    result, _ = call_adapter(IMAGE_FORM, target, call)
    assert len(result.images) == 1
    assert simulator_calls(tag)["count"] == 2


@pytest.mark.parametrize("options", [("hang",), ("delay=3000",)])
def test_slow_provider_times_out(sim_target, call_adapter, options):
    target = sim_target("stability", *options, tag=new_tag("st-slow"), timeout_ms=1000)
    call = ProviderCall(prompt="a fox", n=1, size="1024x1024")
    with pytest.raises(ProviderFailure) as raised:
        call_adapter(IMAGE_FORM, target, call)
    assert raised.value.outcome == "timeout"


# -- through the router ----------------------------------------------------------------


def test_router_stability_generation(
    client, new_user, new_api_key, new_provider, simulator_base, simulator_calls
):
    tag = new_tag("e2e-stability")
    provider = new_provider(
        simulator_base(tag=tag, api=""),
        type="stability",
        supportedSizes=["1024x1024", "1792x1024"],
        maxImagesPerRequest=4,
        costPerImage="0.035",
    )
    key = new_api_key(new_user())
    response = client.post(
        "/api/v1/images/generations",
        headers={"X-API-Key": key},
        json={"prompt": "a fox in snow", "n": 2, "size": "1792x1024"},
    )
    assert response.status_code == 200, response.text
    generation = response.json()["data"]
    assert generation["status"] == "succeeded"
    assert generation["provider"]["name"] == provider["name"]
    assert Decimal(generation["cost"]) == Decimal("0.07")
    assert len(generation["images"]) == 2
    for image in generation["images"]:
        served = httpx.get(image["url"], timeout=10)
        assert served.status_code == 200
        assert image_size(served.content) == (1792, 1024)
    # One image per Stability call.
    assert simulator_calls(tag)["count"] == 2
    # The size mapping is recorded on each attempt.
    notes = [attempt["notes"] for attempt in generation["attempts"]]
    assert (
        notes
        == [{"aspectRatio": "16:9", "endpoint": "core", "resizedFrom": "1344x768"}] * 2
    )

"""The OpenAI adapter against the simulator: per-model rules, wire format, every
fault the simulator injects, and fallback through the running router."""

from __future__ import annotations

import io
import socket
import uuid
from dataclasses import replace

import pytest
from PIL import Image

from generation_service.adapters import check_model_rules, max_images_per_call
from generation_service.adapters.base import ProviderCall, ProviderFailure
from generation_service.adapters.openai import OpenAIAdapter
from router_common.errors import ValidationError

OPENAI = OpenAIAdapter(model_rules=True)
COMPATIBLE = OpenAIAdapter(model_rules=False)


def new_tag(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def image_size(data: bytes | None) -> tuple[int, int]:
    assert data is not None
    with Image.open(io.BytesIO(data)) as image:
        return image.size


# -- per-model rules, checked before any call --------------------------------------

RULE_VIOLATIONS = [
    # (model, changes to a valid request, field named in the error)
    ("dall-e-3", {"size": "256x256"}, "size"),
    ("dall-e-2", {"size": "1792x1024"}, "size"),
    ("gpt-image-1", {"size": "512x512"}, "size"),
    ("gpt-image-2", {"size": "1000x1000"}, "size"),
    ("gpt-image-2", {"size": "3840x320"}, "size"),
    ("dall-e-2", {"quality": "hd"}, "quality"),
    ("dall-e-3", {"quality": "high"}, "quality"),
    ("gpt-image-1", {"quality": "standard"}, "quality"),
    ("dall-e-2", {"style": "vivid"}, "style"),
    ("gpt-image-1", {"style": "natural"}, "style"),
    ("dall-e-2", {"prompt": "x" * 1001}, "prompt"),
    ("dall-e-3", {"prompt": "x" * 4001}, "prompt"),
    ("gpt-image-1", {"prompt": "x" * 32001}, "prompt"),
]
VALID = {
    "dall-e-2": {"prompt": "a fox", "size": "256x256"},
    "dall-e-3": {"prompt": "a fox", "size": "1024x1024"},
    "gpt-image-1": {"prompt": "a fox", "size": "1024x1024"},
    "gpt-image-2": {"prompt": "a fox", "size": "1024x1024"},
}


@pytest.mark.parametrize(("model", "changes", "field"), RULE_VIOLATIONS)
def test_model_rules_name_the_field(model, changes, field):
    fields = {**VALID[model], **changes}
    with pytest.raises(ValidationError) as raised:
        check_model_rules(model=model, **fields)
    error = raised.value
    assert error.status_code == 400
    assert error.error_type == "validation_error"
    assert error.param == field
    assert error.details["fields"][0]["field"] == field


@pytest.mark.parametrize(
    ("model", "fields"),
    [
        ("dall-e-2", {"prompt": "x" * 1000, "size": "512x512", "quality": "standard"}),
        ("dall-e-3", {"prompt": "a", "size": "1792x1024", "style": "natural"}),
        ("dall-e-3", {"prompt": "a", "size": "1024x1792", "quality": "hd"}),
        ("gpt-image-1", {"prompt": "a", "size": "1536x1024", "quality": "low"}),
        ("gpt-image-1.5", {"prompt": "a", "size": "1024x1536", "quality": "auto"}),
        ("gpt-image-2", {"prompt": "a", "size": "1600x896"}),
        ("gpt-image-2", {"prompt": "a", "size": "3840x2160"}),
        ("some-other-model", {"prompt": "x" * 5000, "size": "640x480"}),
        (None, {"prompt": "x" * 5000, "size": "640x480", "style": "vivid"}),
    ],
)
def test_model_rules_accept_valid(model, fields):
    check_model_rules(model=model, **fields)


def test_model_rules_checked_before_call(sim_target, call_adapter, simulator_calls):
    tag = new_tag("oa-rules")
    target = sim_target("openai", tag=tag)
    call = ProviderCall(prompt="a fox", n=1, size="256x256", model="dall-e-3")
    with pytest.raises(ValidationError) as raised:
        call_adapter(OPENAI, target, call)
    assert raised.value.param == "size"
    assert simulator_calls(tag)["count"] == 0


def test_default_model_rules_apply_to_openai(sim_target, call_adapter):
    # Without a model OpenAI serves dall-e-2, which has no 1792x1024.
    target = sim_target("openai", tag=new_tag("oa-default"))
    call = ProviderCall(prompt="a fox", n=1, size="1792x1024")
    with pytest.raises(ValidationError) as raised:
        call_adapter(OPENAI, target, call)
    assert raised.value.param == "size"


def test_compatible_skips_model_rules(sim_target, call_adapter, simulator_calls):
    # The simulator applies OpenAI's rules itself, so its 400 shows that the
    # request was sent and that a provider's own rejection is the caller's error.
    tag = new_tag("oa-compat")
    target = sim_target("openai_compatible", tag=tag)
    call = ProviderCall(prompt="a fox", n=1, size="256x256", model="dall-e-3")
    with pytest.raises(ProviderFailure) as raised:
        call_adapter(COMPATIBLE, target, call)
    assert raised.value.outcome == "invalid_request"
    assert raised.value.code == "invalid_size"
    assert simulator_calls(tag)["count"] == 1


def test_max_images_per_call(sim_target):
    tag = new_tag("oa-max")
    openai = sim_target("openai", tag=tag, max_images=10)
    compatible = sim_target("openai_compatible", tag=tag, max_images=10)
    small = sim_target("openai", tag=tag, max_images=3)
    assert max_images_per_call(openai, "dall-e-3") == 1
    assert max_images_per_call(openai, "dall-e-2") == 10
    assert max_images_per_call(openai, None) == 10
    assert max_images_per_call(openai, "gpt-image-1") == 10
    assert max_images_per_call(small, "gpt-image-1") == 3
    assert max_images_per_call(compatible, "dall-e-3") == 10


# -- wire format -----------------------------------------------------------------------


def test_dall_e_asks_for_base64(sim_target, call_adapter, sim_requests):
    tag = new_tag("oa-dalle")
    target = sim_target("openai", tag=tag)
    call = ProviderCall(prompt="a red fox", n=2, size="256x256", model="dall-e-2")
    result, _ = call_adapter(OPENAI, target, call)

    assert len(result.images) == 2
    for image in result.images:
        assert image.data is not None
        assert image_size(image.data) == (256, 256)
    body = sim_requests(tag)[-1]["body"]
    assert body["response_format"] == "b64_json"
    assert body["n"] == 2


def test_gpt_image_omits_response_format(sim_target, call_adapter, sim_requests):
    # The simulator's GPT responses carry extra fields (usage, background,
    # output_format, ...) that the adapter must ignore.
    tag = new_tag("oa-gpt")
    target = sim_target("openai", tag=tag)
    call = ProviderCall(
        prompt="a red fox", n=1, size="1024x1536", model="gpt-image-1", quality="low"
    )
    result, _ = call_adapter(OPENAI, target, call)

    assert len(result.images) == 1
    assert image_size(result.images[0].data) == (1024, 1536)
    body = sim_requests(tag)[-1]["body"]
    assert "response_format" not in body
    assert body["model"] == "gpt-image-1"
    assert body["quality"] == "low"


def test_dall_e_3_keeps_revised_prompt(sim_target, call_adapter):
    target = sim_target("openai", tag=new_tag("oa-revised"))
    call = ProviderCall(prompt="a red fox", n=1, size="1024x1024", model="dall-e-3")
    result, _ = call_adapter(OPENAI, target, call)
    assert result.images[0].revised_prompt


def test_expected_key_is_sent(sim_target, call_adapter, sim_requests):
    tag = new_tag("oa-key")
    target = sim_target("openai", "key=sk-right", tag=tag, api_key="sk-right")
    call = ProviderCall(prompt="a fox", n=1, size="256x256")
    result, _ = call_adapter(OPENAI, target, call)
    assert len(result.images) == 1
    assert sim_requests(tag)[-1]["credentialMatched"] is True


# -- faults ---------------------------------------------------------------------------

FAULTS = [
    # (simulator options, outcome, HTTP status of the provider's response)
    (("fail=500",), "error", 500),
    (("fail=503",), "error", 503),
    (("fail=401",), "error", 401),
    (("key=sk-other",), "error", 401),
    (("malformed",), "error", 200),
    (("empty",), "error", 200),
    (("html",), "error", 200),
    (("missing_images",), "error", 200),
    (("fail=400",), "invalid_request", 400),
]


@pytest.mark.parametrize(("options", "outcome", "status"), FAULTS)
def test_fault_maps_to_outcome(sim_target, call_adapter, options, outcome, status):
    target = sim_target("openai", *options, tag=new_tag("oa-fault"))
    call = ProviderCall(prompt="a fox", n=2, size="256x256")
    with pytest.raises(ProviderFailure) as raised:
        call_adapter(OPENAI, target, call)
    assert raised.value.outcome == outcome
    assert raised.value.status_code == status


def test_rate_limit_carries_retry_after(sim_target, call_adapter):
    target = sim_target("openai", "rate_limit=7", tag=new_tag("oa-429"))
    call = ProviderCall(prompt="a fox", n=1, size="256x256")
    with pytest.raises(ProviderFailure) as raised:
        call_adapter(OPENAI, target, call)
    assert raised.value.outcome == "rate_limited"
    assert raised.value.status_code == 429
    assert raised.value.retry_after_seconds == 7
    assert raised.value.retryable


def test_fail_first_then_success(sim_target, call_adapter, simulator_calls):
    tag = new_tag("oa-first")
    target = sim_target("openai", "fail_first=1", tag=tag)
    call = ProviderCall(prompt="a fox", n=1, size="256x256")
    with pytest.raises(ProviderFailure) as raised:
        call_adapter(OPENAI, target, call)
    assert raised.value.outcome == "error"
    result, _ = call_adapter(OPENAI, target, call)
    assert len(result.images) == 1
    assert simulator_calls(tag)["count"] == 2


@pytest.mark.parametrize("options", [("hang",), ("delay=3000",)])
def test_slow_provider_times_out(sim_target, call_adapter, options):
    target = sim_target("openai", *options, tag=new_tag("oa-slow"), timeout_ms=1000)
    call = ProviderCall(prompt="a fox", n=1, size="256x256")
    with pytest.raises(ProviderFailure) as raised:
        call_adapter(OPENAI, target, call)
    assert raised.value.outcome == "timeout"


@pytest.mark.parametrize(
    ("model", "size", "code"),
    [
        ("dall-e-2", "256x256", "content_policy_violation"),
        ("gpt-image-1", "1024x1024", "moderation_blocked"),
    ],
)
def test_content_policy_refusal(sim_target, call_adapter, model, size, code):
    target = sim_target("openai", "content_policy", tag=new_tag("oa-policy"))
    call = ProviderCall(prompt="a fox", n=1, size=size, model=model)
    with pytest.raises(ProviderFailure) as raised:
        call_adapter(OPENAI, target, call)
    assert raised.value.outcome == "content_policy"
    assert raised.value.code == code
    assert not raised.value.retryable


# -- through the router ----------------------------------------------------------------


@pytest.fixture
def caller(new_user, new_api_key):
    return {"X-API-Key": new_api_key(new_user())}


def test_router_dall_e_3_splits_calls(
    client, caller, new_provider, simulator_base, simulator_calls
):
    # dall-e-3 makes one image per call, so n=3 takes three calls.
    tag = new_tag("e2e-dalle3")
    new_provider(
        simulator_base(tag=tag),
        supportedSizes=["1024x1024"],
        models=["dall-e-3"],
        maxImagesPerRequest=10,
    )
    response = client.post(
        "/api/v1/images/generations",
        headers=caller,
        json={"prompt": "a fox", "n": 3, "size": "1024x1024", "model": "dall-e-3"},
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["data"]["images"]) == 3
    assert simulator_calls(tag)["count"] == 3


def test_router_rejects_rule_violation(
    client, caller, new_provider, simulator_base, simulator_calls
):
    tag = new_tag("e2e-rules")
    new_provider(simulator_base(tag=tag), supportedSizes=["256x256", "1024x1024"])
    response = client.post(
        "/api/v1/images/generations",
        headers=caller,
        json={"prompt": "a fox", "size": "256x256", "model": "dall-e-3"},
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "validation_error"
    assert "256x256" in error["message"]
    assert simulator_calls(tag)["count"] == 0


def test_router_content_policy_not_retried(
    client, caller, new_provider, simulator_base, simulator_calls
):
    run = uuid.uuid4().hex[:8]
    policy_tag, healthy = f"e2e-policy-{run}", f"e2e-after-policy-{run}"
    new_provider(simulator_base("content_policy", tag=policy_tag), priority=1)
    new_provider(simulator_base(tag=healthy), priority=2)
    response = client.post(
        "/api/v1/images/generations",
        headers=caller,
        json={"prompt": "a fox", "size": "256x256"},
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "content_policy_violation"
    assert simulator_calls(policy_tag)["count"] == 1
    assert simulator_calls(healthy)["count"] == 0


def test_router_rate_limit_moves_on(
    client, caller, new_provider, simulator_base, simulator_calls
):
    run = uuid.uuid4().hex[:8]
    limited, healthy = f"e2e-429-{run}", f"e2e-after-429-{run}"
    first = new_provider(simulator_base("rate_limit=30", tag=limited), priority=1)
    second = new_provider(simulator_base(tag=healthy), priority=2)
    response = client.post(
        "/api/v1/images/generations",
        headers=caller,
        json={"prompt": "a fox", "size": "256x256"},
    )
    assert response.status_code == 200, response.text
    generation = response.json()["data"]
    assert generation["provider"]["name"] == second["name"]
    outcomes = [(a["provider"], a["outcome"]) for a in generation["attempts"]]
    assert outcomes == [(first["name"], "rate_limited"), (second["name"], "success")]
    assert simulator_calls(limited)["count"] == 1
    assert simulator_calls(healthy)["count"] == 1


def test_refused_connection_is_an_error(sim_target, call_adapter):
    # A bound socket that never listens refuses every connection at once.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        target = replace(
            sim_target("openai", tag=new_tag("oa-refused")),
            base_url=f"http://127.0.0.1:{port}/v1",
        )
        call = ProviderCall(prompt="a fox", n=1, size="256x256")
        with pytest.raises(ProviderFailure) as raised:
            call_adapter(OPENAI, target, call)
    assert raised.value.outcome == "error"
    assert raised.value.message == "connection failed: ClientConnectorError"

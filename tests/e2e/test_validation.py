"""Bad input, missing credentials and missing rights are refused before any
provider is called."""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture
def guarded(new_user, new_api_key, new_provider, simulator_base):
    tag = f"guard-{uuid.uuid4().hex[:10]}"
    new_provider(simulator_base(tag=tag))
    user = new_user()
    return {"tag": tag, "key": new_api_key(user), "user": user}


BAD_BODIES = {
    "missing_prompt": {"n": 1},
    "n_zero": {"prompt": "a cat", "n": 0},
    "n_eleven": {"prompt": "a cat", "n": 11},
    "unknown_size": {"prompt": "a cat", "size": "123x456"},
    "malformed_size": {"prompt": "a cat", "size": "big"},
    "n_as_string": {"prompt": "a cat", "n": "2"},
    "n_as_boolean": {"prompt": "a cat", "n": True},
    "prompt_as_number": {"prompt": 42},
    "unknown_field": {"prompt": "a cat", "colour": "red"},
    "bad_response_format": {"prompt": "a cat", "response_format": "png"},
    "empty_prompt": {"prompt": ""},
    "whitespace_prompt": {"prompt": " \t\n "},
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_bad_body_is_validation_error(client, guarded, simulator_calls, case):
    body = BAD_BODIES[case]
    response = client.post(
        "/api/v1/images/generations", headers={"X-API-Key": guarded["key"]}, json=body
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "validation_error"
    assert error["message"]
    assert response.json()["success"] is False
    assert simulator_calls(guarded["tag"])["count"] == 0


def test_invalid_field_is_named(client, guarded):
    response = client.post(
        "/api/v1/images/generations",
        headers={"X-API-Key": guarded["key"]},
        json={"prompt": "a cat", "n": "2"},
    )
    fields = response.json()["error"]["details"]["fields"]
    assert [field["field"] for field in fields] == ["n"]


def test_whitespace_prompt_is_named(client, guarded):
    response = client.post(
        "/v1/images/generations",
        headers={"Authorization": f"Bearer {guarded['key']}"},
        json={"prompt": "   "},
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "prompt"
    assert "whitespace" in error["message"]


def test_unknown_size_lists_available_sizes(client, guarded):
    response = client.post(
        "/api/v1/images/generations",
        headers={"X-API-Key": guarded["key"]},
        json={"prompt": "a cat", "size": "123x456"},
    )
    assert "512x512" in response.json()["error"]["details"]["availableSizes"]


def test_body_not_json_is_validation_error(client, guarded, simulator_calls):
    response = client.post(
        "/api/v1/images/generations",
        headers={"X-API-Key": guarded["key"], "Content-Type": "application/json"},
        content=b"{not json",
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "validation_error"
    assert simulator_calls(guarded["tag"])["count"] == 0


def test_openai_surface_validation_error_shape(client, guarded):
    response = client.post(
        "/v1/images/generations",
        headers={"Authorization": f"Bearer {guarded['key']}"},
        json={"prompt": "a cat", "n": 0},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "validation_error"
    assert error["param"] == "n"
    assert set(error) == {"message", "type", "param", "code"}


def test_no_credentials_is_401(client, guarded, simulator_calls):
    response = client.post("/api/v1/images/generations", json={"prompt": "a cat"})
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert simulator_calls(guarded["tag"])["count"] == 0


def test_unknown_api_key_is_401(client, guarded):
    response = client.post(
        "/api/v1/images/generations",
        headers={"X-API-Key": "ir_" + "x" * 43},
        json={"prompt": "a cat"},
    )
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


def test_plain_user_cannot_create_provider(client, new_user, simulator_base):
    user = new_user()
    response = client.post(
        "/api/v1/providers",
        headers=user.headers,
        json={
            "name": f"sneaky-{uuid.uuid4().hex[:6]}",
            "type": "openai",
            "apiKey": "sk-x",
            "baseUrl": simulator_base(),
            "costPerImage": "0.01",
            "supportedSizes": ["512x512"],
        },
    )
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "permission_error"


def test_api_key_cannot_create_provider(client, guarded, simulator_base):
    response = client.post(
        "/api/v1/providers",
        headers={"Authorization": f"Bearer {guarded['key']}"},
        json={"name": "x", "type": "openai"},
    )
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "permission_error"


def test_unknown_route_uses_envelope(client):
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found"


def test_request_id_is_returned(client):
    response = client.get(
        "/api/v1/users/profile", headers={"X-Request-ID": "test-req-12345"}
    )
    assert response.headers["x-request-id"] == "test-req-12345"
    minted = client.get("/api/v1/users/profile")
    assert len(minted.headers["x-request-id"]) >= 16

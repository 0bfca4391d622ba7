"""Input that a database or an HTTP client cannot take is refused as a client
error naming the field, never turned into a 500."""

from __future__ import annotations

import uuid

import pytest

from tests.fixtures import run_sql

NUL = "\u0000"


def test_nul_in_prompt_is_validation_error(
    client, new_user, new_provider, simulator_base
):
    new_provider(simulator_base(tag=f"nul-{uuid.uuid4().hex[:8]}"))
    user = new_user()
    for path in ("/api/v1/images/generations", "/v1/images/generations"):
        response = client.post(
            path, headers=user.headers, json={"prompt": f"a{NUL}b", "size": "256x256"}
        )
        assert response.status_code == 400, response.text
        body = response.json()["error"]
        assert body["type"] == "validation_error"
        assert "NUL" in body["message"]
    # The same connection keeps serving.
    ok = client.post(
        "/api/v1/images/generations",
        headers=user.headers,
        json={"prompt": "a calm sea", "size": "256x256"},
    )
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/api/v1/users/register",
            {"email": "a@example.com", "password": f"pass{NUL}word"},
        ),
        (
            "/api/v1/users/login",
            {"email": f"nul{NUL}@example.com", "password": "x" * 8},
        ),
    ],
)
def test_nul_in_account_fields_is_refused(client, path, body):
    response = client.post(path, json=body)
    assert response.status_code in (400, 401), response.text
    assert response.json()["success"] is False
    assert response.status_code != 500


def test_nul_in_profile_name_names_field(client, new_user):
    user = new_user()
    response = client.put(
        "/api/v1/users/profile", headers=user.headers, json={"name": f"a{NUL}b"}
    )
    assert response.status_code == 400, response.text
    fields = response.json()["error"]["details"]["fields"]
    assert [field["field"] for field in fields] == ["name"]


@pytest.mark.parametrize(
    "base_url",
    [
        "http://127.0.0.1:{port}/v1\r\nX-Injected: 1",
        " http://127.0.0.1:{port}/v1",
        "http://127.0.0.1:{port}/v1?x=1",
        "http://127.0.0.1:{port}/v1#frag",
        "http://" + "a" * 64 + ".example.com/v1",
    ],
)
def test_malformed_base_url_is_refused(client, admin, stack, base_url):
    port = stack.simulator_url.rsplit(":", 1)[1]
    response = client.post(
        "/api/v1/providers",
        headers=admin.headers,
        json={
            "name": f"bad-{uuid.uuid4().hex[:8]}",
            "type": "openai",
            "apiKey": "sk-x",
            "baseUrl": base_url.format(port=port),
            "costPerImage": "0.01",
            "supportedSizes": ["256x256"],
        },
    )
    assert response.status_code == 400, response.text
    fields = response.json()["error"]["details"]["fields"]
    assert [field["field"] for field in fields] == ["baseUrl"]


def test_unusable_stored_base_url_falls_back(
    stack, client, new_user, new_provider, simulator_base, simulator_calls
):
    broken = new_provider(simulator_base(tag="broken"), priority=1)
    healthy_tag = f"healthy-{uuid.uuid4().hex[:8]}"
    new_provider(simulator_base(tag=healthy_tag), priority=2)
    # A URL that validation would refuse today, stored by an older release.
    run_sql(
        stack.profile.database_url,
        "UPDATE providers.providers SET base_url = "
        f"'http://example.com/' || chr(13) || chr(10) || 'X: y' "
        f"WHERE id = '{broken['id']}'",
    )
    user = new_user()
    response = client.post(
        "/api/v1/images/generations",
        headers=user.headers,
        json={"prompt": "a bridge", "size": "256x256"},
    )
    assert response.status_code == 200, response.text
    attempts = response.json()["data"]["attempts"]
    assert [a["outcome"] for a in attempts] == ["error", "success"]
    assert simulator_calls(healthy_tag)["count"] == 1


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("GET", "/api/v1/images/files/", {}, 404),
        ("TRACE", "/api/v1/keys", {}, 405),
        ("GET", "/api/v1/keys", {"X-Big": "x" * 20000}, 400),
        ("GET", "/v1", {}, 404),
    ],
)
def test_nginx_errors_use_envelope(client, method, path, headers, status):
    response = client.request(method, path, headers=headers)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    assert "error" in response.json()

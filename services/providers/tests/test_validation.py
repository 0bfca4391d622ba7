"""Each field of a provider is validated, and a 400 names the invalid field."""

from __future__ import annotations

import uuid

import pytest


def valid_body(base_url: str) -> dict[str, object]:
    return {
        "name": f"valid-{uuid.uuid4().hex[:8]}",
        "type": "openai_compatible",
        "apiKey": "sk-validation-0123456789",
        "baseUrl": base_url,
        "priority": 5,
        "weight": 2,
        "rateLimit": 60,
        "costPerImage": "0.040000",
        "supportedSizes": ["512x512", "1024x1024"],
        "models": ["gpt-image-1"],
        "maxImagesPerRequest": 4,
        "timeout": 30000,
        "status": "maintenance",
    }


INVALID_VALUES = [
    ("name", ""),
    ("name", "has space"),
    ("name", "x" * 65),
    ("name", 123),
    ("type", "dalle"),
    ("type", 1),
    ("apiKey", ""),
    ("apiKey", "k" * 513),
    ("apiKey", 5),
    ("baseUrl", ""),
    ("baseUrl", "ftp://images.example.com/v1"),
    ("baseUrl", "images.example.com/v1"),
    ("baseUrl", "http://user:pass@images.example.com/v1"),
    ("baseUrl", "http://10.0.0.1/v1"),
    ("baseUrl", 42),
    ("priority", -1),
    ("priority", 10_001),
    ("priority", "2"),
    ("priority", True),
    ("priority", 1.5),
    ("weight", 0),
    ("weight", 1001),
    ("weight", "3"),
    ("rateLimit", -1),
    ("rateLimit", "10"),
    ("rateLimit", False),
    ("costPerImage", "-0.01"),
    ("costPerImage", "abc"),
    ("costPerImage", "1000.5"),
    ("costPerImage", "0.0000001"),
    ("costPerImage", True),
    ("supportedSizes", []),
    ("supportedSizes", ["big"]),
    ("supportedSizes", ["0x512"]),
    ("supportedSizes", ["512x512", "512x512"]),
    ("supportedSizes", "512x512"),
    ("models", ["has space"]),
    ("models", [""]),
    ("models", ["a", "a"]),
    ("models", "gpt-image-1"),
    ("maxImagesPerRequest", 0),
    ("maxImagesPerRequest", 11),
    ("maxImagesPerRequest", "4"),
    ("timeout", 999),
    ("timeout", 600_001),
    ("timeout", "30000"),
    ("status", "paused"),
    ("status", None),
]
REQUIRED_FIELDS = [
    "name",
    "type",
    "apiKey",
    "baseUrl",
    "costPerImage",
    "supportedSizes",
]


def invalid_fields(response) -> list[str]:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "validation_error"
    return [item["field"].split(".")[0] for item in error["details"]["fields"]]


@pytest.fixture
def body(simulator_base, fresh_registry):
    return valid_body(simulator_base(tag="validation"))


@pytest.mark.parametrize(("field", "value"), INVALID_VALUES)
def test_create_rejects_invalid_field(client, admin, body, field, value):
    response = client.post(
        "/api/v1/providers", json={**body, field: value}, headers=admin.headers
    )
    assert invalid_fields(response) == [field]
    assert field in response.json()["error"]["message"]


@pytest.mark.parametrize("field", REQUIRED_FIELDS)
def test_create_requires_field(client, admin, body, field):
    del body[field]
    response = client.post("/api/v1/providers", json=body, headers=admin.headers)
    assert invalid_fields(response) == [field]


def test_create_rejects_unknown_field(client, admin, body):
    response = client.post(
        "/api/v1/providers", json={**body, "region": "eu"}, headers=admin.headers
    )
    assert invalid_fields(response) == ["region"]


@pytest.mark.parametrize("raw", [b"{", b"[]", b"", b'"text"'])
def test_create_rejects_malformed_body(client, admin, raw, fresh_registry):
    response = client.post(
        "/api/v1/providers",
        content=raw,
        headers={**admin.headers, "Content-Type": "application/json"},
    )
    assert invalid_fields(response) == ["body"]


def test_create_accepts_every_field(client, admin, body):
    response = client.post("/api/v1/providers", json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    created = response.json()["data"]
    for field in body:
        if field != "apiKey":
            assert created[field] == (
                "0.04" if field == "costPerImage" else body[field]
            ), field
    assert "apiKey" not in created
    assert created["apiKeyHint"] == "…6789"


def test_create_keeps_cost_exact(client, admin, body):
    body["costPerImage"] = 0.123457
    response = client.post("/api/v1/providers", json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    assert response.json()["data"]["costPerImage"] == "0.123457"


def test_create_duplicate_name_conflicts(client, admin, body):
    first = client.post("/api/v1/providers", json=body, headers=admin.headers)
    assert first.status_code == 201, first.text
    second = client.post("/api/v1/providers", json=body, headers=admin.headers)
    assert second.status_code == 409, second.text
    assert second.json()["error"]["details"]["fields"][0]["field"] == "name"


@pytest.mark.parametrize(("field", "value"), INVALID_VALUES)
def test_update_rejects_invalid_field(client, admin, body, field, value):
    created = client.post("/api/v1/providers", json=body, headers=admin.headers)
    assert created.status_code == 201, created.text
    provider_id = created.json()["data"]["id"]
    response = client.put(
        f"/api/v1/providers/{provider_id}", json={field: value}, headers=admin.headers
    )
    assert invalid_fields(response) == [field]


@pytest.mark.parametrize("field", sorted(valid_body("http://x.example")))
def test_update_rejects_null(client, admin, body, field):
    created = client.post("/api/v1/providers", json=body, headers=admin.headers)
    provider_id = created.json()["data"]["id"]
    response = client.put(
        f"/api/v1/providers/{provider_id}", json={field: None}, headers=admin.headers
    )
    assert invalid_fields(response) == [field]


def test_update_rejects_empty_body(client, admin, body):
    created = client.post("/api/v1/providers", json=body, headers=admin.headers)
    provider_id = created.json()["data"]["id"]
    response = client.put(
        f"/api/v1/providers/{provider_id}", json={}, headers=admin.headers
    )
    assert invalid_fields(response) == ["body"]


def test_update_to_taken_name_conflicts(client, admin, body, simulator_base):
    first = client.post("/api/v1/providers", json=body, headers=admin.headers)
    other = valid_body(simulator_base(tag="validation"))
    second = client.post("/api/v1/providers", json=other, headers=admin.headers)
    assert second.status_code == 201, second.text
    response = client.put(
        f"/api/v1/providers/{second.json()['data']['id']}",
        json={"name": first.json()["data"]["name"]},
        headers=admin.headers,
    )
    assert response.status_code == 409, response.text


@pytest.mark.parametrize("value", ["paused", "", 1, None])
def test_status_rejects_invalid_value(client, admin, body, value):
    created = client.post("/api/v1/providers", json=body, headers=admin.headers)
    provider_id = created.json()["data"]["id"]
    response = client.put(
        f"/api/v1/providers/{provider_id}/status",
        json={"status": value},
        headers=admin.headers,
    )
    assert invalid_fields(response) == ["status"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=x", "limit"),
        ("cursor=%21%21", "cursor"),
        ("cursor=bm90LWpzb24", "cursor"),
    ],
)
def test_list_rejects_invalid_query(client, admin, query, field, fresh_registry):
    response = client.get(f"/api/v1/providers?{query}", headers=admin.headers)
    assert invalid_fields(response) == [field]


def test_list_pages_with_cursor(client, admin, simulator_base, fresh_registry):
    names = []
    for priority in (3, 1, 2, 1):
        body = {**valid_body(simulator_base(tag="paging")), "priority": priority}
        created = client.post("/api/v1/providers", json=body, headers=admin.headers)
        assert created.status_code == 201, created.text
        names.append((priority, body["name"]))
    seen, cursor = [], None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/providers", params=params, headers=admin.headers)
        assert page.status_code == 200, page.text
        data = page.json()["data"]
        seen.extend(item["name"] for item in data["items"])
        cursor = data["nextCursor"]
        if cursor is None:
            break
    assert seen == [name for _, name in sorted(names)]


def test_unknown_provider_is_not_found(client, admin, fresh_registry):
    for path in (f"/api/v1/providers/{uuid.uuid4()}", "/api/v1/providers/not-a-uuid"):
        response = client.get(path, headers=admin.headers)
        assert response.status_code == 404, response.text
        assert response.json()["error"]["type"] == "not_found"

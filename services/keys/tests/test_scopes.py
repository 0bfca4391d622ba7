"""Scopes as the generation service enforces them, on both surfaces."""

from __future__ import annotations

import uuid

GENERATION_BODY = {"prompt": "a lantern", "size": "256x256"}


def test_read_only_key_cannot_generate(client, new_user, create_key, probe):
    user = new_user()
    key = create_key(user, scopes=["images:read"])["key"]

    native = client.post(
        "/api/v1/images/generations", json=GENERATION_BODY, headers={"X-API-Key": key}
    )
    assert native.status_code == 403, native.text
    assert native.json()["error"]["type"] == "permission_error"
    assert "images:generate" in native.json()["error"]["message"]

    openai_surface = client.post(
        "/v1/images/generations",
        json=GENERATION_BODY,
        headers={"Authorization": f"Bearer {key}"},
    )
    assert openai_surface.status_code == 403, openai_surface.text
    assert openai_surface.json()["error"]["type"] == "permission_error"

    assert probe(key).status_code == 404


def test_generate_only_key_cannot_read(
    client, new_user, create_key, new_provider, simulator_base
):
    new_provider(simulator_base(tag=f"scopes-{uuid.uuid4().hex[:8]}"))
    user = new_user()
    key = create_key(user, scopes=["images:generate"])["key"]
    headers = {"X-API-Key": key}

    generated = client.post(
        "/api/v1/images/generations", json=GENERATION_BODY, headers=headers
    )
    assert generated.status_code == 200, generated.text
    generation_id = generated.json()["data"]["id"]

    reads = {
        "detail": client.get(
            f"/api/v1/images/generations/{generation_id}", headers=headers
        ),
        "list": client.get("/api/v1/images/generations", headers=headers),
    }
    for name, response in reads.items():
        assert response.status_code == 403, f"{name}: {response.text}"
        assert response.json()["error"]["type"] == "permission_error", name

    # The owner's user token reads the same generation.
    owner_read = client.get(
        f"/api/v1/images/generations/{generation_id}", headers=user.headers
    )
    assert owner_read.status_code == 200


def test_scope_checked_before_body(client, new_user, create_key):
    user = new_user()
    key = create_key(user, scopes=["images:read"])["key"]

    response = client.post(
        "/api/v1/images/generations", json={"prompt": ""}, headers={"X-API-Key": key}
    )
    assert response.status_code == 403, response.text

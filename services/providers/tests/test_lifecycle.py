"""Edits, deletion, live health and the user catalogue."""

from __future__ import annotations

import uuid

import httpx

from imagerouter.v1 import providers_pb2


def test_put_updates_only_named_fields(client, admin, new_provider, simulator_base):
    provider = new_provider(
        simulator_base(tag="edit"), models=["m1"], rateLimit=30, weight=2
    )
    response = client.put(
        f"/api/v1/providers/{provider['id']}",
        json={"priority": 9, "costPerImage": "0.5", "models": ["m2", "m3"]},
        headers=admin.headers,
    )
    assert response.status_code == 200, response.text
    updated = response.json()["data"]
    assert updated["priority"] == 9
    assert updated["costPerImage"] == "0.5"
    assert updated["models"] == ["m2", "m3"]
    for field in ("name", "baseUrl", "rateLimit", "weight", "apiKeyHint", "timeout"):
        assert updated[field] == provider[field], field


def test_status_route_changes_only_status(client, admin, new_provider, simulator_base):
    provider = new_provider(simulator_base(tag="edit"))
    for status in ("maintenance", "inactive", "active"):
        response = client.put(
            f"/api/v1/providers/{provider['id']}/status",
            json={"status": status},
            headers=admin.headers,
        )
        assert response.status_code == 200, response.text
        assert response.json()["data"]["status"] == status
        assert response.json()["data"]["priority"] == provider["priority"]


def test_delete_keeps_generation_history(
    client, admin, new_provider, new_user, new_api_key, simulator_base
):
    provider = new_provider(simulator_base(tag="delete"))
    user = new_user()
    key = new_api_key(user)
    generated = client.post(
        "/api/v1/images/generations",
        headers={"X-API-Key": key},
        json={"prompt": "a bridge", "size": "256x256"},
    )
    assert generated.status_code == 200, generated.text
    generation = generated.json()["data"]

    deleted = client.delete(
        f"/api/v1/providers/{provider['id']}", headers=admin.headers
    )
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["data"] == {"id": provider["id"]}
    gone = client.get(f"/api/v1/providers/{provider['id']}", headers=admin.headers)
    assert gone.status_code == 404

    stored = client.get(
        f"/api/v1/images/generations/{generation['id']}", headers=user.headers
    )
    assert stored.status_code == 200, stored.text
    data = stored.json()["data"]
    assert data["provider"] == {"id": provider["id"], "name": provider["name"]}
    assert [a["provider"] for a in data["attempts"]] == [provider["name"]]
    image = httpx.get(data["images"][0]["url"], timeout=10)
    assert image.status_code == 200

    # With no provider left, a new request has nowhere to go.
    again = client.post(
        "/api/v1/images/generations",
        headers={"X-API-Key": key},
        json={"prompt": "a bridge", "size": "256x256"},
    )
    assert again.status_code == 400, again.text


def test_health_shows_rates_latency_and_last_error(
    client, admin, new_provider, simulator_base, registry
):
    provider = new_provider(simulator_base(tag="health"))
    for latency in (100, 200, 300, 400):
        registry.report(provider["id"], "success", latency)
    registry.stub.ReportOutcome(
        providers_pb2.ReportOutcomeRequest(
            provider_id=provider["id"],
            outcome="error",
            latency_ms=50,
            error_type="provider_error",
            error_message="HTTP 500 from provider",
        ),
        metadata=registry.metadata,
        timeout=10,
    )
    registry.report(provider["id"], "content_policy", 80)
    response = client.get(f"/api/v1/providers/{provider['id']}", headers=admin.headers)
    assert response.status_code == 200, response.text
    health = response.json()["data"]["health"]
    assert health["recentAttempts"] == 6
    # Content-policy rejections tell nothing about the provider's health.
    assert health["successRate"] == 0.8
    assert health["p50LatencyMs"] == 200
    assert health["p95LatencyMs"] == 400
    assert health["circuitState"] == "closed"
    assert health["consecutiveFailures"] == 1
    assert health["lastError"]["type"] == "content_policy"
    assert health["lastError"]["at"] is not None


def test_catalogue_lists_available_models_and_sizes(
    client, admin, new_provider, new_user, new_api_key, simulator_base, gateway_url
):
    sim = simulator_base(tag="catalogue")
    new_provider(
        sim,
        name=f"a-{uuid.uuid4().hex[:6]}",
        models=["m-a", "m-shared"],
        supportedSizes=["256x256"],
    )
    new_provider(
        sim,
        name=f"b-{uuid.uuid4().hex[:6]}",
        models=["m-shared"],
        supportedSizes=["512x512"],
    )
    resting = new_provider(sim, models=["m-hidden"], supportedSizes=["1792x1024"])
    client.put(
        f"/api/v1/providers/{resting['id']}/status",
        json={"status": "maintenance"},
        headers=admin.headers,
    )
    user = new_user()
    key = new_api_key(user)

    for headers in (user.headers, {"X-API-Key": key}):
        response = client.get("/api/v1/images/models", headers=headers)
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        assert data["models"] == [
            {"id": "m-a", "sizes": ["256x256"]},
            {"id": "m-shared", "sizes": ["256x256", "512x512"]},
        ]
        assert data["sizes"] == ["256x256", "512x512"]
        assert "sim" not in response.text
        assert "a-" not in response.text

    listing = client.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
    assert listing.status_code == 200, listing.text
    body = listing.json()
    assert body["object"] == "list"
    assert [model["id"] for model in body["data"]] == ["m-a", "m-shared"]
    for model in body["data"]:
        assert model["object"] == "model"
        assert isinstance(model["created"], int)
        assert model["owned_by"] == "image-router"

    anonymous = client.get("/v1/models")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["type"] == "authentication_error"


def test_catalogue_works_with_openai_sdk(
    new_provider, new_user, new_api_key, simulator_base, gateway_url
):
    import openai

    new_provider(simulator_base(tag="catalogue"), models=["gpt-image-1"])
    key = new_api_key(new_user())
    sdk = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key=key, max_retries=0)
    assert [model.id for model in sdk.models.list()] == ["gpt-image-1"]

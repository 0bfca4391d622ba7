"""The caller's list of generations and usage figures."""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture
def two_providers(new_provider, simulator_base):
    cheap = new_provider(
        simulator_base(tag=f"cheap-{uuid.uuid4().hex[:8]}"), costPerImage="0.01"
    )
    return cheap


def generate(client, user, **fields):
    body = {"prompt": "a map", "size": "256x256", **fields}
    response = client.post(
        "/api/v1/images/generations", headers=user.headers, json=body
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]


def test_list_is_newest_first_and_paginated(client, new_user, two_providers):
    user = new_user()
    created = [generate(client, user)["id"] for _ in range(3)]

    first = client.get("/api/v1/images/generations?limit=2", headers=user.headers)
    assert first.status_code == 200
    page = first.json()["data"]
    assert [item["id"] for item in page["items"]] == created[::-1][:2]
    assert page["nextCursor"]

    second = client.get(
        "/api/v1/images/generations",
        params={"limit": 2, "cursor": page["nextCursor"]},
        headers=user.headers,
    )
    rest = second.json()["data"]
    assert [item["id"] for item in rest["items"]] == [created[0]]
    assert rest["nextCursor"] is None


def test_list_shows_only_own_generations(client, new_user, two_providers):
    owner, stranger = new_user(), new_user()
    generate(client, owner)
    response = client.get("/api/v1/images/generations", headers=stranger.headers)
    assert response.json()["data"]["items"] == []


def test_list_filters_by_status_and_provider(client, new_user, two_providers):
    user = new_user()
    generate(client, user)
    succeeded = client.get(
        "/api/v1/images/generations",
        params={"status": "succeeded"},
        headers=user.headers,
    )
    assert len(succeeded.json()["data"]["items"]) == 1
    failed = client.get(
        "/api/v1/images/generations", params={"status": "failed"}, headers=user.headers
    )
    assert failed.json()["data"]["items"] == []
    by_provider = client.get(
        "/api/v1/images/generations",
        params={"provider": two_providers["name"]},
        headers=user.headers,
    )
    assert len(by_provider.json()["data"]["items"]) == 1


@pytest.mark.parametrize(
    "query",
    [
        {"limit": 0},
        {"limit": 101},
        {"limit": "many"},
        {"cursor": "%%%"},
        {"status": "done"},
    ],
)
def test_list_rejects_bad_query(client, new_user, query):
    user = new_user()
    response = client.get(
        "/api/v1/images/generations", params=query, headers=user.headers
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "validation_error"


def test_usage_sums_images_and_cost_exactly(client, new_user, two_providers):
    user = new_user()
    generate(client, user, n=3)
    generate(client, user, n=2)

    response = client.get("/api/v1/images/usage", headers=user.headers)
    assert response.status_code == 200
    usage = response.json()["data"]
    assert usage["totalImages"] == 5
    assert usage["totalCost"] == "0.05"
    assert usage["byProvider"] == [
        {"provider": two_providers["name"], "images": 5, "cost": "0.05"}
    ]
    assert len(usage["byDay"]) == 1


def test_failed_generation_costs_nothing(
    client, new_user, new_provider, simulator_base
):
    new_provider(simulator_base("fail=500", tag=f"down-{uuid.uuid4().hex[:8]}"))
    user = new_user()
    response = client.post(
        "/api/v1/images/generations",
        headers=user.headers,
        json={"prompt": "a map", "size": "256x256"},
    )
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["type"] == "provider_error"
    stored = client.get(
        f"/api/v1/images/generations/{error['details']['generationId']}",
        headers=user.headers,
    ).json()["data"]
    assert stored["status"] == "failed"
    assert stored["cost"] == "0"
    usage = client.get("/api/v1/images/usage", headers=user.headers).json()["data"]
    assert usage["totalImages"] == 0

"""The keys REST API through nginx: creation, listing, updates, deletion,
ownership, validation and the per-account key limit."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pytest

# Defaults of MAX_KEYS_PER_USER and of the role maxima (USER_MAX_KEY_RATE_LIMIT
# and its neighbours); the test stack keeps them.
MAX_KEYS_PER_USER = 50
USER_MAX_RATE_LIMIT = 60
USER_MAX_DAILY_IMAGE_LIMIT = 500
ADMIN_MAX_RATE_LIMIT = 600


def error_fields(response: httpx.Response) -> list[str]:
    return [item["field"] for item in response.json()["error"]["details"]["fields"]]


def test_create_key_returns_full_key(client, new_user, create_key):
    user = new_user()
    created = create_key(user)
    key = created["key"]

    assert key.startswith("ir_")
    # 32 random bytes are 43 URL-safe base64 characters.
    assert len(key) == len("ir_") + 43
    assert created["prefix"] == key[:8]
    assert created["lastFour"] == key[-4:]
    assert created["scopes"] == ["images:generate", "images:read"]
    assert created["rateLimit"] == USER_MAX_RATE_LIMIT
    assert created["dailyImageLimit"] == USER_MAX_DAILY_IMAGE_LIMIT
    assert created["isActive"] is True
    assert created["expiresAt"] is None
    assert created["lastUsedAt"] is None


def test_list_and_detail_hide_full_key(client, new_user, create_key):
    user = new_user()
    created = create_key(user)
    key = created["key"]

    listed = client.get("/api/v1/keys", headers=user.headers)
    assert listed.status_code == 200
    [item] = listed.json()["data"]["items"]
    assert item["id"] == created["id"]
    assert "key" not in item
    assert key not in listed.text
    assert key[len("ir_") :] not in listed.text

    detail = client.get(f"/api/v1/keys/{created['id']}", headers=user.headers)
    assert detail.status_code == 200
    assert "key" not in detail.json()["data"]
    assert key not in detail.text
    assert detail.json()["data"]["lastFour"] == key[-4:]


def test_create_key_with_all_fields(client, new_user, create_key):
    user = new_user()
    expires_at = datetime.now(UTC) + timedelta(days=3)
    created = create_key(
        user,
        name="  nightly batch  ",
        scopes=["images:read"],
        expiresAt=expires_at.isoformat(),
        rateLimit=10,
        dailyImageLimit=25,
    )

    assert created["name"] == "nightly batch"
    assert created["scopes"] == ["images:read"]
    assert datetime.fromisoformat(created["expiresAt"]) == expires_at
    assert created["rateLimit"] == 10
    assert created["dailyImageLimit"] == 25


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "tab\tinside"}, "name"),
        ({"name": "k", "scopes": []}, "scopes"),
        ({"name": "k", "scopes": ["images:delete"]}, "scopes.0"),
        ({"name": "k", "scopes": ["images:read", "images:read"]}, "scopes"),
        ({"name": "k", "rateLimit": "5"}, "rateLimit"),
        ({"name": "k", "rateLimit": True}, "rateLimit"),
        ({"name": "k", "rateLimit": 0}, "rateLimit"),
        ({"name": "k", "dailyImageLimit": -1}, "dailyImageLimit"),
        ({"name": "k", "expiresAt": 1893456000}, "expiresAt"),
        ({"name": "k", "expiresAt": "2099-01-01T00:00:00"}, "expiresAt"),
        ({"name": "k", "expiresAt": "2000-01-01T00:00:00Z"}, "expiresAt"),
        ({"name": "k", "isActive": False}, "isActive"),
    ],
)
def test_create_key_rejects_invalid_body(client, new_user, body, field):
    user = new_user()
    response = client.post("/api/v1/keys", json=body, headers=user.headers)

    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "validation_error"
    assert field in error_fields(response)


def test_rate_limit_above_user_maximum_rejected(client, new_user, create_key):
    user = new_user()
    too_fast = client.post(
        "/api/v1/keys",
        json={"name": "fast", "rateLimit": USER_MAX_RATE_LIMIT + 1},
        headers=user.headers,
    )
    assert too_fast.status_code == 400, too_fast.text
    assert error_fields(too_fast) == ["rateLimit"]

    too_many = client.post(
        "/api/v1/keys",
        json={"name": "many", "dailyImageLimit": USER_MAX_DAILY_IMAGE_LIMIT + 1},
        headers=user.headers,
    )
    assert too_many.status_code == 400, too_many.text
    assert error_fields(too_many) == ["dailyImageLimit"]

    at_maximum = create_key(user, rateLimit=USER_MAX_RATE_LIMIT)
    raised = client.put(
        f"/api/v1/keys/{at_maximum['id']}",
        json={"rateLimit": USER_MAX_RATE_LIMIT + 1},
        headers=user.headers,
    )
    assert raised.status_code == 400, raised.text
    assert error_fields(raised) == ["rateLimit"]

    listed = client.get("/api/v1/keys", headers=user.headers).json()["data"]
    assert [item["rateLimit"] for item in listed["items"]] == [USER_MAX_RATE_LIMIT]


def test_admin_may_carry_higher_rate_limit(client, admin, create_key):
    created = create_key(admin, rateLimit=USER_MAX_RATE_LIMIT + 1)
    assert created["rateLimit"] == USER_MAX_RATE_LIMIT + 1

    above_admin = client.post(
        "/api/v1/keys",
        json={"name": "too fast", "rateLimit": ADMIN_MAX_RATE_LIMIT + 1},
        headers=admin.headers,
    )
    assert above_admin.status_code == 400, above_admin.text
    assert error_fields(above_admin) == ["rateLimit"]

    deleted = client.delete(f"/api/v1/keys/{created['id']}", headers=admin.headers)
    assert deleted.status_code == 200


def test_key_list_paginates(client, new_user, create_key):
    user = new_user()
    created_ids = [create_key(user)["id"] for _ in range(5)]

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        response = client.get("/api/v1/keys", params=params, headers=user.headers)
        assert response.status_code == 200, response.text
        page = response.json()["data"]
        assert len(page["items"]) <= 2
        seen.extend(item["id"] for item in page["items"])
        pages += 1
        cursor = page["nextCursor"]
        if cursor is None:
            break

    assert pages == 3
    assert seen == list(reversed(created_ids))

    default = client.get("/api/v1/keys", headers=user.headers).json()["data"]
    assert len(default["items"]) == 5
    assert default["nextCursor"] is None


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "WyJ4IiwgInkiXQ"}, "cursor"),
    ],
)
def test_key_list_rejects_bad_paging(client, new_user, params, field):
    user = new_user()
    response = client.get("/api/v1/keys", params=params, headers=user.headers)

    assert response.status_code == 400, response.text
    assert error_fields(response) == [field]


def test_list_shows_only_own_keys(client, new_user, create_key):
    owner, other = new_user(), new_user()
    create_key(owner)

    listed = client.get("/api/v1/keys", headers=other.headers)
    assert listed.status_code == 200
    assert listed.json()["data"]["items"] == []


def test_other_users_key_is_not_found(client, new_user, create_key, probe):
    owner, other = new_user(), new_user()
    created = create_key(owner)
    path = f"/api/v1/keys/{created['id']}"

    responses = {
        "GET": client.get(path, headers=other.headers),
        "PUT": client.put(path, json={"name": "mine"}, headers=other.headers),
        "DELETE": client.delete(path, headers=other.headers),
    }
    for method, response in responses.items():
        assert response.status_code == 404, f"{method}: {response.text}"
        assert response.json()["error"]["type"] == "not_found", method

    detail = client.get(path, headers=owner.headers)
    assert detail.status_code == 200
    assert detail.json()["data"]["name"] == created["name"]
    assert probe(created["key"]).status_code == 404


@pytest.mark.parametrize("key_id", ["not-a-uuid", str(uuid.uuid4()), "1"])
def test_unknown_or_malformed_key_id_is_not_found(client, new_user, key_id):
    user = new_user()
    path = f"/api/v1/keys/{key_id}"

    responses = {
        "GET": client.get(path, headers=user.headers),
        "PUT": client.put(path, json={"name": "x"}, headers=user.headers),
        "DELETE": client.delete(path, headers=user.headers),
    }
    for method, response in responses.items():
        assert response.status_code == 404, f"{method}: {response.text}"
        assert response.json()["error"]["type"] == "not_found", method


def test_update_changes_only_named_fields(client, new_user, create_key):
    user = new_user()
    created = create_key(user, rateLimit=20, dailyImageLimit=30)
    path = f"/api/v1/keys/{created['id']}"

    renamed = client.put(path, json={"name": "renamed"}, headers=user.headers)
    assert renamed.status_code == 200, renamed.text
    data = renamed.json()["data"]
    assert data["name"] == "renamed"
    assert data["rateLimit"] == 20
    assert data["dailyImageLimit"] == 30
    assert data["scopes"] == created["scopes"]
    assert data["isActive"] is True

    expires_at = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    changed = client.put(
        path,
        json={"scopes": ["images:generate"], "expiresAt": expires_at, "rateLimit": 5},
        headers=user.headers,
    )
    assert changed.status_code == 200, changed.text
    data = changed.json()["data"]
    assert data["name"] == "renamed"
    assert data["scopes"] == ["images:generate"]
    assert data["expiresAt"] is not None
    assert data["rateLimit"] == 5
    assert data["dailyImageLimit"] == 30

    cleared = client.put(path, json={"expiresAt": None}, headers=user.headers)
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["data"]["expiresAt"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body"),
        ({"name": None}, "name"),
        ({"rateLimit": None}, "rateLimit"),
        ({"isActive": None}, "isActive"),
        ({"isActive": "false"}, "isActive"),
        ({"scopes": []}, "scopes"),
        ({"expiresAt": "2001-01-01T00:00:00+00:00"}, "expiresAt"),
        ({"key": "ir_chosen"}, "key"),
    ],
)
def test_update_rejects_invalid_body(client, new_user, create_key, body, field):
    user = new_user()
    created = create_key(user)
    response = client.put(
        f"/api/v1/keys/{created['id']}", json=body, headers=user.headers
    )

    assert response.status_code == 400, response.text
    assert field in error_fields(response)


def test_delete_key(client, new_user, create_key, probe):
    user = new_user()
    created = create_key(user)
    path = f"/api/v1/keys/{created['id']}"

    deleted = client.delete(path, headers=user.headers)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["data"] == {"id": created["id"]}
    assert client.get(path, headers=user.headers).status_code == 404
    assert client.delete(path, headers=user.headers).status_code == 404
    assert probe(created["key"]).status_code == 401


def test_deactivate_then_reactivate(client, new_user, create_key, probe):
    user = new_user()
    created = create_key(user)
    path = f"/api/v1/keys/{created['id']}"
    assert probe(created["key"]).status_code == 404

    deactivated = client.put(path, json={"isActive": False}, headers=user.headers)
    assert deactivated.status_code == 200, deactivated.text
    assert deactivated.json()["data"]["isActive"] is False
    rejected = probe(created["key"])
    assert rejected.status_code == 401
    assert rejected.json()["error"]["type"] == "authentication_error"

    reactivated = client.put(path, json={"isActive": True}, headers=user.headers)
    assert reactivated.status_code == 200, reactivated.text
    assert reactivated.json()["data"]["isActive"] is True
    assert probe(created["key"]).status_code == 404


def test_expired_key_rejected(client, new_user, create_key, probe):
    user = new_user()
    expires_at = datetime.now(UTC) + timedelta(seconds=2)
    created = create_key(user, expiresAt=expires_at.isoformat())
    assert probe(created["key"]).status_code == 404

    time.sleep(max(0.0, (expires_at - datetime.now(UTC)).total_seconds()) + 0.3)
    rejected = probe(created["key"])
    assert rejected.status_code == 401
    assert rejected.json()["error"]["type"] == "authentication_error"

    # The key is still listed, and can be given a new expiry.
    path = f"/api/v1/keys/{created['id']}"
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    renewed = client.put(path, json={"expiresAt": later}, headers=user.headers)
    assert renewed.status_code == 200, renewed.text
    assert probe(created["key"]).status_code == 404


def test_api_key_cannot_manage_keys(client, new_user, create_key):
    user = new_user()
    created = create_key(user)
    key, path = created["key"], f"/api/v1/keys/{created['id']}"

    for headers in ({"X-API-Key": key}, {"Authorization": f"Bearer {key}"}):
        responses = {
            "POST": client.post("/api/v1/keys", json={"name": "x"}, headers=headers),
            "LIST": client.get("/api/v1/keys", headers=headers),
            "GET": client.get(path, headers=headers),
            "PUT": client.put(path, json={"isActive": False}, headers=headers),
            "DELETE": client.delete(path, headers=headers),
        }
        for method, response in responses.items():
            assert response.status_code == 401, f"{method}: {response.text}"
            error_type = response.json()["error"]["type"]
            assert error_type == "authentication_error", method

    listed = client.get("/api/v1/keys", headers=user.headers).json()["data"]
    assert len(listed["items"]) == 1
    assert listed["items"][0]["isActive"] is True


def test_key_limit_per_user(client, new_user, create_key):
    user = new_user()
    for _ in range(MAX_KEYS_PER_USER):
        create_key(user)

    over = client.post("/api/v1/keys", json={"name": "one more"}, headers=user.headers)
    assert over.status_code == 409, over.text
    assert over.json()["error"]["type"] == "conflict"
    assert over.json()["error"]["details"] == {"maxKeys": MAX_KEYS_PER_USER}

    page = client.get("/api/v1/keys", params={"limit": 100}, headers=user.headers)
    first_id = page.json()["data"]["items"][0]["id"]
    assert len(page.json()["data"]["items"]) == MAX_KEYS_PER_USER
    assert client.delete(f"/api/v1/keys/{first_id}", headers=user.headers).is_success
    create_key(user)


def test_key_limit_holds_under_concurrency(gateway_url, new_user, create_key):
    user = new_user()
    already = MAX_KEYS_PER_USER - 3
    for _ in range(already):
        create_key(user)

    def create(index: int) -> int:
        response = httpx.post(
            f"{gateway_url}/api/v1/keys",
            json={"name": f"race-{index}"},
            headers=user.headers,
            timeout=30,
        )
        return response.status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = sorted(pool.map(create, range(6)))

    assert statuses == [201, 201, 201, 409, 409, 409]


def test_last_use_recorded(client, new_user, create_key, probe, fetch_rows):
    user = new_user()
    created = create_key(user)
    path = f"/api/v1/keys/{created['id']}"
    assert probe(created["key"]).status_code == 404

    detail = client.get(path, headers=user.headers).json()["data"]
    assert detail["lastUsedAt"] is not None
    used_at = datetime.fromisoformat(detail["lastUsedAt"])
    assert abs((datetime.now(UTC) - used_at).total_seconds()) < 30

    # The batch writer (every LAST_USED_FLUSH_SECONDS, 1 s in tests) copies the
    # time to the database.
    query = "SELECT last_used_at FROM keys.api_keys WHERE id = $1"
    key_id = uuid.UUID(created["id"])
    deadline = time.monotonic() + 10
    while fetch_rows(query, key_id)[0]["last_used_at"] is None:
        assert time.monotonic() < deadline, "last use never reached the database"
        time.sleep(0.2)
    stored = fetch_rows(query, key_id)[0]["last_used_at"]
    assert abs((stored - used_at).total_seconds()) < 0.01

"""Profile, password change and logout through nginx, and revocation of earlier
tokens in every service."""

from __future__ import annotations

import uuid

import pytest

from tests.fixtures import PASSWORD

NEW_PASSWORD = "a brand new passphrase"
GENERATION_PATH = "/api/v1/images/generations/00000000-0000-0000-0000-000000000000"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_rejected_everywhere(client, token: str) -> None:
    """Assert that every service rejects `token` with 401."""
    headers = bearer(token)
    responses = {
        "auth": client.get("/api/v1/users/profile", headers=headers),
        "keys": client.get("/api/v1/keys", headers=headers),
        "providers": client.get("/api/v1/providers", headers=headers),
        "generation": client.get(GENERATION_PATH, headers=headers),
    }
    for service, response in responses.items():
        assert response.status_code == 401, (service, response.text)
        assert response.json()["error"]["type"] == "authentication_error", service


def assert_accepted_everywhere(client, token: str) -> None:
    """Assert that every service accepts `token` of a plain user."""
    headers = bearer(token)
    assert client.get("/api/v1/users/profile", headers=headers).status_code == 200
    assert client.get("/api/v1/keys", headers=headers).status_code == 200
    # A plain user is authenticated but not allowed on the admin routes.
    assert client.get("/api/v1/providers", headers=headers).status_code == 403
    assert client.get(GENERATION_PATH, headers=headers).status_code == 404


def change_password(client, token: str, current: str, new: str):
    return client.put(
        "/api/v1/users/password",
        json={"currentPassword": current, "newPassword": new},
        headers=bearer(token),
    )


def put_profile(client, token: str, body: dict):
    return client.put("/api/v1/users/profile", json=body, headers=bearer(token))


# -- profile -------------------------------------------------------------------


def test_profile_returns_caller(client, new_user):
    user = new_user()
    response = client.get("/api/v1/users/profile", headers=user.headers)
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["id"] == user.id
    assert data["email"] == user.email
    assert "passwordHash" not in data


def test_profile_update_name(client, new_user):
    user = new_user()
    response = put_profile(client, user.token, {"name": "Grace"})
    assert response.status_code == 200, response.text
    assert response.json()["data"]["name"] == "Grace"
    assert response.json()["data"]["email"] == user.email


def test_profile_update_keeps_omitted_fields(client, new_user):
    user = new_user()
    put_profile(client, user.token, {"name": "Grace"})
    response = put_profile(client, user.token, {})
    assert response.status_code == 200
    assert response.json()["data"]["name"] == "Grace"


def test_profile_name_null_clears(client, new_user):
    user = new_user()
    put_profile(client, user.token, {"name": "Grace"})
    response = put_profile(client, user.token, {"name": None})
    assert response.json()["data"]["name"] is None


@pytest.mark.parametrize(
    "field", ["role", "id", "createdAt", "passwordHash", "tokenVersion"]
)
def test_profile_protected_field_rejected(client, new_user, field):
    user = new_user()
    response = put_profile(client, user.token, {field: "admin", "name": "Mallory"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "validation_error"
    assert [item["field"] for item in error["details"]["fields"]] == [field]
    profile = client.get("/api/v1/users/profile", headers=user.headers).json()
    assert profile["data"]["role"] == "user"
    assert profile["data"]["name"] is None


def test_profile_role_admin_not_granted(client, new_user, login):
    user = new_user()
    put_profile(client, user.token, {"role": "admin"})
    token = login(user.email).json()["data"]["token"]
    assert client.get("/api/v1/providers", headers=bearer(token)).status_code == 403


def test_profile_name_over_bound(client, new_user):
    user = new_user()
    response = put_profile(client, user.token, {"name": "n" * 101})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "validation_error"


def test_profile_email_change_needs_password(client, new_user):
    user = new_user()
    response = put_profile(client, user.token, {"email": "x" + user.email})
    assert response.status_code == 400, response.text
    fields = response.json()["error"]["details"]["fields"]
    assert [item["field"] for item in fields] == ["currentPassword"]


def test_profile_email_change_wrong_password(client, new_user):
    user = new_user()
    response = put_profile(
        client,
        user.token,
        {"email": "x" + user.email, "currentPassword": "wrong password"},
    )
    assert response.status_code == 401, response.text
    assert response.json()["error"]["type"] == "authentication_error"
    profile = client.get("/api/v1/users/profile", headers=user.headers).json()
    assert profile["data"]["email"] == user.email


def test_profile_email_change(client, new_user, login):
    user = new_user()
    new_email = f"Changed-{uuid.uuid4().hex[:8]}@Test.Example"
    response = put_profile(
        client, user.token, {"email": new_email, "currentPassword": PASSWORD}
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"]["email"] == new_email.lower()
    assert login(new_email).status_code == 200
    assert login(user.email).status_code == 401


def test_profile_email_taken_other_case(client, new_user):
    user, other = new_user(), new_user()
    response = put_profile(
        client,
        user.token,
        {"email": other.email.upper(), "currentPassword": PASSWORD},
    )
    assert response.status_code == 409, response.text
    assert response.json()["error"]["type"] == "conflict"


def test_profile_same_email_needs_no_password(client, new_user):
    user = new_user()
    response = put_profile(client, user.token, {"email": user.email.upper()})
    assert response.status_code == 200, response.text


def test_profile_email_null_rejected(client, new_user):
    user = new_user()
    response = put_profile(client, user.token, {"email": None})
    assert response.status_code == 400
    fields = response.json()["error"]["details"]["fields"]
    assert [item["field"] for item in fields] == ["email"]


# -- password change -----------------------------------------------------------


def test_password_change_returns_working_token(client, new_user, jwt_secret):
    user = new_user()
    response = change_password(client, user.token, PASSWORD, NEW_PASSWORD)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["tokenType"] == "Bearer"
    assert data["user"]["id"] == user.id
    assert_accepted_everywhere(client, data["token"])


def test_password_change_revokes_earlier_tokens(client, new_user, login):
    user = new_user()
    second = login(user.email).json()["data"]["token"]
    fresh = change_password(client, user.token, PASSWORD, NEW_PASSWORD)
    assert fresh.status_code == 200, fresh.text
    assert_rejected_everywhere(client, user.token)
    assert_rejected_everywhere(client, second)


def test_password_change_switches_password(client, new_user, login):
    user = new_user()
    change_password(client, user.token, PASSWORD, NEW_PASSWORD)
    assert login(user.email, PASSWORD).status_code == 401
    assert login(user.email, NEW_PASSWORD).status_code == 200


def test_password_change_wrong_current(client, new_user, login):
    user = new_user()
    response = change_password(client, user.token, "wrong password", NEW_PASSWORD)
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert login(user.email, PASSWORD).status_code == 200


def test_password_change_wrong_current_throttled(client, new_user):
    user = new_user()
    for _ in range(5):
        change_password(client, user.token, "wrong password", NEW_PASSWORD)
    response = change_password(client, user.token, PASSWORD, NEW_PASSWORD)
    assert response.status_code == 429
    assert "Retry-After" in response.headers


@pytest.mark.parametrize(
    "new_password", ["short", "p" * 257], ids=["too_short", "too_long"]
)
def test_password_change_new_password_invalid(client, new_user, new_password):
    user = new_user()
    response = change_password(client, user.token, PASSWORD, new_password)
    assert response.status_code == 400
    fields = response.json()["error"]["details"]["fields"]
    assert [item["field"] for item in fields] == ["newPassword"]


def test_password_change_over_body_cap(client, new_user):
    user = new_user()
    response = change_password(client, user.token, PASSWORD, "p" * 1_000_000)
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "payload_too_large"


def test_password_change_twice_in_one_second(client, new_user):
    user = new_user()
    first = change_password(client, user.token, PASSWORD, NEW_PASSWORD)
    token = first.json()["data"]["token"]
    second = change_password(client, token, NEW_PASSWORD, PASSWORD)
    assert second.status_code == 200, second.text
    assert_rejected_everywhere(client, token)
    assert_accepted_everywhere(client, second.json()["data"]["token"])


# -- logout --------------------------------------------------------------------


def test_logout_revokes_every_token(client, new_user, login):
    user = new_user()
    second = login(user.email).json()["data"]["token"]
    response = client.post("/api/v1/users/logout", headers=user.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True, "data": {"loggedOut": True}}
    assert_rejected_everywhere(client, user.token)
    assert_rejected_everywhere(client, second)


def test_login_after_logout(client, new_user, login):
    user = new_user()
    client.post("/api/v1/users/logout", headers=user.headers)
    token = login(user.email).json()["data"]["token"]
    assert_accepted_everywhere(client, token)


def test_logout_twice_with_same_token(client, new_user):
    user = new_user()
    assert client.post("/api/v1/users/logout", headers=user.headers).status_code == 200
    response = client.post("/api/v1/users/logout", headers=user.headers)
    assert response.status_code == 401


def test_logout_survives_redis_data_loss(client, new_user, login, stack):
    """A logged-out token stays rejected after Redis loses the version,
    because the next login raises it again from Postgres."""
    import redis

    user = new_user()
    client.post("/api/v1/users/logout", headers=user.headers)
    redis.Redis.from_url(stack.profile.redis_url).delete(
        f"auth:token-version:{user.id}"
    )
    login(user.email)
    assert_rejected_everywhere(client, user.token)

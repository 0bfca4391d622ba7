"""Login through nginx: tokens, equal failures and the per-account limit."""

from __future__ import annotations

import time

import jwt
import pytest

from tests.fixtures import PASSWORD

# Per-account limit and window of the test stack (tests/fixtures.py).
ACCOUNT_LIMIT = 5
ACCOUNT_WINDOW_SECONDS = 3


@pytest.fixture
def account(register) -> str:
    response = register()
    assert response.status_code == 201, response.text
    return response.json()["data"]["email"]


def test_login_returns_token_and_user(login, account, jwt_secret):
    response = login(account)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["tokenType"] == "Bearer"
    assert data["user"]["email"] == account
    assert "passwordHash" not in data["user"]

    claims = jwt.decode(data["token"], jwt_secret, algorithms=["HS256"])
    assert set(claims) == {"sub", "role", "iat", "exp", "jti", "ver"}
    assert claims["sub"] == data["user"]["id"]
    assert claims["role"] == "user"
    assert claims["exp"] - claims["iat"] == data["expiresIn"]


def test_login_token_ids_differ(login, account, jwt_secret):
    tokens = [login(account).json()["data"]["token"] for _ in range(2)]
    claims = [jwt.decode(t, jwt_secret, algorithms=["HS256"]) for t in tokens]
    assert claims[0]["jti"] != claims[1]["jti"]


def test_login_email_any_case(login, account):
    assert login(account.upper()).status_code == 200


def test_login_wrong_password_matches_unknown_email(login, account):
    wrong_password = login(account, "wrong password")
    unknown_email = login(f"nobody-{account}", PASSWORD)
    assert wrong_password.status_code == 401
    assert unknown_email.status_code == 401
    assert wrong_password.json() == unknown_email.json()
    assert wrong_password.json()["error"]["type"] == "authentication_error"


def test_login_sixth_failure_throttled(login, account):
    for attempt in range(ACCOUNT_LIMIT):
        response = login(account, f"wrong password {attempt}")
        assert response.status_code == 401, (attempt, response.text)

    response = login(account, "wrong password again")
    assert response.status_code == 429, response.text
    assert response.json()["success"] is False
    assert response.json()["error"]["type"] == "rate_limit_exceeded"
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= ACCOUNT_WINDOW_SECONDS
    assert response.headers["X-RateLimit-Limit"] == str(ACCOUNT_LIMIT)
    assert response.headers["X-RateLimit-Remaining"] == "0"


def test_login_throttled_account_rejects_right_password(login, account):
    for _ in range(ACCOUNT_LIMIT):
        login(account, "wrong password")
    assert login(account).status_code == 429


def test_login_allowed_after_window(login, account):
    for _ in range(ACCOUNT_LIMIT):
        login(account, "wrong password")
    response = login(account)
    assert response.status_code == 429
    time.sleep(int(response.headers["Retry-After"]) + 0.2)
    assert login(account).status_code == 200


def test_login_success_resets_account_counter(login, account):
    for _ in range(ACCOUNT_LIMIT - 1):
        assert login(account, "wrong password").status_code == 401
    assert login(account).status_code == 200
    for _ in range(ACCOUNT_LIMIT - 1):
        assert login(account, "wrong password").status_code == 401
    assert login(account).status_code == 200


def test_login_unknown_email_throttled(login, account):
    unknown = f"ghost-{account}"
    for _ in range(ACCOUNT_LIMIT):
        assert login(unknown, "wrong password").status_code == 401
    assert login(unknown, "wrong password").status_code == 429


def test_login_throttle_per_account(login, account, register):
    for _ in range(ACCOUNT_LIMIT):
        login(account, "wrong password")
    other = register().json()["data"]["email"]
    assert login(other).status_code == 200


def test_login_password_over_bound(login, account):
    response = login(account, "p" * 257)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "validation_error"


def test_login_password_over_body_cap(login, account):
    response = login(account, "p" * 1_000_000)
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "payload_too_large"


def test_login_unknown_field_rejected(client, account):
    response = client.post(
        "/api/v1/users/login",
        json={"email": account, "password": PASSWORD, "role": "admin"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "validation_error"

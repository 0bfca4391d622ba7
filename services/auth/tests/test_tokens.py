"""Forged, expired and malformed tokens, and API keys, are 401 in every
service, never 500."""

from __future__ import annotations

import base64
import json
import time

import pytest

from tests.fixtures import PASSWORD

# One route per service that needs a user token (providers needs an admin).
PROTECTED_ROUTES = {
    "auth": ("GET", "/api/v1/users/profile"),
    "keys": ("GET", "/api/v1/keys"),
    "providers": ("GET", "/api/v1/providers"),
    "generation": (
        "GET",
        "/api/v1/images/generations/00000000-0000-0000-0000-000000000000",
    ),
}
# What a valid token of a plain user gets on each route.
VALID_USER_STATUS = {"auth": 200, "keys": 200, "providers": 403, "generation": 404}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(claims: dict) -> str:
    header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{b64url(json.dumps(claims).encode())}."


def call(client, service: str, headers: dict[str, str]):
    method, path = PROTECTED_ROUTES[service]
    return client.request(method, path, headers=headers)


def bad_tokens(user_id: str, forge) -> dict[str, str]:
    now = int(time.time())
    return {
        "alg_none": unsigned_token(
            {
                "sub": user_id,
                "role": "admin",
                "ver": 0,
                "iat": now,
                "exp": now + 600,
                "jti": "x",
            }
        ),
        "foreign_secret": forge(user_id, secret="another-secret-" + "x" * 40),
        "expired": forge(user_id, iat=now - 7200, exp=now - 3600),
        "without_exp": forge(user_id, drop=("exp",)),
        "without_ver": forge(user_id, drop=("ver",)),
        "ver_as_string": forge(user_id, ver="0"),
        "garbage_parts": "abc.def.ghi",
        "bad_base64": "e30.@@@.###",
    }


BAD_TOKEN_CASES = [
    "alg_none",
    "foreign_secret",
    "expired",
    "without_exp",
    "without_ver",
    "ver_as_string",
    "garbage_parts",
    "bad_base64",
]


@pytest.mark.parametrize("service", sorted(PROTECTED_ROUTES))
def test_valid_token_accepted(client, new_user, service):
    user = new_user()
    response = call(client, service, user.headers)
    assert response.status_code == VALID_USER_STATUS[service], response.text


@pytest.mark.parametrize("case", BAD_TOKEN_CASES)
@pytest.mark.parametrize("service", sorted(PROTECTED_ROUTES))
def test_bad_token_rejected(client, new_user, forge_token, service, case):
    user = new_user()
    token = bad_tokens(user.id, forge_token)[case]
    response = call(client, service, {"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.text
    assert response.json()["success"] is False
    assert response.json()["error"]["type"] == "authentication_error"


MALFORMED_HEADERS = {
    "basic_scheme": {"Authorization": "Basic dXNlcjpwYXNz"},
    "bearer_without_token": {"Authorization": "Bearer"},
    "no_header": {},
}


@pytest.mark.parametrize("case", sorted(MALFORMED_HEADERS))
@pytest.mark.parametrize("service", sorted(PROTECTED_ROUTES))
def test_malformed_authorization_rejected(client, service, case):
    response = call(client, service, MALFORMED_HEADERS[case])
    assert response.status_code == 401, response.text
    assert response.json()["error"]["type"] == "authentication_error"


ACCOUNT_ROUTES = [
    ("GET", "/api/v1/users/profile", None),
    ("PUT", "/api/v1/users/profile", {"name": "Taken Over"}),
    (
        "PUT",
        "/api/v1/users/password",
        {"currentPassword": PASSWORD, "newPassword": "taken over 123"},
    ),
    ("POST", "/api/v1/users/logout", None),
]


@pytest.mark.parametrize("header", ["x-api-key", "bearer"])
@pytest.mark.parametrize(("method", "path", "body"), ACCOUNT_ROUTES)
def test_api_key_rejected_on_account_routes(
    client, new_user, new_api_key, login, method, path, body, header
):
    user = new_user()
    key = new_api_key(user)
    headers = (
        {"X-API-Key": key}
        if header == "x-api-key"
        else {"Authorization": f"Bearer {key}"}
    )
    response = client.request(method, path, json=body, headers=headers)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["type"] == "authentication_error"
    # The account is untouched: the password still works, the token too.
    assert login(user.email).status_code == 200
    assert client.get("/api/v1/users/profile", headers=user.headers).status_code == 200

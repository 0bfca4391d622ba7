"""Registration through nginx: validation, normalisation and mass assignment."""

from __future__ import annotations

import uuid

import pytest

from tests.fixtures import PASSWORD


def assert_error(response, status: int, error_type: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False
    assert body["error"]["type"] == error_type
    assert body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    return body["error"]


def field_names(error: dict) -> list[str]:
    return [field["field"] for field in error["details"]["fields"]]


def test_register_returns_plain_user(register):
    response = register(name="Ada")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["success"] is True
    user = body["data"]
    assert user["role"] == "user"
    assert user["name"] == "Ada"
    assert set(user) == {"id", "email", "name", "role", "createdAt", "updatedAt"}
    assert PASSWORD not in response.text
    assert "argon2" not in response.text


def test_register_lowercases_email(register):
    response = register(email="Mixed.Case@Test.Example")
    assert response.status_code == 201, response.text
    assert response.json()["data"]["email"] == "mixed.case@test.example"


def test_register_duplicate_email_other_case(register):
    first = register()
    email = first.json()["data"]["email"]
    response = register(email=email.upper())
    error = assert_error(response, 409, "conflict")
    assert "already exists" in error["message"]


@pytest.mark.parametrize("field", ["role", "id", "createdAt", "isAdmin"])
def test_register_protected_field_rejected(register, field):
    value = "admin" if field == "role" else "x"
    response = register(**{field: value})
    error = assert_error(response, 400, "validation_error")
    assert field_names(error) == [field]


def test_register_role_admin_creates_nothing(register):
    email = f"mass-assign-{uuid.uuid4().hex[:10]}@test.example"
    response = register(email=email, role="admin")
    assert response.status_code == 400
    # The email is still free, so the rejected request created no account.
    response = register(email=email)
    assert response.status_code == 201, response.text
    assert response.json()["data"]["role"] == "user"


BAD_BODIES = {
    "short_password": ({"password": "seven77"}, "password"),
    "long_password": ({"password": "p" * 257}, "password"),
    "password_as_number": ({"password": 12345678}, "password"),
    "bad_email": ({"email": "not-an-email"}, "email"),
    "email_as_list": ({"email": ["a@test.example"]}, "email"),
    "empty_name": ({"name": ""}, "name"),
    "long_name": ({"name": "n" * 101}, "name"),
    "name_as_number": ({"name": 7}, "name"),
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_register_invalid_field(register, case):
    fields, name = BAD_BODIES[case]
    response = register(**fields)
    error = assert_error(response, 400, "validation_error")
    assert field_names(error) == [name]


def test_register_missing_password(client):
    response = client.post(
        "/api/v1/users/register", json={"email": "missing@test.example"}
    )
    error = assert_error(response, 400, "validation_error")
    assert field_names(error) == ["password"]


def test_register_body_not_json(client):
    response = client.post(
        "/api/v1/users/register",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert_error(response, 400, "validation_error")


def test_register_huge_password_under_body_cap(register):
    # 200 KB passes nginx's 256 KiB cap and is rejected by validation.
    response = register(password="p" * 200_000)
    error = assert_error(response, 400, "validation_error")
    assert field_names(error) == ["password"]


def test_register_huge_name_under_body_cap(register):
    response = register(name="n" * 200_000)
    error = assert_error(response, 400, "validation_error")
    assert field_names(error) == ["name"]


def test_register_password_over_body_cap(register):
    response = register(password="p" * 1_000_000)
    assert_error(response, 413, "payload_too_large")


def test_register_unicode_password(register, login):
    password = "пароль-密码-🔑-ß"
    response = register(password=password)
    assert response.status_code == 201, response.text
    email = response.json()["data"]["email"]
    assert login(email, password).status_code == 200


def test_register_unicode_password_normalised(register, login):
    # "é" as one code point at registration, as "e" + combining accent at login.
    response = register(password="caf\u00e9-latte-42")
    email = response.json()["data"]["email"]
    assert login(email, "cafe\u0301-latte-42").status_code == 200


def test_register_wrong_method(client):
    response = client.get("/api/v1/users/register")
    assert response.status_code == 405
    assert response.json()["success"] is False

"""The auth service as a process: production secret checks, the create-admin
command, the OpenAPI document, Redis outages and token version restore."""

from __future__ import annotations

import subprocess
import uuid

import httpx
import pytest
import redis

from stack import Stack

SPARE_PORT_OFFSET = 59


def auth_spec(stack: Stack):
    return next(spec for spec in stack.service_specs() if spec.name == "auth")


def run_auth_command(
    stack: Stack, arguments: list[str], env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    spec = auth_spec(stack)
    return subprocess.run(
        [*spec.command[:-1], *arguments],
        cwd=spec.cwd,
        env={**spec.env, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


# -- production secrets --------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        ("short-secret", "needs at least 32 random bytes"),
        ("change-me", "placeholder"),
    ],
)
def test_production_rejects_weak_jwt_secret(stack, secret, reason):
    port = str(stack.profile.port(SPARE_PORT_OFFSET))
    result = run_auth_command(
        stack,
        ["serve"],
        {"ENVIRONMENT": "production", "JWT_SECRET": secret, "HTTP_PORT": port},
    )
    assert result.returncode == 2, result.stderr
    assert "JWT_SECRET" in result.stderr
    assert reason in result.stderr
    assert "Traceback" not in result.stderr


def test_production_accepts_strong_secrets(stack, auth_replicas):
    env = stack.common_env()
    assert len(env["JWT_SECRET"].encode()) >= 32
    url = auth_replicas.start({"ENVIRONMENT": "production"})
    assert httpx.get(f"{url}/readyz").status_code == 200


# -- create-admin --------------------------------------------------------------


def test_create_admin_command(stack, client):
    email = f"ops-{uuid.uuid4().hex[:10]}@test.example"
    password = "an admin passphrase"
    result = run_auth_command(
        stack,
        ["create-admin", "--email", email.upper()],
        {"NEW_ADMIN_PASSWORD": password},
    )
    assert result.returncode == 0, result.stderr
    assert f"Created the admin {email}" in result.stdout

    response = client.post(
        "/api/v1/users/login", json={"email": email, "password": password}
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["user"]["role"] == "admin"
    headers = {"Authorization": f"Bearer {data['token']}"}
    assert client.get("/api/v1/providers", headers=headers).status_code == 200

    again = run_auth_command(
        stack, ["create-admin", "--email", email], {"NEW_ADMIN_PASSWORD": password}
    )
    assert again.returncode == 0, again.stderr
    assert "already an admin" in again.stdout


def test_create_admin_email_of_plain_user(stack, new_user, login):
    user = new_user()
    result = run_auth_command(
        stack,
        ["create-admin", "--email", user.email],
        {"NEW_ADMIN_PASSWORD": "an admin passphrase"},
    )
    assert result.returncode == 1
    assert "plain user" in result.stderr
    assert login(user.email).json()["data"]["user"]["role"] == "user"


def test_create_admin_short_password(stack):
    result = run_auth_command(
        stack,
        ["create-admin", "--email", "short@test.example"],
        {"NEW_ADMIN_PASSWORD": "short"},
    )
    assert result.returncode == 2
    assert "8 to 256 characters" in result.stderr


# -- OpenAPI -------------------------------------------------------------------

ENDPOINTS = {
    ("post", "/api/v1/users/register"): ("RegisterRequest", "201"),
    ("post", "/api/v1/users/login"): ("LoginRequest", "200"),
    ("post", "/api/v1/users/logout"): (None, "200"),
    ("get", "/api/v1/users/profile"): (None, "200"),
    ("put", "/api/v1/users/profile"): ("ProfileUpdateRequest", "200"),
    ("put", "/api/v1/users/password"): ("PasswordChangeRequest", "200"),
}


@pytest.fixture(scope="module")
def openapi(auth_url) -> dict:
    response = httpx.get(f"{auth_url}/openapi.json")
    assert response.status_code == 200
    return response.json()


@pytest.mark.parametrize(("method", "path"), sorted(ENDPOINTS))
def test_openapi_documents_endpoint(openapi, method, path):
    request_schema, success = ENDPOINTS[(method, path)]
    operation = openapi["paths"][path][method]

    if request_schema is None:
        assert "requestBody" not in operation
    else:
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert body["$ref"].endswith(f"/{request_schema}")

    response = operation["responses"][success]["content"]["application/json"]
    assert response["schema"]["$ref"].startswith("#/components/schemas/Envelope")
    assert "422" not in operation["responses"]
    for status, documented in operation["responses"].items():
        if status.startswith(("4", "5")):
            schema = documented["content"]["application/json"]["schema"]
            assert schema["$ref"].endswith("/ErrorEnvelope"), status


def test_openapi_lists_no_other_endpoint(openapi):
    documented = {
        (method, path)
        for path, operations in openapi["paths"].items()
        for method in operations
    }
    assert documented == set(ENDPOINTS)


def test_openapi_account_routes_need_bearer(openapi):
    for method, path in ENDPOINTS:
        security = openapi["paths"][path][method].get("security")
        if path.endswith(("register", "login")):
            assert security is None, path
        else:
            assert security == [{"userToken": []}], path


def test_openapi_schemas_use_client_field_names(openapi):
    schemas = openapi["components"]["schemas"]
    assert set(schemas["PasswordChangeRequest"]["properties"]) == {
        "currentPassword",
        "newPassword",
    }
    assert "tokenType" in schemas["LoginOut"]["properties"]
    assert "passwordHash" not in schemas["UserOut"]["properties"]


# -- Redis outage and recovery -------------------------------------------------


def test_redis_unreachable_is_503(stack, auth_replicas, new_user):
    user = new_user()
    closed_port = stack.profile.port(SPARE_PORT_OFFSET - 1)
    url = auth_replicas.start(
        {"REDIS_URL": f"redis://127.0.0.1:{closed_port}/0"}, wait_ready=False
    )
    with httpx.Client(base_url=url, timeout=30) as direct:
        attempts = {
            "login": direct.post(
                "/api/v1/users/login",
                json={"email": user.email, "password": "wrong password"},
            ),
            "register": direct.post(
                "/api/v1/users/register",
                json={"email": f"x-{user.email}", "password": "long enough"},
            ),
            "profile": direct.get("/api/v1/users/profile", headers=user.headers),
        }
        readiness = direct.get("/readyz")
    for name, response in attempts.items():
        assert response.status_code == 503, (name, response.text)
        assert response.json()["error"]["type"] == "service_unavailable", name
        assert response.headers["Retry-After"] == "5", name
    assert readiness.status_code == 503


def test_revocation_restored_after_redis_data_loss(stack, auth_replicas, client):
    """Tokens revoked by logout stay revoked after Redis loses its data,
    because the auth service copies the versions from Postgres at start."""
    email = f"restore-{uuid.uuid4().hex[:10]}@test.example"
    password = "restore passphrase"
    client.post("/api/v1/users/register", json={"email": email, "password": password})
    login = client.post(
        "/api/v1/users/login", json={"email": email, "password": password}
    )
    data = login.json()["data"]
    headers = {"Authorization": f"Bearer {data['token']}"}
    assert client.post("/api/v1/users/logout", headers=headers).status_code == 200

    store = redis.Redis.from_url(stack.profile.redis_url)
    store.delete(f"auth:token-version:{data['user']['id']}")
    # Without the stored version, the revoked token passes again.
    assert client.get("/api/v1/keys", headers=headers).status_code == 200

    auth_replicas.start({})
    for path in ("/api/v1/users/profile", "/api/v1/keys"):
        assert client.get(path, headers=headers).status_code == 401, path

"""Per-address attempt limits, the client address behind nginx, rehashing and
timing, on extra auth processes started with their own settings.

The test stack lifts the per-address limits, because every test connects from
127.0.0.1. These tests start auth processes with low limits and call them
directly, acting as the trusted proxy: they set X-Real-IP as nginx would.
"""

from __future__ import annotations

import statistics
import time
import uuid

import httpx
import pytest
import redis

from tests.fixtures import PASSWORD

ADDRESS_LIMIT = 3
LIGHT_HASH_PREFIX = "$argon2id$v=19$m=1024,t=1,p=1$"


def new_address() -> str:
    """Return a fresh address in the IPv6 documentation range."""
    return f"2001:db8::{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}"


def new_email() -> str:
    return f"limits-{uuid.uuid4().hex[:12]}@test.example"


def failed_login(client: httpx.Client, address: str | None) -> httpx.Response:
    headers = {"X-Real-IP": address} if address else {}
    return client.post(
        "/api/v1/users/login",
        json={"email": new_email(), "password": "wrong password"},
        headers=headers,
    )


@pytest.fixture(scope="module")
def trusted_auth(auth_replicas):
    """An auth process that trusts X-Real-IP from loopback, with low limits."""
    url = auth_replicas.start(
        {
            "LOGIN_ADDRESS_FAILURE_LIMIT": str(ADDRESS_LIMIT),
            "LOGIN_ADDRESS_WINDOW_SECONDS": "60",
            "REGISTRATION_ADDRESS_LIMIT": "2",
            "REGISTRATION_WINDOW_SECONDS": "60",
            "TRUSTED_PROXIES": "127.0.0.1",
        }
    )
    with httpx.Client(base_url=url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def untrusting_auth(auth_replicas):
    """An auth process that trusts no proxy, so X-Real-IP is ignored."""
    url = auth_replicas.start(
        {
            "LOGIN_ADDRESS_FAILURE_LIMIT": str(ADDRESS_LIMIT),
            "LOGIN_ADDRESS_WINDOW_SECONDS": "60",
            "TRUSTED_PROXIES": "",
        }
    )
    with httpx.Client(base_url=url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def strong_auth(auth_replicas):
    """An auth process whose argon2 parameters make one hash clearly slow."""
    url = auth_replicas.start(
        {
            "ARGON2_TIME_COST": "3",
            "ARGON2_MEMORY_COST_KIB": "32768",
            "LOGIN_ACCOUNT_FAILURE_LIMIT": "1000",
        }
    )
    with httpx.Client(base_url=url, timeout=60) as client:
        yield client


@pytest.fixture
def loopback_counter(stack):
    """Empty the failed-login counter of 127.0.0.1 before and after the test."""
    store = redis.Redis.from_url(stack.profile.redis_url)
    key = "auth:throttle:login-address:127.0.0.1"
    store.delete(key)
    yield
    store.delete(key)


# -- per-address limits --------------------------------------------------------


def test_address_limit_after_failures(trusted_auth):
    address = new_address()
    for attempt in range(ADDRESS_LIMIT):
        response = failed_login(trusted_auth, address)
        assert response.status_code == 401, (attempt, response.text)

    response = failed_login(trusted_auth, address)
    assert response.status_code == 429, response.text
    assert response.json()["error"]["type"] == "rate_limit_exceeded"
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert response.headers["X-RateLimit-Limit"] == str(ADDRESS_LIMIT)


def test_address_limit_spares_other_addresses(trusted_auth):
    address = new_address()
    for _ in range(ADDRESS_LIMIT):
        failed_login(trusted_auth, address)
    assert failed_login(trusted_auth, new_address()).status_code == 401


def test_address_limit_blocks_right_password(trusted_auth, new_user):
    user = new_user()
    address = new_address()
    for _ in range(ADDRESS_LIMIT):
        failed_login(trusted_auth, address)
    response = trusted_auth.post(
        "/api/v1/users/login",
        json={"email": user.email, "password": PASSWORD},
        headers={"X-Real-IP": address},
    )
    assert response.status_code == 429


def test_address_success_does_not_count(trusted_auth, new_user):
    user = new_user()
    address = new_address()
    for _ in range(ADDRESS_LIMIT + 2):
        response = trusted_auth.post(
            "/api/v1/users/login",
            json={"email": user.email, "password": PASSWORD},
            headers={"X-Real-IP": address},
        )
        assert response.status_code == 200, response.text


def test_nginx_overwrites_client_real_ip(client, trusted_auth):
    # A client behind nginx sends its own X-Real-IP (and X-Forwarded-For).
    # nginx replaces X-Real-IP, so the failures count for 127.0.0.1.
    address = new_address()
    for _ in range(ADDRESS_LIMIT):
        response = client.post(
            "/api/v1/users/login",
            json={"email": new_email(), "password": "wrong password"},
            headers={"X-Real-IP": address, "X-Forwarded-For": address},
        )
        assert response.status_code == 401
    assert failed_login(trusted_auth, address).status_code == 401


def test_untrusted_peer_real_ip_ignored(untrusting_auth, loopback_counter):
    # Each request names another address, but the peer is not a trusted
    # proxy, so all of them count for the peer, 127.0.0.1.
    for _ in range(ADDRESS_LIMIT):
        assert failed_login(untrusting_auth, new_address()).status_code == 401
    assert failed_login(untrusting_auth, new_address()).status_code == 429


def test_registration_address_limit(trusted_auth):
    address = new_address()
    headers = {"X-Real-IP": address}
    for _ in range(2):
        response = trusted_auth.post(
            "/api/v1/users/register",
            json={"email": new_email(), "password": PASSWORD},
            headers=headers,
        )
        assert response.status_code == 201, response.text

    response = trusted_auth.post(
        "/api/v1/users/register",
        json={"email": new_email(), "password": PASSWORD},
        headers=headers,
    )
    assert response.status_code == 429
    assert response.json()["error"]["type"] == "rate_limit_exceeded"
    assert "Retry-After" in response.headers

    response = trusted_auth.post(
        "/api/v1/users/register",
        json={"email": new_email(), "password": PASSWORD},
        headers={"X-Real-IP": new_address()},
    )
    assert response.status_code == 201


# -- rehash and timing ---------------------------------------------------------


def test_login_rehashes_on_parameter_change(client, new_user, strong_auth, fetch_value):
    user = new_user()
    query = "SELECT password_hash FROM auth.users WHERE email = $1"
    assert fetch_value(query, user.email).startswith(LIGHT_HASH_PREFIX)

    response = strong_auth.post(
        "/api/v1/users/login", json={"email": user.email, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    assert fetch_value(query, user.email).startswith("$argon2id$v=19$m=32768,t=3,")

    # Back on the stack's own parameters, the next login rehashes again.
    response = client.post(
        "/api/v1/users/login", json={"email": user.email, "password": PASSWORD}
    )
    assert response.status_code == 200
    assert fetch_value(query, user.email).startswith(LIGHT_HASH_PREFIX)


def timed_post(client: httpx.Client, path: str, body: dict) -> tuple[int, float]:
    started = time.perf_counter()
    response = client.post(path, json=body)
    return response.status_code, time.perf_counter() - started


def test_unknown_email_costs_one_verification(strong_auth):
    email = new_email()
    strong_auth.post(
        "/api/v1/users/register", json={"email": email, "password": PASSWORD}
    )
    wrong_password, unknown_email = [], []
    for _ in range(5):
        status, seconds = timed_post(
            strong_auth,
            "/api/v1/users/login",
            {"email": email, "password": "wrong password"},
        )
        assert status == 401
        wrong_password.append(seconds)
        status, seconds = timed_post(
            strong_auth,
            "/api/v1/users/login",
            {"email": new_email(), "password": "wrong password"},
        )
        assert status == 401
        unknown_email.append(seconds)

    wrong_median = statistics.median(wrong_password)
    unknown_median = statistics.median(unknown_email)
    assert unknown_median > 0.6 * wrong_median, (unknown_median, wrong_median)
    assert wrong_median > 0.6 * unknown_median, (unknown_median, wrong_median)


@pytest.mark.parametrize("path", ["/api/v1/users/register", "/api/v1/users/login"])
def test_password_over_bound_rejected_before_hashing(strong_auth, path):
    status, hashed_seconds = timed_post(
        strong_auth,
        "/api/v1/users/register",
        {"email": new_email(), "password": PASSWORD},
    )
    assert status == 201
    rejected = []
    for _ in range(3):
        status, seconds = timed_post(
            strong_auth, path, {"email": new_email(), "password": "p" * 200_000}
        )
        assert status == 400
        rejected.append(seconds)
    assert statistics.median(rejected) < 0.5 * hashed_seconds, (
        rejected,
        hashed_seconds,
    )

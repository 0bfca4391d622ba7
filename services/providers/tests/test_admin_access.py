"""Every provider route is for admins only, under every spelling of its path.

nginx matches locations on the normalised path (percent-escapes decoded, doubled
slashes merged, dot segments resolved) and forwards the path as sent. The
service normalises it the same way. Each spelling below is either accepted and
guarded like the canonical path, or rejected with 404 for everyone.
"""

from __future__ import annotations

import json
import uuid

import pytest

# Spellings of `/api/v1/providers` + suffix that reach the providers routes.
ACCEPTED_SPELLINGS = {
    "canonical": "/api/v1/providers{suffix}",
    "trailing slash": "/api/v1/providers{suffix}/",
    "doubled slashes": "/api/v1//providers{suffix}",
    "leading doubled slash": "//api/v1/providers{suffix}",
    "percent-encoded letter": "/api/v1/%70roviders{suffix}",
    "dot segment": "/api/v1/images/../providers{suffix}",
    "current-directory segment": "/api/v1/./providers{suffix}",
}
# Paths are case sensitive: these spellings reach no route at all.
REJECTED_SPELLINGS = {
    "upper-case prefix": "/API/v1/providers{suffix}",
    "capitalised resource": "/api/v1/Providers{suffix}",
}
ROUTE_NOT_FOUND = "No route matches"


def routes(provider_id: str) -> list[tuple[str, str, dict[str, object] | None]]:
    """(method, path suffix, body an admin may send) for every provider route."""
    missing = str(uuid.uuid4())
    return [
        ("GET", "", None),
        # Invalid on purpose: an admin gets 400, anybody else 401 or 403.
        ("POST", "", {"name": 1}),
        ("GET", f"/{provider_id}", None),
        ("PUT", f"/{provider_id}", {"priority": 7}),
        ("PUT", f"/{provider_id}/status", {"status": "active"}),
        # A random id, so the admin's DELETE reaches the route but deletes nothing.
        ("DELETE", f"/{missing}", None),
    ]


@pytest.fixture
def callers(admin, new_user, new_api_key):
    user = new_user()
    key = new_api_key(user)
    admin_key = new_api_key(admin)
    return {
        "admin": admin.headers,
        "user": user.headers,
        "api key (X-API-Key)": {"X-API-Key": key},
        "api key (Bearer)": {"Authorization": f"Bearer {key}"},
        "admin's api key": {"X-API-Key": admin_key},
        "anonymous": {},
    }


def reached_route(response) -> bool:
    """Tell whether a response came from a provider route (not a missing route)."""
    if response.status != 404:
        return True
    return ROUTE_NOT_FOUND not in response.text and "No route" not in response.text


@pytest.mark.parametrize("spelling", sorted(ACCEPTED_SPELLINGS))
def test_admin_only_on_accepted_spelling(
    spelling, raw_request, callers, new_provider, simulator_base
):
    provider = new_provider(simulator_base(tag="access"))
    template = ACCEPTED_SPELLINGS[spelling]
    for method, suffix, body in routes(provider["id"]):
        path = template.format(suffix=suffix)
        # A malformed body must not get past the admin check.
        raw_body = json.dumps(body).encode() if body is not None else b"{"
        for caller, headers in callers.items():
            response = raw_request(method, path, headers=headers, body=raw_body)
            where = f"{caller}: {method} {path} -> {response.status} {response.text}"
            if caller == "admin":
                assert reached_route(response), where
                assert response.status not in (401, 403), where
            elif caller == "user":
                assert response.status == 403, where
                assert response.json()["error"]["type"] == "permission_error", where
            elif caller == "anonymous":
                assert response.status == 401, where
                assert response.json()["error"]["type"] == "authentication_error"
            else:
                # Admin routes refuse every API key, an admin's included.
                assert response.status == 403, where
                assert response.json()["error"]["type"] == "permission_error"


@pytest.mark.parametrize("spelling", sorted(REJECTED_SPELLINGS))
def test_case_variant_spelling_is_not_found(
    spelling, raw_request, callers, new_provider, simulator_base
):
    provider = new_provider(simulator_base(tag="access"))
    template = REJECTED_SPELLINGS[spelling]
    for method, suffix, body in routes(provider["id"]):
        path = template.format(suffix=suffix)
        raw_body = json.dumps(body).encode() if body is not None else None
        for caller, headers in callers.items():
            response = raw_request(method, path, headers=headers, body=raw_body)
            where = f"{caller}: {method} {path} -> {response.status} {response.text}"
            assert response.status == 404, where
            assert not reached_route(response), where


def test_percent_encoded_slash_is_guarded(
    raw_request, callers, new_provider, simulator_base
):
    provider = new_provider(simulator_base(tag="access"))
    path = f"/api/v1/providers%2F{provider['id']}"
    admin = raw_request("GET", path, headers=callers["admin"])
    user = raw_request("GET", path, headers=callers["user"])
    key = raw_request("GET", path, headers=callers["api key (X-API-Key)"])
    assert admin.status == 200, admin.text
    assert admin.json()["data"]["id"] == provider["id"]
    assert user.status == 403, user.text
    assert key.status == 403, key.text


def test_admin_routes_work_for_admin(client, admin, new_provider, simulator_base):
    provider = new_provider(simulator_base(tag="access"))
    listed = client.get("/api/v1/providers/", headers=admin.headers)
    assert listed.status_code == 200, listed.text
    assert [item["id"] for item in listed.json()["data"]["items"]] == [provider["id"]]
    shown = client.get(f"/api/v1/providers/{provider['id']}/", headers=admin.headers)
    assert shown.status_code == 200, shown.text
    assert shown.json()["data"]["name"] == provider["name"]
